//! `pgbak verify` against real clusters: good dumps pass and leave nothing behind; corrupt,
//! truncated or mismatching backups fail with exit 1; signals, --no-cleanup, --target-url
//! and --ephemeral; the clear errors for a non-archive, missing pgvector and zstd.

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, output_text, paths, pg16, private_cluster, scratch_dir, Pg, TestDb};

/// A backup of `db` into `dir` by `pgbak backup`, with `bin` as the client tools (default:
/// the harness's pg17). Returns the dump path.
pub fn backup_with(db: &TestDb<'_>, dir: &Path, bin: Option<&Path>) -> PathBuf {
    let mut cmd = support::pgbak(db.pg());
    if let Some(bin) = bin {
        cmd.env("PGBAK_PG_BIN_DIR", bin);
    }
    let out = cmd
        .args(["backup", "--no-s3", "--json", "--output-dir"])
        .arg(dir)
        .env("DATABASE_URL", db.url())
        .output()
        .expect("running pgbak backup");
    assert!(
        out.status.success(),
        "backup failed:\n{}",
        output_text(&out)
    );
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

const ALL: [&str; 14] = [
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

fn assert_all_pass(out: &Output, report: &Value) {
    assert_eq!(out.status.code(), Some(0), "{}", output_text(out));
    assert_eq!(report["passed"], true);
    for check in ALL {
        assert_eq!(status(report, check), "pass", "{check}: {report:#}");
    }
}

#[test]
fn verify_passes_a_good_dump_and_leaves_no_temp_db() {
    let pg = pg16();
    let (db, dir, _older) = fixture_backup(pg, "verify good", 0.05);
    std::thread::sleep(Duration::from_millis(1100));
    let newest = backup(&db, &dir);
    // No file named: the newest complete backup in --backup-dir.
    let mut cmd = support::pgbak(pg);
    cmd.args(["verify", "--json", "--backup-dir"])
        .arg(&dir)
        .env("DATABASE_URL", db.url());
    let (out, report) = run_json(&mut cmd);
    assert_all_pass(&out, &report);
    assert_eq!(report["backup"], newest.display().to_string());
    assert!(detail(&report, "row counts match").contains("14 tables"));
    assert!(detail(&report, "extensions present").contains("vector"));
    assert!(detail(&report, "alembic revision matches").contains("013"));
    let temp = report["temp_database"].as_str().unwrap();
    assert!(temp.starts_with(&format!("{}_verify_", db.name)), "{temp}");
    assert!(verify_dbs(pg, &db.name).is_empty());
    let meta = read_meta(&newest);
    assert_eq!(meta["verification"]["passed"], true);
    assert_eq!(meta["alembic_revision"], "013", "other keys unchanged");
    let mode = std::fs::metadata(meta_path(&newest))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "meta.json stays private");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("PASS  ").count(), 14, "{stderr}");
}

#[test]
fn verify_fails_on_one_flipped_byte() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify flip", 0.05);
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, &bytes).unwrap();
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(report["passed"], false);
    assert_eq!(status(&report, "checksum"), "fail");
    assert_eq!(status(&report, "restore succeeded"), "skip");
    assert!(verify_dbs(pg, &db.name).is_empty());
    assert_eq!(read_meta(&dump)["verification"]["passed"], false);
}

#[test]
fn verify_fails_on_a_dump_truncated_to_60_percent() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify trunc", 0.05);
    let len = std::fs::metadata(&dump).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&dump).unwrap();
    file.set_len(len * 60 / 100).unwrap();
    drop(file);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "fail");
    assert!(detail(&report, "checksum").contains("truncated"));
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_fails_when_an_expected_table_was_dropped() {
    let pg = pg16();
    let db = pg.fresh_db("verify dropped");
    db.load_fixture(0.05);
    db.psql("DROP TABLE feedback CASCADE");
    let dir = Dir::new("verify-dropped");
    let dump = backup(&db, &dir);
    // No built-in list: the backup's own tables are expected, and all are there
    // (the application's 13 are one line of contrib/pgbak.env.example: tests/it/any_database.rs).
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_all_pass(&out, &report);
    assert!(verify_dbs(pg, &db.name).is_empty());
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &["--expect-table", "feedback"]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "expected tables present"), "fail");
    assert!(detail(&report, "expected tables present").contains("public.feedback"));
    // Everything else about the backup is fine.
    assert_eq!(status(&report, "restore succeeded"), "pass");
    assert_eq!(status(&report, "row counts match"), "pass");
    assert!(verify_dbs(pg, &db.name).is_empty());

    // An explicit list adds to meta.json's tables.
    let list = dir.join("tables.txt");
    std::fs::write(
        &list,
        "# the tables this app needs\npublic.users\nvector_chunks\n",
    )
    .unwrap();
    let (out, report) = run_json(&mut verify_cmd(
        &db,
        &dump,
        &["--expect-tables-file", list.to_str().unwrap()],
    ));
    assert_all_pass(&out, &report);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &["--expect-table", "app.nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(detail(&report, "expected tables present").contains("app.nope"));
}

