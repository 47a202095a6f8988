//! Fault injection during a backup: signals, a cut connection, a full disk at
//! the meta.json write, hostile names. Each proves a guarantee of the README:
//! no `.dump` without its complete meta.json, nothing half-written left, no
//! older backup lost.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::{
    assert_only, backup, dumps, earlier_backup, files, output_text, pg16, pgbak, read_meta,
    sha256_hex, spawn_backup, wait_for_blocked_dump, wait_no_pg_dump, wait_until, Pg, TableLock,
    Tmpfs,
};

/// Starts `pgbak backup --keep 1` of `db` into `dir` and returns once pg_dump
/// is inside its snapshot, blocked on the lock the caller holds.
fn start_blocked_backup(pg: &Pg, db: &str, dir: &Path) -> Child {
    let child = spawn_backup(pg, db, dir, &["--keep", "1"]);
    wait_for_blocked_dump(pg, db);
    child
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn sigint_and_sigterm_during_the_dump_leave_nothing_behind() {
    let pg = pg16();
    let db = pg.fresh_db("signals_dump");
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let tmp = tempfile::tempdir().unwrap();
    let earlier = earlier_backup(pg, &db.name, tmp.path());
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let lock = TableLock::hold(pg, &db.name, "t");
        let child = start_blocked_backup(pg, &db.name, tmp.path());
        assert!(files(tmp.path()).iter().any(|f| f.ends_with(".partial")));
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", output_text(&out));
        assert_only(tmp.path(), &earlier);
        // pg_dump cancelled its query: its session leaves the server.
        wait_no_pg_dump(pg, &db.name, Duration::from_secs(5));
        drop(lock);
    }
}

#[test]
fn after_sigkill_the_next_run_cleans_up_and_succeeds() {
    let pg = pg16();
    let db = pg.fresh_db("sigkill_dump");
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let tmp = tempfile::tempdir().unwrap();
    let earlier = earlier_backup(pg, &db.name, tmp.path());
    let lock = TableLock::hold(pg, &db.name, "t");
    let mut child = start_blocked_backup(pg, &db.name, tmp.path());
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lock);
    // A killed run cannot clean up: its partial file stays, but no .dump appears.
    let partials: Vec<String> = files(tmp.path())
        .into_iter()
        .filter(|f| f.ends_with(".partial"))
        .collect();
    assert_eq!(partials.len(), 1, "{:?}", files(tmp.path()));
    assert_eq!(dumps(tmp.path()), vec![earlier.clone()]);

    let out = backup(pg, &db.name, tmp.path(), &["--keep", "1"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let left = files(tmp.path());
    assert!(!left.iter().any(|f| f.ends_with(".partial")), "{left:?}");
    assert_eq!(dumps(tmp.path()).len(), 1);
    assert!(
        !left.contains(&earlier),
        "keep 1 pruned the older one after success"
    );
}

#[test]
fn a_cut_connection_mid_dump_fails_cleanly() {
    let pg = pg16();
    let db = pg.fresh_db("cut_connection");
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let tmp = tempfile::tempdir().unwrap();
    let earlier = earlier_backup(pg, &db.name, tmp.path());
    let lock = TableLock::hold(pg, &db.name, "t");
    let child = start_blocked_backup(pg, &db.name, tmp.path());
    pg.psql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND application_name = 'pg_dump'",
            db.name
        ),
    );
    let out = child.wait_with_output().unwrap();
    drop(lock);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump failed"), "{err}");
    assert_only(tmp.path(), &earlier);
}

/// Free bytes on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct for a valid NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    stat.f_bavail as u64 * stat.f_frsize as u64
}

#[test]
fn a_full_disk_at_the_meta_json_write_leaves_no_dump() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let pg = pg16();
    let db = pg.fresh_db("meta_disk_full");
    db.psql("CREATE TABLE t AS SELECT g, repeat('x', 50) AS s FROM generate_series(1, 2000) g");
    let dir = tmpfs.path();
    let earlier = earlier_backup(pg, &db.name, &dir);
    let dump_size = std::fs::metadata(dir.join(&earlier)).unwrap().len();
    // Leave room for exactly the dump's pages and the group lock's owner line
    // (one page): the meta.json write is what fails.
    let page = 4096;
    let room = dump_size.div_ceil(page) * page + page;
    let filler = dir.join("filler");
    let fill = free_bytes(&dir) - room;
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();
    let free = free_bytes(&dir);
    assert!(free >= dump_size + page && free < dump_size + 2 * page);

    let out = backup(pg, &db.name, &dir, &["--keep", "1"]);
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("meta.json"),
        "the meta.json write failed: {err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert_only(&dir, &earlier);
}

