//! `--to URL` (repeatable) and `PGBAK_TO` (whitespace-separated URLs): the
//! destinations a backup is written to besides today's local directory and
//! `S3_*` bucket, in the same pass (issue 27, docs/three-two-one.md).
//!
//! A destination is `file:///ABS/PATH` or
//! `s3://BUCKET/PREFIX?endpoint=URL&region=R&profile=P&storage-class=C&sse=…`
//! with its own retention rules (`keep-last=N`, … as the flags without
//! `--`), Object Lock (`object-lock-days`, `object-lock-mode`) and
//! `name=NAME`. [`parse`] is pure (table tests); [`resolve`] completes each
//! with the global settings it does not override.
//!
//! A URL never carries a secret: `user:password@`, a key, a token, a
//! password or any `AWS_*` parameter is refused (exit 2) by the
//! parameter's name, and its value is never echoed. Credentials come from
//! the AWS credential chain of the destination's `profile` (the shared
//! config and credentials files); without one, from the run's own (as for
//! the `S3_*` bucket).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;

use crate::cli::{ObjectLockArgs, RetentionArgs, S3Args, ToArgs};
use crate::error::usage;
use crate::settings::choices::LockMode;
use crate::storage::s3::{S3Settings, SseAlgorithm, StorageClass};
use crate::storage::{DestinationPlace, Overrides, Place, Stores, BUCKET, LOCAL};

/// A `--to` URL, parsed: nothing resolved against the settings yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `name=`, else derived from the URL (the bucket, the last path component).
    pub name: String,
    pub target: Target,
    pub rules: Rules,
}

/// Where a parsed destination is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Dir(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        profile: Option<String>,
    },
}

/// What the URL says about the global settings, each None when it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub retention: RetentionRules,
    pub object_lock_days: Option<u32>,
    pub object_lock_mode: Option<LockMode>,
    pub storage_class: Option<StorageClass>,
    pub sse: Option<SseAlgorithm>,
    pub sse_kms_key_id: Option<String>,
}

/// The retention rules a URL names (`keep-last`, … `keep-within`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRules {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<String>,
}

impl RetentionRules {
    fn is_empty(&self) -> bool {
        *self == RetentionRules::default()
    }

    /// `global` with the rules this URL names put over it, rule by rule.
    fn over(&self, global: &RetentionArgs) -> RetentionArgs {
        RetentionArgs {
            keep_last: self.last.or(global.keep_last),
            keep_hourly: self.hourly.or(global.keep_hourly),
            keep_daily: self.daily.or(global.keep_daily),
            keep_weekly: self.weekly.or(global.keep_weekly),
            keep_monthly: self.monthly.or(global.keep_monthly),
            keep_yearly: self.yearly.or(global.keep_yearly),
            keep_within: self.within.clone().or_else(|| global.keep_within.clone()),
        }
    }
}

/// The parameters a URL may carry (besides the retention rules), for the
/// message that refuses another one.
const S3_ONLY: &[&str] = &[
    "endpoint",
    "region",
    "profile",
    "storage-class",
    "sse",
    "sse-kms-key-id",
    "object-lock-days",
    "object-lock-mode",
];

/// The longest destination name (it ends up in metrics labels and columns).
const NAME_MAX: usize = 40;

/// Whether a parameter's name says it holds a secret (compared without
/// case, `_` as `-`): such a parameter is refused by its name alone.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('_', "-");
    key.starts_with("aws-")
        || key.starts_with("x-amz-")
        || [
            "secret",
            "password",
            "passwd",
            "token",
            "access-key",
            "accesskey",
            "credential",
            "signature",
            "private-key",
            "api-key",
            "apikey",
        ]
        .iter()
        .any(|word| key.contains(word))
}

