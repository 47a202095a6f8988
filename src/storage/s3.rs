//! Backups on S3 or MinIO: the client (settings from [`S3Args`] and the
//! standard AWS credential chain), the multipart upload that streams a dump
//! while pg_dump runs ([`S3Sink`]), the integrity check after it, listing and
//! retention under the prefix, and fetching a backup back for restore/verify.
//!
//! The upload runs beside the local file, never instead of it: an S3 failure
//! is recorded, the multipart upload aborted, and the local backup still
//! completes; the caller then fails the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::StalledStreamProtectionConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::select::{Choice, Selector};
use super::{is_plain_file_name, BackupName};
use crate::cli::S3Args;
use crate::error::usage;
use crate::meta::{Meta, S3Location};
use crate::pipeline::Sink;
use crate::ui;

const MIB: u64 = 1 << 20;
/// The part size an upload starts with unless told otherwise: with the default
/// 3 parts in flight plus the one being filled, 32 MiB of buffers, which keeps
/// pgbak's peak RSS under 64 MiB while uploading (measured, release build:
/// 47 MiB; 55 MiB with 4 in flight).
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// S3's smallest part (all but the last). Stores with a lower minimum (test
/// servers) can be matched with the hidden `PGBAK_S3_MIN_PART_SIZE` (bytes).
const S3_MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
const S3_MAX_PART_SIZE: u64 = 5 << 30;
/// The part size doubles this many times over the allowed part count.
const GROWTH_STEPS: u32 = 10;
/// Storage classes that bill a minimum number of days per object.
const MIN_STORAGE_DAYS: &[(&str, u32)] = &[
    ("STANDARD_IA", 30),
    ("ONEZONE_IA", 30),
    ("GLACIER_IR", 90),
    ("GLACIER", 90),
    ("DEEP_ARCHIVE", 180),
];

/// Server-side encryption requested for uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

/// S3 settings checked before anything is attempted (errors here exit 2).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub storage_class: String,
    pub sse: Option<Sse>,
    /// Part size asked for (bytes), before growth.
    pub part_size: Option<u64>,
    pub min_part_size: u64,
    pub max_parts: u32,
    pub concurrency: usize,
}

impl S3Settings {
    /// Validates `args`; `bucket` overrides the configured bucket (an `s3://` URI names its own).
    pub fn from_args(args: &S3Args, bucket: Option<&str>) -> Result<S3Settings> {
        let bucket = bucket
            .map(str::to_owned)
            .or_else(|| args.bucket.clone())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| usage("no S3 bucket: set S3_BUCKET or --s3-bucket"))?;
        let sse = match args.sse.as_deref() {
            None | Some("") => None,
            Some("AES256") => Some(Sse::Aes256),
            Some("aws:kms") => Some(Sse::Kms {
                key_id: args.sse_kms_key_id.clone().filter(|k| !k.is_empty()),
            }),
            Some(other) => {
                return Err(usage(format!(
                    "S3_SSE={other:?} is not supported: use AES256 or aws:kms"
                )))
            }
        };
        if args
            .sse_kms_key_id
            .as_deref()
            .is_some_and(|k| !k.is_empty())
            && !matches!(sse, Some(Sse::Kms { .. }))
        {
            return Err(usage("S3_SSE_KMS_KEY_ID needs S3_SSE=aws:kms"));
        }
        let min_part_size = match std::env::var("PGBAK_S3_MIN_PART_SIZE") {
            Ok(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                usage(format!("PGBAK_S3_MIN_PART_SIZE={v:?} is not a byte count"))
            })?,
            Err(_) => S3_MIN_PART_SIZE,
        };
        let part_size =
            match (args.part_size_mib, std::env::var("PGBAK_S3_PART_SIZE")) {
                (_, Ok(bytes)) => Some(bytes.parse::<u64>().map_err(|_| {
                    usage(format!("PGBAK_S3_PART_SIZE={bytes:?} is not a byte count"))
                })?),
                (Some(mib), Err(_)) => Some(mib.saturating_mul(MIB)),
                (None, Err(_)) => None,
            };
        if let Some(size) = part_size {
            if size < min_part_size || size > S3_MAX_PART_SIZE {
                return Err(usage(format!(
                    "S3 part size {} is outside {} to 5 GiB",
                    ui::bytes(size),
                    ui::bytes(min_part_size)
                )));
            }
        }
        if let Some(endpoint) = args.endpoint_url.as_deref().filter(|u| !u.is_empty()) {
            url::Url::parse(endpoint)
                .map_err(|e| usage(format!("S3_ENDPOINT_URL {endpoint:?} is not a URL: {e}")))?;
        }
        if args.max_parts == 0 || args.max_parts > 10_000 {
            return Err(usage("--s3-max-parts must be 1 to 10000"));
        }
        if args.concurrency == 0 || args.concurrency > 64 {
            return Err(usage("--s3-concurrency must be 1 to 64"));
        }
        if args.storage_class.is_empty()
            || !args
                .storage_class
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_')
        {
            return Err(usage(format!(
                "storage class {:?} is not a name like STANDARD or STANDARD_IA",
                args.storage_class
            )));
        }
        Ok(S3Settings {
            bucket,
            prefix: normalize_prefix(args.prefix.as_deref().unwrap_or("")),
            endpoint_url: args.endpoint_url.clone().filter(|u| !u.is_empty()),
            region: args.region.clone().filter(|r| !r.is_empty()),
            storage_class: args.storage_class.clone(),
            sse,
            part_size,
            min_part_size,
            max_parts: args.max_parts,
            concurrency: args.concurrency,
        })
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
pub fn min_storage_days(storage_class: &str) -> Option<u32> {
    MIN_STORAGE_DAYS
        .iter()
        .find(|(class, _)| *class == storage_class)
        .map(|(_, days)| *days)
}

