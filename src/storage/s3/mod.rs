//! Backups on S3 or MinIO: the client (built from [`S3Settings`], which carries what this
//! run's environment tells the SDK, and the standard AWS credential chain for the rest) and
//! the small requests every command makes (listing, meta.json, deleting). Beside it: the part
//! plan (`part_plan`), the multipart upload streaming a dump while pg_dump runs (`upload`,
//! `part`), the upload markers and the stale-upload cleanup (`marker`, `cleanup`), fetching
//! (`fetch`, `ranged`, `stream`) and `pgbak sync`'s copies within one endpoint (`copy`). The
//! upload runs beside the local file, never instead of it: an S3 failure is recorded, the
//! multipart upload aborted, and the local backup still completes; the caller then fails the run.

mod cleanup;
mod config;
mod copy;
pub(crate) mod fetch;
mod marker;
mod part;
pub mod part_plan;
mod ranged;
pub(crate) mod stream;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::default_provider::region::DefaultRegionChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, Delete, Object, ObjectIdentifier, ServerSideEncryption};
use aws_sdk_s3::Client;
use base64::Engine as _;

use super::{is_plain_file_name, BackupName, Listed, Listing};
use crate::meta::Meta;
use crate::ui;

pub use cleanup::OpenUpload;
pub use config::{keep_warning, normalize_prefix, S3Settings, Sse, SseAlgorithm, StorageClass};
pub use fetch::{fetch_backup, fetch_backup_checked, parse_uri, Fetched, MetaCheck};
pub use marker::{Claim, MARKER_SUFFIX};
pub use part_plan::{PartPlan, DEFAULT_PART_SIZE, MIB, S3_MAX_PART_SIZE, S3_MIN_PART_SIZE};
pub use ranged::{ranges, ObjectHead, Ranged};
pub use upload::{S3Sink, UploadFailed, UploadHandle};

/// What the AWS SDK would otherwise read from the process environment,
/// resolved by `crate::settings::aws` from this run's environment (which
/// holds the environment file and the `*_FILE` secrets; the process's does
/// not). Unset fields leave the SDK's default chain in charge.
#[derive(Debug, Clone, Default)]
pub struct SdkEnv {
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
    /// its Debug output redacts the secret.
    pub credentials: Option<Credentials>,
    /// `AWS_PROFILE`: credentials and region from that profile.
    pub profile: Option<String>,
    /// `AWS_REQUEST_CHECKSUM_CALCULATION`.
    pub request_checksum: Option<RequestChecksumCalculation>,
    /// `AWS_RESPONSE_CHECKSUM_VALIDATION`.
    pub response_checksum: Option<ResponseChecksumValidation>,
}

/// A bucket and prefix. The SDK client behind it is made at the first
/// request and shared by every store derived from this one ([`Store::at`]):
/// one run loads the AWS configuration once, however many commands, steps
/// and prefixes it touches.
#[derive(Clone)]
pub struct Store {
    sdk: Arc<Sdk>,
    pub settings: S3Settings,
}

/// The SDK client of one run, made once, on first use.
struct Sdk {
    /// The settings it is made from (the region, endpoint, credentials and
    /// timeouts: the same for every bucket and prefix of the run).
    settings: S3Settings,
    connected: tokio::sync::OnceCell<Connected>,
}

struct Connected {
    client: Client,
    /// Send SHA-256 checksums and compare them after upload (off when
    /// `AWS_REQUEST_CHECKSUM_CALCULATION=when_required`).
    checksums: bool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// The store of `settings`; nothing is loaded or asked until its first
    /// request. Only `storage` builds stores, at dispatch ([`crate::storage::Stores`]).
    pub(in crate::storage) fn new(settings: S3Settings) -> Store {
        Store {
            sdk: Arc::new(Sdk {
                settings: settings.clone(),
                connected: tokio::sync::OnceCell::new(),
            }),
            settings,
        }
    }

    /// The same client in another bucket and prefix (an `s3://` URI names
    /// its own; a backup's recorded location may be another bucket).
    pub fn at(&self, bucket: &str, prefix: &str) -> Store {
        let mut settings = self.settings.in_bucket(bucket);
        settings.prefix = prefix.to_owned();
        Store {
            sdk: self.sdk.clone(),
            settings,
        }
    }

    async fn connected(&self) -> &Connected {
        self.sdk
            .connected
            .get_or_init(|| connect(&self.sdk.settings))
            .await
    }

