//! The lock between cron runs: two runs of one database and mode never overlap (the second exits
//! 75, or waits with PGBAK_LOCK_WAIT), a full and a schema run do, a killed run's lock does not
//! block the next, and SIGTERM during the dump exits 143 with nothing half-written.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{assert_generic_alert, scrape, series, slow_to_restore};
use crate::support::cron::{cron, cron_case, down_url, metric, Dirs};
use crate::support::{
    lock_owned_by, output_text, pg16, pgbak, pgbak_bare, run, HttpListener, Pg, TableLock,
};

/// The server name the tests that take a group's lock themselves give their runs.
const LOCK_SERVER: &str = "lock-test";

/// The lock file of the `db` backups of `mode` in BACKUP_DIR, of a run named [`LOCK_SERVER`].
pub(crate) fn lock_path(dirs: &Dirs, db: &str, mode: &str) -> PathBuf {
    dirs.backups
        .join(format!(".pgbak-{db}_{mode}.{LOCK_SERVER}.lock"))
}

/// Waits until a lock of the `db` full backups (of any server) names `pid` as its owner.
pub(crate) fn wait_for_lock_owner(dirs: &Dirs, db: &str, pid: u32) {
    lock_owned_by(&dirs.backups, &format!(".pgbak-{db}_full."), pid);
}

/// A cron run of `db` held in its dump by a lock on `users` (its output dropped), once it
/// holds its group's lock: the lock on the table, and the run.
fn held_run(pg: &Pg, db: &str, dirs: &Dirs) -> (TableLock, Child) {
    let table_lock = TableLock::hold(pg, db, "users");
    let run = cron(pgbak(pg), dirs, &pg.url(db))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the first run");
    wait_for_lock_owner(dirs, db, run.id());
    (table_lock, run)
}

#[test]
fn cron_overlapping_runs_second_exits_75_first_completes() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron overlap", "overlap");
    let (table_lock, mut first) = held_run(pg, &db.name, &dirs);

    let started = Instant::now();
    let second = run(&mut cron(pgbak(pg), &dirs, &db.url()));
    assert_eq!(second.status.code(), Some(75), "{}", output_text(&second));
    assert!(started.elapsed() < Duration::from_secs(5), "exits at once");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("pid {}", first.id())) && stderr.contains("started 20"),
        "names the holder: {stderr}"
    );
    assert_eq!(
        dirs.logs().len(),
        2,
        "the skipped run says so in a log of its own"
    );

    table_lock.release();
    let status = first.wait().expect("waiting for the first run");
    assert_eq!(status.code(), Some(0));
    assert_eq!(dirs.dumps().len(), 1);
    assert_eq!(dirs.metas().len(), 1);
}

#[test]
fn cron_lock_held_by_another_process_is_reported() {
    // The lock as another program would hold it: flock on the file, owner written.
    let dirs = Dirs::new("held");
    std::fs::create_dir_all(&dirs.backups).unwrap();
    let path = lock_path(&dirs, "enterprise_agents", "full");
    let mut file = std::fs::File::create(&path).unwrap();
    file.try_lock().expect("the test takes the lock");
    write!(file, "pid=4242\nstarted=2026-11-25T02:00:00Z\n").unwrap();
    let out = run(cron(pgbak_bare(), &dirs, &down_url()).env("PGBAK_SERVER_NAME", LOCK_SERVER));
    assert_eq!(out.status.code(), Some(75), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid 4242, started 2026-11-25T02:00:00Z"));
    // The skip is visible: its own log line and the skip counter of its group.
    let (_, text) = dirs.only_log();
    assert!(text.contains("skipped"), "{text}");
    let samples = dirs.samples();
    assert_eq!(metric(&samples, "pgbak_runs_skipped_total", &[]), 1.0);
    std::fs::remove_dir_all(&dirs.logs).unwrap();
    drop(file);
    let out = run(&mut cron(pgbak_bare(), &dirs, &down_url()));
    assert_eq!(
        out.status.code(),
        Some(1),
        "unlocked: the run starts (and fails: server down)"
    );
}

#[test]
fn cron_killed_run_does_not_block_the_next() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron killed", "killed");
    let (table_lock, mut first) = held_run(pg, &db.name, &dirs);
    first.kill().expect("SIGKILL");
    first.wait().expect("reaping the killed run");
    table_lock.release();

    let out = run(&mut cron(pgbak(pg), &dirs, &db.url()));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(dirs.dumps().len(), 1, "{:?}", dirs.dumps());
    assert_eq!(dirs.metas().len(), 1);
    assert!(
        dirs.partials().is_empty(),
        "the killed run's partial was cleaned: {:?}",
        dirs.partials()
    );
}

