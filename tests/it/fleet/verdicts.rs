//! Verdicts live where the backup lives (issue 23 item 2): `verify --from-s3`
//! and `verify s3://...` record pass and fail beside the backup in the bucket
//! (`<name>.verify.json`), and `check`, `list`, retention's "newest verified"
//! and the selection of restore and verify see them from any host.

use std::process::Output;

use serde_json::Value;

use crate::support::bucket::{backup_dir, check_bucket, keys, pgbak_s3, s3_case, s3_meta};
use crate::support::{output_text, run, stdout_json};

const PREFIX: &str = "verdicts/";

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)))
}

#[test]
fn fleet_verify_from_s3_records_pass_and_fail_in_the_bucket_for_check_retention_and_selection() {
    // The fixture: the tables verify expects by default.
    let (db, server, bucket, root) = s3_case("fleet verdicts", 0.05);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g");
    let backup = |n: u32, keep: &str| {
        let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
            .args(["backup", "--keep", keep, "--output-dir"])
            .arg(root.join(format!("pod{n}"))));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    };
    backup(1, "0");
    let first = keys(server, &bucket, PREFIX, ".dump");
    assert_eq!(first.len(), 1);
    let database = db.name.clone();
    let limits = ["--database", database.as_str(), "--max-age", "1h"];

    // Nobody verified it: a host that reads only the bucket says so.
    let out = check_bucket(server, &bucket, PREFIX, &limits);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(json(&out)["groups"][0]["status"], "unverified");

    // verify --from-s3 passes: the verdict goes beside the backup, meta.json stays as it was.
    let meta_key = format!("{PREFIX}{}", first[0].replace(".dump", ".meta.json"));
    let meta_before = server.get_object(&bucket, &meta_key);
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["verify", "--from-s3", "--backup-dir"])
        .arg(backup_dir("fleet-verdicts-none")));
    assert!(out.status.success(), "{}", output_text(&out));
    let verdicts = keys(server, &bucket, PREFIX, ".verify.json");
    assert_eq!(verdicts, [first[0].replace(".dump", ".verify.json")]);
    assert_eq!(
        server.get_object(&bucket, &meta_key),
        meta_before,
        "meta.json untouched"
    );
    let verdict: Value =
        serde_json::from_slice(&server.get_object(&bucket, &format!("{PREFIX}{}", verdicts[0])))
            .unwrap();
    assert_eq!(verdict["verification"]["passed"], true, "{verdict}");

    let out = check_bucket(server, &bucket, PREFIX, &limits);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    assert_eq!(
        report["groups"][0]["last_verify"]["passed"], true,
        "{report:#}"
    );

    // A second backup that fails its verify (a table it must hold is not there):
    // verify s3://... records the failure beside it.
    backup(2, "0");
    let both = keys(server, &bucket, PREFIX, ".dump");
    let second = both.iter().find(|k| **k != first[0]).unwrap().clone();
    let dump_key = format!("{PREFIX}{second}");
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .arg("verify")
        .arg(format!("s3://{bucket}/{dump_key}"))
        .args(["--expect-table", "public.nosuch"]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let failed: Value = serde_json::from_slice(&server.get_object(
        &bucket,
        &format!("{PREFIX}{}", second.replace(".dump", ".verify.json")),
    ))
    .unwrap();
    assert_eq!(failed["verification"]["passed"], false, "{failed}");

    // check sees the failure; list shows it.
    let out = check_bucket(server, &bucket, PREFIX, &limits);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(json(&out)["groups"][0]["status"], "failed");
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["list", "--s3", "--json", "--backup-dir"])
        .arg(backup_dir("fleet-verdicts-list")));
    let list = stdout_json(&out);
    let verified: Vec<(String, Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["verified"].clone(),
            )
        })
        .collect();
    assert!(
        verified.contains(&(
            second.trim_end_matches(".dump").to_owned(),
            Value::Bool(false)
        )),
        "{verified:?}"
    );
    assert!(
        verified.contains(&(
            first[0].trim_end_matches(".dump").to_owned(),
            Value::Bool(true)
        )),
        "{verified:?}"
    );

    // Selection passes over the failed backup: verify --from-s3 picks the first one.
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["verify", "--from-s3", "--json", "--backup-dir"])
        .arg(backup_dir("fleet-verdicts-none2")));
    assert!(out.status.success(), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains(&format!("skipping {}", second.trim_end_matches(".dump"))),
        "{text}"
    );

    // Retention with --keep 1 from a fresh pod: the newest verified (the first) stays,
    // the failed one goes, and its verdict object with it.
    backup(3, "1");
    let left = keys(server, &bucket, PREFIX, ".dump");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&first[0]), "newest verified kept: {left:?}");
    assert!(!left.contains(&second), "{left:?}");
    let verdicts = keys(server, &bucket, PREFIX, ".verify.json");
    assert_eq!(
        verdicts,
        [first[0].replace(".dump", ".verify.json")],
        "no orphan verdict"
    );
    let meta = s3_meta(server, &bucket, &meta_key);
    assert!(
        meta.get("verification").is_none_or(Value::is_null),
        "{meta}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn fleet_cron_verify_records_its_verdict_in_the_bucket_without_rewriting_meta_json() {
    let (db, server, bucket, root) = s3_case("fleet cron verdict", 0.05);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["cron", "--verify"])
        .env("BACKUP_DIR", root.join("backups"))
        .env("LOG_DIR", root.join("logs")));
    assert!(out.status.success(), "{}", output_text(&out));
    let dumps = keys(server, &bucket, PREFIX, ".dump");
    let verdicts = keys(server, &bucket, PREFIX, ".verify.json");
    assert_eq!(verdicts, [dumps[0].replace(".dump", ".verify.json")]);
    let meta = s3_meta(
        server,
        &bucket,
        &format!("{PREFIX}{}", dumps[0].replace(".dump", ".meta.json")),
    );
    assert!(
        meta.get("verification").is_none_or(Value::is_null),
        "{meta}"
    );
    // The local copy has its verdict beside it too.
    let local = root
        .join("backups")
        .join(dumps[0].replace(".dump", ".verify.json"));
    assert!(local.is_file(), "{}", local.display());
    let out = check_bucket(server, &bucket, PREFIX, &["--database", &db.name]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let _ = std::fs::remove_dir_all(&root);
}
