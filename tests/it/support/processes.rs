//! Processes a test watches or stops: a signal to a pid, the live processes whose command line
//! holds some words and their environment, a child waited for in bounded time, and a server stopped in the middle of a
//! restore.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{backup, output_text, pgbak, wait_until, Pg};

/// `pgbak ARGS` on a pseudo-terminal (util-linux `script`), with `DATABASE_URL=url` and the
/// client tools of `pg` (the harness's pg17 when installed); its input and output piped.
pub fn on_terminal(pg: &Pg, url: &str, args: &str) -> Command {
    let bin = super::paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg.bin.clone());
    let mut cmd = Command::new("script");
    cmd.arg("-qec")
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_pgbak")))
        .arg("/dev/null");
    super::clear_pg_env(&mut cmd);
    cmd.env("DATABASE_URL", url)
        .env("PGBAK_PG_BIN_DIR", bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub(crate) fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid the test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The environment `pid` started with (its `/proc/<pid>/environ`), as `NAME=value` strings;
/// empty when it is gone.
pub fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Pids of live processes whose command line contains every one of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        // Zombies have an empty command line: they are dead already.
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !text.is_empty() && needles.iter().all(|n| text.contains(n)) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits for `child` (output piped) at most `limit`: past that it is killed
/// and the test fails. Returns its output and how long it ran.
pub(crate) fn wait_bounded(child: Child, limit: Duration) -> (Output, Duration) {
    let clock = Instant::now();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out.expect("waiting for pgbak"), clock.elapsed()),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let out = rx.recv().expect("the waiter").expect("waiting for pgbak");
            panic!("pgbak still ran after {limit:?}: {}", output_text(&out));
        }
    }
}

/// A private cluster holding the fixture at scale 0.5 and a backup of it in
/// `dir`: big enough that a restore of it takes a few seconds.
pub(crate) fn cluster_with_backup(dir: &Path) -> (crate::support::OwnedCluster, String) {
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
pub(crate) fn stop_server_mid_restore(
    pg: &Pg,
    db: &str,
    args: &[&str],
    dir: &Path,
) -> std::process::Output {
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