#[test]
fn cron_sigterm_during_the_dump_exits_143_alerts_and_leaves_no_partial() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron sigterm", "sigterm");
    let hook = HttpListener::ok();
    let table_lock = TableLock::hold(pg, &db.name, "users");
    let child = cron(pgbak(pg), &dirs, &db.url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the run");
    wait_for_lock_owner(&dirs, &db.name, child.id());
    // Wait until the dump has started (its partial file exists), then stop the run as systemd would.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dirs.partials().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!dirs.partials().is_empty(), "the dump never started");
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("waiting for the run");
    table_lock.release();
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(dirs.dumps().is_empty() && dirs.metas().is_empty() && dirs.partials().is_empty());
    let (log, text) = dirs.only_log();
    assert!(text.contains("SIGTERM"), "{text}");
    let requests = hook.wait_for(1, Duration::from_secs(5));
    assert_generic_alert(
        &requests[0],
        "PostgreSQL backup interrupted",
        &log,
        "backup",
    );
    assert!(requests[0].json()["detail"]
        .as_str()
        .unwrap_or("")
        .contains("SIGTERM"));
}

#[test]
fn cron_full_and_schema_runs_overlap_and_a_second_full_is_skipped_visibly() {
    let pg = pg16();
    let db = slow_to_restore(pg, "cron overlap modes", 15);
    let dirs = Dirs::new("overlap-modes");
    let hook = HttpListener::ok();
    // The daily full, verifying (slow): it holds the full group's lock.
    let mut full = cron(pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("ALERT_WEBHOOK_URL", hook.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the full run");
    wait_for_lock_owner(&dirs, &db.name, full.id());

    // The weekly schema job runs meanwhile.
    let schema = run(cron(pgbak(pg), &dirs, &db.url())
        .args(["--mode", "schema"])
        .env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(schema.status.code(), Some(0), "{}", output_text(&schema));
    assert!(
        Dirs::files(&dirs.backups, ".dump")
            .iter()
            .any(|n| n.contains("_schema_")),
        "{:?}",
        dirs.dumps()
    );
    // A second full run is skipped: exit 75, an alert with status skipped, counted.
    let second = run(cron(pgbak(pg), &dirs, &db.url()).env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(second.status.code(), Some(75), "{}", output_text(&second));
    let alerts = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "one alert, for the skip");
    let body = alerts[0].json();
    assert_eq!(body["status"], "skipped");
    assert!(
        body["message"].as_str().unwrap_or("").contains("skipped"),
        "{body}"
    );
    let samples = scrape(&dirs);
    assert_eq!(
        series(&samples, "pgbak_runs_skipped_total", &db.name, "full"),
        Some(1.0)
    );
    assert!(series(
        &samples,
        "pgbak_last_skip_timestamp_seconds",
        &db.name,
        "full"
    )
    .is_some());
    assert_eq!(
        series(&samples, "pgbak_last_run_success", &db.name, "schema"),
        Some(1.0)
    );

    let status = full.wait().expect("waiting for the full run");
    assert_eq!(status.code(), Some(0));
    let samples = scrape(&dirs);
    assert_eq!(
        series(&samples, "pgbak_last_run_success", &db.name, "full"),
        Some(1.0)
    );
    assert_eq!(
        series(&samples, "pgbak_runs_skipped_total", &db.name, "full"),
        Some(1.0),
        "the count survives the next run"
    );
    assert_eq!(hook.requests().len(), 1, "no alert for the successes");
}

#[test]
fn cron_lock_wait_waits_for_the_holder_then_runs() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron lock wait", "lock-wait");
    std::fs::create_dir_all(&dirs.backups).unwrap();
    let path = lock_path(&dirs, &db.name, "full");
    let mut file = std::fs::File::create(&path).unwrap();
    file.try_lock().expect("the test takes the lock");
    write!(file, "pid=4242\nstarted=2026-11-25T02:00:00Z\n").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(file);
    });
    let started = Instant::now();
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("PGBAK_LOCK_WAIT", "2m")
        .env("PGBAK_SERVER_NAME", LOCK_SERVER));
    release.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting up to"),
        "it waited for the holder: {}",
        output_text(&out)
    );
    assert_eq!(dirs.dumps().len(), 1);
}
