//! What the S3 code is told: bucket, prefix, store, part sizes and timeouts,
//! already checked. `crate::settings::s3` builds it from the flags and the
//! environment (so nothing under `storage` reads either); this module holds
//! the value and the pure rules about prefixes and storage classes.

use std::time::Duration;

/// Storage classes that bill a minimum number of days per object.
const MIN_STORAGE_DAYS: &[(&str, u32)] = &[
    ("STANDARD_IA", 30),
    ("ONEZONE_IA", 30),
    ("GLACIER_IR", 90),
    ("GLACIER", 90),
    ("DEEP_ARCHIVE", 180),
];

/// An S3 storage class name (`STANDARD`, `STANDARD_IA`, `GLACIER_IR`, ...):
/// upper-case letters and underscores. Not a closed set, since S3-compatible
/// stores name their own classes; checked for shape when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageClass(String);

impl StorageClass {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The days this class bills at least, when it has such a minimum.
    pub fn min_storage_days(&self) -> Option<u32> {
        min_storage_days(&self.0)
    }
}

impl std::str::FromStr for StorageClass {
    type Err = String;

    fn from_str(text: &str) -> Result<StorageClass, String> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return Err(format!(
                "storage class {text:?} is not a name like STANDARD or STANDARD_IA"
            ));
        }
        Ok(StorageClass(text.to_owned()))
    }
}

/// The default of `--storage-class` / `S3_STORAGE_CLASS`.
impl Default for StorageClass {
    fn default() -> StorageClass {
        StorageClass("STANDARD_IA".to_owned())
    }
}

impl std::fmt::Display for StorageClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server-side encryption algorithm asked for (`--s3-sse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseAlgorithm {
    /// `AES256`: S3-managed keys.
    Aes256,
    /// `aws:kms`: a KMS key (the account's default unless a key id is given).
    Kms,
}

impl std::str::FromStr for SseAlgorithm {
    type Err = String;

    fn from_str(text: &str) -> Result<SseAlgorithm, String> {
        match text {
            "AES256" => Ok(SseAlgorithm::Aes256),
            "aws:kms" => Ok(SseAlgorithm::Kms),
            other => Err(format!(
                "S3_SSE={other:?} is not supported: use AES256 or aws:kms"
            )),
        }
    }
}

/// Server-side encryption requested for uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

/// S3 settings checked before anything is attempted (errors there exit 2).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
    pub endpoint_url: Option<String>,
    /// The region named by the flag or the environment; None leaves it to
    /// the AWS profile (else us-east-1).
    pub region: Option<String>,
    pub storage_class: StorageClass,
    pub sse: Option<Sse>,
    /// The first part's size asked for (bytes); None lets the database's size decide.
    pub part_size: Option<u64>,
    /// No part grows beyond this (bytes): with `concurrency`, the memory bound.
    pub max_part_size: u64,
    /// The store's smallest part (all but the last).
    pub min_part_size: u64,
    pub max_parts: u32,
    pub concurrency: usize,
    /// Ranges downloaded at once by restore and verify (1: one GetObject).
    pub download_concurrency: usize,
    /// The size of each downloaded range (bytes): with `download_concurrency`, the memory bound.
    pub download_part_size: u64,
    /// A part upload that moves no byte and gets no answer for this long has stalled.
    pub stall_timeout: Duration,
    /// An open upload without a live marker is abandoned only once older than this.
    pub stale_upload_age: Duration,
    /// The AWS SDK's own settings, from this run's environment.
    pub sdk: super::SdkEnv,
}

impl S3Settings {
    /// The same settings in `bucket` (an `s3://` URI, or a backup's recorded
    /// location, names its own bucket).
    pub fn in_bucket(&self, bucket: &str) -> S3Settings {
        S3Settings {
            bucket: bucket.to_owned(),
            ..self.clone()
        }
    }
}

/// `a/b` and `/a/b/` both become `a/b/`; empty stays empty.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    }
}

/// The days a storage class bills at least, when it has such a minimum.
fn min_storage_days(storage_class: &str) -> Option<u32> {
    MIN_STORAGE_DAYS
        .iter()
        .find(|(class, _)| *class == storage_class)
        .map(|(_, days)| *days)
}

/// The warning for `--keep N` with a class that bills a minimum duration:
/// under a daily schedule, backups are deleted after N days.
pub fn keep_warning(keep: u32, storage_class: &StorageClass) -> Option<String> {
    let days = storage_class.min_storage_days()?;
    (keep > 0 && keep < days).then(|| {
        format!(
            "--keep {keep} with storage class {storage_class}: on a daily schedule each object is \
             deleted after about {keep} days, but {storage_class} bills {days} days minimum \
             (keep {days} or more, or use --storage-class STANDARD)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_folders() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("a/b"), "a/b/");
        assert_eq!(normalize_prefix("/a/b/"), "a/b/");
    }

    fn class(name: &str) -> StorageClass {
        name.parse().unwrap()
    }

    #[test]
    fn keep_warning_only_for_minimum_duration_classes() {
        assert!(keep_warning(7, &class("STANDARD_IA")).is_some());
        assert!(keep_warning(30, &class("STANDARD_IA")).is_none());
        assert!(keep_warning(0, &class("STANDARD_IA")).is_none());
        assert!(keep_warning(7, &class("STANDARD")).is_none());
        assert!(keep_warning(60, &class("GLACIER_IR")).is_some());
    }
}
