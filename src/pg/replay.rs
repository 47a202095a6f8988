//! `--pause-replay`: WAL replay on a hot standby paused while pg_dump runs,
//! so the standby never cancels the dump to apply changes from the primary
//! (a recovery conflict), as pg_back does. Replay is resumed on every exit
//! path; a run killed with SIGKILL leaves a marker that the next backup of
//! the same server finds, and it resumes replay then.
//!
//! The marker lives in the authoritative store ([`Markers`]): under the S3
//! prefix when one is configured (the next run may be another pod with
//! another, empty directory), else in the output directory; a marker that
//! cannot be written to the bucket falls back to the directory. It is
//! `.pgbak-replay-paused.<server tag>.<run>`; markers from older versions
//! (`.pgbak-replay-paused.<pid>` in the directory) are honoured too.
//!
//! Whether a run that paused replay still lives is asked of the standby
//! itself, not of a file lock (which only its own host could see): every
//! pausing run holds a shared advisory lock in its session there, and a
//! killed run's session ends with it. Replay is resumed only when a marker
//! says pgbak paused it and no live run holds that lock, so two backups of
//! one standby (the daily full and a schema job) never resume each other's
//! pause, and a pause an operator made by hand is left alone.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::client;
use super::url::ConnSettings;
use crate::storage::Store;
use crate::ui;

const MARKER_PREFIX: &str = ".pgbak-replay-paused.";
/// The advisory lock (two int4 keys) every pausing run holds, shared.
const LOCK_KEYS: (i32, i32) = (0x7067_6261, 0x7265_706c);

/// Where this server's markers are kept: the directory, and the bucket
/// when there is one (then the authoritative store).
pub struct Markers {
    pub local: Store,
    pub bucket: Option<Store>,
    /// The server's tag ([`crate::storage::server_tag`]): markers of other
    /// servers sharing the directory or prefix are not this server's.
    pub server: String,
}

/// One marker found or written: its file, in the bucket or the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    in_bucket: bool,
    file: String,
}

impl Markers {
    fn name_prefix(&self) -> String {
        format!("{MARKER_PREFIX}{}.", self.server)
    }

    /// This server's markers in the directory (and the untagged ones older
    /// versions wrote) and in the bucket. A bucket that cannot be listed is
    /// named in a warning.
    async fn list(&self) -> Vec<Marker> {
        let mine = self.name_prefix();
        let mut found: Vec<Marker> = self
            .local
            .files_with(MARKER_PREFIX)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|name| name.starts_with(&mine) || legacy_marker(name))
            .map(|file| Marker {
                in_bucket: false,
                file,
            })
            .collect();
        if let Some(store) = &self.bucket {
            match store.files_with(&mine).await {
                Ok(files) => found.extend(files.into_iter().map(|file| Marker {
                    in_bucket: true,
                    file,
                })),
                Err(err) => ui::warn(&format!(
                    "cannot look for paused-replay markers under {}: {}",
                    store.describe(),
                    crate::error::one_line(&err)
                )),
            }
        }
        found
    }

    /// Writes this run's marker: to the bucket when there is one, else (or
    /// when that fails) to the directory.
    async fn write(&self) -> Result<Marker> {
        let run = format!(
            "{}-{}-{}",
            crate::settings::host_name()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>(),
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        let file = format!("{}{run}", self.name_prefix());
        let body = format!(
            "{{\"host\": {:?}, \"pid\": {}}}\n",
            crate::settings::host_name(),
            std::process::id()
        );
        if let Some(store) = &self.bucket {
            match store.put(&file, body.clone().into_bytes()).await {
                Ok(()) => {
                    return Ok(Marker {
                        in_bucket: true,
                        file,
                    })
                }
                Err(err) => ui::warn(&format!(
                    "cannot write the paused-replay marker to the bucket, writing it to {}: {}",
                    self.local.describe(),
                    crate::error::one_line(&err)
                )),
            }
        }
        self.local
            .put(&file, body.into_bytes())
            .await
            .with_context(|| format!("creating {}", self.local.address(&file)))?;
        Ok(Marker {
            in_bucket: false,
            file,
        })
    }

    async fn remove(&self, markers: &[Marker]) {
        let (bucket, local): (Vec<&Marker>, Vec<&Marker>) =
            markers.iter().partition(|m| m.in_bucket);
        let files = |ms: Vec<&Marker>| ms.into_iter().map(|m| m.file.clone()).collect::<Vec<_>>();
        let _ = self.local.delete(&files(local)).await;
        let bucket = files(bucket);
        if let (Some(store), false) = (&self.bucket, bucket.is_empty()) {
            if let Err(err) = store.delete(&bucket).await {
                ui::warn(&format!(
                    "removing paused-replay markers: {}",
                    crate::error::one_line(&err)
                ));
            }
        }
    }
}