/// Parses one `--to` URL. Errors are usage errors (exit 2) that name the
/// URL by its scheme and place only, never by a parameter's value.
pub fn parse(text: &str) -> Result<Parsed> {
    let url = url::Url::parse(text.trim()).map_err(|e| {
        usage(format!(
            "--to: not a URL ({e}): use s3://BUCKET/PREFIX?… or file:///ABSOLUTE/PATH"
        ))
    })?;
    if url.password().is_some() {
        return Err(usage(format!(
            "--to {}://{}: the URL carries a password (user:password@): pgbak never takes a \
             secret in a URL; name an AWS profile instead (profile=NAME)",
            url.scheme(),
            url.host_str().unwrap_or("")
        )));
    }
    if !url.username().is_empty() {
        return Err(usage(format!(
            "--to {}://{}: the URL carries a user name (user@): pgbak never takes credentials \
             in a URL; name an AWS profile instead (profile=NAME)",
            url.scheme(),
            url.host_str().unwrap_or("")
        )));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (key, value) in url.query_pairs() {
        let where_ = place_words(&url);
        if names_a_secret(&key) {
            return Err(usage(format!(
                "--to {where_}: parameter {key:?} carries a secret: pgbak never takes one in a \
                 URL (it would show in ps, logs and alerts); put the keys in a profile of \
                 ~/.aws/credentials and name it with profile=NAME"
            )));
        }
        if params.iter().any(|(k, _)| *k == key) {
            return Err(usage(format!(
                "--to {where_}: parameter {key:?} given twice"
            )));
        }
        params.push((key.into_owned(), value.into_owned()));
    }
    let (target, derived) = match url.scheme() {
        "file" => dir_target(&url)?,
        "s3" => s3_target(&url, &mut params)?,
        other => {
            return Err(usage(format!(
                "--to: scheme {other:?} is not a destination: use s3://BUCKET/PREFIX or \
                 file:///ABSOLUTE/PATH"
            )))
        }
    };
    let where_ = place_words(&url);
    let name = match take(&mut params, "name") {
        Some(name) => checked_name(&name).map_err(|e| usage(format!("--to {where_}: {e}")))?,
        None => derived,
    };
    let rules = rules(&mut params, &target, &where_)?;
    if let Some((key, _)) = params.first() {
        let mut known: Vec<&str> = vec!["name"];
        known.extend(RETENTION.iter().map(|(k, _)| *k));
        if matches!(target, Target::S3 { .. }) {
            known.extend(S3_ONLY);
        }
        return Err(usage(format!(
            "--to {where_}: unknown parameter {key:?} (known: {})",
            known.join(", ")
        )));
    }
    Ok(Parsed {
        name,
        target,
        rules,
    })
}

/// The URL as messages name it: scheme and place, no parameter.
fn place_words(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

/// Removes and returns the parameter `key`.
fn take(params: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let at = params.iter().position(|(k, _)| k == key)?;
    Some(params.remove(at).1)
}

/// `file:///ABS/PATH` (or `file://localhost/…`): the directory and its default name.
fn dir_target(url: &url::Url) -> Result<(Target, String)> {
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(usage(format!(
            "--to {}: a file URL names a local directory: file:///ABSOLUTE/PATH (three slashes)",
            place_words(url)
        )));
    }
    let path = url
        .to_file_path()
        .ok()
        .filter(|p| p.is_absolute() && p != Path::new("/"))
        .ok_or_else(|| {
            usage(format!(
                "--to {}: not a directory path: use file:///ABSOLUTE/PATH",
                place_words(url)
            ))
        })?;
    let last = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((Target::Dir(path), derived_name(&last)))
}

/// `s3://BUCKET/PREFIX?endpoint=&region=&profile=`: the bucket and its default name.
fn s3_target(url: &url::Url, params: &mut Vec<(String, String)>) -> Result<(Target, String)> {
    let bucket = url.host_str().unwrap_or("").to_owned();
    if bucket.is_empty() {
        return Err(usage("--to s3://: no bucket: use s3://BUCKET/PREFIX"));
    }
    let prefix = crate::storage::s3::normalize_prefix(url.path().trim_start_matches('/'));
    let endpoint = take(params, "endpoint").filter(|e| !e.is_empty());
    if let Some(endpoint) = &endpoint {
        url::Url::parse(endpoint)
            .ok()
            .filter(|e| matches!(e.scheme(), "http" | "https"))
            .ok_or_else(|| {
                usage(format!(
                    "--to {}: endpoint={endpoint:?} is not an http(s) URL",
                    place_words(url)
                ))
            })?;
    }
    let profile = take(params, "profile").filter(|p| !p.is_empty());
    let region = take(params, "region").filter(|r| !r.is_empty());
    let name = derived_name(&bucket);
    Ok((
        Target::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            profile,
        },
        name,
    ))
}

/// A name from a bucket or directory: lower case, anything but `[a-z0-9_-]` as `-`.
fn derived_name(from: &str) -> String {
    let name: String = from
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(NAME_MAX)
        .collect();
    if name.is_empty() {
        "to".to_owned()
    } else {
        name
    }
}

/// A `name=` as given: `[a-z0-9_-]`, 1 to 40 characters.
fn checked_name(name: &str) -> std::result::Result<String, String> {
    let fine = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if fine {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "name={name:?}: use 1 to {NAME_MAX} of a-z, 0-9, _ and -"
        ))
    }
}

