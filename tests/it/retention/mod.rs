//! Retention against real servers: what `backup`, `cron` and `prune` keep and delete, the
//! invariants no rule overrides (newest verified, meta-less dumps, pins, groups), the anomaly pin,
//! and S3 Object Lock on the moto server.

mod anomaly;
mod groups;
mod object_lock;
mod rules;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use tempfile::TempDir;

use crate::support::bucket::pgbak_s3;
use crate::support::{
    self, backup, output_text, pg16, read_meta, s3, stdout_json, Pg, S3Server, TestDb,
};

/// A small database with `rows` rows in `public.t`.
pub(crate) fn small_db<'a>(pg: &'a Pg, hint: &str, rows: u32) -> TestDb<'a> {
    let db = pg.fresh_db(hint);
    db.psql(&format!(
        "CREATE TABLE t(x int, pad text); \
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {rows}) g"
    ));
    db
}

/// A small database (as [`small_db`], 10 rows), a fresh bucket on the shared S3 server
/// (`bucket` its hint) and a new directory.
pub(crate) fn small_s3_case(
    hint: &str,
    bucket: &str,
) -> (TestDb<'static>, &'static S3Server, String, TempDir) {
    let db = small_db(pg16(), hint, 10);
    let server = s3();
    let bucket = server.fresh_bucket(bucket);
    (db, server, bucket, tempfile::tempdir().unwrap())
}

/// `pgbak backup --keep KEEP --storage-class STANDARD` of `db` into `dir` and the bucket's
/// prefix `p/`, which must succeed.
pub(crate) fn s3_backup(
    db: &TestDb,
    server: &S3Server,
    bucket: &str,
    dir: &Path,
    keep: &str,
) -> Output {
    let args = [
        "backup",
        "--keep",
        keep,
        "--storage-class",
        "STANDARD",
        "--output-dir",
    ];
    let out = support::run(pgbak_s3(db, server, bucket, "p/").args(args).arg(dir));
    ok(&out);
    out
}

/// A small database (as [`small_db`], 10 rows) and three backups of it in a new directory,
/// none pruned: their file names, oldest first.
pub(crate) fn three_backups<'a>(pg: &'a Pg, hint: &str) -> (TestDb<'a>, TempDir, Vec<String>) {
    let db = small_db(pg, hint, 10);
    let dir = tempfile::tempdir().unwrap();
    let made = (0..3)
        .map(|_| backed_up(pg, &db, dir.path(), "0"))
        .collect();
    (db, dir, made)
}

pub(crate) fn ok(out: &Output) -> &Output {
    assert!(out.status.success(), "{}", output_text(out));
    out
}

/// `pgbak backup --keep KEEP --json` of `db` into `dir`; the dump's file name.
pub(crate) fn backed_up(pg: &Pg, db: &TestDb, dir: &Path, keep: &str) -> String {
    let out = backup(pg, &db.name, dir, &["--keep", keep, "--json"]);
    stdout_json(&out)["meta"]["file"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `pgbak <args>` with `dir` as BACKUP_DIR.
pub(crate) fn pgbak_in(pg: &Pg, db: &TestDb, dir: &std::path::Path, args: &[&str]) -> Output {
    support::pgbak(pg)
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(args)
        .output()
        .unwrap()
}

/// Renames a backup in `dir` to the lossy, server-less name pgbak 0.1 wrote:
/// `<legacy db>_full_<ts>`; meta.json's `file` follows.
pub(crate) fn to_legacy_name(dir: &Path, dump: &str, legacy_db: &str) -> String {
    let stem = dump.trim_end_matches(".dump");
    let stamp = stem.rsplit('_').next().unwrap();
    let legacy = format!("{legacy_db}_full_{stamp}");
    let mut meta = read_meta(&dir.join(format!("{stem}.meta.json")));
    meta["file"] = Value::String(format!("{legacy}.dump"));
    meta.as_object_mut().unwrap().remove("server");
    std::fs::remove_file(dir.join(format!("{stem}.meta.json"))).unwrap();
    std::fs::rename(dir.join(dump), dir.join(format!("{legacy}.dump"))).unwrap();
    std::fs::write(
        dir.join(format!("{legacy}.meta.json")),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    format!("{legacy}.dump")
}
