//! `pgbak cron`: unattended runs against real PostgreSQL, with a real HTTP
//! listener as the alert webhook and heartbeat receiver.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    self, free_port, output_text, pg16, pgbak, pgbak_bare, scratch_dir, HttpListener, Pg, Request,
    PASSWORD,
};

/// The directories one cron run uses, removed on Drop.
pub(crate) struct Dirs {
    pub(crate) root: PathBuf,
    pub(crate) backups: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) metrics: PathBuf,
}

impl Dirs {
    pub(crate) fn new(hint: &str) -> Dirs {
        let root = scratch_dir(&format!("cron-{hint}"));
        Dirs {
            backups: root.join("backups"),
            logs: root.join("logs"),
            metrics: root.join("metrics/pgbak.prom"),
            root,
        }
    }

    /// Names of the files in `dir` ending in `suffix`, sorted.
    pub(crate) fn files(dir: &Path, suffix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    }

    pub(crate) fn dumps(&self) -> Vec<String> {
        Self::files(&self.backups, ".dump")
    }

    pub(crate) fn metas(&self) -> Vec<String> {
        Self::files(&self.backups, ".meta.json")
    }

    pub(crate) fn partials(&self) -> Vec<String> {
        Self::files(&self.backups, ".partial")
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        Self::files(&self.logs, ".log")
    }

    /// The only log file of the run, with its contents.
    pub(crate) fn only_log(&self) -> (PathBuf, String) {
        let logs = self.logs();
        assert_eq!(logs.len(), 1, "one log file per run: {logs:?}");
        let path = self.logs.join(&logs[0]);
        let text = std::fs::read_to_string(&path).expect("reading the run log");
        (path, text)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `pgbak cron` with the scripts' environment pointing into `dirs`.
pub(crate) fn cron(base: Command, dirs: &Dirs, database_url: &str) -> Command {
    let mut cmd = base;
    cmd.arg("cron")
        .env("DATABASE_URL", database_url)
        .env("BACKUP_DIR", &dirs.backups)
        .env("LOG_DIR", &dirs.logs)
        .env("METRICS_FILE", &dirs.metrics);
    cmd
}

/// A URL on a port nobody listens on: the server is down.
pub(crate) fn down_url() -> String {
    format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{}/enterprise_agents",
        free_port()
    )
}

pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running pgbak cron")
}

/// Asserts the generic body: exactly the seven fields plus `text`, for a failure of `message`.
fn assert_generic_alert(req: &Request, message: &str, log: &Path, step: &str) {
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    let obj = body.as_object().expect("alert body is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "detail",
            "event",
            "host",
            "message",
            "service",
            "status",
            "text",
            "timestamp"
        ],
        "{body}"
    );
    let host = host_name();
    assert_eq!(body["service"], "enterprise-agent-platform");
    assert_eq!(body["event"], "pg-backup");
    assert_eq!(body["status"], "failure");
    assert_eq!(body["host"], host.as_str());
    assert_eq!(body["message"], format!("{message} on {host}").as_str());
    let detail = body["detail"].as_str().expect("detail is a string");
    assert!(detail.starts_with("Mode: full | Duration: "), "{detail}");
    let duration = detail
        .strip_prefix("Mode: full | Duration: ")
        .and_then(|rest| rest.split_once("s |"))
        .map(|(secs, _)| secs);
    assert!(
        duration.is_some_and(|s| s.parse::<u64>().is_ok()),
        "duration in whole seconds: {detail}"
    );
    assert!(
        detail.contains(&format!("| Log: {} |", log.display())),
        "{detail}"
    );
    assert!(detail.contains(&format!("| Step: {step} |")), "{detail}");
    let ts = body["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ").is_ok(),
        "UTC timestamp: {ts}"
    );
    assert!(body["text"].as_str().is_some_and(|t| t.contains(message)));
}

