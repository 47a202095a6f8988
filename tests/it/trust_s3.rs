//! S3 on slow links and after failed uploads: no whole-request timeout on a
//! part, and local retention that still runs when only the upload failed.

use std::time::{Duration, Instant};

use crate::s3::{assert_no_secret, backup_dir, pgbak_s3, run};
use crate::support::dumps;
use crate::support::{self, output_text, pg16, s3};

#[test]
fn trust_s3_upload_over_a_slow_link_succeeds_past_30_seconds() {
    let pg = pg16();
    let db = pg.fresh_db("s3 slow link");
    // About 9 KB of incompressible rows, dumped uncompressed: at 200 B/s one
    // part takes about 45 s to send, longer than the SDK's 30 s read timeout.
    db.psql(
        "CREATE TABLE t AS SELECT md5(g::text) || md5((g * 7)::text) AS v \
         FROM generate_series(1, 110) g",
    );
    let server = s3();
    let bucket = server.fresh_bucket("slowlink");
    let dir = backup_dir("s3-slow-link");
    let link = support::proxy::SlowLink::new(server.port, 200);
    let clock = Instant::now();
    let out = run(pgbak_s3(&db, server, &bucket, "slow/")
        .env("S3_ENDPOINT_URL", link.endpoint())
        .args(["backup", "--compress", "none", "--output-dir"])
        .arg(&dir));
    let took = clock.elapsed();
    assert!(
        out.status.success(),
        "after {took:?}: {}",
        output_text(&out)
    );
    assert!(
        took > Duration::from_secs(30),
        "the link was not slow: {took:?}"
    );
    assert_no_secret(&out);
    let names = dumps(&dir);
    assert_eq!(names.len(), 1);
    let size = std::fs::metadata(dir.join(&names[0])).unwrap().len();
    let objects = server.list_objects(&bucket, "slow/");
    let dump = objects
        .iter()
        .find(|o| o.key.ends_with(".dump"))
        .unwrap_or_else(|| panic!("no dump object: {objects:?}"));
    assert_eq!(dump.size, size);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two earlier local-only backups, then one whose upload fails with --keep 1:
/// the run fails (exit 1), and local retention still keeps only the new one.
fn failed_upload_prunes_locally(cron: bool) {
    let pg = pg16();
    let db = pg.fresh_db(if cron {
        "upload fails cron"
    } else {
        "upload fails"
    });
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g");
    let server = s3();
    let bucket = server.fresh_bucket("uploadfails");
    let dir = backup_dir("upload-fails");
    for _ in 0..2 {
        let out = run(pgbak_s3(&db, server, &bucket, "p/")
            .args(["backup", "--no-s3", "--keep", "0", "--output-dir"])
            .arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(Duration::from_millis(1100));
    }
    let closed = support::free_port();
    let mut cmd = pgbak_s3(&db, server, &bucket, "p/");
    cmd.env("S3_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"));
    let logs = backup_dir("upload-fails-logs");
    if cron {
        cmd.env("BACKUP_DIR", &dir)
            .env("BACKUP_KEEP", "1")
            .env("LOG_DIR", &logs)
            .arg("cron");
    } else {
        cmd.args(["backup", "--keep", "1", "--output-dir"])
            .arg(&dir);
    }
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is complete, but uploading it"), "{stderr}");
    let left = dumps(&dir);
    assert_eq!(left.len(), 1, "local retention did not run: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&logs);
}

#[test]
fn trust_failed_upload_still_applies_local_retention() {
    failed_upload_prunes_locally(false);
}

#[test]
fn trust_failed_upload_in_cron_still_applies_local_retention() {
    failed_upload_prunes_locally(true);
}

#[test]
fn trust_s3_cleanup_never_aborts_a_live_upload_from_another_directory() {
    let pg = pg16();
    let db = pg.fresh_db("s3 live elsewhere");
    db.load_fixture(0.3);
    let server = s3();
    let bucket = server.fresh_bucket("liveelsewhere");
    let (dir_a, dir_b) = (backup_dir("s3-live-a"), backup_dir("s3-live-b"));
    // Run A uploads slowly (another host or output directory, as far as B knows).
    let link = support::proxy::SlowLink::new(server.port, 50_000);
    let part = support::s3::PART_MIN_SIZE.to_string();
    let a = pgbak_s3(&db, server, &bucket, "p/")
        .env("S3_ENDPOINT_URL", link.endpoint())
        .env("PGBAK_S3_MIN_PART_SIZE", &part)
        .env("PGBAK_S3_PART_SIZE", &part)
        .env("S3_CONCURRENCY", "1")
        .args(["backup", "--compress", "none", "--output-dir"])
        .arg(&dir_a)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.multipart_uploads(&bucket).is_empty() {
        assert!(Instant::now() < deadline, "A's upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a_key = server.multipart_uploads(&bucket)[0].key.clone();
    std::thread::sleep(Duration::from_millis(1100));

    // Run B, same database and mode, another directory: its cleanup leaves A alone.
    // moto reports every upload as initiated in 2010, so the age rule (24 h)
    // would call any upload stale there: this test is about the key's own
    // evidence, with the age limit out of the way.
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .env("PGBAK_S3_STALE_UPLOAD_AGE", "36500d")
        .args(["backup", "--output-dir"])
        .arg(&dir_b));
    assert!(out.status.success(), "{}", output_text(&out));
    let open: Vec<String> = server
        .multipart_uploads(&bucket)
        .into_iter()
        .map(|u| u.key)
        .collect();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    let a_out = a.wait_with_output().unwrap();
    assert!(
        open.contains(&a_key),
        "B aborted A's live upload {a_key}: {}",
        output_text(&out)
    );
    assert_eq!(a_out.status.code(), Some(143), "{}", output_text(&a_out));
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}
