//! S3 settings resolved once: the `--s3-*` flags (clap has already applied
//! their environment variables and defaults) checked, and completed with what
//! only the environment carries: the AWS region fallbacks and pgbak's own
//! tuning variables (the AWS secrets are hidden by `settings::secrets`).
//! Errors here are usage errors (exit 2), found before anything is dumped.
//!
//! Precedence, highest first: flag, its environment variable, default; the
//! byte-count variables (`PGBAK_S3_PART_SIZE`, `PGBAK_S3_MAX_PART_SIZE`,
//! `PGBAK_S3_MIN_PART_SIZE`, for stores with other limits and for tests)
//! win over the MiB flags.

use std::time::Duration;

use anyhow::Result;

use super::{vars, Env};
use crate::cli::S3Args;
use crate::error::usage;
use crate::storage::s3::{
    normalize_prefix, S3Settings, Sse, SseAlgorithm, MIB, S3_MAX_PART_SIZE, S3_MIN_PART_SIZE,
};
use crate::ui;

/// A link that moves no byte for a minute is broken, not slow.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// No dump streams for a day: an upload that old without a live marker is abandoned.
pub const DEFAULT_STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);
/// The range a restore or verify downloads per request: big enough that a
/// request's latency is small beside its transfer, small enough that
/// `S3_DOWNLOAD_CONCURRENCY` of them fit in memory.
pub const DOWNLOAD_PART_SIZE: u64 = 16 * MIB;

impl S3Settings {
    /// The settings of `args` from the process environment; `bucket`
    /// overrides the configured bucket (an `s3://` URI names its own).
    pub fn from_args(args: &S3Args, bucket: Option<&str>) -> Result<S3Settings> {
        let settings = resolve(args, bucket, super::env())?;
        if let Some(endpoint) = &settings.endpoint_url {
            super::transport::warn_if_cleartext(
                "S3_ENDPOINT_URL",
                endpoint,
                "the backups (encrypted only with age) and the request metadata",
            );
        }
        Ok(settings)
    }
}

/// [`S3Settings::from_args`] with the environment given (`env`).
pub fn resolve(args: &S3Args, bucket: Option<&str>, env: &Env) -> Result<S3Settings> {
    let bucket = bucket
        .map(str::to_owned)
        .or_else(|| args.bucket.clone())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| usage("no S3 bucket: set S3_BUCKET or --s3-bucket"))?;
    let parts = PartSizes::resolve(args, env)?;
    check_store(args)?;
    Ok(S3Settings {
        bucket,
        prefix: normalize_prefix(args.prefix.as_deref().unwrap_or("")),
        endpoint_url: args.endpoint_url.clone().filter(|u| !u.is_empty()),
        region: args
            .region
            .clone()
            .or_else(|| env.get(vars::AWS_REGION))
            .or_else(|| env.get(vars::AWS_DEFAULT_REGION))
            .filter(|r| !r.is_empty()),
        storage_class: args.storage_class.clone(),
        sse: sse(args)?,
        part_size: parts.first,
        max_part_size: parts.max,
        min_part_size: parts.min,
        max_parts: args.max_parts,
        concurrency: args.concurrency,
        download_concurrency: args.download_concurrency.max(1),
        download_part_size: env
            .byte_count(vars::PGBAK_S3_DOWNLOAD_PART_SIZE)?
            .unwrap_or(DOWNLOAD_PART_SIZE)
            .max(1),
        stall_timeout: env
            .duration(vars::PGBAK_S3_STALL_TIMEOUT, false)?
            .unwrap_or(DEFAULT_STALL_TIMEOUT),
        stale_upload_age: env
            .duration(vars::PGBAK_S3_STALE_UPLOAD_AGE, true)?
            .unwrap_or(DEFAULT_STALE_UPLOAD_AGE),
        sdk: super::aws::sdk_env(&env.lookup())?,
    })
}

/// `S3_SSE` and `S3_SSE_KMS_KEY_ID`.
fn sse(args: &S3Args) -> Result<Option<Sse>> {
    let key_id = args.sse_kms_key_id.clone().filter(|k| !k.is_empty());
    let sse = args.sse.map(|algorithm| match algorithm {
        SseAlgorithm::Aes256 => Sse::Aes256,
        SseAlgorithm::Kms => Sse::Kms {
            key_id: key_id.clone(),
        },
    });
    if key_id.is_some() && !matches!(sse, Some(Sse::Kms { .. })) {
        return Err(usage("S3_SSE_KMS_KEY_ID needs S3_SSE=aws:kms"));
    }
    Ok(sse)
}

/// The endpoint, part limit and concurrency.
fn check_store(args: &S3Args) -> Result<()> {
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
    if args.download_concurrency > 64 {
        return Err(usage("--s3-download-concurrency must be 1 to 64 (0 is 1)"));
    }
    Ok(())
}

/// The part sizes, in bytes.
struct PartSizes {
    min: u64,
    first: Option<u64>,
    max: u64,
}

