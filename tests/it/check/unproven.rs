//! `check --max-unproven-age` (issue 28 item 3): every retained backup of a group re-proven
//! within a span, by a restore verify or a `verify --checksum-only` proof, read from the bucket
//! alone; the group fails naming its backup proven longest ago.

use std::process::Output;

use serde_json::Value;

use crate::support::bucket::{backup_dir, check_bucket, keys, pgbak_s3, s3_case};
use crate::support::{output_text, run};

const PREFIX: &str = "unproven/";

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)))
}

#[test]
fn check_max_unproven_age_fails_the_group_until_every_backup_is_proven_again() {
    let (db, server, bucket, root) = s3_case("check unproven", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    for n in 0..2 {
        let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
            .args(["backup", "--keep", "0", "--output-dir"])
            .arg(root.join(format!("pod{n}"))));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let dumps = keys(server, &bucket, PREFIX, ".dump");
    // The newer one restored by a real verify: a restore is a proof.
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .arg("verify")
        .arg(format!("s3://{bucket}/{PREFIX}{}", dumps[1])));
    assert!(out.status.success(), "{}", output_text(&out));
    std::thread::sleep(std::time::Duration::from_secs(11));

    let database = db.name.clone();
    let limits = [
        "--database",
        database.as_str(),
        "--max-age",
        "0",
        "--max-verified-age",
        "0",
        "--max-unproven-age",
        "10s",
    ];
    let out = check_bucket(server, &bucket, PREFIX, &limits);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let group = &json(&out)["groups"][0];
    assert_eq!(group["status"], "unproven", "{group:#}");
    let oldest = &group["oldest_unproven"];
    assert_eq!(
        oldest["name"],
        dumps[0].trim_end_matches(".dump"),
        "{group:#}"
    );
    assert!(oldest["last_proven"].is_null(), "never proven: {group:#}");
    assert!(
        text.contains(&database),
        "the failing group is named: {text}"
    );

    // Every backup read back: proven now, the group passes.
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["verify", "--checksum-only", "--backup-dir"])
        .arg(backup_dir("unproven-none")));
    assert!(out.status.success(), "{}", output_text(&out));
    let out = check_bucket(server, &bucket, PREFIX, &limits);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let group = &json(&out)["groups"][0];
    assert!(
        group["oldest_unproven"]["last_proven"].is_string(),
        "{group:#}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