/// Parses a Prometheus textfile: every line is `# HELP`, `# TYPE`, or
/// `name{labels} value`; returns `name{labels}` -> value.
pub(crate) fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                rest.split_once(' ').is_some(),
                "HELP needs name and text: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["gauge", "counter", "untyped", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_owned()), "TYPE given twice: {line}");
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "labels {labels}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (key, val) = pair.split_once('=').expect("label key=value");
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(
                    val.starts_with('"') && val.ends_with('"'),
                    "label value {val}"
                );
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate {series}"
        );
    }
    samples
}

/// The value of the one sample of `name` whose labels contain all of `labels`.
pub(crate) fn metric(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<_> = samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in {samples:?}");
    *found[0].1
}

/// Fake older backups of the same group: retention would delete them with BACKUP_KEEP=1.
pub(crate) fn seed_old_backups(dirs: &Dirs, db: &str) -> Vec<String> {
    std::fs::create_dir_all(&dirs.backups).expect("mkdir backups");
    let mut names = Vec::new();
    for ts in ["20200101T020000", "20200102T020000"] {
        for ext in ["dump", "meta.json"] {
            let name = format!("{db}_full_{ts}.{ext}");
            std::fs::write(dirs.backups.join(&name), b"old").expect("seeding a backup");
            names.push(name);
        }
    }
    names
}

#[test]
fn cron_server_down_exits_1_logs_and_alerts_without_pruning() {
    let dirs = Dirs::new("down");
    let hook = HttpListener::ok();
    let seeded = seed_old_backups(&dirs, "enterprise_agents");
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("BACKUP_KEEP", "1"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));

    let (log, text) = dirs.only_log();
    let log_name = log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        log_name.len() == "backup-20240315T020000.log".len() && log_name.starts_with("backup-20"),
        "{log_name}"
    );
    assert!(
        text.contains("127.0.0.1"),
        "the log names the server: {text}"
    );
    assert!(text.contains("failed at the backup step"), "{text}");
    assert!(
        text.lines()
            .all(|l| l.len() > 20 && l.as_bytes()[4] == b'-' && l.contains('T')),
        "every log line is timestamped: {text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed at the backup step"),
        "output also on stderr"
    );
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dirs.logs).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let requests = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1);
    assert_generic_alert(&requests[0], "PostgreSQL backup failed", &log, "backup");
    for (what, haystack) in [
        ("alert body", requests[0].body_text()),
        ("log", text.clone()),
        ("output", output_text(&out)),
    ] {
        assert!(
            !haystack.contains(PASSWORD),
            "password in the {what}: {haystack}"
        );
        assert!(!haystack.contains(&hook.url()), "webhook URL in the {what}");
    }

    // No backup was made, and retention did not touch the older ones.
    let mut left = Dirs::files(&dirs.backups, "");
    left.retain(|n| !n.starts_with('.'));
    let mut seeded = seeded;
    seeded.sort();
    assert_eq!(left, seeded);

    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
    assert_eq!(metric(&samples, "pgbak_last_run_success", &[]), 0.0);
    assert_eq!(
        metric(&samples, "pgbak_step_success", &["step=\"backup\""]),
        0.0
    );
}