/// The warning for `--keep N` with a class that bills a minimum duration:
/// under a daily schedule, backups are deleted after N days.
pub fn keep_warning(keep: u32, storage_class: &str) -> Option<String> {
    let days = min_storage_days(storage_class)?;
    (keep > 0 && keep < days).then(|| {
        format!(
            "--keep {keep} with storage class {storage_class}: on a daily schedule each object is \
             deleted after about {keep} days, but {storage_class} bills {days} days minimum \
             (keep {days} or more, or use --storage-class STANDARD)"
        )
    })
}

/// Part sizes of one upload: `base` for the first `step` parts, then doubling
/// every `step` parts (capped at 5 GiB), so the allowed part count holds about
/// 100 times `max_parts * base` (8 TiB with the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub base: u64,
    pub step: u32,
    pub max_parts: u32,
}

impl PartPlan {
    /// `estimate` is the database size; a dump can be about twice that (vectors
    /// as text, no compression), so the base grows until twice the estimate fits.
    pub fn new(part_size: Option<u64>, max_parts: u32, estimate: Option<u64>) -> PartPlan {
        let step = (max_parts / GROWTH_STEPS).max(1);
        let mut plan = PartPlan {
            base: part_size.unwrap_or(DEFAULT_PART_SIZE),
            step,
            max_parts,
        };
        if part_size.is_none() {
            let need = estimate.unwrap_or(0).saturating_mul(2);
            while plan.capacity() < need && plan.base < S3_MAX_PART_SIZE {
                plan.base = (plan.base * 2).min(S3_MAX_PART_SIZE);
            }
        }
        plan
    }

    /// Size of part `number` (1-based).
    pub fn size(&self, number: u32) -> u64 {
        let doublings = (number.saturating_sub(1) / self.step).min(40);
        self.base
            .saturating_mul(1u64 << doublings)
            .min(S3_MAX_PART_SIZE)
    }

    /// Bytes that fit in `max_parts` parts.
    pub fn capacity(&self) -> u64 {
        (1..=self.max_parts).fold(0u64, |sum, n| sum.saturating_add(self.size(n)))
    }
}

/// A connected bucket and prefix.
#[derive(Clone)]
pub struct Store {
    pub(super) client: Client,
    pub settings: S3Settings,
    /// Send SHA-256 checksums and compare them after upload (off when
    /// `AWS_REQUEST_CHECKSUM_CALCULATION=when_required`).
    checksums: bool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body that moves no byte for this long is a stalled upload: the
/// attempt fails (and is retried) instead of hanging.
const STALL_GRACE: Duration = Duration::from_secs(30);

/// Builds the client. Region: `--s3-region`/`S3_REGION`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, the profile, else us-east-1 (what MinIO and most
/// S3-compatible stores expect). Credentials: the standard chain (environment,
/// profile, SSO, web identity, ECS/instance roles).
pub async fn connect(settings: S3Settings) -> Result<Store> {
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(secret) = std::env::var(var) {
            ui::register_secret(&secret);
        }
    }
    let explicit = settings
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty());
    let region = RegionProviderChain::first_try(explicit.map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static("us-east-1"));
    // An unreachable store fails in seconds: 3 attempts, short connect timeout.
    // Answers to small requests come within 30 s; part uploads have no such
    // limit (see `upload_part`): a stalled stream is detected instead.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(Duration::from_secs(30))
        .build();
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(5));
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(timeouts)
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(STALL_GRACE)
                .build(),
        )
        .retry_config(retry)
        .load()
        .await;
    let checksums = !matches!(
        shared.request_checksum_calculation(),
        Some(RequestChecksumCalculation::WhenRequired)
    );
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if let Some(endpoint) = &settings.endpoint_url {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    ui::debug(&format!(
        "S3: bucket {}, prefix {:?}, endpoint {}, region {}, checksums {}",
        settings.bucket,
        settings.prefix,
        settings.endpoint_url.as_deref().unwrap_or("AWS"),
        shared.region().map(|r| r.as_ref()).unwrap_or("?"),
        if checksums {
            "SHA-256"
        } else {
            "when required"
        }
    ));
    Ok(Store {
        client: Client::from_conf(config.build()),
        settings,
        checksums,
    })
}

/// The SDK's error as one short line: its causes joined (the innermost one
/// names the refused connection or the store's error code), plus the HTTP
/// status when the store answered.
pub(super) fn sdk_error<E: std::error::Error + 'static>(err: SdkError<E>) -> anyhow::Error {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let mut text = error_chain(&err);
    if let Some(status) = status {
        text.push_str(&format!(" (HTTP {status})"));
    }
    anyhow!(text)
}

