//! Multipart uploads left open by runs that died (SIGKILL, a lost store)
//! keep their parts stored and billed. After a successful backup, the open
//! uploads of its group are aborted when nothing shows a live writer: the
//! key's own marker (see `marker`) decides, and the upload's age
//! (`PGBAK_S3_STALE_UPLOAD_AGE`) covers the moment between an upload's start
//! and its first marker. What this run's directory holds plays no part: the
//! writer may be another host or another output directory.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::marker::{self, delete_marker, Identity, Marker, Writer, LEASE, MARKER_SUFFIX};
use super::{needs, sdk_error, Store};
use crate::storage::{is_plain_file_name, BackupName};
use crate::ui;

/// A multipart upload that is still open on the store.
#[derive(Debug, Clone)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    /// When the store says it was started.
    pub initiated: Option<SystemTime>,
}

/// What the cleanup does with one open upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Abort it, for this reason.
    Abort(String),
}

/// The cleanup's rule for one open upload (`upload_id`, `age` old when the
/// store knows): kept while its marker shows a live writer; aborted at once
/// when the marker shows its writer exited; otherwise (no marker, or one not
/// refreshed within the lease) aborted only once older than `stale_age`.
pub fn judge(
    upload_id: &str,
    age: Option<Duration>,
    marker: Option<&Marker>,
    stale_age: Duration,
    me: &Identity,
    alive: impl Fn(u32) -> bool,
    now: DateTime<Utc>,
) -> Verdict {
    let why = match marker
        .filter(|m| m.upload_id == upload_id)
        .map(|m| m.writer(me, alive, now))
    {
        Some(Writer::Live) => return Verdict::Keep,
        Some(Writer::Exited(why)) => return Verdict::Abort(why),
        Some(Writer::Silent(why)) => why,
        None => "it has no upload marker".to_owned(),
    };
    match age {
        Some(age) if age > stale_age => Verdict::Abort(format!(
            "{why}, and it was started {} ago (PGBAK_S3_STALE_UPLOAD_AGE {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(stale_age)
        )),
        _ => Verdict::Keep,
    }
}

impl Store {
    /// Open uploads of `made`'s group, older than it by name, whose writer
    /// is gone (see [`judge`]): aborted, with their markers; then markers
    /// of that group whose upload is gone. Optional housekeeping: a missing
    /// permission or an unreadable marker is a warning, never a failed run.
    /// Returns what was aborted.
    pub async fn abort_stale_uploads(&self, made: &BackupName) -> Result<Vec<String>> {
        let mut aborted = Vec::new();
        let open = match self.open_uploads().await {
            Ok(open) => open,
            Err(err) => {
                ui::warn(&format!(
                    "skipping the cleanup of stale multipart uploads: {}",
                    crate::error::one_line(&err)
                ));
                return Ok(aborted);
            }
        };
        let me = Identity::current();
        for upload in &open {
            if !self.of_group_before(&upload.key, made) {
                continue;
            }
            let found = match self.read_marker(&upload.key).await {
                Ok(found) => found,
                Err(err) => {
                    ui::warn(&format!(
                        "leaving the open upload of {} alone: {}",
                        self.uri(&upload.key),
                        crate::error::one_line(&err)
                    ));
                    continue;
                }
            };
            let age = upload
                .initiated
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            let stale_age = self.settings.stale_upload_age;
            let verdict = judge(
                &upload.upload_id,
                age,
                found.as_ref(),
                stale_age,
                &me,
                marker::pid_alive,
                Utc::now(),
            );
            let Verdict::Abort(why) = verdict else {
                continue;
            };
            crate::signals::check()?;
            ui::info(&format!(
                "aborting the multipart upload of {}: {why}",
                self.uri(&upload.key)
            ));
            if let Err(err) = self.abort_upload(&upload.key, &upload.upload_id).await {
                ui::warn(&format!(
                    "could not abort a stale multipart upload: {}",
                    crate::error::one_line(&err)
                ));
                continue;
            }
            // Its marker goes too (not one another upload of the same key wrote).
            if found.is_some_and(|m| m.upload_id == upload.upload_id) {
                delete_marker(
                    self.client().await,
                    self.bucket(),
                    &marker::marker_key(&upload.key),
                )
                .await;
            }
            aborted.push(format!(
                "{} (upload {})",
                self.uri(&upload.key),
                upload.upload_id
            ));
        }
        if let Err(err) = self.sweep_markers(&open, made).await {
            ui::warn(&format!(
                "skipping the cleanup of upload markers: {}",
                crate::error::one_line(&err)
            ));
        }
        Ok(aborted)
    }

