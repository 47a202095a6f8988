//! `pgbak cron` as an SRE sets it up (issue 12): every failure pages once and
//! correctly, skipped and misconfigured runs are visible, and the metrics of
//! the daily full and the weekly schema job never mix.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cron::{cron, down_url, host_name, lock_path, run, wait_for_lock_owner, Dirs};
use crate::support::{self, free_port, output_text, pg16, pgbak, pgbak_bare, HttpListener, Pg};

/// (metric name, its labels sorted) -> value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

/// One configuration error case: hint, variables set, variables removed, the name the error gives.
type ConfigCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

/// The samples of a metrics file, read by a real Prometheus text parser.
fn scrape(dirs: &Dirs) -> Samples {
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
fn series(samples: &Samples, name: &str, db: &str, mode: &str) -> Option<f64> {
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
fn down_url_of(db: &str) -> String {
    format!("postgresql://postgres:x@127.0.0.1:{}/{db}", free_port())
}

#[test]
fn cron_metrics_keep_one_series_per_database_and_mode_across_runs() {
    let pg = pg16();
    let db = pg.fresh_db("cron metrics modes");
    db.load_fixture(0.05);
    let dirs = Dirs::new("metrics-modes");
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

/// A database whose restore takes `seconds` (one row a second, through a CHECK
/// constraint that sleeps), so a test can act while verify runs.
fn slow_to_restore<'a>(pg: &'a Pg, hint: &str, seconds: u32) -> support::TestDb<'a> {
    let db = pg.fresh_db(hint);
    db.load_fixture(0.05);
    db.psql(&format!(
        "CREATE FUNCTION public.slow_ok(x int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
         CREATE TABLE public.slow (x int CHECK (public.slow_ok(x)));
         INSERT INTO public.slow SELECT generate_series(1, {seconds});
         CREATE OR REPLACE FUNCTION public.slow_ok(x int) RETURNS boolean LANGUAGE plpgsql AS
           'BEGIN PERFORM pg_catalog.pg_sleep(1); RETURN true; END';"
    ));
    db
}

/// Waits until pg_restore is connected to a verify database of `db`.
fn wait_for_restore(pg: &Pg, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let n = pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore' \
                 AND datname LIKE '{db}\\_verify\\_%'"
            ),
        );
        if n != "0" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pg_restore never connected to a verify database of {db}");
}

fn verify_dbs(pg: &Pg, db: &str) -> Vec<String> {
    pg.databases()
        .into_iter()
        .filter(|d| d.starts_with(&format!("{db}_verify_")))
        .collect()
}

