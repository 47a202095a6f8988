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

use crate::support::{self, backup, output_text, read_meta, stdout_json, Pg, TestDb};

/// A small database with `rows` rows in `public.t`.
pub(crate) fn small_db<'a>(pg: &'a Pg, hint: &str, rows: u32) -> TestDb<'a> {
    let db = pg.fresh_db(hint);
    db.psql(&format!(
        "CREATE TABLE t(x int, pad text); \
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {rows}) g"
    ));
    db
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