#[test]
fn verify_fails_on_a_wrong_alembic_revision_in_meta() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify alembic", 0.05);
    let mut meta = read_meta(&dump);
    meta["alembic_revision"] = "012".into();
    write_meta(&dump, &meta);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "alembic revision matches"), "fail");
    assert!(detail(&report, "alembic revision matches").contains("012"));
    assert_eq!(status(&report, "row counts match"), "pass");
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_fails_on_a_row_count_changed_in_meta() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify rows", 0.05);
    let mut meta = read_meta(&dump);
    let tables = meta["tables"].as_array_mut().unwrap();
    let users = tables.iter_mut().find(|t| t["name"] == "users").unwrap();
    let rows = users["rows"].as_u64().unwrap();
    users["rows"] = (rows + 1).into();
    write_meta(&dump, &meta);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "row counts match"), "fail");
    assert!(
        detail(&report, "row counts match").contains(&format!("public.users: {}", rows + 1)),
        "{report:#}"
    );
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_without_meta_runs_what_it_can_and_fails() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify nometa", 0.05);
    std::fs::remove_file(meta_path(&dump)).unwrap();
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "meta.json"), "fail");
    assert!(detail(&report, "meta.json").contains("skipped"));
    assert_eq!(status(&report, "checksum"), "skip");
    assert_eq!(status(&report, "restore succeeded"), "pass");
    assert_eq!(
        status(&report, "expected tables present"),
        "skip",
        "nothing says which tables: no meta.json, no --expect-table"
    );
    assert_eq!(status(&report, "extensions present"), "pass");
    assert_eq!(status(&report, "row counts match"), "skip");
    assert_eq!(status(&report, "alembic revision matches"), "skip");
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_says_a_plain_sql_file_is_not_a_custom_dump() {
    let pg = pg16();
    let db = pg.fresh_db("verify plain");
    let dir = Dir::new("verify-plain");
    let file = dir.join("backup.sql");
    std::fs::write(&file, "--\n-- PostgreSQL database dump\n--\nSET x = 1;\n").unwrap();
    let (out, report) = run_json(&mut verify_cmd(&db, &file, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "archive readable"), "fail");
    assert!(detail(&report, "archive readable").contains("PGDMP"));
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_names_the_pgvector_package_when_the_server_lacks_it() {
    let Some(pg17) = support::pg17() else {
        eprintln!("skipped: PostgreSQL 17 not installed");
        return;
    };
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify novector", 0.05);
    let (out, report) = run_json(&mut verify_cmd(
        &db,
        &dump,
        &["--target-url", &pg17.url("postgres")],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "restore succeeded"), "fail");
    assert!(
        detail(&report, "restore succeeded").contains("postgresql-17-pgvector"),
        "{report:#}"
    );
    assert!(verify_dbs(pg17, &db.name).is_empty());
}

#[test]
fn verify_explains_a_zstd_archive_the_local_pg_restore_cannot_read() {
    let Some(pg17_bin) = paths().pg17_bin.clone() else {
        eprintln!("skipped: PostgreSQL 17 not installed");
        return;
    };
    let pg = pg16();
    let db = pg.fresh_db("verify zstd");
    db.load_fixture(0.05);
    let dir = Dir::new("verify-zstd");
    let dump = backup_with(&db, &dir, Some(&pg17_bin));
    assert_eq!(read_meta(&dump)["compression"], "zstd:1");
    // PostgreSQL 16's wheel: pg_restore without zstd (and too old for pg_dump 17's format).
    let (out, report) =
        run_json(verify_cmd(&db, &dump, &[]).env("PGBAK_PG_BIN_DIR", &paths().pg16_bin));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "pass");
    assert_eq!(status(&report, "archive readable"), "fail");
    let why = detail(&report, "archive readable");
    assert!(
        why.contains("zstd") && why.contains("pg_restore 17"),
        "{why}"
    );
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_into_target_url_leaves_nothing_on_either_server() {
    let pg = pg16();
    let target = private_cluster(16);
    let (db, _dir, dump) = fixture_backup(pg, "verify target", 0.05);
    let before = target.databases();
    let (out, report) = run_json(&mut verify_cmd(
        &db,
        &dump,
        &["--target-url", &target.url("postgres")],
    ));
    assert_all_pass(&out, &report);
    assert!(report["target"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", target.port)));
    assert_eq!(target.databases(), before);
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_ephemeral_uses_a_throwaway_cluster_and_removes_it() {
    let pg = pg16();
    let db = pg.fresh_db("verify ephemeral");
    db.load_fixture(0.05);
    let dir = Dir::new("verify-eph");
    // pgvector is in PostgreSQL 16's wheel only: dump and verify with its tools.
    let pg16_bin = paths().pg16_bin.clone();
    let dump = backup_with(&db, &dir, Some(&pg16_bin));
    let tmp = Dir::new("verify-eph-tmp");
    let (out, report) = run_json(
        verify_cmd(&db, &dump, &["--ephemeral"])
            .env("PGBAK_PG_BIN_DIR", &pg16_bin)
            .env("TMPDIR", &tmp)
            // No server needed: the connection must not matter.
            .env("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none"),
    );
    assert_all_pass(&out, &report);
    assert!(report["target"].as_str().unwrap().contains("throwaway"));
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    assert!(
        verify_dbs(pg, &db.name).is_empty(),
        "the source server was not touched"
    );
}

#[test]
fn verify_no_cleanup_leaves_the_temp_db_and_names_it() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify keep", 0.05);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &["--no-cleanup"]));
    assert_all_pass(&out, &report);
    let temp = report["temp_database"].as_str().unwrap().to_owned();
    assert_eq!(verify_dbs(pg, &db.name), vec![temp.clone()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&temp) && stderr.contains("DROP DATABASE"),
        "{stderr}"
    );
    assert_eq!(pg.row_counts(&temp), pg.row_counts(&db.name));
    pg.psql(
        "postgres",
        &format!("DROP DATABASE \"{temp}\" WITH (FORCE)"),
    );
}

/// Starts verify on a larger fixture, waits for its temp database, sends `signal`.
fn interrupt_verify(signal: libc::c_int, expected_code: i32) {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, &format!("verify sig{signal}"), 0.5);
    let mut child = verify_cmd(&db, &dump, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting pgbak verify");
    let deadline = Instant::now() + Duration::from_secs(60);
    while verify_dbs(pg, &db.name).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the temp database never appeared"
        );
        assert!(child.try_wait().unwrap().is_none(), "verify ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Into the restore step: pg_restore's sessions are connected to the temp database.
    let temp = verify_dbs(pg, &db.name).remove(0);
    let restoring = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{temp}' AND application_name = 'pg_restore'"
    );
    while pg.psql("postgres", &restoring) == "0" {
        assert!(Instant::now() < deadline, "pg_restore never started");
        assert!(child.try_wait().unwrap().is_none(), "verify ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "verify ended before the signal"
    );
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "{}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopping pg_restore"),
        "the signal did not land in the restore step:\n{}",
        output_text(&out)
    );
    assert!(
        verify_dbs(pg, &db.name).is_empty(),
        "temp database left after signal {signal}: {:?}",
        verify_dbs(pg, &db.name)
    );
    let restoring = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '{}\\_verify\\_%'",
            db.name
        ),
    );
    assert_eq!(restoring, "0", "pg_restore sessions left behind");
}

