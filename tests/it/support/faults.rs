//! Holding a run in the middle and breaking its surroundings, deterministically:
//! a table lock pg_dump blocks on, waits for what the server shows, a tiny
//! tmpfs that fills up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Pg, PASSWORD};

/// A session that holds an ACCESS EXCLUSIVE lock on `table` until released:
/// pg_dump blocks on it, which holds a dump "in the middle" deterministically.
pub struct TableLock {
    child: std::process::Child,
}

impl TableLock {
    pub fn hold(pg: &Pg, db: &str, table: &str) -> TableLock {
        let mut child = psql_session(pg, db).spawn().unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;").unwrap();
        writeln!(stdin, "SELECT pg_sleep(0);").unwrap();
        stdin.flush().unwrap();
        let lock = TableLock { child };
        wait_for_lock(pg, db, table, Duration::from_secs(10));
        lock
    }

    pub fn release(mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        let _ = writeln!(stdin, "COMMIT;");
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql as the superuser over TCP to `db`, reading its statements from stdin (piped), its
/// output discarded, with nothing of the test's environment: a session a test holds open.
pub fn psql_session(pg: &Pg, db: &str) -> Command {
    let mut cmd = Command::new(pg.bin.join("psql"));
    cmd.env_clear()
        .env("PGPASSWORD", PASSWORD)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-U", "postgres", "-p"])
        .arg(pg.port.to_string())
        .arg("-d")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    cmd
}

/// Polls `ok` every 50 ms until it holds; fails the test after `timeout`.
pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `pgbak backup` of `db` into `dir` (see [`super::spawn_backup`]) and waits until its
/// pg_dump waits on a lock in `db` (a [`TableLock`] the test holds): a run held mid-dump.
pub fn spawn_blocked_backup(pg: &Pg, db: &str, dir: &Path, extra: &[&str]) -> Child {
    let child = super::spawn_backup(pg, db, dir, extra);
    wait_for_blocked_dump(pg, db);
    child
}

/// Waits until pg_dump waits on a lock in `db` on `pg` (it has imported the
/// snapshot by then).
pub fn wait_for_blocked_dump(pg: &Pg, db: &str) {
    wait_until(Duration::from_secs(30), || {
        pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND application_name = 'pg_dump' AND wait_event_type = 'Lock'"
            ),
        ) == "1"
    });
}

/// Waits until `pg` shows an ACCESS EXCLUSIVE lock on `table` granted (on a
/// standby: once it has replayed the primary's lock).
pub fn wait_for_lock(pg: &Pg, db: &str, table: &str, timeout: Duration) {
    wait_until(timeout, || {
        pg.psql(
            db,
            &format!(
                "SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass \
                 AND mode = 'AccessExclusiveLock' AND granted"
            ),
        ) == "1"
    });
}

/// Waits until no pg_dump session is left in `db` (a stopped run cancelled its query).
pub fn wait_no_pg_dump(pg: &Pg, db: &str, timeout: Duration) {
    wait_until(timeout, || {
        pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND application_name = 'pg_dump'"
            ),
        ) == "0"
    });
}

/// A small tmpfs (root only) that is unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        if !super::is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        if !status.success() {
            eprintln!("skipped: mount -t tmpfs failed");
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("backups")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
