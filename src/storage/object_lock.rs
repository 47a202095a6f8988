//! S3 Object Lock: backups a host holding the bucket's credentials cannot
//! delete before their retain-until date (WORM), so ransomware on the
//! database host cannot take the off-site copies with it.
//!
//! `--s3-object-lock-days N` checks at the start that the bucket has Object
//! Lock enabled (else exit 2), then sets retain-until on the dump and its
//! meta.json once both are uploaded (PutObjectRetention: moto and S3 accept it
//! after a multipart upload). Retention asks for the retain-until of any
//! object it would delete and keeps it while the lock holds.

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::DateTime as SdkDateTime;
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockRetention, ObjectLockRetentionMode};
use chrono::{DateTime, SecondsFormat, Utc};

use super::s3::{sdk_error, Store};
use crate::error::usage;
use crate::settings::choices::LockMode;
use crate::ui;

/// The lock a run puts on what it uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub days: u32,
    pub mode: LockMode,
}

impl LockPolicy {
    pub fn until(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        from + chrono::Duration::days(i64::from(self.days))
    }
}

impl Store {
    /// Exit 2 unless the bucket has Object Lock enabled: asked for, a lock
    /// that cannot be set must stop the run before anything is dumped.
    pub async fn require_object_lock(&self) -> Result<()> {
        if !self.object_lock_enabled().await? {
            return Err(usage(format!(
                "--s3-object-lock-days is set but bucket {} does not have Object Lock enabled \
                 (it can only be turned on for a bucket with versioning; create the bucket \
                 with Object Lock, or unset S3_OBJECT_LOCK_DAYS)",
                self.bucket()
            )));
        }
        Ok(())
    }

    /// Whether the bucket has Object Lock enabled.
    pub async fn object_lock_enabled(&self) -> Result<bool> {
        let out = self
            .client()
            .await
            .get_object_lock_configuration()
            .bucket(self.bucket())
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| *e == ObjectLockEnabled::Enabled)),
            Err(err) => {
                let code = err
                    .as_service_error()
                    .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e))
                    .unwrap_or_default();
                if code == "ObjectLockConfigurationNotFoundError" {
                    return Ok(false);
                }
                Err(sdk_error(err)).with_context(|| {
                    format!(
                        "reading the Object Lock configuration of s3://{}",
                        self.bucket()
                    )
                })
            }
        }
    }

    /// Locks a backup's objects (dump and meta.json, or the globals file and
    /// its meta.json) once all of them are uploaded, and says until when.
    pub async fn lock_backup(
        &self,
        lock: &LockPolicy,
        keys: &[&str],
        from: DateTime<Utc>,
    ) -> Result<()> {
        let until = lock.until(from);
        for key in keys {
            self.lock_object(key, lock, until).await?;
        }
        ui::info(&format!(
            "locked {} until {} ({} mode)",
            keys.iter()
                .map(|k| self.uri(k))
                .collect::<Vec<_>>()
                .join(" and "),
            until.to_rfc3339_opts(SecondsFormat::Secs, true),
            match lock.mode {
                LockMode::Governance => "governance",
                LockMode::Compliance => "compliance",
            }
        ));
        Ok(())
    }

    /// Sets retain-until on one object.
    pub async fn lock_object(
        &self,
        key: &str,
        lock: &LockPolicy,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let mode = match lock.mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        self.client()
            .await
            .put_object_retention()
            .bucket(self.bucket())
            .key(key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(SdkDateTime::from_secs(until.timestamp()))
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("setting Object Lock retention on {}", self.uri(key)))?;
        Ok(())
    }

    /// The retain-until of an object's current version; None when it has none.
    /// HeadObject carries it (for callers allowed s3:GetObjectRetention), and
    /// unlike GetObjectRetention every S3-compatible store answers it.
    pub async fn retain_until(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        let out = match self
            .client()
            .await
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None)
            }
            Err(err) => {
                return Err(sdk_error(err))
                    .with_context(|| format!("reading the Object Lock of {}", self.uri(key)))
            }
        };
        Ok(out
            .object_lock_retain_until_date()
            .and_then(|d| DateTime::from_timestamp(d.secs(), 0)))
    }
}