/// An access-denied error names the IAM permission the step needs (the
/// README's policy lists them all); other errors pass unchanged.
fn needs(err: anyhow::Error, permission: &str) -> anyhow::Error {
    let text = err.to_string();
    if text.contains("AccessDenied") || text.contains("HTTP 403") {
        err.context(format!("access denied: the credentials lack {permission}"))
    } else {
        err
    }
}

/// `Display` of an error and its sources, joined with `: `, repeats skipped.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// One backup under the prefix: its `.dump` object, its `.meta.json`, or both.
#[derive(Debug, Clone)]
pub struct RemoteBackup {
    pub name: BackupName,
    pub dump_key: String,
    pub meta_key: String,
    pub has_dump: bool,
    pub has_meta: bool,
    pub size: u64,
    pub storage_class: Option<String>,
}

impl RemoteBackup {
    pub fn is_complete(&self) -> bool {
        self.has_dump && self.has_meta
    }
}

impl Store {
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    pub fn key_for(&self, file_name: &str) -> String {
        format!("{}{file_name}", self.settings.prefix)
    }

    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    /// Starts a multipart upload of `file_name` and returns the sink that feeds it.
    /// Must be called inside the tokio runtime the sink will use.
    pub async fn start_upload(&self, file_name: &str, estimate: Option<u64>) -> Result<S3Sink> {
        let key = self.key_for(file_name);
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
            .content_type("application/octet-stream");
        if self.checksums {
            request = request.checksum_algorithm(ChecksumAlgorithm::Sha256);
        }
        let (sse, kms_key) = self.sse_headers();
        let request = request
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key);
        let created = request
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))
            .context("starting the multipart upload")?;
        let upload_id = created
            .upload_id()
            .context("the store returned no upload id")?
            .to_owned();
        let plan = PartPlan::new(self.settings.part_size, self.settings.max_parts, estimate);
        ui::debug(&format!(
            "multipart upload {upload_id} of {}: parts from {}, {} at once",
            self.uri(&key),
            ui::bytes(plan.base),
            self.settings.concurrency
        ));
        let handle = Arc::new(UploadHandle {
            client: self.client.clone(),
            bucket: self.bucket().to_owned(),
            key,
            upload_id,
            storage_class: self.settings.storage_class.clone(),
            checksums: self.checksums,
            finished: AtomicBool::new(false),
        });
        Ok(S3Sink::new(handle, plan, self.settings.concurrency))
    }

    /// The server-side encryption headers both kinds of upload carry.
    fn sse_headers(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.settings.sse {
            None => (None, None),
            Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
        }
    }

    /// Uploads a small object (meta.json) in one request.
    pub async fn put_small(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let (sse, kms_key) = self.sse_headers();
        let request = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_type("application/json")
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .body(ByteStream::from(body));
        request
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))
            .with_context(|| format!("uploading {}", self.uri(key)))?;
        Ok(())
    }

    /// Checks that a small object just put is in the bucket with `size` bytes
    /// (HEAD, retried on transient failures).
    pub async fn check_small(&self, key: &str, size: u64) -> Result<()> {
        match head_after_upload(&self.client, self.bucket(), key).await? {
            None => bail!("{} is not in the bucket after its upload", self.uri(key)),
            Some(head) if head.content_length() != Some(size as i64) => bail!(
                "{} holds {} bytes after its upload, {size} were sent",
                self.uri(key),
                head.content_length().unwrap_or(-1)
            ),
            Some(_) => Ok(()),
        }
    }

    /// Deletes objects (missing ones are fine).
    pub async fn delete_keys(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .context("building the delete request")?;
        let out = self
            .client
            .delete_objects()
            .bucket(self.bucket())
            .delete(
                Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .context("building the delete request")?,
            )
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:DeleteObject"))
            .with_context(|| {
                format!(
                    "deleting {} objects from s3://{}",
                    keys.len(),
                    self.bucket()
                )
            })?;
        if let Some(err) = out.errors().first() {
            bail!(
                "deleting {} from s3://{}: {}",
                err.key().unwrap_or("?"),
                self.bucket(),
                err.message().unwrap_or("refused")
            );
        }
        Ok(())
    }

    /// Multipart uploads under the prefix that were started and neither
    /// completed nor aborted.
    pub async fn open_uploads(&self) -> Result<Vec<OpenUpload>> {
        let prefix = &self.settings.prefix;
        let mut open = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client
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
                            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
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
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        self.client
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

    /// Every backup directly under the prefix, oldest first.
    pub async fn list(&self) -> Result<Vec<RemoteBackup>> {
        let prefix = &self.settings.prefix;
        let mut found: std::collections::BTreeMap<String, RemoteBackup> = Default::default();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| needs(sdk_error(e), "s3:ListBucket"))
                .with_context(|| format!("listing s3://{}/{prefix}", self.bucket()))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(file) = key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if !is_plain_file_name(file) {
                    continue;
                }
                let Some(name) = BackupName::parse(file) else {
                    continue;
                };
                let backup = found.entry(name.stem()).or_insert_with(|| RemoteBackup {
                    dump_key: self.key_for(&name.dump_file()),
                    meta_key: self.key_for(&name.meta_file()),
                    name: name.clone(),
                    has_dump: false,
                    has_meta: false,
                    size: 0,
                    storage_class: None,
                });
                if crate::storage::split_dump_file(file).is_some() {
                    backup.name.encrypted = name.encrypted;
                    backup.dump_key = key.to_owned();
                    backup.has_dump = true;
                    backup.size = object.size().unwrap_or(0).max(0) as u64;
                    backup.storage_class = object.storage_class().map(|c| c.as_str().to_owned());
                } else {
                    backup.has_meta = true;
                }
            }
        }
        let mut list: Vec<RemoteBackup> = found.into_values().collect();
        list.sort_by_key(|b| b.name.timestamp);
        Ok(list)
    }

    /// Reads and validates a meta.json object; None when it does not exist.
    pub async fn read_meta(&self, key: &str) -> Result<Option<Meta>> {
        let out = match self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(err) => {
                return Err(sdk_error(err)).with_context(|| format!("reading {}", self.uri(key)))
            }
        };
        if out.content_length().unwrap_or(0) > 16 << 20 {
            bail!("{} is too large to be a meta.json", self.uri(key));
        }
        let body = out
            .body
            .collect()
            .await
            .with_context(|| format!("reading {}", self.uri(key)))?
            .into_bytes();
        let text = std::str::from_utf8(&body)
            .with_context(|| format!("reading {}: not UTF-8", self.uri(key)))?;
        Meta::parse(text)
            .map(Some)
            .with_context(|| format!("reading {}", self.uri(key)))
    }

    /// The newest backup under the prefix that `select` accepts (meta.json
    /// read only for names that could be the target's); skipped ones are named.
    pub async fn newest(&self, select: &Selector) -> Result<RemoteBackup> {
        let backups = self.list().await?;
        let mut metas = Vec::with_capacity(backups.len());
        for backup in &backups {
            let meta = if backup.is_complete() && select.may_pick(&backup.name) {
                self.read_meta(&backup.meta_key)
                    .await
                    .unwrap_or_else(|err| {
                        ui::warn(&crate::error::one_line(&err));
                        None
                    })
            } else {
                None
            };
            metas.push(meta);
        }
        let choices: Vec<Choice> = backups
            .iter()
            .zip(&metas)
            .map(|(b, meta)| Choice {
                name: &b.name,
                complete: b.is_complete(),
                meta: meta.as_ref(),
            })
            .collect();
        let picked = select.pick(&choices);
        let Some(index) = picked.index else {
            return Err(usage(
                select.nothing_message(&picked, &self.uri(&self.settings.prefix)),
            ));
        };
        crate::archive::report_skipped(&picked);
        Ok(backups[index].clone())
    }

    /// Streams an object into `dest` (created 0600, must not exist), returning
    /// its SHA-256 and size. A failed download removes `dest`.
    pub async fn download(&self, key: &str, dest: &Path) -> Result<(String, u64)> {
        let result = self.download_inner(key, dest).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn download_inner(&self, key: &str, dest: &Path) -> Result<(String, u64)> {
        let out = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:GetObject"))
            .with_context(|| format!("downloading {}", self.uri(key)))?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .await
            .with_context(|| format!("creating {}", dest.display()))?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .with_context(|| format!("downloading {}", self.uri(key)))?
        {
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", dest.display()))?;
        }
        file.sync_all()
            .await
            .with_context(|| format!("syncing {}", dest.display()))?;
        Ok((hex::encode(hasher.finalize()), bytes))
    }
}

