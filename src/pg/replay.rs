//! `--pause-replay`: WAL replay on a hot standby paused while pg_dump runs,
//! so the standby never cancels the dump to apply changes from the primary
//! (a recovery conflict), as pg_back does. Replay is resumed on every exit
//! path; a run killed with SIGKILL leaves a marker file that the next backup
//! into the same directory finds, and it resumes replay then.
//!
//! The marker is `<output dir>/.pgbak-replay-paused.<pid>`, locked (flock)
//! while its run lives. Replay is resumed only when no live run's marker
//! remains, so two backups of one standby (the daily full and a schema job)
//! never resume each other's pause.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::client;
use super::url::ConnSettings;
use crate::storage::fsio;
use crate::ui;

const MARKER_PREFIX: &str = ".pgbak-replay-paused.";

/// A pause this run holds; [`ReplayPause::end`] resumes replay.
pub struct ReplayPause {
    client: Client,
    dir: PathBuf,
    marker: PathBuf,
    _lock: File,
}

/// Markers in `dir`: (path, whether a live run holds it).
fn markers(dir: &Path) -> Vec<(PathBuf, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(MARKER_PREFIX))
        .map(|e| {
            let path = e.path();
            let live = File::open(&path).is_ok_and(|f| f.try_lock().is_err());
            (path, live)
        })
        .collect()
}

async fn resume(client: &Client) -> Result<()> {
    client
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .context("resuming WAL replay (pg_wal_replay_resume())")
}

/// Resumes replay paused by runs that died (SIGKILL, power loss) before they
/// could resume it: their markers are removed, and replay resumed when no
/// live run still wants it paused.
pub async fn resume_leftovers(dir: &Path, client: &Client) {
    let all = markers(dir);
    let dead: Vec<&PathBuf> = all
        .iter()
        .filter(|(_, live)| !live)
        .map(|(p, _)| p)
        .collect();
    if dead.is_empty() {
        return;
    }
    if all.iter().all(|(_, live)| !live) {
        ui::warn(
            "WAL replay on this standby was left paused by a pgbak run that died: resuming it",
        );
        if let Err(err) = resume(client).await {
            ui::warn(&crate::error::one_line(&err));
            return;
        }
    }
    for path in dead {
        let _ = std::fs::remove_file(path);
    }
}

impl ReplayPause {
    /// Pauses WAL replay on the standby `conn` points at, marker first.
    pub async fn begin(dir: &Path, conn: &ConnSettings) -> Result<ReplayPause> {
        let client = client::connect(conn).await?;
        resume_leftovers(dir, &client).await;
        let marker = dir.join(format!("{MARKER_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let lock =
            fsio::create_new(&marker).with_context(|| format!("creating {}", marker.display()))?;
        lock.try_lock()
            .map_err(std::io::Error::other)
            .with_context(|| format!("locking {}", marker.display()))?;
        let pause = ReplayPause {
            client,
            dir: dir.to_path_buf(),
            marker,
            _lock: lock,
        };
        if let Err(err) = pause
            .client
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
        {
            let _ = std::fs::remove_file(&pause.marker);
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
        let others_live = markers(&self.dir)
            .iter()
            .any(|(path, live)| *live && *path != self.marker);
        if others_live {
            let _ = std::fs::remove_file(&self.marker);
            ui::info("WAL replay stays paused: another pgbak run still dumps from this standby");
            return;
        }
        match resume(&self.client).await {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.marker);
                ui::info("resumed WAL replay on the standby");
            }
            // The marker stays (unlocked once this run exits): the next backup
            // into this directory resumes replay.
            Err(err) => ui::error(&format!(
                "{} (resume it by hand: SELECT pg_wal_replay_resume(); the next backup into this \
                 directory also resumes it)",
                crate::error::one_line(&err)
            )),
        }
    }
}