#[test]
fn cron_slack_alert_carries_text_and_blocks() {
    let dirs = Dirs::new("slack");
    let hook = HttpListener::ok();
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("ALERT_WEBHOOK_FORMAT", "slack")
        .env("ALERT_SERVICE", "billing-db"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let body = hook.wait_for(1, Duration::from_secs(5))[0].json();
    // Slack incoming webhooks require `text` (or blocks); blocks must be valid Block Kit.
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("billing-db") && text.contains("PostgreSQL backup failed"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().expect("blocks");
    for block in blocks {
        let kind = block["type"].as_str().expect("block type");
        assert!(
            ["header", "section", "context", "divider"].contains(&kind),
            "{block}"
        );
    }
    let (log, _) = dirs.only_log();
    assert!(body.to_string().contains(&log.display().to_string()));
    assert!(!body.to_string().contains(PASSWORD));
}

#[test]
fn cron_pagerduty_alert_is_an_events_v2_trigger() {
    let dirs = Dirs::new("pd");
    let hook = HttpListener::new(&[202]);
    let key = "R0UTINGKEY0123456789abcdefABCDEF";
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("ALERT_WEBHOOK_FORMAT", "pagerduty")
        .env("PAGERDUTY_ROUTING_KEY", key));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let body = hook.wait_for(1, Duration::from_secs(5))[0].json();
    assert_eq!(body["routing_key"], key);
    assert_eq!(body["event_action"], "trigger");
    assert!(body["dedup_key"]
        .as_str()
        .is_some_and(|k| !k.is_empty() && k.len() <= 255));
    let p = &body["payload"];
    let host = host_name();
    assert!(p["summary"].as_str().is_some_and(|s| s
        .contains(&format!("PostgreSQL backup failed on {host}"))
        && s.len() <= 1024));
    assert_eq!(p["source"], host.as_str());
    assert!(
        ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or(""))
    );
    assert!(chrono::DateTime::parse_from_rfc3339(p["timestamp"].as_str().unwrap_or("")).is_ok());
    assert_eq!(p["custom_details"]["status"], "failure");
    assert_eq!(p["custom_details"]["step"], "backup");
    let (_, log) = dirs.only_log();
    assert!(!log.contains(key), "routing key in the log");
    assert!(!output_text(&out).contains(key));
}

#[test]
fn cron_pagerduty_without_routing_key_is_refused_before_anything() {
    let dirs = Dirs::new("pd-nokey");
    let hook = HttpListener::ok();
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("ALERT_WEBHOOK_FORMAT", "pagerduty"));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PAGERDUTY_ROUTING_KEY"));
    assert!(
        !dirs.logs.exists() && !dirs.backups.exists(),
        "nothing attempted"
    );
    assert!(hook.requests().is_empty());
}

#[test]
fn cron_alert_is_retried_after_500s() {
    let dirs = Dirs::new("retry");
    let hook = HttpListener::new(&[500, 500, 200]);
    let out = run(cron(pgbak_bare(), &dirs, &down_url()).env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let requests = hook.wait_for(3, Duration::from_secs(5));
    assert_eq!(requests.len(), 3, "no attempt after the 200");
    assert_eq!(
        requests[0].body, requests[2].body,
        "the same alert each time"
    );
    let (log, text) = dirs.only_log();
    assert_generic_alert(&requests[2], "PostgreSQL backup failed", &log, "backup");
    assert!(
        text.contains("alert sent") && text.contains("3 attempt(s)"),
        "{text}"
    );
}

#[test]
fn cron_hanging_receiver_does_not_hold_the_run() {
    let dirs = Dirs::new("hang");
    let hook = HttpListener::hang();
    let started = Instant::now();
    let out = run(cron(pgbak_bare(), &dirs, &down_url()).env("ALERT_WEBHOOK_URL", hook.url()));
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run's own result: {}",
        output_text(&out)
    );
    assert!(
        took < Duration::from_secs(40),
        "the alert held the run for {took:?}"
    );
    assert!(!hook.requests().is_empty(), "the alert was attempted");
    let (_, text) = dirs.only_log();
    assert!(text.contains("sending the alert webhook failed"), "{text}");
    assert!(!text.contains(&hook.url()));
}

