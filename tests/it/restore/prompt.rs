//! The typed confirmation of `pgbak restore` and of `pgbak restore --all-databases`, on a real
//! pseudo-terminal (util-linux `script`): Ctrl-C at either prompt ends the run at once with
//! exit 130 and nothing changed on the target, as `--timeout` does (exit 1); a wrong name is
//! exit 2. One prompt serves both commands, so both react alike.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::staging_copies;
use crate::support::processes::on_terminal;
use crate::support::roles::has_role;
use crate::support::runs::run_id_of_backup;
use crate::support::verify::{fixture_backup, Dir};
use crate::support::{pg16, private_cluster, Pg};

/// A pgbak command line running on a pseudo-terminal, its output collected as it comes.
struct OnTerminal {
    child: Child,
    keys: ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl OnTerminal {
    /// `pgbak ARGS` under `script`, with `DATABASE_URL=url` and the client tools of `pg`.
    fn start(pg: &Pg, url: &str, args: &str) -> OnTerminal {
        let mut child = on_terminal(pg, url, args)
            .stderr(Stdio::null())
            .spawn()
            .expect("running script(1)");
        let keys = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            child,
            keys,
            screen,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits (at most `limit`) until the terminal shows `text`.
    fn wait_for(&mut self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.screen().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ended ({status}) before showing {text:?}:\n{}",
                    self.screen()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} within {limit:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `keys` on the terminal.
    fn type_keys(&mut self, keys: &[u8]) {
        self.keys.write_all(keys).unwrap();
        self.keys.flush().unwrap();
    }

    /// The exit code, waiting at most `limit`, and how long the wait took.
    fn exit_code(mut self, limit: Duration) -> (Option<i32>, Duration, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), started.elapsed(), self.screen());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("still running after {limit:?}:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The target after a stopped `restore --create-db`: its one table, and no staging copy of it
/// (other tests' restores may hold theirs on the same server meanwhile).
fn untouched(pg: &Pg, db: &crate::support::TestDb<'_>) {
    assert_eq!(
        db.psql("SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"),
        "marker"
    );
    assert!(staging_copies(db).is_empty(), "{:?}", pg.databases());
}

#[test]
fn ctrl_c_at_the_restore_prompt_stops_it_and_changes_nothing() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "prompt ctrl-c", 0.05);
    let target = pg.fresh_db("prompt ctrl-c target");
    target.psql("CREATE TABLE marker (x int)");
    let args = format!(
        "restore {} --create-db --allow-other-database",
        dump.display()
    );
    let mut term = OnTerminal::start(pg, &target.url(), &args);
    term.wait_for("Type the database name", Duration::from_secs(60));
    term.type_keys(b"\x03");
    let (code, took, screen) = term.exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(130), "{screen}");
    assert!(took < Duration::from_secs(5), "{took:?} after Ctrl-C");
    assert!(screen.contains("interrupted by SIGINT"), "{screen}");
    untouched(pg, &target);
}

#[test]
fn the_timeout_ends_a_prompt_nobody_answers() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "prompt timeout", 0.05);
    let target = pg.fresh_db("prompt timeout target");
    target.psql("CREATE TABLE marker (x int)");
    let args = format!(
        "--timeout 4s restore {} --create-db --allow-other-database",
        dump.display()
    );
    let mut term = OnTerminal::start(pg, &target.url(), &args);
    term.wait_for("Type the database name", Duration::from_secs(60));
    let (code, _, screen) = term.exit_code(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("--timeout"), "{screen}");
    untouched(pg, &target);
}

/// A server with one database `app` and a role of its own, backed up with
/// `--all-databases` into `dir`.
fn server_backed_up(dir: &Path) {
    let source = private_cluster(16);
    source.psql("postgres", "CREATE ROLE prompt_owner LOGIN");
    source.psql("postgres", "CREATE DATABASE app OWNER prompt_owner");
    source.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    run_id_of_backup(&source, dir, &[]);
}

#[test]
fn ctrl_c_at_the_rebuild_prompt_stops_it_and_changes_nothing() {
    let dir = Dir::new("prompt-rebuild");
    server_backed_up(&dir);
    let target = private_cluster(16);
    let args = format!("restore --all-databases --backup-dir {}", dir.display());
    let mut term = OnTerminal::start(&target, &target.url("postgres"), &args);
    term.wait_for("Type the host name", Duration::from_secs(120));
    term.type_keys(b"\x03");
    let (code, took, screen) = term.exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(130), "{screen}");
    assert!(took < Duration::from_secs(5), "{took:?} after Ctrl-C");
    assert!(screen.contains("interrupted by SIGINT"), "{screen}");
    let databases = target.databases();
    assert!(!databases.iter().any(|d| d == "app"), "{databases:?}");
    assert!(
        !databases.iter().any(|d| d == "pgbak_restore_journal"),
        "{databases:?}"
    );
    assert!(!has_role(&target, "prompt_owner"));

    // A wrong name is exit 2, nothing changed either.
    let mut term = OnTerminal::start(&target, &target.url("postgres"), &args);
    term.wait_for("Type the host name", Duration::from_secs(120));
    term.type_keys(b"not-this-host\n");
    let (code, _, screen) = term.exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{screen}");
    assert!(
        screen.contains("does not match the host name: nothing was restored"),
        "{screen}"
    );
    assert!(!target.databases().iter().any(|d| d == "app"));
}
