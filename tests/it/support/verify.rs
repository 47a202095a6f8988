//! What the verify tests (and those of other subjects that verify) do: a backup to verify,
//! `pgbak verify --json` and its report (a check's status and detail), meta.json beside a dump,
//! the temporary databases a verify leaves, and the scratch directory removed at the end.

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{output_text, scratch_dir, Pg, TestDb};
use crate::support;

/// A backup of `db` into `dir` by `pgbak backup`, with `bin` as the client tools (default:
/// the harness's pg17). Returns the dump path.
pub fn backup_with(db: &TestDb<'_>, dir: &Path, bin: Option<&Path>) -> PathBuf {
    let mut cmd = support::pgbak(db.pg());
    if let Some(bin) = bin {
        cmd.env("PGBAK_PG_BIN_DIR", bin);
    }
    backup_json(cmd, db, dir, &[])
}

/// A backup of `db` into `dir` by `pgbak backup --mode <mode>`. Returns the dump path.
pub fn backup_in_mode(db: &TestDb<'_>, dir: &Path, mode: &str) -> PathBuf {
    backup_json(support::pgbak(db.pg()), db, dir, &["--mode", mode])
}

/// `cmd backup --no-s3 --json <extra> --output-dir <dir>` of `db`, which must succeed: the
/// dump path.
fn backup_json(mut cmd: Command, db: &TestDb<'_>, dir: &Path, extra: &[&str]) -> PathBuf {
    cmd.args(["backup", "--no-s3", "--json"])
        .args(extra)
        .arg("--output-dir")
        .arg(dir)
        .env("DATABASE_URL", db.url());
    let out = support::output_ok(&mut cmd, "pgbak backup");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    PathBuf::from(summary["dump"].as_str().expect("dump path in the summary"))
}

pub fn backup(db: &TestDb<'_>, dir: &Path) -> PathBuf {
    backup_with(db, dir, None)
}

/// A scratch directory removed when the test ends.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(hint: &str) -> Dir {
        Dir(scratch_dir(hint))
    }
}

impl Deref for Dir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Dir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Dir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database loaded with the fixture at `scale` and a backup of it in a fresh directory.
pub fn fixture_backup<'a>(pg: &'a Pg, hint: &str, scale: f64) -> (TestDb<'a>, Dir, PathBuf) {
    let db = pg.fresh_db(hint);
    db.load_fixture(scale);
    let dir = Dir::new(&hint.replace(' ', "-"));
    let dump = backup(&db, &dir);
    (db, dir, dump)
}

pub fn meta_path(dump: &Path) -> PathBuf {
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    dump.with_file_name(name.replace(".dump", ".meta.json"))
}

pub fn read_meta(dump: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(meta_path(dump)).expect("reading meta.json"))
        .expect("parsing meta.json")
}

pub fn write_meta(dump: &Path, meta: &Value) {
    std::fs::write(meta_path(dump), serde_json::to_vec_pretty(meta).unwrap()).unwrap();
}

/// A `verify --ephemeral --json` that passed with no pg_restore warning about a role (the
/// run's globals were replayed first).
pub fn assert_passed_with_the_roles(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(0), "{}", output_text(out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    let warnings = report["pg_restore_warnings"].as_array().unwrap();
    assert!(
        !warnings
            .iter()
            .any(|w| w.as_str().unwrap_or_default().contains("role")),
        "{report:#}"
    );
}

/// `pgbak verify --json <dump> <extra>` against the database's server.
pub fn verify_cmd(db: &TestDb<'_>, dump: &Path, extra: &[&str]) -> Command {
    let mut cmd = support::pgbak(db.pg());
    cmd.arg("verify")
        .arg(dump)
        .arg("--json")
        .args(extra)
        .env("DATABASE_URL", db.url());
    cmd
}

pub fn run_json(cmd: &mut Command) -> (Output, Value) {
    let out = cmd.output().expect("running pgbak verify");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no report ({e}):\n{}",
            output_text(&out)
        )
    });
    (out, report)
}

/// The check named `name` in a verify report (its `status` and `detail`); fails the test when
/// the report has none.
pub fn check_named<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

/// Waits (until `deadline`) for the verify `child` of `db`'s backup to create its temporary
/// database on `pg`, and returns its name; the verify must still run by then.
pub fn wait_for_temp_db(pg: &Pg, db: &str, child: &mut Child, deadline: Instant) -> String {
    while verify_dbs(pg, db).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the temp database never appeared"
        );
        assert!(child.try_wait().unwrap().is_none(), "verify ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    verify_dbs(pg, db).remove(0)
}

/// The `pgbak-verify-*` scratch directories (of `verify --ephemeral`) under `dir`.
pub fn verify_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pgbak-verify-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

pub fn status<'r>(report: &'r Value, check: &str) -> &'r str {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == check)
        .unwrap_or_else(|| panic!("no check {check:?} in {report:#}"))["status"]
        .as_str()
        .unwrap()
}

pub fn detail<'r>(report: &'r Value, check: &str) -> &'r str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .unwrap()["detail"]
        .as_str()
        .unwrap()
}

/// Temp databases a verify of `db`'s backup would create on `pg`.
pub fn verify_dbs(pg: &Pg, db: &str) -> Vec<String> {
    let prefix = format!("{db}_verify_");
    pg.databases()
        .into_iter()
        .filter(|d| d.starts_with(&prefix))
        .collect()
}

pub(crate) const ALL: [&str; 14] = [
    "meta.json",
    "checksum",
    "archive readable",
    "temp database created",
    "restore succeeded",
    "expected tables present",
    "row counts match",
    "extensions present",
    "alembic revision matches",
    "indexes match",
    "constraints match",
    "triggers match",
    "row-level security matches",
    "sequences match",
];

pub(crate) fn assert_all_pass(out: &Output, report: &Value) {
    assert_eq!(out.status.code(), Some(0), "{}", output_text(out));
    assert_eq!(report["passed"], true);
    for check in ALL {
        assert_eq!(status(report, check), "pass", "{check}: {report:#}");
    }
}
