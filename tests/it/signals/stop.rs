//! Stop signals outside the guarded steps: a SIGTERM while S3 retention, a
//! `pgbak check` or cron's alerting waits on a server that hangs ends the run
//! promptly with 143 and deletes nothing more.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::bucket::{backup_dir, pgbak_s3};
use crate::support::cron::{cron, down_url, parse_metrics, Dirs};
use crate::support::processes::{signal, wait_bounded};
use crate::support::{
    self, backup, dumps, output_text, pg16, pgbak, pgbak_bare, run, s3, HttpListener,
};

/// How long a stopped run may take to exit.
const PROMPT: Duration = Duration::from_secs(5);

fn sigterm(pid: u32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

/// Waits until `ready` holds (at most a minute).
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn trust_sigterm_while_the_alert_webhook_hangs_exits_143_promptly() {
    let dirs = Dirs::new("sigterm-alert");
    let hook = HttpListener::hang();
    let child = cron(pgbak_bare(), &dirs, &down_url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the run");
    // The run failed (no server) and is sending its alert to a receiver that never answers.
    wait_until("the alert", || !hook.requests().is_empty());
    sigterm(child.id());
    let (out, took) = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(took < PROMPT, "exited {took:?} after SIGTERM");
    let metrics = std::fs::read_to_string(&dirs.metrics).expect("the metrics file");
    let samples = parse_metrics(&metrics);
    assert!(
        samples
            .iter()
            .any(|(k, v)| k.starts_with("pgbak_last_run_exit_code") && *v == 143.0),
        "{metrics}"
    );
}

#[test]
fn trust_sigterm_while_s3_retention_hangs_exits_143_and_deletes_nothing_more() {
    let pg = pg16();
    let db = pg.db_with_rows("sigterm retention", 100);
    let server = s3();
    let bucket = server.fresh_bucket("sigtermretention");
    let dir = backup_dir("sigterm-retention");
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let first: Vec<String> = server
        .list_objects(&bucket, "p/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
    std::thread::sleep(Duration::from_millis(1100));

    // The next run's retention deletes the first backup; the store hangs on that.
    let link = support::proxy::SlowLink::new(server.port, 0);
    link.stall_requests_containing("?delete");
    let child = pgbak_s3(&db, server, &bucket, "p/")
        .env("S3_ENDPOINT_URL", link.endpoint())
        .args(["backup", "--keep", "1", "--output-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the backup");
    wait_until("the delete request", || link.stalled() > 0);
    let signalled = Instant::now();
    sigterm(child.id());
    let (out, _) = wait_bounded(child, Duration::from_secs(120));
    let took = signalled.elapsed();
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(took < PROMPT, "exited {took:?} after SIGTERM");
    let objects: Vec<String> = server
        .list_objects(&bucket, "p/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(objects.len(), 4, "nothing deleted: {objects:?}");
    assert!(first.iter().all(|k| objects.contains(k)), "{objects:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trust_sigterm_while_check_waits_on_a_hanging_store_exits_promptly() {
    let server = s3();
    let bucket = server.fresh_bucket("sigtermcheck");
    let link = support::proxy::SlowLink::new(server.port, 0);
    link.stall_requests_containing("list-type=2");
    let mut cmd = pgbak_bare();
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    let child = cmd
        .env("AWS_SECRET_ACCESS_KEY", crate::support::bucket::SECRET)
        .env("S3_ENDPOINT_URL", link.endpoint())
        .env("S3_BUCKET", &bucket)
        .args(["check", "--s3", "--backup-dir"])
        .arg(backup_dir("sigterm-check").join("none"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the check");
    wait_until("the listing", || link.stalled() > 0);
    let signalled = Instant::now();
    sigterm(child.id());
    let (out, _) = wait_bounded(child, Duration::from_secs(120));
    let took = signalled.elapsed();
    assert!(took < PROMPT, "exited {took:?} after SIGTERM");
    // Killed by the signal, or exiting 143 after it: a shell sees 143 either way.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.code() == Some(143) || out.status.signal() == Some(libc::SIGTERM),
        "{:?}: {}",
        out.status,
        output_text(&out)
    );
}

#[test]
fn trust_sigterm_during_retention_stops_further_deletions() {
    let pg = pg16();
    let db = pg.db_with_rows("sigterm retention", 10);
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // 3000 older backups of the group: copies of the real one under older names.
    let real = dumps(tmp.path())[0].clone();
    let real_meta = real.replace(".dump", ".meta.json");
    let meta_text = std::fs::read_to_string(tmp.path().join(&real_meta)).unwrap();
    let stamp = real
        .rsplit('_')
        .next()
        .unwrap()
        .trim_end_matches(".dump")
        .to_owned();
    let start = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y%m%dT%H%M%S").unwrap();
    let old = 3000;
    for i in 1..=old {
        let at = (start - chrono::Duration::minutes(i))
            .format("%Y%m%dT%H%M%S")
            .to_string();
        let name = real.replace(&stamp, &at);
        std::fs::copy(tmp.path().join(&real), tmp.path().join(&name)).unwrap();
        let meta = meta_text.replace(&real, &name);
        std::fs::write(tmp.path().join(name.replace(".dump", ".meta.json")), meta).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    let mut child = pgbak(pg)
        .env("DATABASE_URL", pg.url(&db.name))
        .args(["backup", "--keep", "1", "--output-dir"])
        .arg(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let deleting = line.contains("retention: deleting");
        seen.push(line);
        if deleting {
            signal(child.id(), libc::SIGTERM);
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{seen:?} {rest:?}");
    let deleted_after = rest
        .iter()
        .filter(|l| l.contains("retention: deleting"))
        .count();
    assert!(
        deleted_after < 50,
        "{deleted_after} deletions after SIGTERM: the run did not stop"
    );
    let left = dumps(tmp.path()).len();
    assert!(left > old as usize - 50, "only {left} backups left");
}