impl PartSizes {
    fn resolve(args: &S3Args, env: &Env) -> Result<PartSizes> {
        let min = env
            .byte_count(vars::PGBAK_S3_MIN_PART_SIZE)?
            .unwrap_or(S3_MIN_PART_SIZE);
        let mib = |flag: Option<u64>| flag.map(|m| m.saturating_mul(MIB));
        let first = env
            .byte_count(vars::PGBAK_S3_PART_SIZE)?
            .or(mib(args.part_size_mib));
        let max = env
            .byte_count(vars::PGBAK_S3_MAX_PART_SIZE)?
            .or(mib(args.max_part_size_mib))
            .unwrap_or(S3_MAX_PART_SIZE);
        for (what, size) in [
            ("part size (--s3-part-size-mib)", first),
            ("largest part size (--s3-max-part-size-mib)", Some(max)),
        ] {
            if let Some(size) = size.filter(|s| *s < min || *s > S3_MAX_PART_SIZE) {
                return Err(usage(format!(
                    "S3 {what} {} is outside {} to 5 GiB",
                    ui::bytes(size),
                    ui::bytes(min)
                )));
            }
        }
        if let Some(first) = first.filter(|first| *first > max) {
            return Err(usage(format!(
                "the S3 part size {} is larger than --s3-max-part-size-mib ({})",
                ui::bytes(first),
                ui::bytes(max)
            )));
        }
        Ok(PartSizes { min, first, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::s3::StorageClass;

    fn args() -> S3Args {
        S3Args {
            bucket: Some("b".into()),
            storage_class: "STANDARD_IA".parse().unwrap(),
            max_parts: 10_000,
            concurrency: 4,
            download_concurrency: 4,
            ..Default::default()
        }
    }

    fn with_env(args: &S3Args, vars: &[(&str, &str)]) -> Result<S3Settings> {
        resolve(args, None, &Env::from_pairs(vars.to_vec()))
    }

    #[test]
    fn settings_are_checked() {
        let mut args = args();
        let s = with_env(&args, &[]).unwrap();
        assert_eq!(s.stall_timeout, DEFAULT_STALL_TIMEOUT);
        assert_eq!(s.max_part_size, S3_MAX_PART_SIZE);
        assert!("rot13".parse::<SseAlgorithm>().is_err());
        args.sse = Some(SseAlgorithm::Kms);
        args.sse_kms_key_id = Some("k".into());
        assert_eq!(
            with_env(&args, &[]).unwrap().sse,
            Some(Sse::Kms {
                key_id: Some("k".into())
            })
        );
        args.sse = None;
        assert!(with_env(&args, &[]).is_err(), "kms key without kms");
        args.sse_kms_key_id = None;
        args.part_size_mib = Some(1);
        assert!(with_env(&args, &[]).is_err(), "below 5 MiB");
        args.part_size_mib = None;
        assert!("standard ia".parse::<StorageClass>().is_err());
        assert!("".parse::<StorageClass>().is_err());
        args.storage_class = "STANDARD".parse().unwrap();
        args.bucket = None;
        assert!(with_env(&args, &[]).is_err());
        assert!(resolve(&args, Some("other"), &Env::default()).is_ok());
    }

    #[test]
    fn part_sizes_and_their_cap() {
        // (--s3-part-size-mib, --s3-max-part-size-mib, environment, (first, max) or an error)
        type Case<'a> = (
            Option<u64>,
            Option<u64>,
            &'a [(&'a str, &'a str)],
            Option<(Option<u64>, u64)>,
        );
        let cases: [Case; 8] = [
            (None, None, &[], Some((None, S3_MAX_PART_SIZE))),
            (Some(16), Some(64), &[], Some((Some(16 * MIB), 64 * MIB))),
            (None, Some(64), &[], Some((None, 64 * MIB))),
            (Some(128), Some(64), &[], None),
            (None, Some(4), &[], None),
            (None, Some(6000), &[], None),
            // Byte counts win over the flags (and the minimum can be lowered).
            (
                Some(8),
                None,
                &[
                    (vars::PGBAK_S3_PART_SIZE, "65536"),
                    (vars::PGBAK_S3_MAX_PART_SIZE, "65536"),
                    (vars::PGBAK_S3_MIN_PART_SIZE, "65536"),
                ],
                Some((Some(65536), 65536)),
            ),
            (None, None, &[(vars::PGBAK_S3_MAX_PART_SIZE, "lots")], None),
        ];
        for (first, max, env, want) in cases {
            let args = S3Args {
                part_size_mib: first,
                max_part_size_mib: max,
                ..args()
            };
            let got = with_env(&args, env)
                .ok()
                .map(|s| (s.part_size, s.max_part_size));
            assert_eq!(got, want, "{first:?} {max:?} {env:?}");
        }
    }

    #[test]
    fn timeouts_from_the_environment() {
        let get = |vars: &[(&str, &str)]| {
            with_env(&args(), vars).map(|s| (s.stall_timeout, s.stale_upload_age))
        };
        let secs = Duration::from_secs;
        assert_eq!(
            get(&[(vars::PGBAK_S3_STALL_TIMEOUT, "2s")]).unwrap().0,
            secs(2)
        );
        assert_eq!(
            get(&[(vars::PGBAK_S3_STALL_TIMEOUT, "90")]).unwrap().0,
            secs(90)
        );
        assert!(get(&[(vars::PGBAK_S3_STALL_TIMEOUT, "0")]).is_err());
        assert!(get(&[(vars::PGBAK_S3_STALL_TIMEOUT, "soon")]).is_err());
        assert_eq!(
            get(&[(vars::PGBAK_S3_STALE_UPLOAD_AGE, "0")]).unwrap().1,
            secs(0)
        );
        assert_eq!(
            get(&[(vars::PGBAK_S3_STALE_UPLOAD_AGE, "2h")]).unwrap().1,
            secs(7200)
        );
        assert_eq!(get(&[]).unwrap().1, DEFAULT_STALE_UPLOAD_AGE);
        let region = |vars: &[(&str, &str)]| with_env(&args(), vars).unwrap().region;
        assert_eq!(
            region(&[("AWS_DEFAULT_REGION", "eu-west-1")]).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region(&[
                ("AWS_REGION", "eu-central-1"),
                ("AWS_DEFAULT_REGION", "eu-west-1")
            ])
            .as_deref(),
            Some("eu-central-1")
        );
    }
}
