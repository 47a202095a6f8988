//! cron's alerts: every failure pages once and says what happened (the generic body, Slack,
//! PagerDuty's trigger and resolve), a receiver that fails, hangs or answers 500 neither hides the
//! failure nor holds the run, and configuration errors are alerted, logged and counted.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::{assert_generic_alert, down_url_of, scrape, seed_old_backups, series};
use crate::support::cron::{cron, cron_case, down_url, host_name, metric, step_success, Dirs};
use crate::support::{
    free_port, output_text, pg16, pgbak, pgbak_bare, run, HttpListener, PASSWORD,
};

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

    let samples = dirs.samples();
    assert_eq!(metric(&samples, "pgbak_last_run_success", &[]), 0.0);
    assert_eq!(step_success(&samples, "backup"), 0.0);
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
    let samples = dirs.samples();
    assert_eq!(metric(&samples, "pgbak_last_run_success", &[]), 0.0);
}

/// One configuration error case: hint, variables set, variables removed, the name the error gives.
type ConfigCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

/// One configuration error: exit 2, exactly one alert naming the variable, a
/// log saying so, and the metrics of the run's group.
fn assert_config_error(hint: &str, env: &[(&str, &str)], remove: &[&str], names: &str) {
    let dirs = Dirs::new(hint);
    let hook = HttpListener::ok();
    let mut cmd = cron(pgbak_bare(), &dirs, &down_url());
    cmd.env("ALERT_WEBHOOK_URL", hook.url());
    for (key, value) in env {
        cmd.env(key, value);
    }
    for key in remove {
        cmd.env_remove(key);
    }
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{hint}: {}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(names),
        "{hint}: the error names {names}: {stderr}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let alerts = hook.requests();
    assert_eq!(alerts.len(), 1, "{hint}: exactly one alert");
    let body = alerts[0].json();
    assert_eq!(body["status"], "failure");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("| Step: config |") && detail.contains(names),
        "{hint}: {detail}"
    );
    let (_, text) = dirs.only_log();
    assert!(
        text.contains(names),
        "{hint}: the log names {names}: {text}"
    );
    assert!(dirs.dumps().is_empty(), "{hint}: nothing attempted");
    let samples = scrape(&dirs);
    let db = if remove.contains(&"DATABASE_URL") {
        ""
    } else {
        "enterprise_agents"
    };
    assert_eq!(
        series(&samples, "pgbak_last_run_exit_code", db, "full"),
        Some(2.0),
        "{hint}: {samples:?}"
    );
}

#[test]
fn cron_configuration_errors_are_alerted_logged_and_counted() {
    let cases: &[ConfigCase] = &[
        ("keep", &[("BACKUP_KEEP", "abc")], &[], "BACKUP_KEEP"),
        ("log-keep", &[("LOG_KEEP", "x")], &[], "LOG_KEEP"),
        (
            "lock-wait",
            &[("PGBAK_LOCK_WAIT", "soon")],
            &[],
            "PGBAK_LOCK_WAIT",
        ),
        (
            "verify-bool",
            &[("VERIFY_ON_BACKUP", "yes-please")],
            &[],
            "VERIFY_ON_BACKUP",
        ),
        (
            "verify-target",
            &[("PGBAK_VERIFY_TARGET_URL", "mysql://u:p@h/db")],
            &[],
            "PGBAK_VERIFY_TARGET_URL",
        ),
        ("no-database", &[], &["DATABASE_URL"], "DATABASE_URL"),
        (
            "env-file",
            &[("PGBAK_ENV_FILE", "/nonexistent/pgbak.env")],
            &[],
            "/nonexistent/pgbak.env",
        ),
    ];
    for (hint, env, remove, names) in cases {
        assert_config_error(hint, env, remove, names);
    }
}

#[test]
fn cron_alert_format_is_case_insensitive() {
    let dirs = Dirs::new("format-case");
    let hook = HttpListener::ok();
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("ALERT_WEBHOOK_FORMAT", "Slack"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let alerts = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].json()["blocks"].is_array(), "a Slack message");
}

#[test]
fn cron_pagerduty_success_resolves_the_incident_of_its_database_and_mode() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron pd resolve", "pd-resolve");
    let hook = HttpListener::new(&[202, 202]);
    let key = "R0UTINGKEY0123456789abcdefABCDEF";
    let with_pd = |url: &str| {
        let mut cmd = cron(pgbak(pg), &dirs, url);
        cmd.env("ALERT_WEBHOOK_URL", hook.url())
            .env("ALERT_WEBHOOK_FORMAT", "pagerduty")
            .env("PAGERDUTY_ROUTING_KEY", key);
        cmd
    };
    let out = run(&mut with_pd(&down_url_of(&db.name)));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let out = run(&mut with_pd(&db.url()));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let events = hook.wait_for(2, Duration::from_secs(5));
    assert_eq!(events.len(), 2);
    let (trigger, resolve) = (events[0].json(), events[1].json());
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["routing_key"], key);
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    let dedup = resolve["dedup_key"].as_str().unwrap_or("");
    assert!(
        dedup.contains(&host_name()) && dedup.contains(&db.name) && dedup.contains("full"),
        "{dedup}"
    );
}
