//! `pgbak check`: fresh, stale, unverified and failed groups, in a directory and
//! under an S3 prefix, judged without a database; exit codes and JSON asserted.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use pgbak::meta::Meta;

use crate::support::bucket::{backup_dir, pgbak_s3};
use crate::support::{self, output_text, pg16, run, s3, HttpListener, S3Server};

/// A synthetic backup: the dump bytes and meta.json of `database`, `hours` old,
/// with a verify result when given (what `pgbak backup` and `verify` write).
fn synthetic(
    database: &str,
    hours: i64,
    verified: Option<bool>,
) -> (String, Vec<u8>, String, Vec<u8>) {
    let at = Utc::now() - TimeDelta::hours(hours);
    let stem = format!("{database}_full_{}", at.format("%Y%m%dT%H%M%S"));
    let dump = b"PGDMP synthetic".to_vec();
    // As JSON, the way operators' tools see it: new optional keys need no change here.
    let mut meta = serde_json::json!({
        "format_version": 1,
        "database": database,
        "mode": "full",
        "label": null,
        "file": format!("{stem}.dump"),
        "size_bytes": dump.len(),
        "sha256": crate::support::bucket::sha256_hex(&dump),
        "started_at": at.to_rfc3339(),
        "finished_at": at.to_rfc3339(),
        "duration_seconds": 1.0,
        "compression": "zstd:1",
        "server_version": "16.14",
        "pg_dump_version": "17.10",
        "alembic_revision": "013",
        "extensions": {},
        "tables": [{"schema": "public", "name": "users", "rows": 100 + hours}],
        "host": "db-host-01",
        "pgbak_version": "0.1.0",
        "s3": null,
    });
    if let Some(passed) = verified {
        meta["verification"] = serde_json::json!({
            "verified_at": (at + TimeDelta::minutes(3)).to_rfc3339(),
            "passed": passed,
            "pgbak_version": "0.1.0",
        });
    }
    Meta::parse(&meta.to_string()).expect("a valid meta.json");
    let meta_json = serde_json::to_vec_pretty(&meta).unwrap();
    (
        format!("{stem}.dump"),
        dump,
        format!("{stem}.meta.json"),
        meta_json,
    )
}

/// The four kinds of group, plus older backups so each has a history.
fn fleet() -> Vec<(String, Vec<u8>, String, Vec<u8>)> {
    vec![
        synthetic("fresh", 2, Some(true)),
        synthetic("fresh", 26 + 2, Some(true)),
        synthetic("stale", 30, Some(true)),
        synthetic("stale", 54, Some(true)),
        synthetic("unverified", 2, None),
        synthetic("unverified", 24 * 10, Some(true)),
        synthetic("failed", 2, Some(false)),
        synthetic("failed", 26, Some(true)),
    ]
}

fn write_fleet(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (dump, dump_bytes, meta, meta_bytes) in fleet() {
        std::fs::write(dir.join(dump), dump_bytes).unwrap();
        std::fs::write(dir.join(meta), meta_bytes).unwrap();
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)))
}