/// What identifies one multipart upload; shared by the sink and the code that
/// must abort it on any failure path.
pub struct UploadHandle {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    storage_class: String,
    checksums: bool,
    /// Completed or aborted: nothing left to clean up.
    finished: AtomicBool,
}

impl UploadHandle {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Removes whatever this upload left: aborts it while it is open, deletes
    /// the object once it was completed. For failures after the dump uploaded.
    pub async fn discard(&self) {
        if !self.finished.load(Ordering::SeqCst) {
            return self.abort().await;
        }
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
        {
            Ok(_) => ui::info(&format!("deleted {}", self.uri())),
            Err(err) => ui::warn(&format!(
                "could not delete {} ({}); it has no meta.json and will not be pruned",
                self.uri(),
                error_chain(&err)
            )),
        }
    }

    /// Aborts the multipart upload so no parts stay stored (and billed).
    /// Idempotent; failures are logged, not returned (the run fails anyway).
    pub async fn abort(&self) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
        {
            Ok(_) => ui::info(&format!("aborted the multipart upload to {}", self.uri())),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_upload()) =>
            {
                ui::info(&format!(
                    "the multipart upload to {} is already gone",
                    self.uri()
                ))
            }
            Err(err) => ui::warn(&format!(
                "could not abort the multipart upload {} to {} ({}); a bucket lifecycle rule \
                 AbortIncompleteMultipartUpload removes such leftovers",
                self.upload_id,
                self.uri(),
                error_chain(&err)
            )),
        }
    }
}

