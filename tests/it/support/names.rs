//! Names and selection: two databases whose names the old sanitising mapped to one file name,
//! `pgbak` connected to one database, a backup by `--json` (its dump path), file names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::{output_text, run, Pg, TestDb};
use crate::support;

/// `hint` as a name part for a database or a bucket: lower-case ASCII letters
/// and digits, `sep` for anything else, at most 40 characters.
pub fn slug(hint: &str, sep: char) -> String {
    let mut clean: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                sep
            }
        })
        .collect();
    clean.truncate(40);
    clean
}

/// Two databases whose names the old sanitising mapped to one file name:
/// `trust<N> x` and `trust<N>-x` (both were `trust<N>-x`).
pub(crate) fn colliding_pair(pg: &Pg) -> (TestDb<'_>, TestDb<'_>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = format!(
        "trust{}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let spaced = pg.create_db_named(&format!("{base} x"));
    let dashed = pg.create_db_named(&format!("{base}-x"));
    for db in [&spaced, &dashed] {
        db.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    }
    (spaced, dashed)
}

pub(crate) fn pgbak_for(db: &TestDb<'_>) -> Command {
    let mut cmd = support::pgbak(db.pg());
    cmd.env("DATABASE_URL", db.url());
    cmd
}

/// `pgbak backup --json` with extra arguments; the dump path.
pub(crate) fn backup_json(cmd: &mut Command, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = run(cmd
        .args(["backup", "--json", "--output-dir"])
        .arg(dir)
        .args(extra));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    PathBuf::from(summary["dump"].as_str().expect("dump path"))
}

pub(crate) fn dumps_of(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut dumps: Vec<String> = names.into_iter().filter(|n| n.ends_with(".dump")).collect();
    dumps.sort();
    dumps
}

pub(crate) fn local_dumps(dir: &Path) -> Vec<String> {
    dumps_of(
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()),
    )
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}
