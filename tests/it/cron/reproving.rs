//! Cron re-proves retained backups (issue 28 item 3): `PGBAK_VERIFY_CHECKSUMS=weekly` reads
//! every retained backup of the run's database back from the bucket when the bucket's newest
//! checksum proof is older than a week (no state besides the bucket), and `PGBAK_VERIFY_SAMPLE=1`
//! restores the backup proven longest ago; a byte flipped is found and fails the run.

use serde_json::Value;

use crate::support::bucket::{keys, pgbak_s3, s3_case};
use crate::support::{output_text, run, S3Server};

const PREFIX: &str = "cron-reprove/";

fn verdict(server: &S3Server, bucket: &str, dump: &str) -> Value {
    let key = format!("{PREFIX}{}", dump.replace(".dump", ".verify.json"));
    serde_json::from_slice(&server.get_object(bucket, &key)).expect("a verdict document")
}

#[test]
fn cron_verify_checksums_weekly_and_sample_reprove_the_bucket() {
    let (db, server, bucket, root) = s3_case("cron reprove", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let cron = |n: u32| {
        let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
            .arg("cron")
            .env("PGBAK_VERIFY_CHECKSUMS", "weekly")
            .env("PGBAK_VERIFY_SAMPLE", "1")
            .env("BACKUP_DIR", root.join(format!("pod{n}")))
            .env("LOG_DIR", root.join("logs")));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        out
    };

    // The first run: no proof in the bucket, so the checksums are due; the sample restores
    // the one backup, never restored before.
    let out = cron(1);
    assert!(out.status.success(), "{}", output_text(&out));
    let first = keys(server, &bucket, PREFIX, ".dump");
    assert_eq!(first.len(), 1);
    let doc = verdict(server, &bucket, &first[0]);
    assert_eq!(doc["checksum"]["passed"], true, "{doc:#}");
    assert_eq!(doc["verification"]["passed"], true, "sampled: {doc:#}");

    // A byte flipped in it. The second run: the newest proof is minutes old, so weekly
    // checksums are not due (the flip goes unseen); the sample restores the new backup
    // (never restored), not the first (restored already).
    let key = format!("{PREFIX}{}", first[0]);
    server.flip_byte(&bucket, &key);
    let out = cron(2);
    assert!(out.status.success(), "{}", output_text(&out));
    let both = keys(server, &bucket, PREFIX, ".dump");
    let second = both.iter().find(|k| **k != first[0]).unwrap().clone();
    let doc = verdict(server, &bucket, &second);
    assert_eq!(doc["verification"]["passed"], true, "sampled: {doc:#}");
    assert!(doc.get("checksum").is_none(), "not due: {doc:#}");

    // A week later (the proof backdated): due again, the flip is found and fails the run,
    // naming the backup; the first backup is marked failed in the bucket.
    let mut old = verdict(server, &bucket, &first[0]);
    old["checksum"]["checked_at"] = Value::from("2020-01-01T00:00:00Z");
    server.put_object(
        &bucket,
        &format!("{PREFIX}{}", first[0].replace(".dump", ".verify.json")),
        serde_json::to_vec(&old).unwrap(),
        None,
    );
    let out = cron(3);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&first[0]), "{text}");
    let doc = verdict(server, &bucket, &first[0]);
    assert_eq!(doc["verification"]["passed"], false, "{doc:#}");
    assert_eq!(doc["verification"]["failed_checks"][0], "checksum");
    let _ = std::fs::remove_dir_all(&root);
}
