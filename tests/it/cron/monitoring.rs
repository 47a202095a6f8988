//! What monitoring sees of cron: the heartbeat (healthchecks.io's `/start`, success with the
//! run's summary, `/fail` with the error; the plain convention's one GET after a success), the
//! metrics textfile with one series per database and mode, and `--check-config`, which reports
//! nothing anywhere.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::{down_url_of, scrape, series};
use crate::support::cron::{cron, cron_case, down_url, Dirs};
use crate::support::{output_text, pg16, pgbak, pgbak_bare, run, HttpListener, Request, PASSWORD};

const TOKEN: &str = "hc-4f1c-uuid-token";

/// (method, path) of each request, in arrival order.
fn lines(requests: &[Request]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

fn pair(method: &str, path: &str) -> (String, String) {
    (method.to_owned(), path.to_owned())
}

/// Waits for `n` requests, then a moment more to see that no further one comes.
fn exactly(listener: &HttpListener, n: usize) -> Vec<Request> {
    listener.wait_for(n, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    listener.requests()
}

/// No secret of the run in a ping: not the database password, not the ping URL's token.
fn assert_no_secret(body: &str) {
    for secret in [PASSWORD, TOKEN, "postgresql://"] {
        assert!(!body.contains(secret), "{secret} in the body: {body}");
    }
}

#[test]
fn cron_heartbeat_healthchecks_start_success_with_summary_and_fail_with_the_error() {
    let pg = pg16();
    let db = pg.fixture_db("cron heartbeat hc", 0.05);
    let beat = HttpListener::ok();
    let url = format!("{}/ping/{TOKEN}", beat.base_url());
    let base = format!("/ping/{TOKEN}");

    // A good run: /start, then the URL itself with the summary.
    let dirs = Dirs::new("hc-ok");
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("HEARTBEAT_URL", &url)
        .env("HEARTBEAT_KIND", "healthchecks"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let got = exactly(&beat, 2);
    assert_eq!(
        lines(&got),
        [pair("GET", &format!("{base}/start")), pair("POST", &base)]
    );
    let summary = got[1].body_text();
    let dump = &dirs.dumps()[0];
    assert!(
        summary.contains("succeeded") && summary.contains(dump.as_str()),
        "{summary}"
    );
    assert!(summary.contains("steps: backup"), "{summary}");
    assert_no_secret(&summary);
    let (_, log) = dirs.only_log();
    assert!(!log.contains(TOKEN), "the URL is a secret: {log}");

    // A run whose server is down: /start, then /fail with the one-line error.
    let beat = HttpListener::ok();
    let url = format!("{}/ping/{TOKEN}", beat.base_url());
    let dirs = Dirs::new("hc-fail");
    let out = run(cron(pgbak(pg), &dirs, &down_url())
        .env("HEARTBEAT_URL", &url)
        .env("HEARTBEAT_KIND", "healthchecks"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let got = exactly(&beat, 2);
    assert_eq!(
        lines(&got),
        [
            pair("GET", &format!("{base}/start")),
            pair("POST", &format!("{base}/fail"))
        ]
    );
    let error = got[1].body_text();
    assert!(error.contains("failed at the backup step"), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
    assert_no_secret(&error);

    // A configuration error: no /start (the run never began), /fail naming the variable.
    let beat = HttpListener::ok();
    let url = format!("{}/ping/{TOKEN}", beat.base_url());
    let dirs = Dirs::new("hc-config");
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .env("HEARTBEAT_URL", &url)
        .env("HEARTBEAT_KIND", "healthchecks")
        .env("BACKUP_KEEP", "abc"));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let got = exactly(&beat, 1);
    assert_eq!(lines(&got), [pair("POST", &format!("{base}/fail"))]);
    assert!(got[0].body_text().contains("BACKUP_KEEP"), "{got:?}");
    assert!(dirs.dumps().is_empty());
}

#[test]
fn cron_heartbeat_plain_is_one_get_after_a_success_and_nothing_after_a_failure() {
    let pg = pg16();
    let db = pg.fixture_db("cron heartbeat plain", 0.05);
    let beat = HttpListener::ok();
    // `auto` (the default) is plain for anything but hc-ping.com.
    let url = format!("{}/ping/{TOKEN}?status=up", beat.base_url());
    let dirs = Dirs::new("plain-ok");
    let out = run(cron(pgbak(pg), &dirs, &db.url()).env("HEARTBEAT_URL", &url));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let got = exactly(&beat, 1);
    assert_eq!(
        lines(&got),
        [pair("GET", &format!("/ping/{TOKEN}?status=up"))]
    );
    assert!(got[0].body.is_empty());

    let dirs = Dirs::new("plain-fail");
    let out = run(cron(pgbak(pg), &dirs, &down_url())
        .env("HEARTBEAT_URL", &url)
        .env("HEARTBEAT_KIND", "plain"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(beat.requests().len(), 1, "nothing more after a failure");
}

/// `--check-config` runs nothing: a bad setting is printed and exits 2, and is
/// neither alerted, pinged, logged nor counted (an operator is at the terminal).
#[test]
fn cron_check_config_with_a_bad_setting_exits_2_and_reports_it_nowhere_else() {
    let hook = HttpListener::ok();
    let beat = HttpListener::ok();
    for (name, value) in [("BACKUP_KEEP", "abc"), ("VERIFY_ON_BACKUP", "yes-please")] {
        let dirs = Dirs::new("check-config");
        let out = run(cron(pgbak_bare(), &dirs, &down_url())
            .arg("--check-config")
            .env("ALERT_WEBHOOK_URL", hook.url())
            .env("HEARTBEAT_URL", beat.url())
            .env("HEARTBEAT_KIND", "healthchecks")
            .env(name, value));
        assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(name),
            "{name}: {}",
            output_text(&out)
        );
        assert!(dirs.logs().is_empty(), "{name}: no run log");
        assert!(!dirs.metrics.exists(), "{name}: no metrics");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
    assert!(beat.requests().is_empty(), "{:?}", beat.requests());
}

#[test]
fn cron_metrics_keep_one_series_per_database_and_mode_across_runs() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron metrics modes", "metrics-modes");
    let name = db.name.as_str();
    let cmd = |mode: &str, ok: bool| {
        let url = if ok { db.url() } else { down_url_of(name) };
        // One server name: the down URL's port stands for the same server, unreachable.
        let out = run(cron(pgbak(pg), &dirs, &url)
            .args(["--mode", mode])
            .env("PGBAK_SERVER_NAME", "metrics-db"));
        assert_eq!(
            out.status.code(),
            Some(if ok { 0 } else { 1 }),
            "{}",
            output_text(&out)
        );
        scrape(&dirs)
    };
    let last_success =
        |s: &HashMap<_, f64>, mode| series(s, "pgbak_last_success_timestamp_seconds", name, mode);
    let started =
        |s: &HashMap<_, f64>, mode| series(s, "pgbak_last_run_start_timestamp_seconds", name, mode);

    // Full OK.
    let s = cmd("full", true);
    let full_ok = started(&s, "full").expect("full run start");
    assert_eq!(last_success(&s, "full"), Some(full_ok));
    // Schema fails: the full series stays, schema has no success yet.
    let s = cmd("schema", false);
    assert_eq!(last_success(&s, "full"), Some(full_ok));
    assert_eq!(last_success(&s, "schema"), None);
    assert_eq!(
        series(&s, "pgbak_last_run_success", name, "schema"),
        Some(0.0)
    );
    assert_eq!(
        series(&s, "pgbak_last_run_success", name, "full"),
        Some(1.0)
    );
    // Full fails: its last success is still the first run's.
    let s = cmd("full", false);
    assert_eq!(last_success(&s, "full"), Some(full_ok));
    assert_eq!(
        series(&s, "pgbak_last_run_success", name, "full"),
        Some(0.0)
    );
    // Schema OK: its own success time, the full one untouched.
    let s = cmd("schema", true);
    let schema_ok = started(&s, "schema").expect("schema run start");
    assert_eq!(last_success(&s, "schema"), Some(schema_ok));
    assert_eq!(last_success(&s, "full"), Some(full_ok));
    // Full fails again: a weekly schema success never resets the daily full's alert.
    let s = cmd("full", false);
    assert_eq!(last_success(&s, "full"), Some(full_ok));
    assert_eq!(last_success(&s, "schema"), Some(schema_ok));
    assert_eq!(
        series(&s, "pgbak_last_run_exit_code", name, "full"),
        Some(1.0)
    );
    assert!(
        s.keys()
            .all(|(_, labels)| labels.iter().any(|(k, v)| k == "database" && v == name)),
        "every series names the database: {s:?}"
    );

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dirs.metrics), 0o644);
    assert_eq!(
        mode(dirs.metrics.parent().unwrap()),
        0o755,
        "node_exporter reads the directory"
    );
}
