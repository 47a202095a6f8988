//! `pgbak list`: what is on disk and in the bucket, newest first, from meta.json files; without
//! credentials, `list --s3` says they are missing.

use std::collections::BTreeSet;

use pgbak::meta::Meta;

use crate::support::bucket::{assert_no_secret, backup_dir, files, pgbak_s3};
use crate::support::{self, output_text, pg16, pgbak_bare, run, s3};

#[test]
fn list_json_matches_disk_and_bucket() {
    let pg = pg16();
    let db = pg.fixture_db("list json", 0.05);
    let server = s3();
    let bucket = server.fresh_bucket("list");
    let dir = backup_dir("list-json");
    let prefix = "list/";
    let backup = |extra: &[&str]| {
        let out = run(pgbak_s3(&db, server, &bucket, prefix)
            .args(["backup", "--keep", "0", "--output-dir"])
            .arg(&dir)
            .args(extra));
        assert!(out.status.success(), "{}", output_text(&out));
        // Different groups: only distinct seconds give them a distinct order.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    };
    backup(&["--no-s3"]); // local only
    backup(&["--label", "pre-migration"]); // local and S3
    backup(&["--mode", "schema"]); // S3 only, once its local files are gone
    let metas = files(&dir, ".meta.json");
    assert_eq!(metas.len(), 3);
    let read = |f: &str| Meta::read(&dir.join(f)).unwrap();
    let local_only = read(
        metas
            .iter()
            .find(|m| !m.contains("_schema_") && !m.contains("pre-migration"))
            .unwrap(),
    );
    let both_file = metas
        .iter()
        .find(|m| m.contains("pre-migration"))
        .unwrap()
        .clone();
    let schema_file = metas
        .iter()
        .find(|m| m.contains("_schema_"))
        .unwrap()
        .clone();
    let both = read(&both_file);
    let s3_only = read(&schema_file);
    std::fs::remove_file(dir.join(&schema_file)).unwrap();
    std::fs::remove_file(dir.join(&s3_only.file)).unwrap();
    // verify records its result in the local meta.json; list shows it.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&both_file)).unwrap()).unwrap();
    json["verification"] = serde_json::json!({
        "verified_at": "2026-11-25T03:00:00Z", "passed": true, "pgbak_version": "0.1.0"
    });
    std::fs::write(dir.join(&both_file), json.to_string()).unwrap();

    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .args(["list", "--s3", "--json", "--backup-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_no_secret(&out);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 3, "{listed:#?}");

    // Newest first.
    let created: Vec<&str> = listed
        .iter()
        .map(|e| e["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);
    assert_eq!(listed[0]["mode"], "schema");

    let by_name = |meta: &Meta| {
        let stem = meta.file.trim_end_matches(".dump");
        listed
            .iter()
            .find(|e| e["name"] == stem)
            .unwrap_or_else(|| panic!("{stem} not listed"))
            .clone()
    };
    for (meta, location, verified) in [
        (&local_only, "local", serde_json::Value::Null),
        (&both, "both", serde_json::json!(true)),
        (&s3_only, "s3", serde_json::Value::Null),
    ] {
        let e = by_name(meta);
        assert_eq!(e["where"], location, "{e:#}");
        assert_eq!(e["size_bytes"], meta.size_bytes);
        assert_eq!(e["sha256"], meta.sha256.as_str());
        assert_eq!(e["alembic_revision"], "013");
        assert_eq!(e["mode"], meta.mode.as_str());
        assert_eq!(e["label"], serde_json::json!(meta.label));
        assert_eq!(e["verified"], verified);
        assert_eq!(e["complete"], true);
        assert!(e["age_seconds"].as_i64().unwrap() >= 0);
    }

    // Exactly what is on disk, exactly what is in the bucket.
    let on_disk: BTreeSet<String> = files(&dir, ".dump")
        .into_iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let listed_local: BTreeSet<String> = listed
        .iter()
        .filter_map(|e| e["local"]["dump"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed_local, on_disk);
    let in_bucket: BTreeSet<String> = server
        .list_objects(&bucket, prefix)
        .into_iter()
        .map(|o| o.key)
        .collect();
    let listed_s3: BTreeSet<String> = listed
        .iter()
        .flat_map(|e| {
            [
                e["s3"]["dump_key"].as_str().map(str::to_owned),
                e["s3"]["meta_key"].as_str().map(str::to_owned),
            ]
        })
        .flatten()
        .collect();
    assert_eq!(listed_s3, in_bucket);
    for e in listed.iter().filter(|e| e["s3"].is_object()) {
        assert_eq!(e["s3"]["bucket"], bucket.as_str());
        assert_eq!(e["s3"]["storage_class"], "STANDARD_IA");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn list_table_shows_local_backups_newest_first() {
    let pg = pg16();
    let db = pg.fixture_db("list table", 0.05);
    let dir = backup_dir("list-table");
    let mut cmd = support::pgbak_bare();
    cmd.args(["list", "--backup-dir"]).arg(&dir);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(out.stdout.is_empty(), "nothing to list");
    // --s3 without a bucket is a configuration error.
    let mut cmd = support::pgbak_bare();
    cmd.args(["list", "--s3", "--backup-dir"]).arg(&dir);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("S3_BUCKET"));

    for mode in ["full", "schema"] {
        // A second apart, so "newest first" is decided by the names' timestamps.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = run(support::pgbak(pg)
            .env("DATABASE_URL", db.url())
            .args(["backup", "--mode", mode, "--output-dir"])
            .arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // A dump without its meta.json (a crash between the renames) is listed as incomplete.
    std::fs::write(dir.join("x_full_20200101T000000.dump"), b"PGDMP").unwrap();

    let mut cmd = support::pgbak_bare();
    cmd.args(["list", "--backup-dir"]).arg(&dir);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for column in [
        "NAME", "MODE", "LABEL", "SIZE", "AGE", "ALEMBIC", "VERIFIED", "WHERE",
    ] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    assert!(
        lines[1].contains("_schema_") && lines[1].contains("schema"),
        "{text}"
    );
    assert!(
        lines[2].contains("_full_") && lines[2].contains("013"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("local") && lines[2].ends_with("local"),
        "{text}"
    );
    assert!(
        lines[3].contains("x_full_20200101T000000 (incomplete)"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `list --s3` without any credentials says so (exit 2), not "IMDS is disabled".
#[test]
fn list_s3_without_credentials_says_they_are_missing() {
    let out = run(pgbak_bare()
        .args(["list", "--s3", "--backup-dir", "/nonexistent/pgbak"])
        .env("S3_BUCKET", "nobody")
        .env("S3_ENDPOINT_URL", s3().env()[0].1.clone())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", "/nonexistent"));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(!stderr.contains("IMDS"), "{stderr}");
}