/// `.pgbak-replay-paused.<pid>`: a marker pgbak wrote before markers named their server.
fn legacy_marker(name: &str) -> bool {
    name.strip_prefix(MARKER_PREFIX)
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// A pause this run holds; [`ReplayPause::end`] resumes replay.
pub struct ReplayPause {
    client: Client,
    markers: Markers,
    marker: Marker,
}

async fn resume(client: &Client) -> Result<()> {
    client
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .context("resuming WAL replay (pg_wal_replay_resume())")
}

/// Sessions other than this one that hold the pausing runs' lock: live runs
/// that want replay paused.
async fn others_pausing(client: &Client) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_locks
              WHERE locktype = 'advisory' AND granted AND objsubid = 2
                AND classid = $1::int::oid AND objid = $2::int::oid
                AND pid <> pg_catalog.pg_backend_pid()",
            &[&LOCK_KEYS.0, &LOCK_KEYS.1],
        )
        .await
        .context("asking the standby which pgbak runs pause its replay")?;
    Ok(row.get(0))
}

/// Resumes replay paused by runs that died (SIGKILL, power loss, a pod
/// evicted) before they could resume it: when a marker says pgbak paused
/// it and no live run still wants it paused, replay is resumed and the
/// markers removed.
pub async fn resume_leftovers(markers: &Markers, client: &Client) {
    let found = markers.list().await;
    if found.is_empty() {
        return;
    }
    match others_pausing(client).await {
        Ok(0) => {}
        Ok(_) => return,
        Err(err) => {
            ui::warn(&crate::error::one_line(&err));
            return;
        }
    }
    ui::warn("WAL replay on this standby was left paused by a pgbak run that died: resuming it");
    if let Err(err) = resume(client).await {
        ui::warn(&crate::error::one_line(&err));
        return;
    }
    markers.remove(&found).await;
}

impl ReplayPause {
    /// Pauses WAL replay on the standby `conn` points at: the leftovers of
    /// dead runs first, then this run's lock and marker, then the pause.
    pub async fn begin(markers: Markers, conn: &ConnSettings) -> Result<ReplayPause> {
        let client = client::connect(conn).await?;
        resume_leftovers(&markers, &client).await;
        client
            .execute(
                "SELECT pg_catalog.pg_advisory_lock_shared($1, $2)",
                &[&LOCK_KEYS.0, &LOCK_KEYS.1],
            )
            .await
            .context("--pause-replay: taking the pausing runs' advisory lock")?;
        let marker = markers.write().await?;
        let pause = ReplayPause {
            client,
            markers,
            marker,
        };
        if let Err(err) = pause
            .client
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
        {
            pause
                .markers
                .remove(std::slice::from_ref(&pause.marker))
                .await;
            let denied =
                err.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            let detail = err
                .as_db_error()
                .map_or_else(|| err.to_string(), |d| d.message().to_owned());
            if denied {
                anyhow::bail!(
                    "--pause-replay: user {:?} may not pause WAL replay ({detail}); on the primary, \
                     GRANT EXECUTE ON FUNCTION pg_wal_replay_pause(), pg_wal_replay_resume() TO {}",
                    conn.user,
                    client::quote_ident(&conn.user)
                );
            }
            anyhow::bail!("--pause-replay: pausing WAL replay failed: {detail}");
        }
        // Replay stops at the next record; wait (briefly) until it has.
        for _ in 0..50 {
            let state: Option<String> = pause
                .client
                .query_one("SELECT pg_get_wal_replay_pause_state()::text", &[])
                .await
                .ok()
                .and_then(|r| r.get(0));
            if state.as_deref() != Some("pause requested") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ui::info("paused WAL replay on the standby for the dump (--pause-replay)");
        Ok(pause)
    }

    /// Resumes replay unless another live run still holds a pause; never fails the run.
    pub async fn end(self) {
        let others = others_pausing(&self.client).await.unwrap_or(0);
        if others > 0 {
            self.markers
                .remove(std::slice::from_ref(&self.marker))
                .await;
            ui::info("WAL replay stays paused: another pgbak run still dumps from this standby");
            return;
        }
        match resume(&self.client).await {
            Ok(()) => {
                // No live run pauses it: every marker of this server is done with.
                let found = self.markers.list().await;
                self.markers.remove(&found).await;
                ui::info("resumed WAL replay on the standby");
            }
            // The marker stays (this run's lock goes with its session): the
            // next backup of this server resumes replay.
            Err(err) => ui::error(&format!(
                "{} (resume it by hand: SELECT pg_wal_replay_resume(); the next backup of this \
                 server also resumes it)",
                crate::error::one_line(&err)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_older_versions_are_recognised() {
        assert!(legacy_marker(".pgbak-replay-paused.12345"));
        assert!(!legacy_marker(".pgbak-replay-paused.1a2b3c4d.host-1-2"));
        assert!(!legacy_marker(".pgbak-replay-paused."));
        assert!(!legacy_marker("x_full_20261125T020000.dump"));
    }
}