#[test]
fn verify_sigterm_during_restore_leaves_no_temp_db() {
    interrupt_verify(libc::SIGTERM, 143);
}

#[test]
fn verify_sigint_during_restore_leaves_no_temp_db() {
    interrupt_verify(libc::SIGINT, 130);
}

#[test]
fn verify_with_the_server_down_fails_naming_it() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify down", 0.05);
    let port = support::free_port();
    let (out, report) = run_json(verify_cmd(&db, &dump, &[]).env(
        "DATABASE_URL",
        format!("postgresql://postgres:x@127.0.0.1:{port}/app"),
    ));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "pass");
    assert_eq!(status(&report, "temp database created"), "fail");
    assert!(detail(&report, "temp database created").contains(&format!("127.0.0.1:{port}")));
    assert_eq!(status(&report, "restore succeeded"), "skip");
}

#[test]
fn verify_schema_and_data_backups_skip_what_they_cannot_hold() {
    let pg = pg16();
    let db = pg.fresh_db("verify modes");
    db.load_fixture(0.05);
    let dir = Dir::new("verify-modes");
    let backup_mode = |mode: &str| {
        let out = support::pgbak(pg)
            .args([
                "backup",
                "--no-s3",
                "--json",
                "--mode",
                mode,
                "--output-dir",
            ])
            .arg(&dir)
            .env("DATABASE_URL", db.url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(summary["dump"].as_str().unwrap())
    };
    let schema = backup_mode("schema");
    let (out, report) = run_json(&mut verify_cmd(&db, &schema, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(status(&report, "restore succeeded"), "pass");
    assert_eq!(status(&report, "expected tables present"), "pass");
    assert_eq!(status(&report, "row counts match"), "skip");
    assert_eq!(status(&report, "alembic revision matches"), "skip");

    let data = backup_mode("data");
    let (out, report) = run_json(&mut verify_cmd(&db, &data, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "pass");
    assert_eq!(status(&report, "archive readable"), "pass");
    assert_eq!(status(&report, "restore succeeded"), "skip");
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_ephemeral_no_cleanup_leaves_the_cluster_with_a_working_removal_command() {
    let pg = pg16();
    let db = pg.fresh_db("verify eph keep");
    db.load_fixture(0.05);
    let dir = Dir::new("verify-eph-keep");
    let pg16_bin = paths().pg16_bin.clone();
    let dump = backup_with(&db, &dir, Some(&pg16_bin));
    let tmp = Dir::new("verify-eph-keep-tmp");
    let (out, report) = run_json(
        verify_cmd(&db, &dump, &["--ephemeral", "--no-cleanup"])
            .env("PGBAK_PG_BIN_DIR", &pg16_bin)
            .env("TMPDIR", &tmp),
    );
    assert_all_pass(&out, &report);
    let left = report["left_in_place"].as_str().unwrap().to_owned();
    let cluster: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert_eq!(cluster.len(), 1, "{left}");
    let cluster_dir = cluster[0].path();
    assert!(left.contains(&cluster_dir.display().to_string()), "{left}");
    assert!(
        cluster_dir.join(".s.PGSQL.5432").exists(),
        "the server still runs"
    );
    let remove = left
        .split("remove it with: ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    let status = Command::new("sh").arg("-c").arg(&remove).status().unwrap();
    assert!(status.success(), "{remove}");
    assert!(
        !cluster_dir.exists(),
        "{remove} left {}",
        cluster_dir.display()
    );
}

#[test]
fn verify_after_sigkill_the_next_run_drops_the_leftover_but_not_a_kept_one() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify sigkill", 0.5);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &["--no-cleanup"]));
    assert_all_pass(&out, &report);
    let kept = report["temp_database"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1100));

    let mut child = verify_cmd(&db, &dump, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Into the restore: the temp database exists and is marked as this run's.
    let restoring = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore' \
         AND datname LIKE '{}\\_verify\\_%'",
        db.name
    );
    while pg.psql("postgres", &restoring) == "0" {
        assert!(Instant::now() < deadline, "the restore never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = verify_dbs(pg, &db.name);
    assert_eq!(left.len(), 2, "SIGKILL cannot clean up: {left:?}");

    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_all_pass(&out, &report);
    // This run drops the leftover (or a verify of another test on the shared
    // cluster did, sweeping the same way): either way it is gone.
    assert_eq!(verify_dbs(pg, &db.name), vec![kept.clone()]);
    pg.psql(
        "postgres",
        &format!("DROP DATABASE \"{kept}\" WITH (FORCE)"),
    );
}
