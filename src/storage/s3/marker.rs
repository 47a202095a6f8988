//! The marker object `<key>.uploading` beside an open multipart upload: the
//! writing run's host and process, written when the upload starts, rewritten
//! every [`REFRESH`] while it runs, deleted when the upload is completed or
//! aborted. The stale-upload cleanup of any other run (another host, another
//! output directory) decides from it whether the upload's writer still
//! lives, instead of guessing from its own directory.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{error_chain, needs, sdk_error, Store};
use crate::ui;

/// What a marker's key adds to its upload's key.
pub const MARKER_SUFFIX: &str = ".uploading";
/// How often a running upload rewrites its marker.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A marker not rewritten for this long (three refreshes missed) no longer
/// proves that its writer lives.
pub const LEASE: Duration = Duration::from_secs(15 * 60);

/// The marker's key for an upload's key.
pub fn marker_key(upload_key: &str) -> String {
    format!("{upload_key}{MARKER_SUFFIX}")
}

/// What a marker says (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The multipart upload it covers; another upload of the same key is not covered.
    pub upload_id: String,
    pub host: String,
    pub pid: u32,
    /// The kernel's boot id: with the host and the pid namespace, what makes the pid mean one process.
    pub boot_id: Option<String>,
    pub pid_namespace: Option<String>,
    pub started: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    pub pgbak_version: String,
}

/// A process as a marker names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    pub pid: u32,
    pub boot_id: Option<String>,
    pub pid_namespace: Option<String>,
}

impl Identity {
    /// This process.
    pub fn current() -> Identity {
        Identity {
            host: crate::settings::host_name(),
            pid: std::process::id(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|id| id.trim().to_owned()),
            pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|ns| ns.display().to_string()),
        }
    }
}

/// Whether a marker's writer lives, as far as the marker shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// Refreshed within the [`LEASE`] (and not shown dead).
    Live,
    /// Certainly gone: a process of this very host, boot and pid namespace that no longer runs.
    Exited(String),
    /// Not refreshed within the lease: gone, or hung, or cut off from the store.
    Silent(String),
}

impl Marker {
    fn new(upload_id: &str, me: &Identity, now: DateTime<Utc>) -> Marker {
        Marker {
            upload_id: upload_id.to_owned(),
            host: me.host.clone(),
            pid: me.pid,
            boot_id: me.boot_id.clone(),
            pid_namespace: me.pid_namespace.clone(),
            started: now,
            refreshed: now,
            pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// What the marker says of its writer, seen from `me` at `now`; `alive`
    /// asks whether a pid of this host runs. The pid is trusted only within
    /// the same host name, boot and pid namespace: two machines (or
    /// containers) may share a host name.
    pub fn writer(&self, me: &Identity, alive: impl Fn(u32) -> bool, now: DateTime<Utc>) -> Writer {
        let same_process_space = self.host == me.host
            && self.boot_id.is_some()
            && self.boot_id == me.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == me.pid_namespace;
        if same_process_space && self.pid != me.pid && !alive(self.pid) {
            return Writer::Exited(format!("its run (pid {} on this host) is gone", self.pid));
        }
        let silent = (now - self.refreshed).to_std().unwrap_or(Duration::ZERO);
        if silent <= LEASE {
            Writer::Live
        } else {
            Writer::Silent(format!(
                "its marker was last refreshed {} ago by {}",
                humantime::format_duration(Duration::from_secs(silent.as_secs())),
                self.host
            ))
        }
    }
}

/// Whether a pid runs on this host (one we may not signal runs too).
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    // Signal 0 only checks that the process exists.
    rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH)
}

/// The marker of a running upload, rewritten until [`LiveMarker::remove`].
pub struct LiveMarker {
    key: String,
    stop: watch::Sender<bool>,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl LiveMarker {
    /// Stops rewriting the marker and leaves it: it still names this
    /// process, so once it exits a later run on this host sees the writer gone.
    pub fn halt(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self
            .refresher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Stops the refreshing (waiting for a rewrite under way, so none lands
    /// after the delete) and deletes the marker.
    pub async fn remove(&self, client: &Client, bucket: &str) {
        let _ = self.stop.send(true);
        let task = self
            .refresher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        delete_marker(client, bucket, &self.key).await;
    }
}

/// Deletes a marker object; a failure is a warning (the cleanup of a later
/// run removes markers whose upload is gone).
pub async fn delete_marker(client: &Client, bucket: &str, key: &str) {
    if let Err(err) = client.delete_object().bucket(bucket).key(key).send().await {
        ui::warn(&format!(
            "could not delete the upload marker s3://{bucket}/{key} ({}); a later backup \
             removes it",
            error_chain(&err)
        ));
    }
}

/// What claiming a name under the prefix found ([`Store::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This run holds the name: its marker was written where none was.
    Claimed,
    /// Another run wrote that marker first.
    Taken,
    /// The store does not do conditional writes: the listing check stands.
    Unsupported,
}

impl Store {
    /// Claims the name of an upload about to start: its marker is written
    /// only if none exists (a conditional write, `If-None-Match: *`), so two
    /// runs that picked the same name in the same second (two pods backing
    /// up one server) cannot both get it. The upload rewrites the marker
    /// when it starts. A store without conditional writes answers
    /// NotImplemented: then [`Claim::Unsupported`].
    pub async fn claim(&self, key: &str) -> Result<Claim> {
        let marker = Marker::new("", &Identity::current(), Utc::now());
        let body = serde_json::to_vec(&marker).context("encoding the upload marker")?;
        let (sse, kms_key) = self.sse_headers();
        let sent = self
            .client()
            .await
            .put_object()
            .bucket(self.bucket())
            .key(marker_key(key))
            .if_none_match("*")
            .content_type("application/json")
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Claim::Claimed),
            Err(err) => match err.raw_response().map(|r| r.status().as_u16()) {
                // 412: the marker exists; 409: a concurrent conditional write won.
                Some(412 | 409) => Ok(Claim::Taken),
                Some(501) => Ok(Claim::Unsupported),
                _ => Err(needs(sdk_error(err), "s3:PutObject")),
            },
        }
    }