    pub(super) async fn client(&self) -> &Client {
        &self.connected().await.client
    }

    pub(super) async fn checksums(&self) -> bool {
        self.connected().await.checksums
    }
}

/// Builds the client. Region: the one the settings name (`--s3-region`,
/// `S3_REGION`, `AWS_REGION`, `AWS_DEFAULT_REGION`), else the profile's, else
/// us-east-1 (what MinIO and most S3-compatible stores expect). Credentials:
/// the keys of this run's environment when it has both, else the standard
/// chain (profile, SSO, web identity, ECS/instance roles).
async fn connect(settings: &S3Settings) -> Connected {
    let shared = sdk_loader(settings).load().await;
    let checksums = !matches!(
        shared.request_checksum_calculation(),
        Some(RequestChecksumCalculation::WhenRequired)
    );
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if let Some(endpoint) = &settings.endpoint_url {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    // (Tests count this line: one per run.)
    ui::debug(&format!(
        "S3: AWS configuration loaded (bucket {}, prefix {:?}), endpoint {}, region {}, checksums {}",
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
    Connected {
        client: Client::from_conf(config.build()),
        checksums,
    }
}

/// The SDK's configuration: what the settings and this run's environment
/// say ([`SdkEnv`]), the SDK's defaults for the rest.
fn sdk_loader(settings: &S3Settings) -> aws_config::ConfigLoader {
    let sdk = &settings.sdk;
    let mut profile_region = DefaultRegionChain::builder();
    if let Some(profile) = &sdk.profile {
        profile_region = profile_region.profile_name(profile);
    }
    let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
        .or_else(profile_region.build())
        .or_else(Region::from_static("us-east-1"));
    // An unreachable store fails in seconds: 3 attempts, short connect timeout.
    // Answers to small requests come within 30 s; part uploads have no such
    // limit (see `part`): a stalled upload is detected instead. Downloads fail
    // when their body stops moving for the same stall timeout.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(Duration::from_secs(30))
        .build();
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(5));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(timeouts)
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(settings.stall_timeout)
                .build(),
        )
        .retry_config(retry);
    if let Some(credentials) = &sdk.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    if let Some(profile) = &sdk.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(calculation) = sdk.request_checksum {
        loader = loader.request_checksum_calculation(calculation);
    }
    if let Some(validation) = sdk.response_checksum {
        loader = loader.response_checksum_validation(validation);
    }
    loader
}

/// The SDK's error as one short line: its causes joined (the innermost one
/// names the refused connection or the store's error code), plus the HTTP
/// status when the store answered.
pub(super) fn sdk_error<E: std::error::Error + 'static>(err: SdkError<E>) -> anyhow::Error {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let mut text = error_chain(&err);
    if no_credentials(&text) {
        return crate::error::usage(NO_CREDENTIALS);
    }
    if let Some(status) = status {
        text.push_str(&format!(" (HTTP {status})"));
    }
    anyhow!(text)
}

/// What the SDK's credential chain says when no provider had credentials
/// (the last one tried, instance metadata, is all its message names).
fn no_credentials(chain: &str) -> bool {
    chain.contains("no credentials found in chain")
        || chain.contains("the credential provider was not enabled")
}

const NO_CREDENTIALS: &str = "no AWS credentials found: set AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE), or AWS_PROFILE, or run where a web \
    identity token, a container or an instance role provides them";

