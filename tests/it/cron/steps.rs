//! The steps of one cron run and the rules after each: a success leaves one backup and one log;
//! verify on backup, ephemerally too; a failed verify skips retention; an upload failure keeps
//! the local backup and still verifies it; SIGTERM during verify records nothing; an unreachable
//! verify target is not a failed verification; a failed heartbeat fails nothing.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{assert_generic_alert, scrape, seed_old_backups, series, slow_to_restore};
use crate::support::cron::{cron, cron_case, host_name, metric, s3_down, step_success, Dirs};
use crate::support::verify::verify_dbs;
use crate::support::{
    self, free_port, output_text, pg16, pgbak, pgbak_bare, run, HttpListener, Pg, PASSWORD,
};

#[test]
fn cron_success_leaves_one_backup_one_log_calls_heartbeat_and_writes_metrics() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron ok", "ok");
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

    let samples = dirs.samples();
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

#[test]
fn cron_verify_run_leaves_one_backup_one_log_no_temp_db_and_calls_heartbeat() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron verify ok", "verify-ok");
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
    let samples = dirs.samples();
    assert_eq!(step_success(&samples, "verify"), 1.0);
    assert_eq!(metric(&samples, "pgbak_last_run_success", &[]), 1.0);
}

#[test]
fn cron_verify_failure_alerts_and_skips_retention() {
    let pg = pg16();
    let db = pg.fixture_db("cron verify fail", 0.05);
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
    let samples = dirs.samples();
    assert_eq!(step_success(&samples, "verify"), 0.0);
    assert!(
        !samples.keys().any(|k| k.contains("step=\"retention\"")),
        "retention did not run"
    );
}

#[test]
fn cron_verify_ephemeral_restores_into_a_throwaway_cluster() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron verify eph", "verify-eph");
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
fn cron_uploads_to_s3_and_prunes_the_bucket_too() {
    let pg = pg16();
    let db = pg.fixture_db("cron s3 ok", 0.05);
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
fn cron_s3_down_alerts_the_upload_step_and_keeps_the_local_backup() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron s3 down", "s3-down");
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
    let mut cmd = cron(pgbak(pg), &dirs, &db.url());
    cmd.env("ALERT_WEBHOOK_URL", hook.url())
        .env("BACKUP_KEEP", "1");
    let out = run(s3_down(&mut cmd, "pgbak-cron-down", secret_key));
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
    let samples = dirs.samples();
    assert_eq!(step_success(&samples, "upload"), 0.0);
    assert_eq!(
        step_success(&samples, "retention"),
        1.0,
        "local retention ran after the failed upload"
    );
}

#[test]
fn cron_failed_heartbeat_does_not_fail_a_good_run() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron beat 404", "beat404");
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
    let (db, dirs) = cron_case(pg, "cron verify unreachable", "verify-unreachable");
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
    let (db, dirs) = cron_case(pg, "cron upload verify", "upload-verify");
    let hook = HttpListener::ok();
    let mut cmd = cron(pgbak(pg), &dirs, &db.url());
    cmd.arg("--verify").env("ALERT_WEBHOOK_URL", hook.url());
    let out = run(s3_down(&mut cmd, "pgbak-cron-down", "test"));
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