    /// Writes the marker of the upload `upload_id` of `key` and starts
    /// rewriting it every [`REFRESH`]. Without a marker the upload still
    /// runs (only the cleanup of other runs is then left to its age): a
    /// failure is a warning.
    pub(super) async fn start_marker(&self, key: &str, upload_id: &str) -> Option<LiveMarker> {
        let me = Identity::current();
        let mut marker = Marker::new(upload_id, &me, Utc::now());
        let marker_key = marker_key(key);
        if let Err(err) = self.put_marker(&marker_key, &marker).await {
            ui::warn(&format!(
                "could not write the upload marker {}: {}; other runs' cleanup then goes by \
                 the upload's age alone",
                self.uri(&marker_key),
                crate::error::one_line(&err)
            ));
            return None;
        }
        let (stop, mut stopped) = watch::channel(false);
        let store = self.clone();
        let refresh_key = marker_key.clone();
        let refresher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(REFRESH) => {}
                }
                marker.refreshed = Utc::now();
                if let Err(err) = store.put_marker(&refresh_key, &marker).await {
                    ui::warn(&format!(
                        "could not refresh the upload marker {}: {}",
                        store.uri(&refresh_key),
                        crate::error::one_line(&err)
                    ));
                }
            }
        });
        Some(LiveMarker {
            key: marker_key,
            stop,
            refresher: Mutex::new(Some(refresher)),
        })
    }

    async fn put_marker(&self, key: &str, marker: &Marker) -> Result<()> {
        let body = serde_json::to_vec(marker).context("encoding the upload marker")?;
        let (sse, kms_key) = self.sse_headers();
        // No storage class: a small object that lives for hours is cheapest in STANDARD.
        self.client()
            .await
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_type("application/json")
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))?;
        Ok(())
    }

    /// The marker of the upload of `upload_key`; None when there is none or
    /// it does not parse (either way it proves nothing).
    pub(super) async fn read_marker(&self, upload_key: &str) -> Result<Option<Marker>> {
        let body = self
            .get_small(&marker_key(upload_key), "an upload marker")
            .await?;
        Ok(body.and_then(|body| serde_json::from_slice(&body).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            host: "db-host-01".into(),
            pid: 100,
            boot_id: Some("boot-a".into()),
            pid_namespace: Some("pid:[4026531836]".into()),
        }
    }

    fn at(minutes_ago: i64) -> DateTime<Utc> {
        now() - chrono::Duration::minutes(minutes_ago)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_marker_says_whether_its_writer_lives() {
        let dead = |_: u32| false;
        let alive = |_: u32| true;
        let marker = |host: &str, pid: u32, boot: &str, refreshed: i64| Marker {
            host: host.into(),
            pid,
            boot_id: Some(boot.into()),
            refreshed: at(refreshed),
            ..Marker::new("u1", &me(), at(60))
        };
        let cases = [
            (
                "same host, pid gone",
                marker("db-host-01", 42, "boot-a", 1),
                false,
                "exited",
            ),
            (
                "same host, pid runs, fresh",
                marker("db-host-01", 42, "boot-a", 1),
                true,
                "live",
            ),
            (
                "same host, pid runs, silent",
                marker("db-host-01", 42, "boot-a", 20),
                true,
                "silent",
            ),
            // Another machine with the same host name: its pids mean nothing here.
            (
                "same name, other boot",
                marker("db-host-01", 42, "boot-b", 1),
                false,
                "live",
            ),
            (
                "other host, fresh",
                marker("db-host-02", 42, "boot-a", 14),
                false,
                "live",
            ),
            (
                "other host, silent",
                marker("db-host-02", 42, "boot-a", 16),
                false,
                "silent",
            ),
            (
                "this very process",
                marker("db-host-01", 100, "boot-a", 1),
                false,
                "live",
            ),
        ];
        let kind = |w: &Writer| match w {
            Writer::Live => "live",
            Writer::Exited(_) => "exited",
            Writer::Silent(_) => "silent",
        };
        for (case, marker, runs, want) in cases {
            let got = marker.writer(&me(), if runs { alive } else { dead }, now());
            assert_eq!(kind(&got), want, "{case}: {got:?}");
        }
        // Another pid namespace on this host (a container): the pid is not checked.
        let other_ns = Marker {
            pid_namespace: Some("pid:[4026532000]".into()),
            pid: 42,
            refreshed: at(1),
            ..Marker::new("u1", &me(), at(60))
        };
        assert_eq!(other_ns.writer(&me(), dead, now()), Writer::Live);
    }

    #[test]
    fn markers_are_json_with_stable_names() {
        let marker = Marker::new("u1", &me(), now());
        let json: serde_json::Value = serde_json::to_value(&marker).unwrap();
        for key in [
            "upload_id",
            "host",
            "pid",
            "boot_id",
            "pid_namespace",
            "started",
            "refreshed",
        ] {
            assert!(json.get(key).is_some(), "{key}: {json}");
        }
        let back: Marker = serde_json::from_value(json).unwrap();
        assert_eq!(back, marker);
        assert_eq!(
            marker_key("p/x_full_20261126T020000.dump"),
            "p/x_full_20261126T020000.dump.uploading"
        );
    }

    #[test]
    fn pid_alive_sees_this_process_and_not_a_reaped_one() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