    /// Whether `key` is a dump of `made`'s group named before it (or of the
    /// same database, mode and label with no server in its name: an upload
    /// an older pgbak left open).
    fn of_group_before(&self, key: &str, made: &BackupName) -> bool {
        let Some(file) = key.strip_prefix(self.settings.prefix.as_str()) else {
            return false;
        };
        let legacy = |name: &BackupName| {
            name.server.is_none()
                && name.clone().with_server(made.server.clone()).group() == made.group()
        };
        is_plain_file_name(file)
            && BackupName::parse(file).is_some_and(|name| {
                (name.group() == made.group() || legacy(&name)) && name.timestamp < made.timestamp
            })
    }

    /// Deletes markers of `made`'s group whose upload is no longer open and
    /// that were not rewritten within the lease (a marker whose delete failed,
    /// or whose upload a lifecycle rule removed).
    async fn sweep_markers(&self, open: &[OpenUpload], made: &BackupName) -> Result<()> {
        let lease_start = SystemTime::now() - LEASE;
        for object in self.objects().await? {
            let Some(key) = object.key() else { continue };
            let Some(upload_key) = key.strip_suffix(MARKER_SUFFIX) else {
                continue;
            };
            let old = object
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .is_some_and(|t| t < lease_start);
            if old
                && self.of_group_before(upload_key, made)
                && !open.iter().any(|u| u.key == upload_key)
            {
                crate::signals::check()?;
                ui::info(&format!("removing {}: its upload is gone", self.uri(key)));
                delete_marker(self.client().await, self.bucket(), key).await;
            }
        }
        Ok(())
    }

    /// Multipart uploads under the prefix that were started and neither
    /// completed nor aborted.
    async fn open_uploads(&self) -> Result<Vec<OpenUpload>> {
        let prefix = &self.settings.prefix;
        let mut open = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client()
                .await
                .list_multipart_uploads()
                .bucket(self.bucket())
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| needs(sdk_error(e), "s3:ListBucketMultipartUploads"))
                .with_context(|| {
                    format!("listing open uploads under s3://{}/{prefix}", self.bucket())
                })?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    open.push(OpenUpload {
                        key: key.to_owned(),
                        upload_id: id.to_owned(),
                        initiated: upload
                            .initiated()
                            .and_then(|t| SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(open)
    }

    /// Aborts one multipart upload.
    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        self.client()
            .await
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:AbortMultipartUpload"))
            .with_context(|| format!("aborting the upload {upload_id} of {}", self.uri(key)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn me() -> Identity {
        Identity {
            host: "db-host-01".into(),
            pid: 100,
            boot_id: Some("boot-a".into()),
            pid_namespace: Some("pid:[1]".into()),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn marker(host: &str, pid: u32, upload_id: &str, minutes_ago: i64) -> Marker {
        let at = now() - chrono::Duration::minutes(minutes_ago);
        Marker {
            upload_id: upload_id.into(),
            host: host.into(),
            pid,
            boot_id: Some("boot-a".into()),
            pid_namespace: Some("pid:[1]".into()),
            started: at,
            refreshed: at,
            pgbak_version: "0.1.0".into(),
        }
    }

    #[test]
    fn open_uploads_are_aborted_only_when_no_live_writer_shows() {
        let day = 24 * HOUR;
        let running = |pid: u32| pid == 42;
        let cases = [
            // (case, upload age, marker, stale age, aborted)
            (
                "live marker of another host, old upload",
                Some(2 * day),
                Some(marker("db-host-02", 7, "u1", 3)),
                day,
                false,
            ),
            (
                "live marker, stale age 0",
                Some(HOUR),
                Some(marker("db-host-02", 7, "u1", 3)),
                Duration::ZERO,
                false,
            ),
            (
                "running process of this host",
                Some(2 * day),
                Some(marker("db-host-01", 42, "u1", 3)),
                Duration::ZERO,
                false,
            ),
            (
                "exited process of this host, young upload",
                Some(HOUR),
                Some(marker("db-host-01", 43, "u1", 3)),
                day,
                true,
            ),
            (
                "silent marker, old upload",
                Some(2 * day),
                Some(marker("db-host-02", 7, "u1", 60)),
                day,
                true,
            ),
            (
                "silent marker, young upload",
                Some(HOUR),
                Some(marker("db-host-02", 7, "u1", 60)),
                day,
                false,
            ),
            ("no marker, old upload", Some(2 * day), None, day, true),
            ("no marker, young upload", Some(HOUR), None, day, false),
            ("no marker, age unknown", None, None, Duration::ZERO, false),
            (
                "marker of another upload of the key",
                Some(2 * day),
                Some(marker("db-host-02", 7, "u0", 3)),
                day,
                true,
            ),
        ];
        for (case, age, marker, stale_age, aborted) in cases {
            let verdict = judge("u1", age, marker.as_ref(), stale_age, &me(), running, now());
            assert_eq!(
                matches!(verdict, Verdict::Abort(_)),
                aborted,
                "{case}: {verdict:?}"
            );
        }
    }
}
