//! The anomaly pin: a mass delete pins the previous backup until unpinned, cron alerts a warning
//! naming the collapsed tables and keeps exit 0, `--no-anomaly-check` pins nothing, `backup` runs
//! the check after a failed upload as cron does, and the first backup after an upgrade compares
//! with the old unnamed backups.

use std::time::Duration;

use super::{backed_up, ok, pgbak_in, small_db, to_legacy_name};
use crate::support::bucket::backup_dir;
use crate::support::{
    self, backup, dumps, free_port, output_text, pg16, read_meta, run, stdout_json,
};

#[test]
fn backup_after_a_mass_delete_pins_the_previous_backup_until_unpinned() {
    let pg = pg16();
    let db = small_db(pg, "anomaly", 2000);
    let dir = tempfile::tempdir().unwrap();
    let good = backed_up(pg, &db, dir.path(), "1");
    db.psql("DELETE FROM t");
    let out = backup(pg, &db.name, dir.path(), &["--keep", "1", "--json"]);
    let summary = stdout_json(&out);
    let anomaly = summary["anomaly"]
        .as_str()
        .unwrap_or_else(|| panic!("no anomaly reported: {}", output_text(&out)));
    assert!(anomaly.contains("public.t 2000 -> 0"), "{anomaly}");
    let good_meta = dir.path().join(good.replace(".dump", ".meta.json"));
    assert!(read_meta(&good_meta)["pinned"]["reason"].is_string());

    // The pin outlives later runs and shows in list.
    let later = backed_up(pg, &db, dir.path(), "1");
    assert_eq!(dumps(dir.path()), vec![good.clone(), later.clone()]);
    let list = stdout_json(&pgbak_in(
        pg,
        &db,
        dir.path(),
        &["list", "--json", "--keep", "1"],
    ));
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == good.trim_end_matches(".dump"))
        .unwrap()
        .clone();
    assert!(entry["pinned"].is_object(), "{entry}");
    assert_eq!(entry["kept_by"], serde_json::json!(["pinned"]));

    ok(&pgbak_in(
        pg,
        &db,
        dir.path(),
        &["unpin", good.trim_end_matches(".dump")],
    ));
    assert!(read_meta(&good_meta).get("pinned").is_none());
    let last = backed_up(pg, &db, dir.path(), "1");
    assert_eq!(dumps(dir.path()), vec![last], "unpinned, it goes");
}

#[test]
fn no_anomaly_check_pins_nothing() {
    let pg = pg16();
    let db = small_db(pg, "anomaly off", 2000);
    let dir = tempfile::tempdir().unwrap();
    ok(&backup(pg, &db.name, dir.path(), &["--keep", "1"]));
    db.psql("DELETE FROM t");
    let summary = stdout_json(&backup(
        pg,
        &db.name,
        dir.path(),
        &["--keep", "1", "--json", "--no-anomaly-check"],
    ));
    assert!(summary["anomaly"].is_null());
    assert_eq!(dumps(dir.path()).len(), 1);
}

#[test]
fn cron_alerts_a_warning_naming_the_collapsed_tables_and_keeps_exit_0() {
    let pg = pg16();
    let db = small_db(pg, "cron anomaly", 2000);
    let root = tempfile::tempdir().unwrap();
    let hook = support::HttpListener::ok();
    let cron = || {
        support::pgbak(pg)
            .arg("cron")
            .env("DATABASE_URL", db.url())
            .env("BACKUP_DIR", root.path().join("backups"))
            .env("LOG_DIR", root.path().join("logs"))
            .env("BACKUP_KEEP", "1")
            .env("ALERT_WEBHOOK_URL", hook.url())
            .output()
            .unwrap()
    };
    ok(&cron());
    assert!(hook.requests().is_empty(), "no alert for a normal run");
    db.psql("DELETE FROM t");
    ok(&cron());
    let alerts = hook.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(alerts.len(), 1);
    let body = alerts[0].json();
    assert_eq!(body["status"], "warning", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("public.t 2000 -> 0"), "{detail}");
    assert!(detail.contains("Step: anomaly"), "{detail}");
    assert_eq!(
        dumps(&root.path().join("backups")).len(),
        2,
        "the pinned one stays"
    );
}

#[test]
fn fleet_backup_runs_the_anomaly_check_after_a_failed_upload_as_cron_does() {
    let pg = pg16();
    let db = pg.db_with(
        "fleet upload anomaly",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 5000) g",
    );
    let dir = backup_dir("fleet-upload-anomaly");
    let out = backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let good = dumps(&dir)[0].clone();
    std::thread::sleep(Duration::from_millis(1100));
    db.psql("DELETE FROM t");
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = run(support::backup_cmd(pg, &db.name, &dir, &["--keep", "1"])
        .env("S3_BUCKET", "pgbak-fleet-down")
        .env("S3_ENDPOINT_URL", &down)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let meta = read_meta(&dir.join(good.replace(".dump", ".meta.json")));
    assert!(
        meta["pinned"]["reason"].is_string(),
        "pinned: {meta}\n{}",
        output_text(&out)
    );
    assert_eq!(dumps(&dir).len(), 2, "the pinned backup stays");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_the_first_backup_after_an_upgrade_compares_with_the_old_unnamed_backups() {
    let pg = pg16();
    let db = pg.db_with(
        "fleet upgrade anomaly",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 5000) g",
    );
    let dir = backup_dir("fleet-upgrade-anomaly");
    let out = backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // As an older pgbak named it: no server in the name or meta.json.
    let old = to_legacy_name(&dir, &dumps(&dir)[0], &db.name);
    std::thread::sleep(Duration::from_millis(1100));
    db.psql("DELETE FROM t");
    let out = backup(pg, &db.name, &dir, &["--keep", "1", "--json"]);
    let summary = support::stdout_json(&out);
    assert!(summary["anomaly"].is_string(), "{}", output_text(&out));
    let meta = read_meta(&dir.join(old.replace(".dump", ".meta.json")));
    assert!(meta["pinned"]["reason"].is_string(), "{meta}");
    let _ = std::fs::remove_dir_all(&dir);
}