#[test]
fn hostile_database_schema_and_table_names_are_quoted_everywhere() {
    let pg = pg16();
    let name = "odd db \"name\"; drop table x; -- ü";
    let db = pg.create_db_named(name);
    db.psql(
        "CREATE SCHEMA \"sch \"\"q\"\" ;\";
         CREATE TABLE \"sch \"\"q\"\" ;\".\"tab; DROP TABLE t --\" (\"wert ü\" int);
         INSERT INTO \"sch \"\"q\"\" ;\".\"tab; DROP TABLE t --\" SELECT generate_series(1, 42);
         CREATE TABLE \"Ünïcödé\" AS SELECT 1 AS x",
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &["--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let names = dumps(tmp.path());
    assert_eq!(names.len(), 1);
    assert!(
        names[0]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
        "{names:?}"
    );
    let meta = read_meta(&tmp.path().join(names[0].replace(".dump", ".meta.json")));
    assert_eq!(meta["database"], name);
    assert_eq!(meta["sha256"], sha256_hex(&tmp.path().join(&names[0])));
    let tables = meta["tables"].as_array().unwrap();
    let odd = tables
        .iter()
        .find(|t| t["name"] == "tab; DROP TABLE t --")
        .expect("the odd table is listed");
    assert_eq!(odd["schema"], "sch \"q\" ;");
    assert_eq!(odd["rows"], 42);
    assert!(tables
        .iter()
        .any(|t| t["name"] == "Ünïcödé" && t["rows"] == 1));
}

#[test]
fn verify_as_a_role_without_createdb_points_to_target_url_and_ephemeral() {
    let pg = pg16();
    let db = pg.fresh_db("no_createdb");
    db.psql("CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let role = format!("ro_{}", db.name);
    pg.psql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'ro-pass-123'"),
    );
    let url = format!(
        "postgresql://{role}:ro-pass-123@127.0.0.1:{}/{}",
        pg.port, db.name
    );
    let out = pgbak(pg)
        .env("DATABASE_URL", &url)
        .args(["verify", "--json", "--backup-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    pg.psql("postgres", &format!("DROP ROLE {role}"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "temp database created")
        .unwrap();
    assert_eq!(check["status"], "fail");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("CREATEDB"), "{detail}");
    assert!(
        detail.contains("--target-url") && detail.contains("--ephemeral"),
        "{detail}"
    );
}

/// The verify databases of `db` on `pg`.
fn verify_dbs(pg: &Pg, db: &str) -> Vec<String> {
    pg.databases()
        .into_iter()
        .filter(|d| d.starts_with(&format!("{db}_verify_")))
        .collect()
}

/// A private cluster holding the fixture at scale 0.5 and a backup of it in
/// `dir`: big enough that a restore of it takes a few seconds.
fn cluster_with_backup(dir: &Path) -> (crate::support::OwnedCluster, String) {
    let pg = crate::support::private_cluster(16);
    let db = "restore_source".to_owned();
    pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    pg.load_fixture(&db, 0.5);
    let out = backup(&pg, &db, dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    (pg, db)
}

/// Runs `pgbak <args> --backup-dir dir` against `db`, stops the server once
/// pg_restore is connected, and returns the run's output.
fn stop_server_mid_restore(pg: &Pg, db: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let child = pgbak(pg)
        .env("DATABASE_URL", pg.url(db))
        .args(args)
        .arg("--backup-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'",
        ) != "0"
    });
    pg.stop();
    child.wait_with_output().unwrap()
}

#[test]
fn server_stopped_mid_restore_fails_and_the_next_verify_removes_the_leftover() {
    let tmp = tempfile::tempdir().unwrap();
    let (pg, db) = cluster_with_backup(tmp.path());
    let out = stop_server_mid_restore(&pg, &db, &["verify", "--json"], tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", output_text(&out)));
    assert_eq!(report["passed"], false);
    pg.start();
    // The server was down, so the run could not drop its database; the next run does.
    // (The failed run recorded its verdict: picking that backup again takes --include-failed.)
    let out = pgbak(&pg)
        .env("DATABASE_URL", pg.url(&db))
        .args(["verify", "--include-failed", "--backup-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        verify_dbs(&pg, &db).is_empty(),
        "{:?}",
        verify_dbs(&pg, &db)
    );
}

#[test]
fn restore_with_the_server_stopped_mid_restore_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (pg, db) = cluster_with_backup(tmp.path());
    // The newest backup of the database, restored into itself.
    let out = stop_server_mid_restore(
        &pg,
        &db,
        &["restore", "--no-confirm", "--create-db"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_meta_json_left_by_a_killed_retention_is_removed_by_the_next_run() {
    let pg = pg16();
    let db = pg.fresh_db("orphan_meta");
    db.psql("CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().unwrap();
    let earlier = earlier_backup(pg, &db.name, tmp.path());
    // Retention deletes the dump first, then its meta.json: a kill in between leaves this.
    std::fs::remove_file(tmp.path().join(&earlier)).unwrap();
    let orphan = earlier.replace(".dump", ".meta.json");
    assert!(tmp.path().join(&orphan).exists());
    let out = backup(pg, &db.name, tmp.path(), &["--keep", "3"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let left = files(tmp.path());
    assert!(!left.contains(&orphan), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
}

/// A tiny deterministic generator, so a failing soak can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    ServerDown,
    VerifyFails,
}

fn names_with(dir: &Path, suffix: &str) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(suffix))
        .collect()
}

#[test]
fn soak_thirty_cron_runs_with_random_faults() {
    let pg = pg16();
    let db = pg.fresh_db("soak");
    // verify expects the 13 application tables.
    db.load_fixture(0.01);
    let root = tempfile::tempdir().unwrap();
    let (backups, logs) = (root.path().join("backups"), root.path().join("logs"));
    let hook = crate::support::HttpListener::ok();
    let seed = 20261125;
    let mut rng = Lcg(seed);
    let down = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/{}",
        crate::support::PASSWORD,
        crate::support::free_port(),
        db.name
    );
    // The model: the backups that must exist, oldest first.
    let mut expected: Vec<String> = Vec::new();
    let mut failures = 0;
    for run in 0..30 {
        let fault = match rng.next() % 10 {
            0 | 1 => Fault::ServerDown,
            2 => Fault::VerifyFails,
            _ => Fault::None,
        };
        let before = names_with(&backups, ".dump");
        let mut cmd = pgbak(pg);
        cmd.arg("cron")
            .env("BACKUP_DIR", &backups)
            .env("LOG_DIR", &logs)
            .env("BACKUP_KEEP", "3")
            .env("VERIFY_ON_BACKUP", "true")
            .env("ALERT_WEBHOOK_URL", hook.url())
            .env(
                "DATABASE_URL",
                if fault == Fault::ServerDown {
                    down.clone()
                } else {
                    pg.url(&db.name)
                },
            );
        if fault == Fault::VerifyFails {
            cmd.env("PGBAK_VERIFY_TARGET_URL", &down);
        }
        let out = cmd.output().unwrap();
        let after = names_with(&backups, ".dump");
        let made: Vec<String> = after
            .iter()
            .filter(|n| !before.contains(n))
            .cloned()
            .collect();
        match fault {
            Fault::None => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "run {run} (seed {seed}): {}",
                    output_text(&out)
                );
                assert_eq!(made.len(), 1, "run {run}");
                expected.push(made[0].clone());
                let keep = expected.len().saturating_sub(3);
                expected.drain(..keep);
            }
            Fault::ServerDown => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "run {run}: {}",
                    output_text(&out)
                );
                assert!(made.is_empty(), "run {run}");
                failures += 1;
            }
            Fault::VerifyFails => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "run {run}: {}",
                    output_text(&out)
                );
                // The dump is complete, just not proven: kept, and no retention ran.
                assert_eq!(made.len(), 1, "run {run}");
                expected.push(made[0].clone());
                failures += 1;
            }
        }
        assert_eq!(
            names_with(&backups, ".dump"),
            expected,
            "run {run} ({fault:?}, seed {seed})"
        );
        assert!(names_with(&backups, ".partial").is_empty(), "run {run}");
        assert_eq!(names_with(&backups, ".meta.json").len(), expected.len());
    }
    assert!(failures > 0, "the seed injected no fault");
    assert_eq!(names_with(&logs, ".log").len(), 30, "one log per run");
    let alerts = hook.wait_for(failures, Duration::from_secs(10));
    assert_eq!(alerts.len(), failures, "every failed run alerted once");
    for alert in &alerts {
        let body = alert.json();
        assert_eq!(body["status"], "failure");
        assert!(!alert.body_text().contains(crate::support::PASSWORD));
    }
    for dump in &expected {
        let out = pgbak(pg)
            .env("DATABASE_URL", pg.url(&db.name))
            .arg("verify")
            .arg(backups.join(dump))
            .output()
            .unwrap();
        assert!(out.status.success(), "{dump}: {}", output_text(&out));
    }
}