/// database -> (status, problems) from `--json` output.
fn verdicts(report: &serde_json::Value) -> Vec<(String, String, usize)> {
    let mut v: Vec<(String, String, usize)> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["database"].as_str().unwrap().to_owned(),
                g["status"].as_str().unwrap().to_owned(),
                g["problems"].as_array().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected() -> Vec<(String, String, usize)> {
    [
        ("failed", "failed", 1),
        ("fresh", "ok", 0),
        ("stale", "stale", 1),
        ("unverified", "unverified", 1),
    ]
    .iter()
    .map(|(d, s, n)| (d.to_string(), s.to_string(), *n))
    .collect()
}

/// pgbak with the S3 server's environment and a bucket, no database.
fn pgbak_check_s3(server: &S3Server, bucket: &str, prefix: &str) -> std::process::Command {
    let mut cmd = support::pgbak_bare();
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    cmd.env("AWS_SECRET_ACCESS_KEY", crate::support::bucket::SECRET)
        .env("S3_BUCKET", bucket)
        .env("S3_PREFIX", prefix)
        .arg("check")
        .arg("--s3");
    cmd
}

/// `synthetic`'s meta.json with an anomaly pin added (what the anomaly check writes).
fn pinned(meta: &[u8]) -> Vec<u8> {
    let mut meta: serde_json::Value = serde_json::from_slice(meta).unwrap();
    meta["pinned"] = serde_json::json!({
        "pinned_at": "2026-11-25T02:10:00Z",
        "reason": "compared with the next backup: total rows 128 -> 3",
    });
    serde_json::to_vec_pretty(&meta).unwrap()
}

#[test]
fn check_judges_local_groups_and_exits_by_the_worst() {
    let dir = backup_dir("check-local");
    write_fleet(&dir);
    let check = |extra: &[&str]| {
        let mut cmd = support::pgbak_bare();
        cmd.args(["check", "--backup-dir"]).arg(&dir).args(extra);
        run(&mut cmd)
    };

    let prom = dir.join("metrics/pgbak_check.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let out = check(&["--json", "--prometheus", prom.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(verdicts(&report), expected(), "{report:#}");
    let group = |name: &str| {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["database"] == name)
            .unwrap()
            .clone()
    };
    let fresh = group("fresh");
    assert_eq!(fresh["backups"], 2);
    assert_eq!(fresh["last_verify"]["passed"], true);
    assert_eq!(fresh["trend"].as_array().unwrap().len(), 2);
    assert_eq!(fresh["trend"][0]["rows"], 102);
    assert!(fresh["newest"]["age_seconds"].as_i64().unwrap() >= 2 * 3600);
    // The unverified group's newest verified backup is 10 days old.
    let unverified = group("unverified");
    assert!(
        unverified["newest_verified"]["age_seconds"]
            .as_i64()
            .unwrap()
            >= 240 * 3600
    );
    assert_eq!(group("failed")["last_verify"]["passed"], false);
    // One line per failing group says which and why.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for why in [
        "stale (full): newest backup is 30h old (limit 26h)",
        "unverified (full): newest verified backup is 10d old (limit 8d)",
        "failed (full): the last verify failed",
        "check failed: 3 of 4 group(s)",
    ] {
        assert!(stderr.contains(why), "{why:?} not in {stderr}");
    }

    // The textfile: per database, 0644, complete.
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );
    for line in [
        "pgbak_check_ok{database=\"fresh\",mode=\"full\",label=\"\",server=\"\"} 1",
        "pgbak_check_ok{database=\"stale\",mode=\"full\",label=\"\",server=\"\"} 0",
        "pgbak_last_verify_success{database=\"failed\",mode=\"full\",label=\"\",server=\"\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(text.contains("pgbak_last_backup_timestamp_seconds{database=\"fresh\""));
    assert!(text.contains("pgbak_last_verified_backup_timestamp_seconds{database=\"unverified\""));
    assert!(text.contains(
        "pgbak_check_backup_rows{database=\"fresh\",mode=\"full\",label=\"\",server=\"\"} 102"
    ));
    let leftovers: Vec<_> = std::fs::read_dir(prom.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the textfile: {leftovers:?}");

    // --database filters; a healthy selection exits 0, with the table on stdout.
    let out = check(&["--database", "fresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("DATABASE"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains("fresh"), "{table}");
    assert!(table.lines().nth(1).unwrap().ends_with("ok"), "{table}");

    // Limits move the verdicts: 31h makes the stale group fresh, 0 turns a check off.
    let out = check(&["--database", "stale", "--max-age", "31h"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = check(&[
        "--database",
        "unverified",
        "--max-verified-age",
        "0",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        json(&out)["max_verified_age_seconds"],
        serde_json::Value::Null
    );

    // A database with no backup at all fails, and so does an empty store.
    let out = check(&["--database", "fresh", "--database", "nosuch", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let missing = json(&out)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["database"] == "nosuch")
        .unwrap()
        .clone();
    assert_eq!(missing["status"], "missing", "{missing:#}");
    let mut cmd = support::pgbak_bare();
    cmd.args(["check", "--backup-dir"]).arg(dir.join("empty"));
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no full backups found"));

    // Usage errors exit 2.
    for bad in [
        &["--max-age", "soon"][..],
        &["--max-verified-age", "26"],
        &["--mode", "weekly"],
    ] {
        let out = check(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", output_text(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_judges_s3_groups_and_a_real_backup_without_a_database_connection() {
    let server = s3();
    let bucket = server.fresh_bucket("check");
    let prefix = "fleet/pg/";
    for (dump, dump_bytes, meta, meta_bytes) in fleet() {
        server.put_object(&bucket, &format!("{prefix}{dump}"), dump_bytes, None);
        server.put_object(&bucket, &format!("{prefix}{meta}"), meta_bytes, None);
    }
    // A dump whose meta.json never arrived is incomplete, not a backup.
    let (orphan, bytes, _, _) = synthetic("orphan", 1, None);
    server.put_object(&bucket, &format!("{prefix}{orphan}"), bytes, None);
    let nowhere = backup_dir("check-s3").join("no-local-dir");

    let out = run(pgbak_check_s3(server, &bucket, prefix)
        .arg("--backup-dir")
        .arg(&nowhere)
        .arg("--json"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    crate::support::bucket::assert_no_secret(&out);
    let report = json(&out);
    let mut want = expected();
    want.insert(2, ("orphan".into(), "missing".into(), 1));
    assert_eq!(verdicts(&report), want, "{report:#}");

    // A real backup made by pgbak to the same prefix: fresh, not yet verified.
    let pg = pg16();
    let db = pg.fixture_db("check real", 0.05);
    let dir = backup_dir("check-real");
    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let database = db.name.clone();
    let out = run(pgbak_check_s3(server, &bucket, prefix)
        .args(["--json", "--database", &database, "--backup-dir"])
        .arg(&nowhere));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json(&out);
    assert_eq!(
        verdicts(&report),
        [(database.clone(), "unverified".into(), 1)]
    );
    let newest = &report["groups"][0]["newest"];
    assert!(newest["rows"].as_u64().unwrap() > 0, "{report:#}");
    assert!(newest["age_seconds"].as_i64().unwrap() < 600);
    // Verified locally: the local meta.json (with the result) wins over the bucket's copy.
    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .args(["verify", "--backup-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(pgbak_check_s3(server, &bucket, prefix)
        .args(["--database", &database, "--backup-dir"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // `cron --verify` copies the verified meta.json to the bucket: a check of the bucket
    // alone (the local directory gone, as with a pod's scratch space) sees the result.
    let cron_dir = backup_dir("check-cron");
    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .args(["cron", "--verify", "--keep", "0", "--backup-dir"])
        .arg(cron_dir.join("backups"))
        .arg("--log-dir")
        .arg(cron_dir.join("log")));
    assert!(out.status.success(), "{}", output_text(&out));
    std::fs::remove_dir_all(&cron_dir).unwrap();
    let out = run(pgbak_check_s3(server, &bucket, prefix)
        .args(["--json", "--database", &database, "--backup-dir"])
        .arg(&nowhere));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    let group = &report["groups"][0];
    assert_eq!(group["last_verify"]["passed"], true, "{report:#}");
    assert_eq!(group["newest"]["name"], group["newest_verified"]["name"]);
    assert_eq!(group["backups"], 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_pings_its_heartbeat_in_the_healthchecks_and_plain_conventions() {
    let dir = backup_dir("check-heartbeat");
    write_fleet(&dir);
    let listener = HttpListener::ok();
    let check = |kind: &str, extra: &[&str]| {
        let mut cmd = support::pgbak_bare();
        cmd.args(["check", "--backup-dir"])
            .arg(&dir)
            .args(["--heartbeat-kind", kind])
            .env("PGBAK_CHECK_HEARTBEAT_URL", listener.url())
            .args(extra);
        run(&mut cmd)
    };
    // healthchecks: /start, then /fail with the failing groups as the body.
    let out = check("healthchecks", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        !output_text(&out).contains(&listener.url()),
        "the URL is a secret"
    );
    let got = listener.wait_for(2, Duration::from_secs(10));
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("GET", "/hook/start")
    );
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("POST", "/hook/fail")
    );
    let body = got[1].body_text();
    assert!(
        body.contains("stale (full): newest backup is 30h old"),
        "{body}"
    );
    assert!(body.contains("check failed: 3 of 4"), "{body}");
    // A healthy selection: success with the report.
    let out = check("healthchecks", &["--database", "fresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let got = listener.wait_for(4, Duration::from_secs(10));
    assert_eq!(
        (got[3].method.as_str(), got[3].path.as_str()),
        ("POST", "/hook")
    );
    assert!(got[3].body_text().contains("check passed: 1 group(s)"));
    // plain: one GET on success, nothing on failure.
    let out = check("plain", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let out = check("plain", &["--database", "fresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let got = listener.wait_for(5, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let got_all = listener.requests();
    assert_eq!(got_all.len(), 5, "{got_all:?}");
    assert_eq!(
        (got[4].method.as_str(), got[4].path.as_str()),
        ("GET", "/hook")
    );
    // A heartbeat URL that is not http(s) is a usage error.
    let mut cmd = support::pgbak_bare();
    cmd.args(["check", "--backup-dir"])
        .arg(&dir)
        .env("PGBAK_CHECK_HEARTBEAT_URL", "ftp://x/y");
    assert_eq!(run(&mut cmd).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_pins_and_object_lock_without_failing_the_group() {
    // A directory: the backup before the newest is pinned.
    let dir = backup_dir("check-pinned");
    std::fs::create_dir_all(&dir).unwrap();
    let newest = synthetic("pinned", 2, Some(true));
    let before = synthetic("pinned", 26, Some(true));
    let pinned_stem = before.0.trim_end_matches(".dump").to_owned();
    for (dump, dump_bytes, meta, meta_bytes) in [newest.clone(), before.clone()] {
        let meta_bytes = if dump == before.0 {
            pinned(&meta_bytes)
        } else {
            meta_bytes
        };
        std::fs::write(dir.join(dump), dump_bytes).unwrap();
        std::fs::write(dir.join(meta), meta_bytes).unwrap();
    }
    let prom = dir.join("pgbak_check.prom");
    let mut cmd = support::pgbak_bare();
    cmd.args(["check", "--json", "--backup-dir"])
        .arg(&dir)
        .arg("--prometheus")
        .arg(&prom);
    let out = run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a pin is no failure: {}",
        output_text(&out)
    );
    let report = json(&out);
    let group = &report["groups"][0];
    assert_eq!(group["pinned"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(group["pinned"][0]["name"], pinned_stem.as_str());
    assert_eq!(group["pinned"][0]["pinned_at"], "2026-11-25T02:10:00Z");
    assert!(group["pinned"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("128 -> 3"));
    assert_eq!(group["locked_until"], serde_json::Value::Null);
    let text = std::fs::read_to_string(&prom).unwrap();
    let line =
        "pgbak_check_pinned_backups{database=\"pinned\",mode=\"full\",label=\"\",server=\"\"} 1";
    assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    assert!(
        !text.contains("pgbak_check_locked_until_timestamp_seconds{"),
        "{text}"
    );
    // The table has the columns.
    let mut cmd = support::pgbak_bare();
    cmd.args(["check", "--backup-dir"]).arg(&dir);
    let out = run(&mut cmd);
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("PINNED") && header.contains("LOCKED UNTIL"),
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[row.len() - 3..], ["1", "-", "ok"], "{table}");
    let _ = std::fs::remove_dir_all(&dir);

    // A bucket with Object Lock: the newest dump is locked, the older one is not.
    let server = s3();
    let bucket = format!("t-check-lock-{}", std::process::id());
    let client = server.client();
    support::s3::block_on(async {
        client
            .create_bucket()
            .bucket(&bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
    })
    .expect("creating a bucket with Object Lock");
    let prefix = "locked/";
    let locked = synthetic("locked", 2, Some(true));
    for (dump, dump_bytes, meta, meta_bytes) in
        [locked.clone(), synthetic("locked", 26, Some(true))]
    {
        server.put_object(&bucket, &format!("{prefix}{dump}"), dump_bytes, None);
        server.put_object(&bucket, &format!("{prefix}{meta}"), meta_bytes, None);
    }
    let until = (Utc::now() + TimeDelta::days(30)).timestamp();
    support::s3::block_on(async {
        use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
        client
            .put_object_retention()
            .bucket(&bucket)
            .key(format!("{prefix}{}", locked.0))
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(until))
                    .build(),
            )
            .send()
            .await
    })
    .expect("locking the newest dump");
    let nowhere = backup_dir("check-lock").join("no-local-dir");
    let prom = backup_dir("check-lock-prom").join("check.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let out = run(pgbak_check_s3(server, &bucket, prefix)
        .arg("--backup-dir")
        .arg(&nowhere)
        .arg("--json")
        .arg("--prometheus")
        .arg(&prom));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    let group = &report["groups"][0];
    let want = chrono::DateTime::from_timestamp(until, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(group["locked_until"], want.as_str(), "{report:#}");
    assert_eq!(group["pinned"].as_array().unwrap().len(), 0);
    let text = std::fs::read_to_string(&prom).unwrap();
    let line = format!(
        "pgbak_check_locked_until_timestamp_seconds{{database=\"locked\",mode=\"full\",label=\"\",server=\"\"}} {until}"
    );
    assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    let _ = std::fs::remove_dir_all(prom.parent().unwrap());
}
