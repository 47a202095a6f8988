//! Backups of a streaming hot standby (made with `pg_basebackup -R -X stream`): unlogged
//! tables, recovery conflicts, `--pause-replay` resumed on every exit path, also by the next run
//! in another directory.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::bucket::{backup_dir, pgbak_s3_url};
use crate::support::{
    backup, dumps, files, output_text, pgbak, private_cluster, read_meta, run, s3, spawn_backup,
    standby_of, wait_for_blocked_dump, wait_for_lock, wait_until, Pg, TableLock,
};

fn only_meta(dir: &Path) -> Value {
    let names = dumps(dir);
    assert_eq!(names.len(), 1, "{:?}", files(dir));
    read_meta(&dir.join(names[0].replace(".dump", ".meta.json")))
}

/// `backup --pause-replay` of `db` on `standby` into `dir`, spawned and waited for until
/// replay is paused.
fn paused_backup(standby: &Pg, db: &str, dir: &Path) -> std::process::Child {
    let child = spawn_backup(
        standby,
        db,
        dir,
        &["--pause-replay", "--lock-wait-timeout", "60s"],
    );
    wait_until(Duration::from_secs(30), || pause_state(standby) == "paused");
    child
}

#[test]
fn trust_standby_backup_skips_unlogged_rows_and_verify_expects_exactly_that() {
    let primary = private_cluster(16);
    let db = primary.db_with(
        "standby unlogged",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g; \
         CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 50) g",
    );
    let standby = standby_of(&primary, "");
    standby.catch_up_with(&primary);
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(&standby, &db.name, tmp.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let meta = only_meta(tmp.path());
    assert_eq!(meta["standby"], Value::Bool(true), "{meta:#}");
    assert_eq!(
        meta["unlogged_tables_skipped"],
        serde_json::json!(["public.scratch"]),
        "{meta:#}"
    );
    let rows = |name: &str| {
        meta["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["rows"].clone())
    };
    assert_eq!(rows("t"), Some(Value::from(1000)));
    assert_eq!(rows("scratch"), Some(Value::from(0)), "what the dump holds");

    // Verify (restoring into the primary: a standby takes no writes) expects
    // exactly that: the table present, its rows not.
    let dump = tmp.path().join(&dumps(tmp.path())[0]);
    let out = pgbak(&standby)
        .env("DATABASE_URL", standby.url(&db.name))
        .arg("verify")
        .arg(&dump)
        .args([
            "--expect-table",
            "public.t",
            "--expect-table",
            "public.scratch",
        ])
        .arg("--target-url")
        .arg(primary.url("postgres"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

/// Holds ACCESS EXCLUSIVE on `table` on the primary and waits until the standby
/// has replayed the lock: a pg_dump on the standby then waits for it.
fn hold_replicated_lock(primary: &Pg, standby: &Pg, db: &str, table: &str) -> TableLock {
    let lock = TableLock::hold(primary, db, table);
    primary.psql("postgres", "SELECT pg_switch_wal()");
    wait_for_lock(standby, db, table, Duration::from_secs(30));
    lock
}

#[test]
fn trust_standby_recovery_conflict_error_names_the_settings_and_pause_replay() {
    let primary = private_cluster(16);
    let db = primary.fresh_db("standby conflict");
    // pg_dump locks tables in oid order: a_first, then z_last.
    db.psql(
        "CREATE TABLE a_first AS SELECT g FROM generate_series(1, 100) g; \
         CREATE TABLE z_last AS SELECT g FROM generate_series(1, 100) g",
    );
    let standby = standby_of(
        &primary,
        "max_standby_streaming_delay = 0\nhot_standby_feedback = off",
    );
    standby.catch_up_with(&primary);
    let held = hold_replicated_lock(&primary, &standby, &db.name, "z_last");
    let tmp = tempfile::tempdir().unwrap();
    let child = spawn_backup(
        &standby,
        &db.name,
        tmp.path(),
        &["--lock-wait-timeout", "60s"],
    );
    wait_for_blocked_dump(&standby, &db.name);
    // Replaying this lock conflicts with pg_dump's lock on a_first: the
    // standby cancels the dump at once (max_standby_streaming_delay = 0).
    primary.psql(
        &db.name,
        "BEGIN; LOCK TABLE a_first IN ACCESS EXCLUSIVE MODE; COMMIT",
    );
    primary.psql("postgres", "SELECT pg_switch_wal()");
    let clock = Instant::now();
    let out = child.wait_with_output().unwrap();
    drop(held);
    assert!(clock.elapsed() < Duration::from_secs(50));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    for hint in [
        "hot_standby_feedback",
        "max_standby_streaming_delay",
        "--pause-replay",
    ] {
        assert!(last.contains(hint), "{hint} missing: {last}");
    }
    assert!(files(tmp.path()).is_empty(), "{:?}", files(tmp.path()));
}

fn pause_state(standby: &Pg) -> String {
    standby.psql("postgres", "SELECT pg_get_wal_replay_pause_state()")
}

#[test]
fn trust_pause_replay_is_resumed_on_success_error_sigterm_and_after_a_sigkill() {
    let primary = private_cluster(16);
    let db = primary.db_with_rows("pause replay", 100);
    let standby = standby_of(&primary, "");
    standby.catch_up_with(&primary);
    let tmp = tempfile::tempdir().unwrap();

    // Success: paused for the dump, resumed after.
    let out = backup(&standby, &db.name, tmp.path(), &["--pause-replay"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused WAL replay"));
    assert_eq!(pause_state(&standby), "not paused");

    // Error (a lock not granted in time): resumed.
    let held = hold_replicated_lock(&primary, &standby, &db.name, "t");
    let out = backup(
        &standby,
        &db.name,
        tmp.path(),
        &["--pause-replay", "--lock-wait-timeout", "2s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(pause_state(&standby), "not paused");

    // SIGTERM mid-dump: resumed, exit 143.
    let child = paused_backup(&standby, &db.name, tmp.path());
    wait_for_blocked_dump(&standby, &db.name);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert_eq!(pause_state(&standby), "not paused");

    // SIGKILL mid-dump: replay stays paused until the next run resumes it.
    let mut child = paused_backup(&standby, &db.name, tmp.path());
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pause_state(&standby), "paused");
    held.release();
    std::thread::sleep(Duration::from_millis(1100));
    let out = backup(&standby, &db.name, tmp.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(pause_state(&standby), "not paused");
}

#[test]
fn fleet_replay_paused_by_a_killed_run_is_resumed_by_the_next_run_in_another_directory() {
    let primary = private_cluster(16);
    let db = primary.db_with_rows("fleet replay", 100);
    let standby = standby_of(&primary, "");
    standby.catch_up_with(&primary);
    let server = s3();
    let bucket = server.fresh_bucket("fleet replay");
    let url = standby.url(&db.name);
    let pod = |dir: &Path| {
        let mut cmd = pgbak_s3_url(&standby, &url, server, &bucket, "replay/");
        cmd.args([
            "backup",
            "--pause-replay",
            "--lock-wait-timeout",
            "60s",
            "--output-dir",
        ])
        .arg(dir);
        cmd
    };

    let held = TableLock::hold(&primary, &db.name, "t");
    primary.psql("postgres", "SELECT pg_switch_wal()");
    wait_for_lock(&standby, &db.name, "t", Duration::from_secs(30));
    let first = backup_dir("fleet-replay-1");
    let mut child = pod(&first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), || {
        pause_state(&standby) == "paused"
    });
    wait_for_blocked_dump(&standby, &db.name);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pause_state(&standby), "paused");
    held.release();
    let _ = std::fs::remove_dir_all(&first);

    // Another pod, another (empty) directory, no --pause-replay: it finds the
    // marker in the bucket and resumes replay, so the released lock replays
    // and the dump is not left waiting for it.
    let second = backup_dir("fleet-replay-2");
    let out = run(pgbak_s3_url(&standby, &url, server, &bucket, "replay/")
        .args(["backup", "--lock-wait-timeout", "20s", "--output-dir"])
        .arg(&second));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(pause_state(&standby), "not paused");
    let _ = std::fs::remove_dir_all(&second);
    let _ = spawn_backup;
}
