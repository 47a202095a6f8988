//! S3 on slow links and after failed uploads: no whole-request timeout on a
//! part but a stalled one fails in bounded time, the part-size cap that
//! bounds memory, and local retention that still runs when only the upload failed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::bucket::{
    assert_bucket_empty, assert_local_complete, assert_no_secret, backup_dir, files, pgbak_s3,
    s3_case, upload_failed_line,
};
use crate::support::processes::wait_bounded;
use crate::support::{self, dumps, output_text, pg16, run, s3};

/// Backs up `rows` rows of incompressible text, uncompressed, through a link
/// of `rate` bytes a second, with `extra` arguments: it must succeed, slowly
/// (more than `at_least`), with no stall, the dump in the bucket as on disk.
fn slow_link_backup(hint: &str, rows: u32, rate: u64, extra: &[&str], at_least: Duration) {
    let pg = pg16();
    let db = pg.fresh_db(hint);
    db.psql(&format!(
        "CREATE TABLE t AS SELECT md5(g::text) || md5(random()::text) AS v \
         FROM generate_series(1, {rows}) g"
    ));
    let server = s3();
    let bucket = server.fresh_bucket("slowlink");
    let dir = backup_dir("s3-slow-link");
    let link = support::proxy::SlowLink::new(server.port, rate);
    let clock = Instant::now();
    let out = run(pgbak_s3(&db, server, &bucket, "slow/")
        .env("S3_ENDPOINT_URL", link.endpoint())
        .args(["backup", "--compress", "none"])
        .args(extra)
        .arg("--output-dir")
        .arg(&dir));
    let took = clock.elapsed();
    assert!(
        out.status.success(),
        "after {took:?}: {}",
        output_text(&out)
    );
    assert!(took > at_least, "the link was not slow: {took:?}");
    assert_eq!(link.stalled(), 0);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("stalled"));
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
    assert_eq!(objects.len(), 2, "dump and meta.json only: {objects:?}");
    assert!(server.multipart_uploads(&bucket).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// pgbak with 64 KiB parts (moto's minimum), one at a time.
fn small_serial_parts(cmd: &mut Command) -> &mut Command {
    crate::support::bucket::small_parts(cmd, support::s3::PART_MIN_SIZE).env("S3_CONCURRENCY", "1")
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
fn trust_s3_upload_over_a_slow_link_succeeds_past_30_seconds() {
    // About 9 KB of dump: at 200 B/s one part takes about 45 s to send, longer than
    // the SDK's 30 s read timeout.
    slow_link_backup("s3 slow link", 110, 200, &[], Duration::from_secs(30));
}

#[test]
fn trust_s3_slow_but_moving_link_with_a_part_beyond_30_seconds_succeeds() {
    // About 15 MiB in one 16 MiB part: at 256 KiB/s it takes about 60 s, twice
    // what 30 s allow at that rate (the SDK's stall grace, which ended such
    // parts, counted from the part's start).
    slow_link_backup(
        "s3 slow parts",
        230_000,
        256 * 1024,
        &["--s3-part-size-mib", "16"],
        Duration::from_secs(45),
    );
}

#[test]
fn trust_s3_stalled_upload_fails_in_bounded_time_and_keeps_the_local_backup() {
    let (db, server, bucket, dir) = s3_case("s3 stalled link", 0.05);
    let link = support::proxy::SlowLink::new(server.port, 0);
    // Small requests pass; a part's body stops after 16 KiB and its
    // connection stays open, on every attempt.
    link.stall_after(16 * 1024);
    let child = small_serial_parts(
        pgbak_s3(&db, server, &bucket, "p/")
            .env("S3_ENDPOINT_URL", link.endpoint())
            .env("PGBAK_S3_STALL_TIMEOUT", "2s"),
    )
    .args(["backup", "--compress", "none", "--output-dir"])
    .arg(&dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawning pgbak");
    let (out, took) = wait_bounded(child, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(
        link.stalled() >= 3,
        "{} stalled connections",
        link.stalled()
    );
    let last = upload_failed_line(&out);
    assert!(
        last.contains("stalled") && last.contains("PGBAK_S3_STALL_TIMEOUT"),
        "one line naming the stall: {last}"
    );
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    assert!(
        server.multipart_uploads(&bucket).is_empty(),
        "the upload was aborted: {}",
        output_text(&out)
    );
    assert!(
        server.list_objects(&bucket, "").is_empty(),
        "no object and no marker left"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trust_s3_max_part_size_bounds_parts_and_a_dump_beyond_the_limit_keeps_the_local_backup() {
    let (db, server, bucket, dir) = s3_case("s3 max part size", 0.05);
    // Parts may not grow past 64 KiB: 8 of them cannot hold the dump.
    let out = run(
        small_serial_parts(&mut pgbak_s3(&db, server, &bucket, "p/"))
            .env(
                "PGBAK_S3_MAX_PART_SIZE",
                support::s3::PART_MIN_SIZE.to_string(),
            )
            .args(["backup", "--s3-max-parts", "8", "--output-dir"])
            .arg(&dir),
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("--s3-max-part-size-mib") && last.contains("--s3-max-parts 8"),
        "{stderr}"
    );
    let meta = assert_local_complete(&dir);
    assert!(meta.size_bytes > 8 * support::s3::PART_MIN_SIZE as u64);
    assert_eq!(meta.s3, None);
    assert_bucket_empty(server, &bucket);
    let _ = std::fs::remove_dir_all(&dir);

    // A first part larger than the cap is a usage error before anything is dumped.
    let dir = backup_dir("s3-max-part-size-usage");
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .args([
            "backup",
            "--s3-part-size-mib",
            "16",
            "--s3-max-part-size-mib",
            "8",
            "--output-dir",
        ])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(files(&dir, "").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trust_failed_upload_still_applies_local_retention() {
    failed_upload_prunes_locally(false);
}

#[test]
fn trust_failed_upload_in_cron_still_applies_local_retention() {
    failed_upload_prunes_locally(true);
}
