//! Issue 27's destinations: one pg_dump streamed to the directory, the `S3_*` bucket and the
//! `--to` destinations (a bucket on a second S3 server, another directory) in one pass: the
//! same bytes everywhere, one destination failing without stopping the others, retention per
//! destination, and URLs that carry a secret refused without echoing it; reading falls back
//! through them in order, and `pgbak sync` makes each hold what the others do.

mod all_runs;
mod fallback;
mod holders;
mod keep_rules;
mod metrics_labels;
mod one_pass;
mod pins;
mod pod_names;
mod prune_each;
mod refused_urls;
mod sync;

use std::path::Path;

use pgbak::meta::Meta;

use crate::support::bucket::{files, keys, sha256_hex};
use crate::support::S3Server;

/// A `--to` URL for `bucket` on `server` (its endpoint in the URL), with more parameters.
pub(crate) fn to_bucket(server: &S3Server, bucket: &str, prefix: &str, params: &str) -> String {
    let mut url = format!("s3://{bucket}/{prefix}?endpoint={}", server.endpoint);
    if !params.is_empty() {
        url.push('&');
        url.push_str(params);
    }
    url
}

/// A `--to` URL for the directory `dir`, with parameters.
pub(crate) fn to_dir(dir: &Path, params: &str) -> String {
    let mut url = format!("file://{}", dir.display());
    if !params.is_empty() {
        url.push('?');
        url.push_str(params);
    }
    url
}

/// The one complete backup in the directory `dir`: its dump's SHA-256 as its meta.json says
/// and as its bytes are.
pub(crate) fn dir_copy(dir: &Path) -> (String, Meta) {
    let dumps: Vec<String> = files(dir, ".dump")
        .into_iter()
        .chain(files(dir, ".dump.age"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?} in {}", dir.display());
    assert!(files(dir, ".partial").is_empty(), "{}", dir.display());
    let stem = dumps[0].split(".dump").next().unwrap().to_owned();
    let meta = Meta::read(&dir.join(format!("{stem}.meta.json"))).expect("its meta.json");
    let bytes = std::fs::read(dir.join(&dumps[0])).unwrap();
    assert_eq!(sha256_hex(&bytes), meta.sha256, "{}", dumps[0]);
    (meta.sha256.clone(), meta)
}

/// The one complete backup under `prefix` of `bucket`: the dump's SHA-256 (as its bytes are,
/// and as the meta.json beside it says) and the dump's bytes.
pub(crate) fn bucket_copy(server: &S3Server, bucket: &str, prefix: &str) -> (String, Vec<u8>) {
    let dumps: Vec<String> = keys(server, bucket, prefix, ".dump")
        .into_iter()
        .chain(keys(server, bucket, prefix, ".dump.age"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?} in s3://{bucket}/{prefix}");
    let stem = dumps[0].split(".dump").next().unwrap().to_owned();
    let bytes = server.get_object(bucket, &format!("{prefix}{}", dumps[0]));
    let meta: serde_json::Value =
        serde_json::from_slice(&server.get_object(bucket, &format!("{prefix}{stem}.meta.json")))
            .expect("its meta.json");
    let sha = sha256_hex(&bytes);
    assert_eq!(
        meta["sha256"],
        sha.as_str(),
        "s3://{bucket}/{prefix}{}",
        dumps[0]
    );
    assert_eq!(
        meta["s3"]["bucket"], bucket,
        "its meta.json records where it is"
    );
    (sha, bytes)
}

/// The shared AWS files of an operator with a profile `offsite` (as in ~/.aws/credentials),
/// and no key in the environment: a `--to` URL with `profile=offsite` gets its keys from there.
pub(crate) fn with_profile(cmd: &mut std::process::Command, dir: &Path) {
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        "[offsite]\naws_access_key_id = offsite-id\naws_secret_access_key = offsite-key\n",
    )
    .unwrap();
    let config = dir.join("config");
    std::fs::write(&config, "[profile offsite]\nregion = us-east-1\n").unwrap();
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE");
}
