//! Leftover children (issue 12 item 5): a process marked `PGBAK_PARENT=<pid>:<start>` whose
//! pgbak is gone is stopped by the next run; one whose pgbak still runs is left alone. Real
//! processes: `pg_restore --list FIFO` blocks forever on a FIFO nobody opens for writing.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cron::down_url;
use crate::support::{self, output_text, pg16, pgbak};

/// Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot.
fn start_time(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    let rest = &text[text.rfind(')').expect("stat line") + 1..];
    rest.split_whitespace()
        .nth(22 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// The marker of a process that has exited: its pid and start time, recorded while it ran.
fn dead_marker() -> String {
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let marker = format!("{}:{}", child.id(), start_time(child.id()));
    child.kill().unwrap();
    child.wait().unwrap();
    marker
}

/// `pg_restore --list FIFO` with `marker` in its environment: it blocks in open(2).
fn blocked_pg_restore(bin: &Path, fifo: &Path, marker: &str) -> Child {
    Command::new(bin.join("pg_restore"))
        .arg("--list")
        .arg(fifo)
        .env("PGBAK_PARENT", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting pg_restore")
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn children_left_by_a_dead_pgbak_are_stopped_by_the_next_run_and_live_ones_are_not() {
    let pg = pg16();
    let dir = support::scratch_dir("children");
    let (fifo_dead, fifo_live) = (dir.join("dead.fifo"), dir.join("live.fifo"));
    mkfifo(&fifo_dead);
    mkfifo(&fifo_live);
    let mut leftover = blocked_pg_restore(&pg.bin, &fifo_dead, &dead_marker());
    // This test process is alive: its marker must protect its child.
    let own = format!("{}:{}", std::process::id(), start_time(std::process::id()));
    let mut protected = blocked_pg_restore(&pg.bin, &fifo_live, &own);
    // Any pgbak run sweeps every marked process of a dead pgbak, so a run of a test
    // beside this one may stop the leftover first: either way it is the sweep that stops
    // it, and only the sweep sends SIGTERM (asserted below). The protected one must live.
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = leftover.try_wait().unwrap() {
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    }

    // Any run that starts children sweeps first; this verify has no backup to verify.
    let out = pgbak(pg)
        .env("DATABASE_URL", down_url())
        .args(["verify", "--backup-dir"])
        .arg(dir.join("no-backups"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = leftover.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the leftover pg_restore still runs: {}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(
        protected.try_wait().unwrap().is_none(),
        "the child of a live process was stopped: {}",
        output_text(&out)
    );
    protected.kill().unwrap();
    protected.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
