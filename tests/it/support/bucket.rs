//! pgbak against the S3 server: the command with a bucket and prefix, a fresh case (database,
//! bucket, directory), parts as small as the server takes, what the bucket and the local
//! directory hold after a run, and the secret key that must never be printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgbak::meta::Meta;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{output_text, pg16, run, s3, Pg, S3Server, TestDb};
use crate::support;

/// The secret key the tests use; it must never appear in pgbak's output.
pub const SECRET: &str = "test-secret-key";

/// pgbak against `server`, bucket and prefix set, connected to `db`.
pub fn pgbak_s3(db: &TestDb, server: &S3Server, bucket: &str, prefix: &str) -> Command {
    let mut cmd = support::pgbak(db.pg());
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    cmd.env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("S3_BUCKET", bucket)
        .env("S3_PREFIX", prefix)
        .env("DATABASE_URL", db.url());
    cmd
}

/// What most S3 tests start from, named after `hint`: a fresh database with
/// the fixture at `scale` (none at 0), the shared S3 server, a fresh bucket
/// and a scratch backup directory.
pub fn s3_case(hint: &str, scale: f64) -> (TestDb<'static>, &'static S3Server, String, PathBuf) {
    let db = pg16().fresh_db(hint);
    if scale > 0.0 {
        db.load_fixture(scale);
    }
    let server = s3();
    let bucket = server.fresh_bucket(hint);
    (db, server, bucket, backup_dir(&hint.replace(' ', "-")))
}

/// `pgbak backup` of `db` into `root` and `bucket` under `prefix`, with `args`
/// added; it must succeed. The newest backup's file name in the bucket
/// (`.dump`, or `.dump.age` when encrypted).
pub fn s3_backup(
    db: &TestDb,
    server: &S3Server,
    bucket: &str,
    prefix: &str,
    root: &Path,
    args: &[&str],
) -> String {
    let out = run(pgbak_s3(db, server, bucket, prefix)
        .arg("backup")
        .args(args)
        .arg("--output-dir")
        .arg(root));
    assert!(out.status.success(), "{}", output_text(&out));
    keys(server, bucket, prefix, "")
        .into_iter()
        .rfind(|k| k.ends_with(".dump") || k.ends_with(".dump.age"))
        .expect("the backup in the bucket")
}

/// Parts as small as moto takes (support::s3::PART_MIN_SIZE), the first one
/// `first` bytes, so a small dump still spans several parts.
pub fn small_parts(cmd: &mut Command, first: usize) -> &mut Command {
    cmd.env(
        "PGBAK_S3_MIN_PART_SIZE",
        support::s3::PART_MIN_SIZE.to_string(),
    )
    .env("PGBAK_S3_PART_SIZE", first.to_string())
}

pub fn backup_dir(hint: &str) -> PathBuf {
    support::scratch_dir(hint)
}

pub fn assert_no_secret(out: &Output) {
    let text = output_text(out);
    assert!(!text.contains(SECRET), "secret in output:\n{text}");
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Files in `dir` with the given suffix, sorted (the run locks left out).
pub fn files(dir: &Path, suffix: &str) -> Vec<String> {
    support::files(dir)
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// The one complete local backup in `dir`: its dump bytes match its meta.json.
pub(crate) fn assert_local_complete(dir: &Path) -> Meta {
    let dumps = files(dir, ".dump");
    let metas = files(dir, ".meta.json");
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(files(dir, ".partial").is_empty());
    let meta = Meta::read(&dir.join(&metas[0])).expect("reading meta.json");
    let bytes = std::fs::read(dir.join(&dumps[0])).expect("reading the dump");
    assert_eq!(meta.file, dumps[0]);
    assert_eq!(meta.size_bytes, bytes.len() as u64);
    assert_eq!(meta.sha256, sha256_hex(&bytes));
    assert!(bytes.starts_with(b"PGDMP"));
    meta
}

/// The last line of a run whose backup completed locally but whose upload failed: no
/// secret printed, and that line says so (exit 1 is the caller's to check, first).
pub(crate) fn upload_failed_line(out: &Output) -> String {
    assert_no_secret(out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("is complete, but uploading it to s3://"),
        "{stderr}"
    );
    last
}

/// Nothing in `bucket`: no object, no open multipart upload.
pub(crate) fn assert_bucket_empty(server: &S3Server, bucket: &str) {
    assert!(server.list_objects(bucket, "").is_empty());
    assert!(server.multipart_uploads(bucket).is_empty());
}

/// The keys under `prefix` ending in `suffix`, without the prefix, sorted.
pub(crate) fn keys(server: &S3Server, bucket: &str, prefix: &str, suffix: &str) -> Vec<String> {
    let mut keys: Vec<String> = server
        .list_objects(bucket, prefix)
        .into_iter()
        .map(|o| o.key.trim_start_matches(prefix).to_owned())
        .filter(|k| k.ends_with(suffix))
        .collect();
    keys.sort();
    keys
}

/// A meta.json in the bucket, parsed.
pub(crate) fn s3_meta(server: &S3Server, bucket: &str, key: &str) -> Value {
    serde_json::from_slice(&server.get_object(bucket, key)).expect("meta.json is JSON")
}

/// `pgbak` with the S3 server's environment and a bucket, connected to `url`.
pub(crate) fn pgbak_s3_url(
    pg: &Pg,
    url: &str,
    server: &S3Server,
    bucket: &str,
    prefix: &str,
) -> Command {
    let mut cmd = support::pgbak(pg);
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    cmd.env("AWS_SECRET_ACCESS_KEY", crate::support::bucket::SECRET)
        .env("S3_BUCKET", bucket)
        .env("S3_PREFIX", prefix)
        .env("DATABASE_URL", url);
    cmd
}

/// `pgbak check --s3 --json` of the bucket alone (no local directory).
pub(crate) fn check_bucket(
    server: &S3Server,
    bucket: &str,
    prefix: &str,
    extra: &[&str],
) -> Output {
    let mut cmd = support::pgbak_bare();
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    let nowhere = backup_dir("fleet-check").join("none");
    run(cmd
        .env("AWS_SECRET_ACCESS_KEY", crate::support::bucket::SECRET)
        .env("S3_BUCKET", bucket)
        .env("S3_PREFIX", prefix)
        .args(["check", "--s3", "--json", "--backup-dir"])
        .arg(nowhere)
        .args(extra))
}