/// An access-denied error names the IAM permission the step needs (the
/// IAM policy in docs/s3.md lists them all); other errors pass unchanged.
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
            .client()
            .await
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_type("application/json")
            .storage_class(aws_sdk_s3::types::StorageClass::from(
                self.settings.storage_class.as_str(),
            ))
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
        match head_after_upload(self.client().await, self.bucket(), key).await? {
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
            .client()
            .await
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

    /// Every object under the prefix (all pages).
    pub(crate) async fn objects(&self) -> Result<Vec<Object>> {
        let prefix = &self.settings.prefix;
        let mut objects = Vec::new();
        let mut pages = self
            .client()
            .await
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| needs(sdk_error(e), "s3:ListBucket"))
                .with_context(|| format!("listing s3://{}/{prefix}", self.bucket()))?;
            objects.extend(page.contents().iter().cloned());
        }
        Ok(objects)
    }

    /// Every backup directly under the prefix (oldest first) and every
    /// run record there, from one listing.
    pub async fn listing(&self) -> Result<Listing> {
        let prefix = &self.settings.prefix;
        let mut found: std::collections::BTreeMap<String, Listed> = Default::default();
        let mut runs = Vec::new();
        for object in &self.objects().await? {
            let Some(key) = object.key() else { continue };
            let Some(file) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            if !is_plain_file_name(file) {
                continue;
            }
            if crate::runs::is_record_name(file) {
                runs.push(file.to_owned());
                continue;
            }
            let verdict = BackupName::parse_verdict(file);
            let Some(name) = BackupName::parse(file).or_else(|| verdict.clone()) else {
                continue;
            };
            let backup = found.entry(name.stem()).or_insert_with(|| Listed {
                name: name.clone(),
                has_dump: false,
                has_meta: false,
                size: 0,
                storage_class: None,
                has_verdict: false,
            });
            if verdict.is_some() {
                backup.has_verdict = true;
            } else if crate::storage::split_dump_file(file).is_some() {
                backup.name.encrypted = name.encrypted;
                backup.has_dump = true;
                backup.size = object.size().unwrap_or(0).max(0) as u64;
                backup.storage_class = object.storage_class().map(|c| c.as_str().to_owned());
            } else {
                backup.has_meta = true;
            }
        }
        // A verdict alone is not a backup.
        let mut backups: Vec<Listed> = found
            .into_values()
            .filter(|b| b.has_dump || b.has_meta)
            .collect();
        backups.sort_by_key(|b| b.name.timestamp);
        runs.sort();
        Ok(Listing { backups, runs })
    }

    /// Whether any object's key starts with `key_prefix` (a backup's stem:
    /// its dump, meta.json, verdict or upload marker): a name is taken.
    pub async fn any_key_with(&self, key_prefix: &str) -> Result<bool> {
        let out = self
            .client()
            .await
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(key_prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:ListBucket"))
            .with_context(|| format!("listing {}", self.uri(key_prefix)))?;
        Ok(!out.contents().is_empty())
    }

    /// Every key that starts with `key_prefix` (all pages).
    pub async fn keys_with(&self, key_prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client()
            .await
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(key_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| needs(sdk_error(e), "s3:ListBucket"))
                .with_context(|| format!("listing {}", self.uri(key_prefix)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    /// Reads and validates a meta.json object; None when it does not exist.
    pub async fn read_meta(&self, key: &str) -> Result<Option<Meta>> {
        Ok(self.read_meta_text(key).await?.map(|(meta, _)| meta))
    }

    /// [`Store::read_meta`], with the text as stored (which a signature covers).
    pub async fn read_meta_text(&self, key: &str) -> Result<Option<(Meta, String)>> {
        let Some(body) = self.get_small(key, "a meta.json").await? else {
            return Ok(None);
        };
        let text = String::from_utf8(body.to_vec())
            .with_context(|| format!("reading {}: not UTF-8", self.uri(key)))?;
        let meta = Meta::parse(&text).with_context(|| format!("reading {}", self.uri(key)))?;
        Ok(Some((meta, text)))
    }

    /// A small object's bytes (at most 16 MiB: `what` it should be); None
    /// when it does not exist.
    pub(crate) async fn get_small(&self, key: &str, what: &str) -> Result<Option<bytes::Bytes>> {
        let out = match self
            .client()
            .await
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
                return Err(needs(sdk_error(err), "s3:GetObject"))
                    .with_context(|| format!("reading {}", self.uri(key)))
            }
        };
        if out.content_length().unwrap_or(0) > 16 << 20 {
            bail!("{} is too large to be {what}", self.uri(key));
        }
        let body = out
            .body
            .collect()
            .await
            .with_context(|| format!("reading {}", self.uri(key)))?;
        Ok(Some(body.into_bytes()))
    }
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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_credential_chain_is_told_from_other_failures() {
        let empty = "dispatch failure: other: the credential provider was not enabled: no \
                     credentials found in chain. Attempted: | Environment: ... | \
                     Ec2InstanceMetadata: the credential provider was not enabled: IMDS disabled";
        assert!(no_credentials(empty));
        for other in [
            "dispatch failure: io error: Connection refused (os error 111)",
            "service error: AccessDenied (HTTP 403)",
        ] {
            assert!(!no_credentials(other), "{other}");
        }
    }
}
