//! Faults during a backup: the server dying, a cut connection, a full disk (at the dump and at
//! the meta.json write), SIGINT, SIGTERM and SIGKILL mid-dump, a held lock, a hung run. Each
//! proves a guarantee of the README: no `.dump` without its complete meta.json, nothing
//! half-written left, no older backup lost.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::faults::spawn_blocked_backup;
use crate::support::{
    self, assert_only, backup, dumps, earlier_backup, files, output_text, pg16, pgbak,
    wait_for_blocked_dump, wait_no_pg_dump, Pg, TableLock, Tmpfs,
};

#[test]
fn server_dying_mid_dump_leaves_nothing_and_prunes_nothing() {
    let pg = support::private_cluster(16);
    let db = pg.db_with_rows("dies", 1000);
    let tmp = tempfile::tempdir().unwrap();
    let earlier = earlier_backup(&pg, &db.name, tmp.path());

    let lock = TableLock::hold(&pg, &db.name, "t");
    let child = pgbak(&pg)
        .env("DATABASE_URL", pg.url(&db.name))
        .args(["backup", "--keep", "1", "--output-dir"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_blocked_dump(&pg, &db.name);
    assert!(files(tmp.path()).iter().any(|f| f.ends_with(".partial")));
    pg.stop();
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    assert_only(tmp.path(), &earlier);
    pg.start();
}

#[test]
fn a_full_disk_leaves_nothing_and_prunes_nothing() {
    let Some(tmpfs) = Tmpfs::mount("1m") else {
        return;
    };
    let pg = pg16();
    let db = pg.fresh_db("disk_full");
    let earlier = earlier_backup(pg, &db.name, &tmpfs.path());
    db.load_fixture(0.05);
    let out = backup(pg, &db.name, &tmpfs.path(), &["--keep", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(
        err.trim().lines().last().unwrap().matches("ERROR").count(),
        1
    );
    assert_only(&tmpfs.path(), &earlier);
}

/// Starts `pgbak backup --keep 1` of `db` into `dir` and returns once pg_dump
/// is inside its snapshot, blocked on the lock the caller holds.
fn start_blocked_backup(pg: &Pg, db: &str, dir: &Path) -> Child {
    spawn_blocked_backup(pg, db, dir, &["--keep", "1"])
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn sigint_and_sigterm_during_the_dump_leave_nothing_behind() {
    let pg = pg16();
    let db = pg.db_with_rows("signals_dump", 100);
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
        // And pgbak's own session (its catalog reads wait for the same lock) is not left
        // queued for it either.
        let waiting = pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
                 AND application_name = 'pgbak' AND wait_event_type = 'Lock'",
                db.name
            ),
        );
        assert_eq!(
            waiting, "0",
            "pgbak's catalog read still waits for the lock"
        );
        drop(lock);
    }
}

#[test]
fn after_sigkill_the_next_run_cleans_up_and_succeeds() {
    let pg = pg16();
    let db = pg.db_with_rows("sigkill_dump", 100);
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
    let db = pg.db_with_rows("cut_connection", 100);
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
    let db = pg.db_with(
        "meta_disk_full",
        "CREATE TABLE t AS SELECT g, repeat('x', 50) AS s FROM generate_series(1, 2000) g",
    );
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
fn trust_a_held_access_exclusive_lock_fails_after_lock_wait_timeout_naming_table_and_pid() {
    let pg = pg16();
    let db = pg.db_with(
        "held lock",
        "CREATE TABLE busy AS SELECT g FROM generate_series(1, 100) g",
    );
    let tmp = tempfile::tempdir().unwrap();
    let lock = TableLock::hold(pg, &db.name, "busy");
    let holder = pg.psql(
        "postgres",
        "SELECT pid FROM pg_locks WHERE relation = (SELECT oid FROM pg_class WHERE relname = 'busy' LIMIT 1) \
         AND mode = 'AccessExclusiveLock' AND granted LIMIT 1",
    );
    let clock = Instant::now();
    let out = backup(pg, &db.name, tmp.path(), &["--lock-wait-timeout", "2s"]);
    let took = clock.elapsed();
    drop(lock);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("busy"), "names the table: {last}");
    assert!(
        last.contains(&format!("pid {holder}")),
        "names the pid {holder}: {last}"
    );
    assert!(last.contains("--lock-wait-timeout"), "{last}");
    assert!(files(tmp.path()).is_empty(), "nothing half-written");
}

#[test]
fn trust_timeout_bounds_a_hung_run_and_leaves_nothing() {
    let pg = pg16();
    let db = pg.db_with_rows("run timeout", 100);
    let tmp = tempfile::tempdir().unwrap();
    let lock = TableLock::hold(pg, &db.name, "t");
    let clock = Instant::now();
    let out = backup(
        pg,
        &db.name,
        tmp.path(),
        &["--timeout", "3s", "--lock-wait-timeout", "10m"],
    );
    let took = clock.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--timeout"), "{stderr}");
    assert!(files(tmp.path()).is_empty(), "nothing half-written");
    // pg_dump was stopped with the run: no session of it waits on the lock.
    wait_no_pg_dump(pg, &db.name, Duration::from_secs(10));
    drop(lock);
}