#[test]
fn cron_full_and_schema_runs_overlap_and_a_second_full_is_skipped_visibly() {
    let pg = pg16();
    let db = slow_to_restore(pg, "cron overlap modes", 15);
    let dirs = Dirs::new("overlap-modes");
    let hook = HttpListener::ok();
    // The daily full, verifying (slow): it holds the full group's lock.
    let mut full = cron(pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("ALERT_WEBHOOK_URL", hook.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the full run");
    wait_for_lock_owner(&dirs, &db.name, full.id());

    // The weekly schema job runs meanwhile.
    let schema = run(cron(pgbak(pg), &dirs, &db.url())
        .args(["--mode", "schema"])
        .env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(schema.status.code(), Some(0), "{}", output_text(&schema));
    assert!(
        Dirs::files(&dirs.backups, ".dump")
            .iter()
            .any(|n| n.contains("_schema_")),
        "{:?}",
        dirs.dumps()
    );
    // A second full run is skipped: exit 75, an alert with status skipped, counted.
    let second = run(cron(pgbak(pg), &dirs, &db.url()).env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(second.status.code(), Some(75), "{}", output_text(&second));
    let alerts = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "one alert, for the skip");
    let body = alerts[0].json();
    assert_eq!(body["status"], "skipped");
    assert!(
        body["message"].as_str().unwrap_or("").contains("skipped"),
        "{body}"
    );
    let samples = scrape(&dirs);
    assert_eq!(
        series(&samples, "pgbak_runs_skipped_total", &db.name, "full"),
        Some(1.0)
    );
    assert!(series(
        &samples,
        "pgbak_last_skip_timestamp_seconds",
        &db.name,
        "full"
    )
    .is_some());
    assert_eq!(
        series(&samples, "pgbak_last_run_success", &db.name, "schema"),
        Some(1.0)
    );

    let status = full.wait().expect("waiting for the full run");
    assert_eq!(status.code(), Some(0));
    let samples = scrape(&dirs);
    assert_eq!(
        series(&samples, "pgbak_last_run_success", &db.name, "full"),
        Some(1.0)
    );
    assert_eq!(
        series(&samples, "pgbak_runs_skipped_total", &db.name, "full"),
        Some(1.0),
        "the count survives the next run"
    );
    assert_eq!(hook.requests().len(), 1, "no alert for the successes");
}

#[test]
fn cron_lock_wait_waits_for_the_holder_then_runs() {
    let pg = pg16();
    let db = pg.fresh_db("cron lock wait");
    db.load_fixture(0.05);
    let dirs = Dirs::new("lock-wait");
    std::fs::create_dir_all(&dirs.backups).unwrap();
    let path = lock_path(&dirs, &db.name, "full");
    let mut file = std::fs::File::create(&path).unwrap();
    file.try_lock().expect("the test takes the lock");
    write!(file, "pid=4242\nstarted=2026-11-25T02:00:00Z\n").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(file);
    });
    let started = Instant::now();
    let out = run(cron(pgbak(pg), &dirs, &db.url()).env("PGBAK_LOCK_WAIT", "2m"));
    release.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting up to"),
        "it waited for the holder: {}",
        output_text(&out)
    );
    assert_eq!(dirs.dumps().len(), 1);
}

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
fn cron_sigterm_during_verify_alerts_interrupted_and_records_nothing() {
    let pg = pg16();
    let db = slow_to_restore(pg, "cron sigterm verify", 30);
    let dirs = Dirs::new("sigterm-verify");
    let hook = HttpListener::ok();
    let child = cron(pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("ALERT_WEBHOOK_URL", hook.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the run");
    wait_for_restore(pg, &db.name);
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("waiting for the run");
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    let alerts = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1);
    let body = alerts[0].json();
    assert_eq!(
        body["message"],
        format!(
            "PostgreSQL backup verification interrupted on {}",
            host_name()
        )
        .as_str()
    );
    assert!(body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("| Step: verify |"));
    assert!(verify_dbs(pg, &db.name).is_empty(), "temp database dropped");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.backups.join(&dirs.metas()[0])).unwrap(),
    )
    .unwrap();
    assert!(
        meta["verification"].is_null(),
        "no verdict recorded: {meta}"
    );
    let samples = scrape(&dirs);
    assert_eq!(
        series(&samples, "pgbak_last_run_exit_code", &db.name, "full"),
        Some(143.0)
    );
}

#[test]
fn cron_unreachable_verify_target_is_not_a_failed_verification() {
    let pg = pg16();
    let db = pg.fresh_db("cron verify unreachable");
    db.load_fixture(0.05);
    let dirs = Dirs::new("verify-unreachable");
    let hook = HttpListener::ok();
    let target = format!("postgresql://postgres:x@127.0.0.1:{}/postgres", free_port());
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("PGBAK_VERIFY_TARGET_URL", &target)
        .env("ALERT_WEBHOOK_URL", hook.url()));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let body = hook.wait_for(1, Duration::from_secs(5))[0].json();
    assert_eq!(
        body["message"],
        format!(
            "PostgreSQL backup verification could not run on {}",
            host_name()
        )
        .as_str()
    );
    let list = run(pgbak_bare()
        .args(["list", "--json", "--backup-dir"])
        .arg(&dirs.backups));
    assert_eq!(list.status.code(), Some(0), "{}", output_text(&list));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let text = listed.to_string();
    assert!(
        !text.contains("\"verified\":false"),
        "recorded as failed: {text}"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.backups.join(&dirs.metas()[0])).unwrap(),
    )
    .unwrap();
    assert!(meta["verification"].is_null(), "{meta}");
}