/// The retention parameters, each with where it goes.
type SetRule = fn(&mut RetentionRules, u32);
const RETENTION: &[(&str, Option<SetRule>)] = &[
    ("keep-last", Some(|r, n| r.last = Some(n))),
    ("keep", Some(|r, n| r.last = Some(n))),
    ("keep-hourly", Some(|r, n| r.hourly = Some(n))),
    ("keep-daily", Some(|r, n| r.daily = Some(n))),
    ("keep-weekly", Some(|r, n| r.weekly = Some(n))),
    ("keep-monthly", Some(|r, n| r.monthly = Some(n))),
    ("keep-yearly", Some(|r, n| r.yearly = Some(n))),
    ("keep-within", None),
];

/// The overriding parameters: retention for every destination; storage
/// class, SSE and Object Lock for buckets only.
fn rules(params: &mut Vec<(String, String)>, target: &Target, where_: &str) -> Result<Rules> {
    let bad = |key: &str, value: &str, what: &str| {
        usage(format!("--to {where_}: {key}={value:?} is not {what}"))
    };
    let number = |key: &str, value: String| {
        value
            .parse::<u32>()
            .map_err(|_| bad(key, &value, "a whole number"))
    };
    let mut rules = Rules::default();
    for (key, set) in RETENTION {
        let Some(value) = take(params, key) else {
            continue;
        };
        match set {
            Some(set) => set(&mut rules.retention, number(key, value)?),
            None => {
                crate::retention::Within::parse(&value)
                    .map_err(|e| usage(format!("--to {where_}: keep-within: {e}")))?;
                rules.retention.within = Some(value);
            }
        }
    }
    let is_bucket = matches!(target, Target::S3 { .. });
    if let Some(key) = S3_ONLY
        .iter()
        .find(|k| !is_bucket && params.iter().any(|(p, _)| p == *k))
    {
        return Err(usage(format!(
            "--to {where_}: {key} applies to s3:// destinations only"
        )));
    }
    if let Some(value) = take(params, "object-lock-days") {
        rules.object_lock_days = Some(number("object-lock-days", value)?);
    }
    if let Some(value) = take(params, "object-lock-mode") {
        rules.object_lock_mode = Some(
            LockMode::from_str(&value, true)
                .map_err(|_| bad("object-lock-mode", &value, "governance or compliance"))?,
        );
    }
    if let Some(value) = take(params, "storage-class") {
        rules.storage_class = Some(
            value
                .parse()
                .map_err(|e: String| usage(format!("--to {where_}: storage-class: {e}")))?,
        );
    }
    if let Some(value) = take(params, "sse") {
        rules.sse = Some(
            value
                .parse()
                .map_err(|_| bad("sse", &value, "AES256 or aws:kms"))?,
        );
    }
    rules.sse_kms_key_id = take(params, "sse-kms-key-id").filter(|k| !k.is_empty());
    Ok(rules)
}

/// The global settings a destination falls back to, and the places it
/// must not repeat.
pub struct Globals<'a> {
    /// The S3 flags (part sizes, concurrency, storage class, SSE): a bucket
    /// destination takes them except its bucket, prefix, endpoint and region.
    pub s3: &'a S3Args,
    /// The command's retention flags (None: a command without them).
    pub retention: Option<&'a RetentionArgs>,
    /// The command's Object Lock flags (None: a command that uploads nothing).
    pub object_lock: Option<&'a ObjectLockArgs>,
    /// Today's local directory and `S3_*` bucket (names `local` and `s3`).
    pub local: Option<&'a Path>,
    pub bucket: Option<&'a S3Settings>,
}

/// The `--to` destinations of a command line (each value may hold several
/// URLs separated by whitespace, as `PGBAK_TO` does), in order, resolved
/// against the global settings; a duplicate name or place is exit 2.
pub fn resolve(args: &ToArgs, globals: &Globals) -> Result<Vec<DestinationPlace>> {
    let mut taken: Vec<(String, Place)> = Vec::new();
    if let Some(dir) = globals.local {
        taken.push((LOCAL.to_owned(), Place::Dir(dir.to_path_buf())));
    }
    if let Some(bucket) = globals.bucket {
        taken.push((BUCKET.to_owned(), Place::S3(Box::new(bucket.clone()))));
    }
    let mut out = Vec::new();
    for text in args.to.iter().flat_map(|v| v.split_whitespace()) {
        let parsed = parse(text)?;
        let destination = place(parsed, globals)?;
        check_unique(&taken, &destination)?;
        taken.push((destination.name.clone(), destination.place.clone()));
        out.push(destination);
    }
    Ok(out)
}

/// A command's `--to` with the flags its destinations fall back to, taken
/// from its command line before the command's own settings consume it.
pub struct ToFlags {
    to: ToArgs,
    s3: S3Args,
    retention: Option<RetentionArgs>,
    object_lock: Option<ObjectLockArgs>,
}

