//! `pgbak cron`, the unattended run: its steps (backup, upload, verify, retention) and what each
//! failure does, the alerts (formats, retries, receivers that hang or fail), the locks between
//! runs, the heartbeat and metrics, its configuration, and `--all-databases`. A real HTTP listener
//! is the webhook and heartbeat receiver.

mod alerts;
mod all_databases;
mod config;
mod locks;
mod monitoring;
mod reproving;
mod restore_time;
mod steps;

use std::collections::HashMap;
use std::path::Path;

use crate::support::cron::{host_name, Dirs};
use crate::support::{self, free_port, Pg, Request};

/// Asserts the generic body: exactly the seven fields plus `text`, for a failure of `message`.
pub(crate) fn assert_generic_alert(req: &Request, message: &str, log: &Path, step: &str) {
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

/// (metric name, its labels sorted) -> value.
pub(crate) type Samples = HashMap<(String, Vec<(String, String)>), f64>;

/// The samples of a metrics file, read by a real Prometheus text parser.
pub(crate) fn scrape(dirs: &Dirs) -> Samples {
    let text = std::fs::read_to_string(&dirs.metrics).expect("metrics file");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let mut out = HashMap::new();
    for sample in parsed.samples {
        let value = match sample.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("unexpected {other:?}"),
        };
        let mut labels: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        assert!(
            out.insert((sample.metric.clone(), labels), value).is_none(),
            "duplicate series of {} in\n{text}",
            sample.metric
        );
    }
    out
}

/// The value of `name` for database `db` and `mode` (no step label).
pub(crate) fn series(samples: &Samples, name: &str, db: &str, mode: &str) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|((metric, labels), _)| {
            let get = |k: &str| {
                labels
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
            };
            metric == name
                && get("database") == Some(db)
                && get("mode") == Some(mode)
                && get("step").is_none()
        })
        .map(|(_, v)| *v)
        .collect();
    assert!(found.len() <= 1, "{name} {db} {mode}: {found:?}");
    found.first().copied()
}

/// A URL of `db` on a port nobody listens on: the same database label, a failing run.
pub(crate) fn down_url_of(db: &str) -> String {
    format!("postgresql://postgres:x@127.0.0.1:{}/{db}", free_port())
}

/// A database whose restore takes `seconds` (one row a second, through a CHECK
/// constraint that sleeps), so a test can act while verify runs.
pub(crate) fn slow_to_restore<'a>(pg: &'a Pg, hint: &str, seconds: u32) -> support::TestDb<'a> {
    let db = pg.fixture_db(hint, 0.05);
    db.psql(&format!(
        "CREATE FUNCTION public.slow_ok(x int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
         CREATE TABLE public.slow (x int CHECK (public.slow_ok(x)));
         INSERT INTO public.slow SELECT generate_series(1, {seconds});
         CREATE OR REPLACE FUNCTION public.slow_ok(x int) RETURNS boolean LANGUAGE plpgsql AS
           'BEGIN PERFORM pg_catalog.pg_sleep(1); RETURN true; END';"
    ));
    db
}
