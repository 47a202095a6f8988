//! Issue 22 item 9 / issue 24 item 6: the directory restore and verify download an S3 backup
//! into (`$TMPDIR/pgbak-fetch-*`) is 0700 and marked with its run; when that run is killed
//! (SIGKILL: nothing of its own can clean up), the next run removes the leftover with its
//! dump, but never a live run's directory, another user's, or a symlink.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fetch_dirs;
use crate::support::bucket::pgbak_s3;
use crate::support::verify::Dir;
use crate::support::{self, output_text, pg16, s3, wait_until, TestDb};

/// A TCP listener that accepts connections and never answers: a database server that hangs
/// pgbak right after its download, for as long as the test wants.
struct BlackHole {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let held: Mutex<Vec<TcpStream>> = Mutex::default();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => held.lock().unwrap().push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        BlackHole { port, stop }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `restore --from-s3` of `db`'s newest backup into a server that never answers: it downloads
/// the backup into `tmp`, then hangs connecting.
fn hanging_restore(db: &TestDb<'_>, bucket: &str, tmp: &Path, hole: &BlackHole) -> Child {
    pgbak_s3(db, s3(), bucket, "p/")
        .args(["restore", "--from-s3", "--no-confirm"])
        .env(
            "DATABASE_URL",
            format!("postgresql://postgres@127.0.0.1:{}/{}", hole.port, db.name),
        )
        .env("TMPDIR", tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for a new fetch directory (not in `known`) that holds the whole download: the dump
/// and its meta.json (written once the checksum matched).
fn wait_for_download(tmp: &Path, known: &[PathBuf]) -> PathBuf {
    let mut found = None;
    wait_until(Duration::from_secs(60), || {
        found = fetch_dirs(tmp).into_iter().find(|d| {
            !known.contains(d)
                && support::files(d).iter().any(|f| f.ends_with(".meta.json"))
                && support::files(d).iter().any(|f| f.ends_with(".dump"))
        });
        found.is_some()
    });
    found.unwrap()
}

/// A run that sweeps (`backup` of `db`, local only) with `TMPDIR=tmp`.
fn sweeping_run(db: &TestDb<'_>, tmp: &Path, dir: &Path) {
    let out = support::backup_cmd(db.pg(), &db.name, dir, &["--no-s3"])
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

/// This process's pid namespace number (pgbak's children share it).
fn pid_namespace() -> String {
    let link = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let text = link.to_string_lossy().into_owned();
    text.trim_start_matches("pid:[")
        .trim_end_matches(']')
        .to_owned()
}

#[test]
fn fetch_sweep_a_killed_runs_download_is_removed_by_the_next_run_and_nothing_else() {
    let db = pg16().db_with(
        "fetch sweep",
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 500)",
    );
    let bucket = s3().fresh_bucket("fetch-sweep");
    let dir = Dir::new("fetch-sweep");
    let out = pgbak_s3(&db, s3(), &bucket, "p/")
        .args(["backup", "--output-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let tmp = Dir::new("fetch-sweep-tmp");
    let hole = BlackHole::start();

    // A restore killed after its download: its directory is private, and stays behind.
    let mut killed = hanging_restore(&db, &bucket, &tmp, &hole);
    let leftover = wait_for_download(&tmp, &[]);
    let meta = std::fs::symlink_metadata(&leftover).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        leftover.display()
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(leftover.is_dir());

    // A live run's download, another user's directory and a symlink, all named for dead runs
    // where they can be.
    let mut live = hanging_restore(&db, &bucket, &tmp, &hole);
    let live_dir = wait_for_download(&tmp, std::slice::from_ref(&leftover));
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let ns = pid_namespace();
    let others = tmp.join(format!("pgbak-fetch-{ns}-{dead_pid}-1-others"));
    std::fs::create_dir(&others).unwrap();
    if support::is_root() {
        let (uid, gid) = support::postgres_ids();
        std::os::unix::fs::chown(&others, Some(uid), Some(gid)).unwrap();
    }
    let target = Dir::new("fetch-sweep-link-target");
    std::fs::write(target.join("keep"), "keep").unwrap();
    let link = tmp.join(format!("pgbak-fetch-{ns}-{dead_pid}-1-link"));
    std::os::unix::fs::symlink(&*target, &link).unwrap();

    sweeping_run(&db, &tmp, &dir);
    assert!(!leftover.exists(), "the killed run's download is removed");
    assert!(live_dir.is_dir(), "the live run's download stays");
    assert!(support::files(&live_dir)
        .iter()
        .any(|f| f.ends_with(".dump")));
    assert!(link.is_symlink() && target.join("keep").is_file());
    if support::is_root() {
        assert!(others.is_dir(), "another user's directory stays");
    }
    live.kill().unwrap();
    live.wait().unwrap();
    sweeping_run(&db, &tmp, &dir);
    assert!(!live_dir.exists());
}