impl ToFlags {
    pub fn new(
        to: &ToArgs,
        s3: &S3Args,
        retention: Option<&RetentionArgs>,
        object_lock: Option<&ObjectLockArgs>,
    ) -> ToFlags {
        ToFlags {
            to: to.clone(),
            s3: s3.clone(),
            retention: retention.cloned(),
            object_lock: object_lock.cloned(),
        }
    }

    /// The command's stores: the directory `local`, the bucket of `bucket`,
    /// then the `--to` destinations, resolved and checked (exit 2).
    pub fn stores(&self, local: Option<&Path>, bucket: Option<&S3Settings>) -> Result<Stores> {
        let globals = Globals {
            s3: &self.s3,
            retention: self.retention.as_ref(),
            object_lock: self.object_lock.as_ref(),
            local,
            bucket,
        };
        let to = resolve(&self.to, &globals)?;
        Ok(Stores::open_with(local, bucket, &to))
    }
}

/// A parsed destination with the global settings it does not override.
fn place(parsed: Parsed, globals: &Globals) -> Result<DestinationPlace> {
    let rules = &parsed.rules;
    let context = |e: anyhow::Error| {
        let code = crate::error::exit_code(&e);
        let text = format!("--to {}: {}", parsed.name, crate::error::one_line(&e));
        if code == crate::error::USAGE {
            usage(text)
        } else {
            anyhow::anyhow!(text)
        }
    };
    let retention = if rules.retention.is_empty() {
        None
    } else {
        let global = globals.retention.cloned().unwrap_or_default();
        Some(super::groups::retention_policy(&rules.retention.over(&global)).map_err(context)?)
    };
    let object_lock = match (rules.object_lock_days, rules.object_lock_mode) {
        (None, None) => None,
        (days, mode) => {
            let global = globals.object_lock.cloned().unwrap_or_default();
            let merged = ObjectLockArgs {
                object_lock_days: days.or(global.object_lock_days),
                object_lock_mode: mode.or(global.object_lock_mode),
            };
            Some(super::groups::object_lock(&merged).map_err(context)?)
        }
    };
    let place = match &parsed.target {
        Target::Dir(dir) => Place::Dir(dir.clone()),
        Target::S3 { .. } => Place::S3(Box::new(s3_settings(&parsed, globals).map_err(context)?)),
    };
    Ok(DestinationPlace {
        name: parsed.name.clone(),
        place,
        overrides: Overrides {
            retention,
            object_lock,
        },
    })
}

/// A bucket destination's S3 settings: the global S3 flags with the URL's
/// bucket, prefix, endpoint, region (never the `S3_*` bucket's: the URL
/// names its own place) and, when it names them, storage class and SSE;
/// with a `profile`, that profile's credentials and nothing of the run's keys.
fn s3_settings(parsed: &Parsed, globals: &Globals) -> Result<S3Settings> {
    let Target::S3 {
        bucket,
        prefix,
        endpoint,
        region,
        profile,
    } = &parsed.target
    else {
        unreachable!("a bucket destination")
    };
    let rules = &parsed.rules;
    let mut args = S3Args {
        bucket: Some(bucket.clone()),
        prefix: Some(prefix.clone()),
        endpoint_url: endpoint.clone(),
        region: region.clone(),
        ..globals.s3.clone()
    };
    if let Some(class) = &rules.storage_class {
        args.storage_class = class.clone();
    }
    if rules.sse.is_some() || rules.sse_kms_key_id.is_some() {
        args.sse = rules.sse;
        args.sse_kms_key_id = rules.sse_kms_key_id.clone();
    }
    let mut settings = S3Settings::from_args(&args, None)?;
    if let Some(profile) = profile {
        settings.sdk.credentials = None;
        settings.sdk.profile = Some(profile.clone());
    }
    Ok(settings)
}

/// Exit 2 when `destination` repeats a name or a place already taken.
fn check_unique(taken: &[(String, Place)], destination: &DestinationPlace) -> Result<()> {
    for (name, place) in taken {
        if *name == destination.name {
            return Err(usage(format!(
                "--to: two destinations are named {name:?}: give one another name with name=NAME"
            )));
        }
        if same_place(place, &destination.place) {
            return Err(usage(format!(
                "--to {}: the same place as destination {name:?}",
                destination.name
            )));
        }
    }
    Ok(())
}

/// Whether two places are the same directory (as written, made absolute)
/// or the same bucket and prefix on the same endpoint.
fn same_place(a: &Place, b: &Place) -> bool {
    match (a, b) {
        (Place::Dir(a), Place::Dir(b)) => {
            let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let norm = |p: &Path| abs(p).components().collect::<PathBuf>();
            norm(a) == norm(b)
        }
        (Place::S3(a), Place::S3(b)) => {
            a.bucket == b.bucket && a.prefix == b.prefix && a.endpoint_url == b.endpoint_url
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
