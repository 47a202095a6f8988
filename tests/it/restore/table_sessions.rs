//! The sessions of a table restore (`restore --table`, pg_restore's script run by psql in one
//! transaction) on the server, as a whole restore's: a lock wait is bounded by
//! `--lock-wait-timeout` and names the blocking session, and SIGTERM ends the transaction on
//! the server before pgbak exits (a backend waiting for a lock does not notice its client is
//! gone, and would hold the locks it took until the wait ends).

use std::time::Duration;

use crate::support::faults::wait_until;
use crate::support::processes::{environ, processes_with};
use crate::support::runs::signal_when;
use crate::support::verify::{backup, Dir};
use crate::support::{output_text, pg16, restore_cmd, TableLock, TestDb};

/// A source with `items` (1000 rows) backed up, and a target holding an empty `items`.
fn items_backup(hint: &str) -> (Dir, std::path::PathBuf, TestDb<'static>) {
    let pg = pg16();
    let source = pg.db_with(
        &format!("{hint} source"),
        "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 1000)",
    );
    let dir = Dir::new(hint);
    let dump = backup(&source, &dir);
    let target = pg.db_with(&format!("{hint} target"), "CREATE TABLE items (id int)");
    (dir, dump, target)
}

/// The sessions on the server waiting for a lock in `target` (the test's lock holder is idle
/// in its transaction): the restore's.
fn restore_sessions(target: &TestDb<'_>) -> String {
    target.pg().psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            target.name
        ),
    )
}

/// A table restore of `items` with `way` into `target` while another session holds the table:
/// it must end within bounds, exit 1, name the holder and leave the table as it was.
fn restore_while_locked(hint: &str, way: &str) {
    let (_dir, dump, target) = items_backup(hint);
    target.psql("INSERT INTO items VALUES (-1)");
    let lock = TableLock::hold(target.pg(), &target.name, "items");
    let args = [
        "--table",
        "public.items",
        way,
        "--no-confirm",
        "--lock-wait-timeout",
        "2s",
    ];
    super::restore_past_a_lock(&target, &dump, &args, lock);
    assert_eq!(
        target.psql("SELECT string_agg(id::text, ',') FROM items"),
        "-1",
        "untouched"
    );
}

#[test]
fn table_restore_clean_lock_wait_is_bounded_and_names_the_blocking_session() {
    // psql's DROP TABLE waits: the watch cancels it and names the holder.
    restore_while_locked("table lockwait clean", "--clean");
}

#[test]
fn table_restore_data_only_lock_wait_is_bounded_and_names_the_blocking_session() {
    // pgbak's own count of the rows before the append waits: bounded the same way.
    restore_while_locked("table lockwait append", "--data-only");
}

/// SIGTERM to a table restore with `way` while it waits for `target`'s table lock; the exit
/// code and the sessions still waiting on the server once pgbak has exited.
fn sigterm_while_locked(hint: &str, way: &str) -> (Option<i32>, String) {
    let (_dir, dump, target) = items_backup(hint);
    let lock = TableLock::hold(target.pg(), &target.name, "items");
    let waiting = || restore_sessions(&target) != "0";
    let args = ["--table", "public.items", way, "--no-confirm"];
    let (out, _) = signal_when(
        restore_cmd(&target, &dump, &args),
        waiting,
        libc::SIGTERM,
        Duration::from_secs(60),
    );
    let left = restore_sessions(&target);
    drop(lock);
    assert_eq!(
        target.psql("SELECT count(*) FROM items"),
        "0",
        "rolled back"
    );
    (out.status.code(), left)
}

#[test]
fn table_restore_sigterm_ends_its_transaction_on_the_server() {
    let (code, left) = sigterm_while_locked("table sigterm", "--clean");
    assert_eq!(code, Some(143));
    assert_eq!(
        left, "0",
        "the restore's transaction still waits on the server after pgbak exited"
    );
}

#[test]
fn table_restore_sigterm_while_counting_before_an_append_exits_143_and_cancels_the_count() {
    // pgbak's own count of the rows before the append waits for the lock: a signal ends it
    // (it used to wait for the lock, deaf to signals), and the count is cancelled on the
    // server (it used to stay queued for the lock until the holder finished).
    let (code, left) = sigterm_while_locked("table sigterm append", "--data-only");
    assert_eq!(code, Some(143));
    assert_eq!(
        left, "0",
        "pgbak's count still waits for the lock on the server after pgbak exited"
    );
}

/// `PGOPTIONS` in the environment of the process whose command line holds every needle (the
/// first one: pg_restore's workers are its forks).
fn pgoptions_of(needles: &[&str]) -> String {
    let pids = processes_with(needles);
    assert!(!pids.is_empty(), "no process with {needles:?}");
    environ(pids[0])
        .iter()
        .find_map(|v| v.strip_prefix("PGOPTIONS=").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn restore_sessions_start_with_a_roles_timeouts_off() {
    // A role's 1 ms idle_in_transaction_session_timeout ended psql's single transaction while it
    // waited for pg_restore's first statements (the archive turns the timeouts off only there):
    // pg_restore and psql log in with them off, as pg_dump does. Each is held by a table lock
    // while its environment is read: psql running a table's script, pg_restore a data restore.
    let (dir, dump, target) = items_backup("startup options");
    let source = target.pg().db_with(
        "startup options data",
        "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 10)",
    );
    let data = crate::support::verify::backup_in_mode(&source, &dir, "data");
    let table = ["--table", "public.items", "--clean", "--no-confirm"];
    for (dump, args, needles) in [
        (&dump, &table[..], ["psql", "--single-transaction"]),
        (&data, &["--no-confirm"][..], ["pg_restore", "--jobs="]),
    ] {
        target.psql("TRUNCATE items");
        let lock = TableLock::hold(target.pg(), &target.name, "items");
        let child = restore_cmd(&target, dump, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let needles = [needles[0], needles[1], &target.name];
        wait_until(Duration::from_secs(30), || {
            !processes_with(&needles).is_empty() && restore_sessions(&target) != "0"
        });
        let options = pgoptions_of(&needles);
        lock.release();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        for off in [
            "statement_timeout=0",
            "lock_timeout=0",
            "idle_in_transaction_session_timeout=0",
        ] {
            assert!(options.contains(off), "{}: {options:?}", needles[0]);
        }
    }
}