#[test]
fn cron_failed_upload_still_verifies_the_local_backup() {
    let pg = pg16();
    let db = pg.fresh_db("cron upload verify");
    db.load_fixture(0.05);
    let dirs = Dirs::new("upload-verify");
    let hook = HttpListener::ok();
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env("S3_BUCKET", "pgbak-cron-down")
        .env(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let body = hook.wait_for(1, Duration::from_secs(5))[0].json();
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("| Step: upload |"),
        "{body}"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.backups.join(&dirs.metas()[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["verification"]["passed"], true, "{meta}");
    let samples = scrape(&dirs);
    let step = |name: &str| {
        samples
            .iter()
            .find(|((metric, labels), _)| {
                metric == "pgbak_step_success"
                    && labels.iter().any(|(k, v)| k == "step" && v == name)
            })
            .map(|(_, v)| *v)
    };
    assert_eq!(step("verify"), Some(1.0));
    assert_eq!(step("upload"), Some(0.0));
    assert_eq!(step("retention"), Some(1.0));
}

#[test]
fn cron_pagerduty_success_resolves_the_incident_of_its_database_and_mode() {
    let pg = pg16();
    let db = pg.fresh_db("cron pd resolve");
    db.load_fixture(0.05);
    let dirs = Dirs::new("pd-resolve");
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

#[test]
fn cron_empty_variable_does_not_hide_the_env_file_value() {
    // `KEEP=` in the unit's environment counts as unset, so the environment
    // file's value applies, as `${BACKUP_KEEP:-...}` would have taken it.
    let dirs = Dirs::new("empty-vs-file");
    std::fs::create_dir_all(&dirs.root).unwrap();
    let env_file = dirs.root.join("pgbak.env");
    std::fs::write(
        &env_file,
        "BACKUP_KEEP=3
VERIFY_ON_BACKUP=true
",
    )
    .unwrap();
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .arg("--env-file")
        .arg(&env_file)
        .env("BACKUP_KEEP", "")
        .env("VERIFY_ON_BACKUP", ""));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let (_, text) = dirs.only_log();
    assert!(text.contains("keep last 3, verify on"), "{text}");
}

#[test]
fn cron_env_file_with_an_ampersand_url_runs_from_the_shipped_crontab_line() {
    let pg = pg16();
    let db = pg.fresh_db("cron env file");
    db.load_fixture(0.05);
    let dirs = Dirs::new("env-file");
    std::fs::create_dir_all(&dirs.root).unwrap();
    // systemd EnvironmentFile syntax: the URL unquoted, with `&` in its query.
    let env_file = dirs.root.join("pgbak.env");
    std::fs::write(
        &env_file,
        format!(
            "# /etc/pgbak/pgbak.env\nDATABASE_URL={}?sslmode=disable&application_name=pgbak-cron\n\
             BACKUP_DIR={}\nLOG_DIR={}\nMETRICS_FILE={}\nBACKUP_KEEP=14\n",
            db.url(),
            dirs.backups.display(),
            dirs.logs.display(),
            dirs.metrics.display()
        ),
    )
    .unwrap();
    let crontab = std::fs::read_to_string(support::repo_dir().join("contrib/pgbak.crontab"))
        .expect("contrib/pgbak.crontab");
    let line = crontab
        .lines()
        .find(|l| l.starts_with("0 2 * * * ") && l.contains("--env-file"))
        .expect("an active 02:00 line using --env-file");
    let command = line
        .trim_start_matches("0 2 * * * ")
        .replace("/etc/pgbak/pgbak.env", &env_file.display().to_string())
        .replace("/usr/local/bin/pgbak", env!("CARGO_BIN_EXE_pgbak"))
        .replace(
            "/var/log/pg-backup/cron.log",
            &dirs.root.join("cron.log").display().to_string(),
        );
    let mut sh = std::process::Command::new("/bin/sh");
    sh.arg("-c").arg(&command);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PG") || k == "DATABASE_URL" || k.starts_with("BACKUP_") {
            sh.env_remove(&key);
        }
    }
    sh.env(
        "PGBAK_PG_BIN_DIR",
        support::paths()
            .pg17_bin
            .clone()
            .unwrap_or_else(|| pg.bin.clone()),
    );
    let out = sh.output().expect("running the crontab line");
    let cron_log = std::fs::read_to_string(dirs.root.join("cron.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{cron_log}",
        output_text(&out)
    );
    assert_eq!(dirs.dumps().len(), 1, "{cron_log}");
    assert!(cron_log.contains(&db.name), "{cron_log}");
    // The weekly schema line ships too.
    assert!(
        crontab.lines().any(|l| !l.starts_with('#')
            && l.contains("--mode schema")
            && l.contains("--env-file")),
        "{crontab}"
    );
}

#[test]
fn cron_storage_class_warning_is_shown_once_and_at_check_config() {
    let dirs = Dirs::new("ia-warning");
    let s3_env = [
        ("S3_BUCKET", "b"),
        ("S3_STORAGE_CLASS", "STANDARD_IA"),
        ("BACKUP_KEEP", "7"),
    ];
    let warned = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stderr).contains("bills 30 days minimum")
    };
    let mut first = cron(pgbak_bare(), &dirs, &down_url());
    first.envs(s3_env);
    let out = run(&mut first);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(warned(&out), "the first run warns: {}", output_text(&out));
    let mut second = cron(pgbak_bare(), &dirs, &down_url());
    second.envs(s3_env);
    let out = run(&mut second);
    assert!(!warned(&out), "not every night: {}", output_text(&out));
    let mut check = cron(pgbak_bare(), &dirs, &down_url());
    check.envs(s3_env).arg("--check-config");
    let out = run(&mut check);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(warned(&out), "--check-config always shows it");
}
