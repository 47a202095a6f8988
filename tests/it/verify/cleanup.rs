//! Where verify restores and what it leaves: `--target-url`, `--ephemeral`, `--no-cleanup`, a
//! role without CREATEDB; SIGINT, SIGTERM, SIGKILL and a server stopped mid-restore leave no
//! temporary database the next run does not remove, and the sweep never drops a live run's.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::processes::{
    cluster_with_backup, processes_with, signal, stop_server_mid_restore,
};
use crate::support::verify::check_named;
use crate::support::verify::verify_dbs;
use crate::support::verify::wait_for_temp_db;
use crate::support::verify::{
    assert_all_pass, backup_with, fixture_backup, run_json, verify_cmd, Dir,
};
use crate::support::{self, backup, dumps, output_text, paths, pg16, pgbak, private_cluster, Pg};

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
    let db = pg.fixture_db("verify ephemeral", 0.05);
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
    // Into the restore step: pg_restore's sessions are connected to the temp database.
    let deadline = Instant::now() + Duration::from_secs(60);
    let temp = wait_for_temp_db(pg, &db.name, &mut child, deadline);
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
fn verify_ephemeral_no_cleanup_leaves_the_cluster_with_a_working_removal_command() {
    let pg = pg16();
    let db = pg.fixture_db("verify eph keep", 0.05);
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

#[test]
fn verify_as_a_role_without_createdb_points_to_target_url_and_ephemeral() {
    let pg = pg16();
    let db = pg.db_with("no_createdb", "CREATE TABLE t AS SELECT 1 AS x");
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
    let check = check_named(&report, "temp database created");
    assert_eq!(check["status"], "fail");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("CREATEDB"), "{detail}");
    assert!(
        detail.contains("--target-url") && detail.contains("--ephemeral"),
        "{detail}"
    );
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

/// A verify run stopped (SIGSTOP) after creating its temporary database, from
/// a binary named differently (so no `/proc` comm check could see it as
/// pgbak): another verify's sweep must leave its database alone.
#[test]
fn trust_the_temp_db_sweep_never_drops_a_live_runs_database() {
    // A cluster of its own: a stopped client stalls CREATE/DROP DATABASE
    // cluster-wide while one of its connections is half-open.
    let cluster = support::private_cluster(16);
    let pg: &Pg = &cluster;
    let db = pg.fixture_db("live sweep", 0.3);
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = tmp.path().join(&dumps(tmp.path())[0]);
    let renamed = tmp.path().join("pgbak-live");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pgbak"), &renamed).unwrap();
    let mut live = Command::new(&renamed);
    for (k, v) in pgbak(pg).get_envs() {
        match v {
            Some(v) => live.env(k, v),
            None => live.env_remove(k),
        };
    }
    let mut child: Child = live
        .env("DATABASE_URL", pg.url(&db.name))
        .arg("verify")
        .arg(&dump)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("live.log")).unwrap())
        .spawn()
        .unwrap();
    let pattern = format!("{}\\_verify\\_%", db.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let temp = loop {
        let found = pg.psql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' \
                 AND shobj_description(oid, 'pg_database') LIKE 'pgbak verify: pid %'"
            ),
        );
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the live verify never created its database"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // Stopped while pg_restore runs: its own sessions are idle then.
    let dump_text = dump.to_string_lossy().into_owned();
    while processes_with(&["pg_restore", &dump_text, "--dbname"]).is_empty() {
        assert!(Instant::now() < deadline, "the live restore never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1100));
    let out = crate::support::run(&mut crate::support::verify::verify_cmd(&db, &dump, &[]));
    let still = pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{temp}'"),
    );
    signal(child.id(), libc::SIGCONT);
    let status = child.wait().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        still, "1",
        "the live run's {temp} was dropped by the other run's sweep"
    );
    assert!(
        status.success(),
        "the live verify failed: {status}: {}",
        std::fs::read_to_string(tmp.path().join("live.log")).unwrap_or_default()
    );
}