/// One part on its way to the uploader; the permit is its share of the memory bound.
struct Part {
    number: u32,
    bytes: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// A part the store acknowledged.
struct Uploaded {
    number: u32,
    etag: Option<String>,
    sha256: Option<[u8; 32]>,
}

/// The S3 stage of the pipeline. `write` runs on the pump's blocking thread:
/// it fills a part buffer and hands full parts over a bounded channel to an
/// async uploader. Every part buffer, the one being filled included, holds a
/// permit of a semaphore with `concurrency + 1` permits, so at most that many
/// parts exist at once: memory is bounded by `(concurrency + 1) * part size`
/// whatever the dump's size.
///
/// Upload errors never fail `write` (the local file must complete): the sink
/// records the first error, drops further bytes, and [`S3Sink::complete`]
/// reports it.
pub struct S3Sink {
    handle: Arc<UploadHandle>,
    runtime: tokio::runtime::Handle,
    plan: PartPlan,
    permits: Arc<Semaphore>,
    buffer: BytesMut,
    permit: Option<OwnedSemaphorePermit>,
    next_part: u32,
    bytes: u64,
    tx: Option<mpsc::Sender<Part>>,
    uploader: Option<tokio::task::JoinHandle<Result<Vec<Uploaded>>>>,
    parts: Vec<Uploaded>,
    failure: Option<anyhow::Error>,
}

impl S3Sink {
    fn new(handle: Arc<UploadHandle>, plan: PartPlan, concurrency: usize) -> S3Sink {
        let (tx, rx) = mpsc::channel::<Part>(1);
        let uploader = tokio::spawn(run_uploader(handle.clone(), rx));
        S3Sink {
            handle,
            runtime: tokio::runtime::Handle::current(),
            plan,
            permits: Arc::new(Semaphore::new(concurrency + 1)),
            buffer: BytesMut::new(),
            permit: None,
            next_part: 1,
            bytes: 0,
            tx: Some(tx),
            uploader: Some(uploader),
            parts: Vec::new(),
            failure: None,
        }
    }

    /// The upload's identity, for aborting it from any failure path.
    pub fn handle(&self) -> Arc<UploadHandle> {
        self.handle.clone()
    }

    fn fail(&mut self, err: anyhow::Error) {
        if self.failure.is_none() {
            ui::warn(&format!(
                "upload to {} failed; the local backup continues: {}",
                self.handle.uri(),
                crate::error::one_line(&err)
            ));
            self.failure = Some(err);
        }
        self.tx = None;
        self.buffer = BytesMut::new();
        self.permit = None;
    }

    /// The uploader's error after it stopped (a send failed because it is gone).
    fn uploader_error(&mut self) -> anyhow::Error {
        match self.uploader.take() {
            Some(task) => match self.runtime.block_on(task) {
                Ok(Err(err)) => err,
                Ok(Ok(_)) => anyhow!("the uploader stopped early"),
                Err(join) => anyhow!("the uploader stopped: {join}"),
            },
            None => anyhow!("the uploader is gone"),
        }
    }

    /// Makes sure a part buffer (and its permit) is ready to fill.
    fn ensure_buffer(&mut self) {
        if self.permit.is_none() && self.next_part > self.plan.max_parts {
            self.fail(anyhow!(
                "the dump needs more than --s3-max-parts {} parts of up to {}",
                self.plan.max_parts,
                ui::bytes(self.plan.size(self.plan.max_parts))
            ));
            return;
        }
        if self.permit.is_none() {
            let permits = self.permits.clone();
            // Blocks the pump until a part's upload finished: the memory bound.
            match self.runtime.block_on(permits.acquire_owned()) {
                Ok(permit) => self.permit = Some(permit),
                Err(_) => return,
            }
            let size = self.plan.size(self.next_part) as usize;
            self.buffer = BytesMut::with_capacity(size);
        }
    }

    fn send_part(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let bytes = std::mem::take(&mut self.buffer).freeze();
        let part = Part {
            number: self.next_part,
            bytes,
            _permit: permit,
        };
        self.next_part += 1;
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(part).is_ok(),
            None => false,
        };
        if !sent {
            let err = self.uploader_error();
            self.fail(err);
        }
    }

    /// Completes the upload after pg_dump succeeded: the part list, then the
    /// integrity check (size, and the SHA-256 composite checksum where the store
    /// keeps one). Any failure aborts the upload (or deletes the object).
    pub async fn complete(mut self, size: u64) -> Result<S3Location> {
        let handle = self.handle.clone();
        let result = self.complete_inner(size).await;
        if result.is_err() {
            handle.abort().await;
        }
        result
    }