#[test]
fn cron_success_leaves_one_backup_one_log_calls_heartbeat_and_writes_metrics() {
    let pg = pg16();
    let db = pg.fresh_db("cron ok");
    db.load_fixture(0.05);
    let dirs = Dirs::new("ok");
    let hook = HttpListener::ok();
    let beat = HttpListener::ok();
    let heartbeat_url = format!("{}/ping/4f1c-uuid-token", beat.base_url());
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("HEARTBEAT_URL", &heartbeat_url)
        .env("BACKUP_KEEP", "3"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    assert_eq!(dirs.dumps().len(), 1, "{:?}", dirs.dumps());
    assert_eq!(dirs.metas().len(), 1);
    assert!(dirs.partials().is_empty());
    let (_, text) = dirs.only_log();
    assert!(text.contains("backup complete"), "{text}");
    assert!(
        !text.contains(PASSWORD) && !text.contains("4f1c-uuid-token"),
        "{text}"
    );

    let beats = beat.wait_for(1, Duration::from_secs(5));
    assert_eq!(beats.len(), 1);
    assert_eq!(beats[0].method, "GET");
    assert_eq!(beats[0].path, "/ping/4f1c-uuid-token");
    assert!(hook.requests().is_empty(), "no alert on success");

    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
    let db_label = format!("database=\"{}\"", db.name);
    assert_eq!(
        metric(&samples, "pgbak_last_run_success", &[&db_label]),
        1.0
    );
    for step in ["backup", "retention"] {
        let label = format!("step=\"{step}\"");
        assert_eq!(metric(&samples, "pgbak_step_success", &[&label]), 1.0);
        assert!(metric(&samples, "pgbak_step_duration_seconds", &[&label]) >= 0.0);
    }
    let size = std::fs::metadata(dirs.backups.join(&dirs.dumps()[0]))
        .unwrap()
        .len();
    assert_eq!(
        metric(&samples, "pgbak_last_backup_size_bytes", &[]),
        size as f64
    );
    let started = metric(&samples, "pgbak_last_run_start_timestamp_seconds", &[]);
    assert_eq!(
        metric(&samples, "pgbak_last_success_timestamp_seconds", &[]),
        started
    );
    assert!(metric(&samples, "pgbak_last_run_duration_seconds", &[]) > 0.0);
}

/// A psql session holding `ACCESS EXCLUSIVE` on a table until dropped: pg_dump
/// waits for it, so a cron run stays in its backup step as long as the test wants.
pub(crate) struct TableLock {
    child: Child,
}

impl TableLock {
    pub(crate) fn take(pg: &Pg, db: &str, table: &str) -> TableLock {
        let mut child = Command::new(pg.bin.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(format!(
                "host={} port={} user=postgres dbname={db}",
                pg.socket_dir.display(),
                pg.port
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting psql");
        let stdin = child.stdin.as_mut().expect("psql stdin");
        writeln!(
            stdin,
            "BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n\\echo locked"
        )
        .expect("writing to psql");
        stdin.flush().expect("flushing psql");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("psql stdout"))
            .read_line(&mut line)
            .expect("reading psql");
        assert_eq!(line.trim(), "locked");
        TableLock { child }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "COMMIT;");
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The lock file of the `db` backups of `mode` in BACKUP_DIR.
pub(crate) fn lock_path(dirs: &Dirs, db: &str, mode: &str) -> PathBuf {
    dirs.backups.join(format!(".pgbak-{db}_{mode}.lock"))
}

/// Waits until the lock of the `db` full backups names `pid` as its owner.
pub(crate) fn wait_for_lock_owner(dirs: &Dirs, db: &str, pid: u32) {
    let path = lock_path(dirs, db, "full");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&format!("pid={pid}\n"))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("pid {pid} never took the lock {}", path.display());
}

#[test]
fn cron_overlapping_runs_second_exits_75_first_completes() {
    let pg = pg16();
    let db = pg.fresh_db("cron overlap");
    db.load_fixture(0.05);
    let dirs = Dirs::new("overlap");
    let table_lock = TableLock::take(pg, &db.name, "users");
    let mut first = cron(pgbak(pg), &dirs, &db.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the first run");
    wait_for_lock_owner(&dirs, &db.name, first.id());

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

    drop(table_lock);
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
    let out = run(&mut cron(pgbak_bare(), &dirs, &down_url()));
    assert_eq!(out.status.code(), Some(75), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid 4242, started 2026-11-25T02:00:00Z"));
    // The skip is visible: its own log line and the skip counter of its group.
    let (_, text) = dirs.only_log();
    assert!(text.contains("skipped"), "{text}");
    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
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
    let db = pg.fresh_db("cron killed");
    db.load_fixture(0.05);
    let dirs = Dirs::new("killed");
    let table_lock = TableLock::take(pg, &db.name, "users");
    let mut first = cron(pgbak(pg), &dirs, &db.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the first run");
    wait_for_lock_owner(&dirs, &db.name, first.id());
    first.kill().expect("SIGKILL");
    first.wait().expect("reaping the killed run");
    drop(table_lock);

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
fn cron_verify_run_leaves_one_backup_one_log_no_temp_db_and_calls_heartbeat() {
    let pg = pg16();
    let db = pg.fresh_db("cron verify ok");
    db.load_fixture(0.05);
    let dirs = Dirs::new("verify-ok");
    let hook = HttpListener::ok();
    let beat = HttpListener::ok();
    let verify_dbs = || -> Vec<String> {
        pg.databases()
            .into_iter()
            .filter(|d| d.starts_with(&format!("{}_verify_", db.name)))
            .collect()
    };
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("HEARTBEAT_URL", beat.url()));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(dirs.dumps().len(), 1, "{:?}", dirs.dumps());
    assert_eq!(dirs.metas().len(), 1);
    assert!(dirs.partials().is_empty());
    let (_, text) = dirs.only_log();
    assert!(
        text.contains("PASS"),
        "the verify checks are in the log: {text}"
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dirs.backups.join(&dirs.metas()[0])).expect("reading meta.json"),
    )
    .expect("meta.json is JSON");
    assert_eq!(meta["verification"]["passed"], true, "{meta}");
    assert!(!text.contains(PASSWORD));
    assert!(
        verify_dbs().is_empty(),
        "temp databases left: {:?}",
        verify_dbs()
    );
    assert_eq!(beat.wait_for(1, Duration::from_secs(5)).len(), 1);
    assert!(hook.requests().is_empty());
    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
    assert_eq!(
        metric(&samples, "pgbak_step_success", &["step=\"verify\""]),
        1.0
    );
    assert_eq!(metric(&samples, "pgbak_last_run_success", &[]), 1.0);
}

#[test]
fn cron_verify_failure_alerts_and_skips_retention() {
    let pg = pg16();
    let db = pg.fresh_db("cron verify fail");
    db.load_fixture(0.05);
    // Verify restores into a server as a role that may not create the temporary database.
    let role = format!("nocreatedb_{}", std::process::id());
    let role_password = "r0le-Pa55word-x";
    pg.psql(
        "postgres",
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD '{role_password}'"),
    );
    let target = format!(
        "postgresql://{role}:{role_password}@127.0.0.1:{}/postgres",
        pg.port
    );
    let dirs = Dirs::new("verify-fail");
    let seeded = seed_old_backups(&dirs, &db.name);
    let hook = HttpListener::ok();
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("VERIFY_ON_BACKUP", "true")
        .env("PGBAK_VERIFY_TARGET_URL", &target)
        .env("BACKUP_KEEP", "1"));
    let _ = pg.try_psql("postgres", &format!("DROP ROLE IF EXISTS {role}"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let (log, text) = dirs.only_log();
    assert!(text.contains("FAIL"), "{text}");
    let requests = hook.wait_for(1, Duration::from_secs(5));
    assert_generic_alert(
        &requests[0],
        "PostgreSQL backup verification failed",
        &log,
        "verify",
    );
    let detail = requests[0].json()["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        detail.contains("temp database created"),
        "the failed check is named: {detail}"
    );
    for secret in [PASSWORD, role_password] {
        assert!(
            !requests[0].body_text().contains(secret),
            "password in the alert"
        );
        assert!(!text.contains(secret), "password in the log");
        assert!(
            !output_text(&out).contains(secret),
            "password in the output"
        );
    }
    // The new backup stays (it is complete); the older ones were not pruned.
    assert_eq!(dirs.dumps().len(), 3, "{:?}", dirs.dumps());
    for name in seeded {
        assert!(
            dirs.backups.join(&name).exists(),
            "{name} pruned after a failed verify"
        );
    }
    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
    assert_eq!(
        metric(&samples, "pgbak_step_success", &["step=\"verify\""]),
        0.0
    );
    assert!(
        !samples.keys().any(|k| k.contains("step=\"retention\"")),
        "retention did not run"
    );
}

#[test]
fn contrib_systemd_units_pass_systemd_analyze_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    let dir = scratch_dir("units");
    let contrib = support::repo_dir().join("contrib");
    let service = std::fs::read_to_string(contrib.join("pgbak.service")).expect("pgbak.service");
    assert!(service.contains("ExecStart=/usr/local/bin/pgbak cron --verify"));
    assert!(service.contains("EnvironmentFile=/etc/pgbak/pgbak.env"));
    assert!(service.contains("Type=oneshot"));
    // The unit names /usr/local/bin/pgbak; verify checks that it exists, so point it at this build.
    let service = service.replace("/usr/local/bin/pgbak", env!("CARGO_BIN_EXE_pgbak"));
    std::fs::write(dir.join("pgbak.service"), service).unwrap();
    let timer = std::fs::read_to_string(contrib.join("pgbak.timer")).expect("pgbak.timer");
    assert!(timer.contains("OnCalendar=*-*-* 02:00:00") && timer.contains("Persistent=true"));
    std::fs::write(dir.join("pgbak.timer"), timer).unwrap();
    // Documentation=man:pgbak(1) must resolve: install the generated page into a private MANPATH.
    std::fs::create_dir_all(dir.join("man/man1")).unwrap();
    let page = run(pgbak_bare().arg("man"));
    std::fs::write(dir.join("man/man1/pgbak.1"), &page.stdout).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "pgbak.service", "pgbak.timer"])
        .current_dir(&dir)
        .env("MANPATH", dir.join("man"))
        .output()
        .expect("running systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(out.stderr.is_empty(), "warnings: {}", output_text(&out));
}

#[test]
fn contrib_crontab_matches_the_scripts_line() {
    let text = std::fs::read_to_string(support::repo_dir().join("contrib/pgbak.crontab"))
        .expect("contrib/pgbak.crontab");
    // Kept, commented, for who wants the settings inline; the active line reads the env file.
    let line = text
        .lines()
        .find(|l| l.starts_with("#0 2 * * * DATABASE_URL="))
        .expect("the scripts' 02:00 line");
    for part in [
        "DATABASE_URL=",
        "BACKUP_DIR=",
        "BACKUP_KEEP=14",
        "VERIFY_ON_BACKUP=true",
        "pgbak cron",
        ">> /var/log/pg-backup/cron.log 2>&1",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn cron_sigterm_during_the_dump_exits_143_alerts_and_leaves_no_partial() {
    let pg = pg16();
    let db = pg.fresh_db("cron sigterm");
    db.load_fixture(0.05);
    let dirs = Dirs::new("sigterm");
    let hook = HttpListener::ok();
    let table_lock = TableLock::take(pg, &db.name, "users");
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
    drop(table_lock);
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
fn cron_failed_heartbeat_does_not_fail_a_good_run() {
    let pg = pg16();
    let db = pg.fresh_db("cron beat 404");
    db.load_fixture(0.05);
    let dirs = Dirs::new("beat404");
    let beat = HttpListener::new(&[404]);
    let out = run(cron(pgbak(pg), &dirs, &db.url()).env("HEARTBEAT_URL", beat.url()));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(beat.requests().len(), 1, "a 404 is not retried");
    let (_, text) = dirs.only_log();
    assert!(
        text.contains("the success heartbeat failed") && text.contains("404"),
        "{text}"
    );
    assert_eq!(dirs.dumps().len(), 1);
}

#[test]
fn cron_empty_variables_mean_their_defaults() {
    // A blank `KEY=` line in an environment file, as `${KEY:-default}` treated it in the scripts.
    let dirs = Dirs::new("empty-env");
    let mut cmd = cron(pgbak_bare(), &dirs, &down_url());
    for key in [
        "BACKUP_KEEP",
        "LOG_KEEP",
        "ALERT_WEBHOOK_URL",
        "ALERT_WEBHOOK_FORMAT",
        "ALERT_SERVICE",
        "PAGERDUTY_ROUTING_KEY",
        "HEARTBEAT_URL",
        "VERIFY_ON_BACKUP",
        "S3_BUCKET",
        "PGBAK_COMPRESS",
    ] {
        cmd.env(key, "");
    }
    let out = run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run starts: {}",
        output_text(&out)
    );
    let (_, text) = dirs.only_log();
    assert!(text.contains("keep last 7, verify off"), "{text}");
}

#[test]
fn cron_log_dir_that_cannot_be_created_alerts_the_setup_step() {
    let dirs = Dirs::new("bad-logdir");
    std::fs::create_dir_all(&dirs.root).unwrap();
    let blocker = dirs.root.join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let hook = HttpListener::ok();
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .env("LOG_DIR", blocker.join("logs"))
        .env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let body = hook.wait_for(1, Duration::from_secs(5))[0].json();
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(detail.contains("| Log: (none) | Step: setup |"), "{detail}");
    assert!(detail.contains("not-a-dir"), "{detail}");
    assert!(dirs.dumps().is_empty(), "no backup without a log");
    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
    assert_eq!(metric(&samples, "pgbak_last_run_success", &[]), 0.0);
}

#[test]
fn cron_verify_ephemeral_restores_into_a_throwaway_cluster() {
    let pg = pg16();
    let db = pg.fresh_db("cron verify eph");
    db.load_fixture(0.05);
    let dirs = Dirs::new("verify-eph");
    let verify_dbs = || -> Vec<String> {
        pg.databases()
            .into_iter()
            .filter(|d| d.starts_with(&format!("{}_verify_", db.name)))
            .collect()
    };
    // The throwaway cluster needs initdb/postgres (with pgvector): the PostgreSQL 16 tools.
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("PGBAK_PG_BIN_DIR", &pg.bin)
        .args(["--verify", "--verify-ephemeral"]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        verify_dbs().is_empty(),
        "nothing restored on the source server"
    );
    assert_eq!(dirs.dumps().len(), 1);
    let (_, text) = dirs.only_log();
    assert!(text.contains("PASS"), "{text}");
}

#[test]
fn cron_s3_down_alerts_the_upload_step_and_keeps_the_local_backup() {
    let pg = pg16();
    let db = pg.fresh_db("cron s3 down");
    db.load_fixture(0.05);
    let dirs = Dirs::new("s3-down");
    // Two complete older backups of the group (retention only deletes those).
    let mut seeded = Vec::new();
    for _ in 0..2 {
        let out = run(pgbak(pg)
            .env("DATABASE_URL", db.url())
            .args(["backup", "--no-s3", "--keep", "0", "--output-dir"])
            .arg(&dirs.backups));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(Duration::from_millis(1100));
    }
    seeded.extend(dirs.dumps());
    let hook = HttpListener::ok();
    let secret_key = "AWSs3cr3tKEY-never-printed";
    let started = Instant::now();
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("BACKUP_KEEP", "1")
        .env("S3_BUCKET", "pgbak-cron-down")
        .env(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(started.elapsed() < Duration::from_secs(120));
    let (log, text) = dirs.only_log();
    let requests = hook.wait_for(1, Duration::from_secs(5));
    assert_generic_alert(
        &requests[0],
        "PostgreSQL backup upload failed",
        &log,
        "upload",
    );
    for secret in [PASSWORD, secret_key] {
        assert!(!requests[0].body_text().contains(secret));
        assert!(!text.contains(secret));
        assert!(!output_text(&out).contains(secret));
    }
    // The local backup is complete, so local retention still ran (keep 1): a
    // failing store must not fill the disk. The run still failed and alerted.
    assert_eq!(dirs.dumps().len(), 1, "{:?}", dirs.dumps());
    assert_eq!(dirs.metas().len(), 1);
    for name in seeded {
        assert!(
            !dirs.backups.join(&name).exists(),
            "{name} kept: local retention skipped after a failed upload"
        );
    }
    let samples = parse_metrics(&std::fs::read_to_string(&dirs.metrics).expect("metrics file"));
    assert_eq!(
        metric(&samples, "pgbak_step_success", &["step=\"upload\""]),
        0.0
    );
    assert_eq!(
        metric(&samples, "pgbak_step_success", &["step=\"retention\""]),
        1.0,
        "local retention ran after the failed upload"
    );
}

#[test]
fn cron_uploads_to_s3_and_prunes_the_bucket_too() {
    let pg = pg16();
    let db = pg.fresh_db("cron s3 ok");
    db.load_fixture(0.05);
    let s3 = support::s3();
    let bucket = s3.fresh_bucket("cron");
    let dirs = Dirs::new("s3-ok");
    for _ in 0..2 {
        let mut cmd = cron(pgbak(pg), &dirs, &db.url());
        cmd.env("BACKUP_KEEP", "1")
            .env("S3_BUCKET", &bucket)
            .env("S3_PREFIX", "pg/");
        for (key, value) in s3.env() {
            cmd.env(key, value);
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    assert_eq!(dirs.dumps().len(), 1);
    let objects = s3.list_objects(&bucket, "pg/");
    let names: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(names.len(), 2, "one dump and its meta.json: {names:?}");
    assert!(
        names.contains(&format!("pg/{}", dirs.dumps()[0]).as_str()),
        "{names:?}"
    );
}

#[test]
fn cron_webhook_receiver_down_is_logged_without_its_token_and_keeps_the_exit_code() {
    let dirs = Dirs::new("hook-down");
    let token = "T0KEN-abc123-secret";
    let hook = format!("http://127.0.0.1:{}/services/{token}", free_port());
    let started = Instant::now();
    let out = run(cron(pgbak_bare(), &dirs, &down_url()).env("ALERT_WEBHOOK_URL", &hook));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(started.elapsed() < Duration::from_secs(40));
    let (_, text) = dirs.only_log();
    assert!(text.contains("sending the alert webhook failed"), "{text}");
    assert!(!text.contains(token), "{text}");
    assert!(!output_text(&out).contains(token));
}

/// `--all-databases` takes full backups only, in `pgbak cron` as in `pgbak backup`
/// (README, Disaster recovery): a schema-only run of every database could never be
/// rebuilt by `restore --all-databases`. Refused as a configuration error, the flag or
/// the variable alike.
#[test]
fn cron_all_databases_takes_full_backups_only() {
    let cases: [(&[&str], Option<&str>, i32); 4] = [
        (&["--all-databases", "--mode", "schema"], None, 2),
        (&["--mode", "data"], Some("true"), 2),
        (&["--all-databases"], None, 0),
        (&["--mode", "schema"], Some("false"), 0),
    ];
    for (args, variable, code) in cases {
        let dirs = Dirs::new("all-modes");
        let mut cmd = cron(pgbak_bare(), &dirs, &down_url());
        cmd.arg("--check-config").args(args);
        if let Some(value) = variable {
            cmd.env("PGBAK_ALL_DATABASES", value);
        }
        let out = run(&mut cmd);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?} {variable:?}: {}",
            output_text(&out)
        );
        assert!(dirs.dumps().is_empty() && dirs.logs().is_empty());
    }
}
