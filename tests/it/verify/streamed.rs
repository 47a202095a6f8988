//! Issue 28 item 5: `verify --jobs 1` of a backup in S3 streams the download into pg_restore;
//! the checksum check is settled when the stream ends: a pass names it, a flipped byte fails
//! it (exit 1, the backup's verdict failed) and the temporary database is gone either way.

use serde_json::Value;

use crate::support::bucket::{keys, pgbak_s3, s3_case};
use crate::support::verify::{verify_dbs, Dir};
use crate::support::{self, output_text, run};

const PREFIX: &str = "vstream/";

fn check<'r>(report: &'r Value, name: &str) -> (&'r str, &'r str) {
    let found = report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name));
    (
        found.and_then(|c| c["status"].as_str()).unwrap_or("absent"),
        found.and_then(|c| c["detail"].as_str()).unwrap_or(""),
    )
}

#[test]
fn verify_streamed_settles_the_checksum_at_the_end_and_a_flipped_byte_fails_it() {
    let (db, server, bucket, root) = s3_case("verify streamed", 0.05);
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["backup", "--output-dir"])
        .arg(&root));
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = keys(server, &bucket, PREFIX, ".dump").remove(0);
    let uri = format!("s3://{bucket}/{PREFIX}{dump}");
    let tmp = Dir::new("verify-streamed-tmp");
    let verify = || {
        let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
            .args(["verify", "--json", "--jobs", "1", &uri])
            .env("PGBAK_S3_DOWNLOAD_PART_SIZE", (64 << 10).to_string())
            .env("TMPDIR", &*tmp));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, report)
    };

    let (out, report) = verify();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("into pg_restore as it downloads"), "{text}");
    let (status, detail) = check(&report, "checksum");
    assert_eq!(status, "pass", "{text}");
    assert!(detail.contains("checked as the dump streamed"), "{detail}");
    assert_eq!(check(&report, "row counts match").0, "pass");
    assert!(support::files(&tmp).is_empty());

    // A byte flipped in the middle of the object: the checksum check fails, exit 1.
    let key = format!("{PREFIX}{dump}");
    let mut bytes = server.get_object(&bucket, &key);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    server.put_object(&bucket, &key, bytes, None);
    let (out, report) = verify();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let (status, detail) = check(&report, "checksum");
    assert_eq!(status, "fail", "{text}");
    assert!(detail.contains("does not match its meta.json"), "{detail}");
    assert_eq!(report["passed"], false);
    assert!(
        verify_dbs(db.pg(), &db.name).is_empty(),
        "no temporary database left"
    );
    assert!(support::files(&tmp).is_empty());
    let stem = dump.trim_end_matches(".dump");
    let verdict: Value =
        serde_json::from_slice(&server.get_object(&bucket, &format!("{PREFIX}{stem}.verify.json")))
            .unwrap();
    assert_eq!(verdict["verification"]["passed"], false, "{verdict}");
    let _ = std::fs::remove_dir_all(&root);
}