    async fn complete_inner(&mut self, size: u64) -> Result<S3Location> {
        if let Some(err) = self.failure.take() {
            return Err(err);
        }
        if self.bytes != size {
            bail!(
                "the upload received {} bytes, the dump has {size}",
                self.bytes
            );
        }
        let h = &self.handle;
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.number);
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .set_e_tag(p.etag.clone())
                    .set_checksum_sha256(p.sha256.map(|d| b64(&d)))
                    .build()
            })
            .collect();
        h.client
            .complete_multipart_upload()
            .bucket(&h.bucket)
            .key(&h.key)
            .upload_id(&h.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))
            .context("completing the multipart upload")?;
        h.finished.store(true, Ordering::SeqCst);
        match self.check_object(size, &parts).await {
            Ok(()) => {}
            Err(Checked::Wrong(err)) => {
                // The object is complete but wrong: it must not stay.
                let _ = h
                    .client
                    .delete_object()
                    .bucket(&h.bucket)
                    .key(&h.key)
                    .send()
                    .await;
                return Err(err);
            }
            Err(Checked::Unknown(err)) => {
                // Nothing says the object is wrong: it stays (without a meta.json beside
                // it, so no retention counts it), and the run fails.
                return Err(err.context(format!(
                    "{} was uploaded but could not be checked; it is left in place, and the \
                     local meta.json does not record it",
                    h.uri()
                )));
            }
        }
        Ok(S3Location {
            bucket: h.bucket.clone(),
            key: h.key.clone(),
            storage_class: h.storage_class.clone(),
        })
    }

    /// The integrity check. Err(Some) is evidence against the object (it must
    /// go); Err(None) wraps a store that could not be asked (the object stays).
    async fn check_object(&self, size: u64, parts: &[Uploaded]) -> Result<(), Checked> {
        let h = &self.handle;
        let head = match head_after_upload(&h.client, &h.bucket, &h.key).await {
            Ok(Some(head)) => head,
            Ok(None) => {
                return Err(Checked::Wrong(anyhow!(
                    "{} is not in the bucket after its upload completed",
                    h.uri()
                )))
            }
            Err(err) => return Err(Checked::Unknown(needs(err, "s3:GetObject"))),
        };
        let stored = head.content_length().unwrap_or(-1);
        if stored != size as i64 {
            return Err(Checked::Wrong(anyhow!(
                "the store holds {stored} bytes, the dump has {size}: integrity check failed"
            )));
        }
        let expected = composite_sha256(parts);
        match (expected, head.checksum_sha256()) {
            (Some(expected), Some(got)) => {
                let got = got.split('-').next().unwrap_or(got);
                if got != expected {
                    return Err(Checked::Wrong(anyhow!(
                        "the store's SHA-256 checksum {got} differs from the uploaded parts' \
                         {expected}: integrity check failed"
                    )));
                }
                ui::debug(&format!("{}: size and SHA-256 checksum match", h.uri()));
            }
            _ => ui::debug(&format!(
                "{}: size matches (the store keeps no SHA-256 checksum)",
                h.uri()
            )),
        }
        Ok(())
    }
}

/// The outcome of an integrity check that did not pass.
enum Checked {
    /// The store holds something else (or nothing): evidence against the object.
    Wrong(anyhow::Error),
    /// The store could not be asked: no evidence either way.
    Unknown(anyhow::Error),
}

/// HEAD attempts after an upload, each with the SDK's own retries: a HEAD that
/// times out or meets a 5xx is no evidence against the object just written.
const HEAD_ATTEMPTS: u32 = 4;

/// HEAD of an object just written, retried on transient failures. Ok(None):
/// the store answered that the object does not exist.
async fn head_after_upload(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
    let uri = format!("s3://{bucket}/{key}");
    let mut delay = Duration::from_millis(500);
    let mut last = anyhow!("no attempt made");
    for attempt in 1..=HEAD_ATTEMPTS {
        match client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(head) => return Ok(Some(head)),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None)
            }
            Err(err) => {
                last = sdk_error(err);
                if attempt < HEAD_ATTEMPTS {
                    ui::warn(&format!(
                        "checking {uri} failed (attempt {attempt} of {HEAD_ATTEMPTS}), retrying \
                         in {:.1}s: {}",
                        delay.as_secs_f64(),
                        crate::error::one_line(&last)
                    ));
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
    Err(last.context(format!("checking {uri}: HEAD failed {HEAD_ATTEMPTS} times")))
}

impl Sink for S3Sink {
    fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        self.bytes += chunk.len() as u64;
        while !chunk.is_empty() && self.failure.is_none() {
            self.ensure_buffer();
            if self.failure.is_some() {
                break;
            }
            if self.permit.is_none() {
                let err = self.uploader_error();
                self.fail(err);
                break;
            }
            let size = self.plan.size(self.next_part) as usize;
            let take = (size - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buffer.len() >= size {
                self.send_part();
            }
        }
        Ok(())
    }

    /// Sends the last part and waits for every part to be stored. Failures are
    /// kept for [`S3Sink::complete`], never returned (the local file goes on).
    fn finish(&mut self) -> Result<()> {
        if self.failure.is_some() {
            return Ok(());
        }
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.ensure_buffer();
            self.send_part();
        }
        if self.failure.is_some() {
            return Ok(());
        }
        self.tx = None;
        let Some(task) = self.uploader.take() else {
            return Ok(());
        };
        match self.runtime.block_on(task) {
            Ok(Ok(parts)) => self.parts = parts,
            Ok(Err(err)) => self.fail(err),
            Err(join) => self.fail(anyhow!("the uploader stopped: {join}")),
        }
        Ok(())
    }

    /// Stops feeding the uploader; the caller aborts the upload through its handle.
    fn abort(&mut self) {
        self.tx = None;
        if let Some(task) = self.uploader.take() {
            task.abort();
        }
    }
}

impl Drop for S3Sink {
    /// A sink dropped before its upload completed (an error or a signal
    /// anywhere upstream) also aborts the upload, quietly and in the
    /// background. Callers still await [`UploadHandle::discard`]: the process
    /// may exit before this background request is sent.
    fn drop(&mut self) {
        if let Some(task) = self.uploader.take() {
            task.abort();
        }
        if !self.handle.finished.load(Ordering::SeqCst) {
            let h = self.handle.clone();
            self.runtime.spawn(async move {
                let _ = h
                    .client
                    .abort_multipart_upload()
                    .bucket(&h.bucket)
                    .key(&h.key)
                    .upload_id(&h.upload_id)
                    .send()
                    .await;
            });
        }
    }
}

