//! One pass, N copies: the same bytes at every destination; one destination killed mid-upload
//! leaves the others complete (exit 1, the alert naming it); encrypted, no plaintext anywhere.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{bucket_copy, dir_copy, to_bucket, to_dir};
use crate::encryption::{age_keygen, contains_pgdmp};
use crate::support::bucket::{backup_dir, pgbak_s3, small_parts, SECRET};
use crate::support::cron::{cron, Dirs};
use crate::support::{output_text, pg16, private_s3, run, s3, second_s3, HttpListener};

#[test]
fn destinations_get_the_same_bytes_in_one_pass() {
    let pg = pg16();
    let db = pg.fixture_db("dest same bytes", 0.05);
    let (main, other) = (s3(), second_s3());
    let bucket = main.fresh_bucket("dest-main");
    let offsite = other.fresh_bucket("dest-offsite");
    let dir = backup_dir("dest-local");
    let nas = backup_dir("dest-nas").join("nas");
    let out = run(pgbak_s3(&db, main, &bucket, "p/")
        .args(["backup", "--output-dir"])
        .arg(&dir)
        .args(["--to", &to_bucket(other, &offsite, "db/", "name=offsite")])
        .args(["--to", &to_dir(&nas, "")]));
    assert!(out.status.success(), "{}", output_text(&out));
    let (local, meta) = dir_copy(&dir);
    let (at_nas, _) = dir_copy(&nas);
    let (at_main, _) = bucket_copy(main, &bucket, "p/");
    let (at_offsite, _) = bucket_copy(other, &offsite, "db/");
    assert_eq!([&at_nas, &at_main, &at_offsite], [&local; 3]);
    assert!(meta.file.ends_with(".dump"));
    // A directory destination is created private, its files too.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&nas).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", nas.display());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(nas.parent().unwrap());
}

#[test]
fn destinations_encrypted_hold_no_plaintext_anywhere() {
    let pg = pg16();
    let db = pg.fixture_db("dest encrypted", 0.05);
    let (main, other) = (s3(), second_s3());
    let bucket = main.fresh_bucket("dest-enc-main");
    let offsite = other.fresh_bucket("dest-enc-off");
    let dir = backup_dir("dest-enc-local");
    let nas = backup_dir("dest-enc-nas");
    let (_key, public) = age_keygen(&backup_dir("dest-enc-keys"), "key.txt");
    let out = run(pgbak_s3(&db, main, &bucket, "p/")
        .args(["backup", "--encrypt-to", &public, "--output-dir"])
        .arg(&dir)
        .args(["--to", &to_bucket(other, &offsite, "", "")])
        .args(["--to", &to_dir(&nas, "")]));
    assert!(out.status.success(), "{}", output_text(&out));
    let (local, _) = dir_copy(&dir);
    let (at_nas, _) = dir_copy(&nas);
    assert_eq!(at_nas, local);
    for (server, bucket, prefix) in [(main, &bucket, "p/"), (other, &offsite, "")] {
        let (sha, bytes) = bucket_copy(server, bucket, prefix);
        assert_eq!(sha, local);
        assert!(!contains_pgdmp(&bytes), "plaintext in s3://{bucket}");
    }
    for d in [&dir, &nas] {
        for name in crate::support::files(d) {
            let bytes = std::fs::read(d.join(&name)).unwrap();
            assert!(!contains_pgdmp(&bytes), "plaintext in {name}");
        }
    }
}

#[test]
fn destinations_one_killed_mid_upload_leaves_the_others_complete_and_alerts() {
    let pg = pg16();
    let db = pg.fixture_db("dest killed", 0.3);
    let main = s3();
    let bucket = main.fresh_bucket("dest-kill-main");
    let doomed = private_s3();
    let offsite = doomed.fresh_bucket("dest-kill-off");
    let dirs = Dirs::new("dest-killed");
    let nas = backup_dir("dest-kill-nas");
    let hook = HttpListener::ok();
    let mut cmd = pgbak_s3(&db, main, &bucket, "p/");
    small_parts(&mut cmd, crate::support::s3::PART_MIN_SIZE);
    let child = cron(cmd, &dirs, &db.url())
        .env("S3_CONCURRENCY", "1")
        .env("PGBAK_COMPRESS", "none")
        .env("ALERT_WEBHOOK_URL", hook.url())
        .env(
            "PGBAK_TO",
            format!(
                "{} {}",
                to_bucket(&doomed, &offsite, "", "name=offsite"),
                to_dir(&nas, "name=nas")
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning pgbak");
    let deadline = Instant::now() + Duration::from_secs(60);
    while doomed.multipart_uploads(&offsite).is_empty() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    doomed.kill();
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        text.contains("is complete on 3 of 4 destinations: offsite failed: "),
        "{text}"
    );
    // The good copies are complete, each with its meta.json, all the same bytes.
    let (local, _) = dir_copy(&dirs.backups);
    assert_eq!(dir_copy(&nas).0, local);
    assert_eq!(bucket_copy(main, &bucket, "p/").0, local);
    // The alert names the destination that failed.
    let requests = hook.wait_for(1, Duration::from_secs(5));
    let body = requests[0].body_text();
    assert!(body.contains("offsite failed"), "{body}");
    assert!(body.contains("3 of 4 destinations"), "{body}");
    let _ = std::fs::remove_dir_all(&nas);
}
