//! Issue 28 item 5: `verify --jobs 1` of a backup in S3 streams the download into pg_restore;
//! the checksum check is settled when the stream ends: a pass names it, a flipped byte fails
//! it (exit 1, the backup's verdict failed) and the temporary database is gone either way; a
//! download that breaks midway is no verdict at all (exit 1, nothing recorded).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::bucket::{pgbak_s3, s3_backup, s3_case};
use crate::support::verify::{verify_dbs, Dir};
use crate::support::{self, output_text, run, wait_until};

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
    let dump = s3_backup(&db, server, &bucket, PREFIX, &root, &[]);
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
    server.flip_byte(&bucket, &key);
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

#[test]
fn verify_streamed_whose_download_breaks_midway_gives_no_verdict_and_leaves_nothing() {
    let (db, server, bucket, root) = s3_case("verify streamed cut", 0.2);
    let dump = s3_backup(&db, server, &bucket, PREFIX, &root, &[]);
    let uri = format!("s3://{bucket}/{PREFIX}{dump}");
    let tmp = Dir::new("verify-streamed-cut-tmp");
    let mut link = support::proxy::SlowLink::new(server.port, 0);
    // Ranges of 16 KiB, one at a time: the stream lasts long enough to be cut while
    // pg_restore reads it.
    let mut child = pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["verify", "--json", "--jobs", "1", &uri])
        .env("S3_ENDPOINT_URL", link.endpoint())
        .env("PGBAK_S3_DOWNLOAD_PART_SIZE", (16 << 10).to_string())
        .env("S3_DOWNLOAD_CONCURRENCY", "1")
        .env("TMPDIR", &*tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "verify ended before the cut"
        );
        !verify_dbs(db.pg(), &db.name).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    link.cut();
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // No verdict on the backup: no report, no checksum judged, none recorded (the bucket is
    // out of reach through the cut link anyway; the report says what would have been).
    assert!(out.stdout.is_empty(), "{text}");
    assert!(!text.contains("FAIL  checksum"), "{text}");
    assert!(!text.contains("could not record the verdict"), "{text}");
    let stem = dump.trim_end_matches(".dump");
    assert!(server
        .try_get_object(&bucket, &format!("{PREFIX}{stem}.verify.json"))
        .is_err());
    assert!(text.contains("failed midway"), "{text}");
    assert!(
        verify_dbs(db.pg(), &db.name).is_empty(),
        "no temporary database left"
    );
    assert!(
        support::files(&tmp).is_empty(),
        "{:?}",
        support::files(&tmp)
    );
    let _ = std::fs::remove_dir_all(&root);
}