/// Receives parts and uploads them concurrently (the permits bound how many);
/// stops at the first failed part.
async fn run_uploader(
    handle: Arc<UploadHandle>,
    mut rx: mpsc::Receiver<Part>,
) -> Result<Vec<Uploaded>> {
    let mut running = tokio::task::JoinSet::new();
    let mut done = Vec::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            part = rx.recv(), if open => match part {
                Some(part) => {
                    let handle = handle.clone();
                    running.spawn(upload_part(handle, part));
                }
                None => open = false,
            },
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let uploaded = joined.context("a part upload stopped unexpectedly")??;
                done.push(uploaded);
            }
        }
    }
    Ok(done)
}

async fn upload_part(handle: Arc<UploadHandle>, part: Part) -> Result<Uploaded> {
    let number = part.number;
    let len = part.bytes.len();
    let sha256 = if handle.checksums {
        let bytes = part.bytes.clone();
        let digest = tokio::task::spawn_blocking(move || <[u8; 32]>::from(Sha256::digest(&bytes)))
            .await
            .context("hashing a part")?;
        Some(digest)
    } else {
        None
    };
    let mut request = handle
        .client
        .upload_part()
        .bucket(&handle.bucket)
        .key(&handle.key)
        .upload_id(&handle.upload_id)
        .part_number(number as i32)
        .content_length(len as i64)
        .body(ByteStream::from(part.bytes));
    if let Some(digest) = &sha256 {
        request = request
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(digest));
    }
    // No time limit on the whole request: a 256 MiB part on a slow link takes
    // minutes, and that is fine as long as bytes move (stalled-stream
    // protection ends an attempt whose body stops moving for STALL_GRACE).
    let no_read_timeout = aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .disable_read_timeout()
            .build(),
    );
    let out = request
        .customize()
        .config_override(no_read_timeout)
        .send()
        .await
        .map_err(|e| needs(sdk_error(e), "s3:PutObject"))
        .with_context(|| format!("uploading part {number} ({})", ui::bytes(len as u64)))?;
    // The permit (and so the part's memory) is released when `part` is dropped here.
    Ok(Uploaded {
        number,
        etag: out.e_tag().map(str::to_owned),
        sha256,
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// S3's checksum of a multipart object: SHA-256 over the parts' SHA-256
/// digests in part order (the store appends `-<parts>`).
fn composite_sha256(parts: &[Uploaded]) -> Option<String> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.sha256?);
    }
    Some(b64(&hasher.finalize()))
}

/// A multipart upload that is still open on the store.
#[derive(Debug, Clone)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    /// When the store says it was started.
    pub initiated: Option<std::time::SystemTime>,
}

/// The upload failed while the local backup completed: the run fails with
/// this (exit 1); `pgbak cron` reports the failed step as "upload".
#[derive(Debug)]
pub struct UploadFailed {
    pub message: String,
    /// The complete local `.dump` (with its meta.json), when there is one:
    /// local retention still runs for it.
    pub local_dump: Option<PathBuf>,
}

impl std::fmt::Display for UploadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UploadFailed {}

/// A backup fetched from S3 into a local directory.
#[derive(Debug)]
pub struct Fetched {
    pub dump: PathBuf,
    /// None when the bucket holds no meta.json for it.
    pub meta: Option<PathBuf>,
}

