//! `pgbak cron` with `--all-databases`, at parity with one database (issue 23 item 4): with
//! VERIFY_ON_BACKUP each database of the run is verified (on the server, or in a throwaway
//! cluster with the run's globals replayed first), each database's anomaly alerts a warning, the
//! metrics and `check` speak per (server, database, mode, label), the run takes full backups
//! only, and a failed upload alerts `upload failed`.

use std::time::Duration;

use serde_json::Value;

use crate::support::cron::{cron, down_url, s3_down, Dirs};
use crate::support::{
    self, output_text, pgbak, pgbak_bare, private_cluster, read_meta, run, run as run_cron,
    HttpListener,
};

/// The metrics file's samples of `name`: (labels, value).
fn samples(dirs: &Dirs, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let text = std::fs::read_to_string(&dirs.metrics).expect("metrics file");
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition format");
    parsed
        .samples
        .into_iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Counter(v) => v,
                other => panic!("unexpected {other:?}"),
            };
            (labels, value)
        })
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn fleet_cron_all_databases_verifies_alerts_and_counts_each_database() {
    let pg = private_cluster(16);
    for db in ["app_one", "app_two"] {
        pg.psql("postgres", &format!("CREATE DATABASE {db}"));
        pg.psql(
            db,
            "CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 3000) g",
        );
    }
    let dirs = Dirs::new("fleet-all");
    let hook = HttpListener::ok();
    let cron_run = || {
        run(cron(pgbak(&pg), &dirs, &pg.url("postgres"))
            .args(["--all-databases", "--server-name", "fleet-all"])
            .env("VERIFY_ON_BACKUP", "true")
            .env("BACKUP_KEEP", "1")
            .env("ALERT_WEBHOOK_URL", hook.url()))
    };
    let out = cron_run();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(!text.contains("verify is not run"), "{text}");
    // Every database backup of the run carries a passed verdict.
    for dump in dirs.dumps().iter().filter(|d| !d.contains("_globals_")) {
        let meta = read_meta(&dirs.backups.join(dump.replace(".dump", ".meta.json")));
        assert_eq!(meta["verification"]["passed"], true, "{dump}: {meta}");
    }
    let verified: Vec<&str> = ["app_one", "app_two", "postgres"]
        .into_iter()
        .filter(|db| {
            dirs.dumps()
                .iter()
                .any(|d| d.starts_with(&format!("{db}_full_")))
        })
        .collect();
    assert_eq!(verified, ["app_one", "app_two", "postgres"]);

    // Metrics: one series per database of the server, not one "(all databases)".
    let success = samples(&dirs, "pgbak_last_run_success");
    for db in ["app_one", "app_two", "postgres"] {
        let series: Vec<_> = success
            .iter()
            .filter(|(l, _)| {
                label(l, "database") == Some(db) && label(l, "server") == Some("fleet-all")
            })
            .collect();
        assert_eq!(series.len(), 1, "{db}: {success:?}");
        assert_eq!(series[0].1, 1.0);
    }

    // A mass delete in one database: its anomaly alerts a warning, the run still succeeds.
    pg.psql("app_two", "DELETE FROM t");
    std::thread::sleep(Duration::from_millis(1100));
    let out = cron_run();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let alerts = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "one warning");
    let body: Value = alerts[0].json();
    assert_eq!(body["status"], "warning", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("app_two") && detail.contains("public.t 3000 -> 0"),
        "{detail}"
    );
    let app_two: Vec<String> = dirs
        .dumps()
        .into_iter()
        .filter(|d| d.starts_with("app_two_full_"))
        .collect();
    assert_eq!(app_two.len(), 2, "the pinned backup stays: {app_two:?}");

    // check judges each database of the server.
    let out = run(support::pgbak_bare()
        .args(["check", "--json", "--backup-dir"])
        .arg(&dirs.backups));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut groups: Vec<String> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            format!(
                "{} {}",
                g["server"].as_str().unwrap_or("?"),
                g["database"].as_str().unwrap()
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            "fleet-all app_one",
            "fleet-all app_two",
            "fleet-all postgres"
        ]
    );
}

#[test]
fn fleet_cron_all_databases_verifies_ephemerally_with_the_runs_globals() {
    let pg = private_cluster(16);
    pg.psql("postgres", "CREATE ROLE fleet_owner");
    pg.psql("postgres", "CREATE DATABASE app_eph OWNER fleet_owner");
    pg.psql(
        "app_eph",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g; ALTER TABLE t OWNER TO fleet_owner",
    );
    let dirs = Dirs::new("fleet-all-eph");
    let out = run(cron(pgbak(&pg), &dirs, &pg.url("postgres"))
        .env("PGBAK_PG_BIN_DIR", &pg.bin)
        .args([
            "--all-databases",
            "--verify",
            "--verify-ephemeral",
            "--exclude-database",
            "postgres",
        ]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dump = dirs
        .dumps()
        .into_iter()
        .find(|d| d.starts_with("app_eph_full_"))
        .unwrap();
    let meta = read_meta(&dirs.backups.join(dump.replace(".dump", ".meta.json")));
    assert_eq!(meta["verification"]["passed"], true, "{meta}");
    let (_, log) = dirs.only_log();
    assert!(
        log.contains("restored into the throwaway cluster"),
        "the run's globals were replayed first: {log}"
    );
    assert!(
        !pg.databases().iter().any(|d| d.contains("_verify_")),
        "nothing restored on the source server"
    );
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

/// An `--all-databases` cron whose uploads fail alerts "backup upload
/// failed", as documented (on main: "backup failed").
#[test]
fn cron_all_databases_upload_failure_alerts_upload_failed() {
    let pg = private_cluster(16);
    let dirs = Dirs::new("all-upload");
    let hook = HttpListener::ok();
    let mut cmd = cron(support::pgbak(&pg), &dirs, &pg.url("postgres"));
    cmd.arg("--all-databases")
        .env("ALERT_WEBHOOK_URL", hook.url());
    let out = run_cron(s3_down(&mut cmd, "pgbak-all-down", "test"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let requests = hook.wait_for(1, Duration::from_secs(5));
    let body = requests[0].json();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL backup upload failed on"),
        "{body}"
    );
    assert!(!dirs.dumps().is_empty(), "the local backups are complete");
}