/// `s3://bucket/key` split and checked: the key must end in a plain `.dump`
/// file name and hold no `.` or `..` segment.
pub fn parse_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| usage(format!("{uri:?} is not an s3://bucket/key URI")))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| usage(format!("{uri:?} names no key: use s3://bucket/key.dump")))?;
    if bucket.is_empty() || key.is_empty() {
        return Err(usage(format!("{uri:?}: use s3://bucket/key.dump")));
    }
    if key
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.contains('\0'))
    {
        return Err(usage(format!(
            "{uri:?}: the key may not hold `.` or `..` segments"
        )));
    }
    let file = key.rsplit('/').next().unwrap_or(key);
    if !is_plain_file_name(file) || crate::storage::meta_file_for(file).is_none() {
        return Err(usage(format!(
            "{uri:?} does not name a .dump or .dump.age file"
        )));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Downloads `uri` (`s3://bucket/key.dump`), or with `uri` None the newest
/// backup under the configured prefix that `select` accepts, with its meta.json,
/// into `dest_dir`. The dump's SHA-256 and size are checked against the
/// meta.json before this returns; a mismatch is an error and leaves nothing.
pub async fn fetch_backup(
    args: &S3Args,
    uri: Option<&str>,
    select: &Selector,
    dest_dir: &Path,
) -> Result<Fetched> {
    let (store, dump_key, meta_key) = match uri {
        Some(uri) => {
            let (bucket, key) = parse_uri(uri)?;
            let store = connect(S3Settings::from_args(args, Some(&bucket))?).await?;
            let (stem, _) = crate::storage::split_dump_file(&key)
                .ok_or_else(|| usage(format!("{uri:?} does not name a .dump file")))?;
            let meta_key = format!("{stem}.meta.json");
            (store, key, meta_key)
        }
        None => {
            let store = connect(S3Settings::from_args(args, None)?).await?;
            let newest = store.newest(select).await?;
            (store, newest.dump_key, newest.meta_key)
        }
    };
    let file = dump_key.rsplit('/').next().unwrap_or(&dump_key).to_owned();
    if !is_plain_file_name(&file) {
        bail!("{} does not name a plain file", store.uri(&dump_key));
    }
    let dump = dest_dir.join(&file);
    let meta_file = crate::storage::meta_file_for(&file)
        .ok_or_else(|| anyhow!("{} does not name a .dump file", store.uri(&dump_key)))?;
    let meta_path = dest_dir.join(meta_file);
    if dump.parent() != Some(dest_dir) || meta_path.parent() != Some(dest_dir) {
        bail!("{} would be written outside {}", file, dest_dir.display());
    }

    let meta = store.read_meta(&meta_key).await?;
    if meta.is_none() {
        ui::warn(&format!(
            "{} has no meta.json beside it: its checksum cannot be checked",
            store.uri(&dump_key)
        ));
    }
    ui::info(&format!(
        "downloading {} to {}",
        store.uri(&dump_key),
        dump.display()
    ));
    let (sha256, size) = store.download(&dump_key, &dump).await?;
    if let Some(meta) = &meta {
        if meta.size_bytes != size || meta.sha256 != sha256 {
            let _ = tokio::fs::remove_file(&dump).await;
            bail!(
                "{} does not match its meta.json: {} bytes with sha256 {}, expected {} bytes \
                 with sha256 {}",
                store.uri(&dump_key),
                size,
                sha256,
                meta.size_bytes,
                meta.sha256
            );
        }
        meta.write(&meta_path)?;
        ui::info(&format!(
            "downloaded {} ({}), sha256 matches meta.json",
            file,
            ui::bytes(size)
        ));
    }
    Ok(Fetched {
        dump,
        meta: meta.map(|_| meta_path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_plan_grows_to_hold_multi_terabyte_dumps() {
        let plan = PartPlan::new(None, 10_000, None);
        assert_eq!(plan.base, 8 * MIB);
        assert_eq!(plan.size(1), 8 * MIB);
        assert_eq!(plan.size(1000), 8 * MIB);
        assert_eq!(plan.size(1001), 16 * MIB);
        assert!(plan.capacity() > 5u64 << 40, "{}", plan.capacity());
        assert!(plan.size(10_000) <= S3_MAX_PART_SIZE);
        // A store with a lower part limit still holds a large dump.
        let small = PartPlan::new(None, 1000, None);
        assert!(small.capacity() > 500u64 << 30);
        // A 10 TiB database starts with larger parts.
        let huge = PartPlan::new(None, 10_000, Some(10u64 << 40));
        assert!(huge.base > 8 * MIB);
        assert!(huge.capacity() >= 20u64 << 40);
        // An explicit part size is kept as the base.
        assert_eq!(
            PartPlan::new(Some(65536), 10_000, Some(1 << 40)).base,
            65536
        );
    }

    #[test]
    fn prefixes_are_folders() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("a/b"), "a/b/");
        assert_eq!(normalize_prefix("/a/b/"), "a/b/");
    }

    #[test]
    fn keep_warning_only_for_minimum_duration_classes() {
        assert!(keep_warning(7, "STANDARD_IA").is_some());
        assert!(keep_warning(30, "STANDARD_IA").is_none());
        assert!(keep_warning(0, "STANDARD_IA").is_none());
        assert!(keep_warning(7, "STANDARD").is_none());
        assert!(keep_warning(60, "GLACIER_IR").is_some());
    }

    #[test]
    fn hostile_uris_are_refused() {
        assert_eq!(
            parse_uri("s3://b/p/x_full_20261125T020000.dump").unwrap(),
            ("b".into(), "p/x_full_20261125T020000.dump".into())
        );
        for bad in [
            "s3://b/../x.dump",
            "s3://b/p/../../x.dump",
            "s3://b/./x.dump",
            "s3://b/x.dump/..",
            "s3://b/",
            "s3://b",
            "s3:///x.dump",
            "http://b/x.dump",
            "s3://b/x.sql",
            "s3://b/p/.dump",
            "s3://b/p/.dump.age",
            "s3://b/p/x.age",
            "s3://b/p/",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let mut args = S3Args {
            bucket: Some("b".into()),
            storage_class: "STANDARD_IA".into(),
            max_parts: 10_000,
            concurrency: 4,
            ..Default::default()
        };
        assert!(S3Settings::from_args(&args, None).is_ok());
        args.sse = Some("rot13".into());
        assert!(S3Settings::from_args(&args, None).is_err());
        args.sse = Some("aws:kms".into());
        args.sse_kms_key_id = Some("k".into());
        assert_eq!(
            S3Settings::from_args(&args, None).unwrap().sse,
            Some(Sse::Kms {
                key_id: Some("k".into())
            })
        );
        args.sse = None;
        assert!(
            S3Settings::from_args(&args, None).is_err(),
            "kms key without kms"
        );
        args.sse_kms_key_id = None;
        args.part_size_mib = Some(1);
        assert!(S3Settings::from_args(&args, None).is_err(), "below 5 MiB");
        args.part_size_mib = None;
        args.storage_class = "standard ia".into();
        assert!(S3Settings::from_args(&args, None).is_err());
        args.storage_class = "STANDARD".into();
        args.bucket = None;
        assert!(S3Settings::from_args(&args, None).is_err());
        assert!(S3Settings::from_args(&args, Some("other")).is_ok());
    }
}
