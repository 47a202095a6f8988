//! What an S3 failure leaves: an unreachable or killed server, an upload the store drops, an
//! outage mid-upload, SIGINT, SIGTERM and SIGKILL mid-upload. The local backup is kept whole, the
//! run exits 1 (or 130/143), and no multipart upload is left open.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::bucket::{
    assert_bucket_empty, assert_local_complete, backup_dir, files, pgbak_s3, s3_case, sha256_hex,
    small_parts, upload_failed_line,
};
use crate::support::{self, output_text, pg16, private_s3, run, S3Server, TestDb};

/// Starts a slow multipart backup (small parts, one at a time, uncompressed
/// dump of a larger fixture) and waits until its upload is open.
fn start_slow_upload(
    db: &TestDb,
    server: &S3Server,
    bucket: &str,
    dir: &Path,
) -> std::process::Child {
    start_slow_upload_via(db, server, &server.endpoint, bucket, dir)
}

/// [`start_slow_upload`] with pgbak talking to `endpoint` (a proxy in front of `server`).
fn start_slow_upload_via(
    db: &TestDb,
    server: &S3Server,
    endpoint: &str,
    bucket: &str,
    dir: &Path,
) -> std::process::Child {
    let child = small_parts(
        &mut pgbak_s3(db, server, bucket, "slow/"),
        support::s3::PART_MIN_SIZE,
    )
    .env("S3_ENDPOINT_URL", endpoint)
    .env("S3_CONCURRENCY", "1")
    .args(["backup", "--compress", "none", "--output-dir"])
    .arg(dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawning pgbak");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.multipart_uploads(bucket).is_empty() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let a few parts go up.
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn s3_unreachable_exits_1_and_keeps_the_local_backup() {
    let (db, server, bucket, dir) = s3_case("s3 unreachable", 0.05);
    let closed = support::free_port();
    let started = Instant::now();
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .env("S3_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failing took {:?}",
        started.elapsed()
    );
    let last = upload_failed_line(&out);
    assert!(last.contains("ERROR"), "one-line error: {last}");
    assert!(
        last.contains(&format!("127.0.0.1:{closed}")) || last.contains("onnect"),
        "{last}"
    );
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    // Nothing reached the (real) bucket the run was pointed away from.
    assert_bucket_empty(server, &bucket);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_server_killed_mid_upload_exits_1_and_keeps_the_local_backup() {
    let pg = pg16();
    let db = pg.fixture_db("s3 killed", 0.3);
    let server = private_s3();
    let bucket = server.fresh_bucket("killed");
    let dir = backup_dir("s3-killed");
    let child = start_slow_upload(&db, &server, &bucket, &dir);
    server.kill();
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    upload_failed_line(&out);
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_upload_dropped_by_the_store_mid_upload_leaves_no_object_or_upload() {
    let (db, server, bucket, dir) = s3_case("s3 dropped", 0.3);
    let child = start_slow_upload(&db, server, &bucket, &dir);
    // The store loses the upload (an operator's lifecycle rule, say): parts now fail.
    let client = server.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for upload in server.multipart_uploads(&bucket) {
        rt.block_on(
            client
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&upload.key)
                .upload_id(&upload.upload_id)
                .send(),
        )
        .expect("aborting the upload under pgbak");
    }
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    assert_bucket_empty(server, &bucket);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_sigterm_mid_upload_aborts_the_multipart_upload() {
    let (db, server, bucket, dir) = s3_case("s3 sigterm", 0.3);
    let child = start_slow_upload(&db, server, &bucket, &dir);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(server.list_objects(&bucket, "").is_empty());
    assert!(
        server.multipart_uploads(&bucket).is_empty(),
        "{}",
        output_text(&out)
    );
    assert!(files(&dir, "").is_empty(), "{:?}", files(&dir, ""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_sigint_mid_upload_aborts_the_multipart_upload() {
    let (db, server, bucket, dir) = s3_case("s3 sigint", 0.3);
    let child = start_slow_upload(&db, server, &bucket, &dir);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(130), "{}", output_text(&out));
    assert_bucket_empty(server, &bucket);
    assert!(files(&dir, "").is_empty(), "{:?}", files(&dir, ""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_outage_mid_upload_keeps_local_backup_and_next_run_leaves_nothing_open() {
    let (db, server, bucket, dir) = s3_case("s3 outage", 0.3);
    // An outage of the store while the S3 server keeps its state: a proxy whose plug is pulled.
    let mut proxy = support::proxy::SlowLink::new(server.port, 0);
    let child = start_slow_upload_via(&db, server, &proxy.endpoint(), &bucket, &dir);
    proxy.cut();
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    upload_failed_line(&out);
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    // No object. The store was unreachable, so the abort could not be sent:
    // the upload is still open, and its marker (naming the dead run) stays...
    let left: Vec<String> = server
        .list_objects(&bucket, "")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, [format!("slow/{}.uploading", meta.file)]);
    let open = server.multipart_uploads(&bucket);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].key, format!("slow/{}", meta.file));

    // ...until the next successful run of the same backup group aborts it.
    std::thread::sleep(Duration::from_millis(1100));
    let out = run(pgbak_s3(&db, server, &bucket, "slow/")
        .args(["backup", "--keep", "0", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(server.multipart_uploads(&bucket).is_empty());
    let objects: Vec<String> = server
        .list_objects(&bucket, "")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let failed_stem = meta.file.trim_end_matches(".dump");
    assert!(objects.iter().all(|k| !k.contains(failed_stem)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_after_sigkill_mid_upload_the_next_run_cleans_up_and_succeeds() {
    let (db, server, bucket, dir) = s3_case("s3 sigkill", 0.3);
    let mut child = start_slow_upload(&db, server, &bucket, &dir);
    child.kill().unwrap();
    child.wait().unwrap();
    // A killed run cleans nothing: the open upload and the local partial stay.
    assert_eq!(server.multipart_uploads(&bucket).len(), 1);
    assert!(files(&dir, ".dump").is_empty());
    std::thread::sleep(Duration::from_millis(1100));

    let out = run(pgbak_s3(&db, server, &bucket, "slow/")
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        server.multipart_uploads(&bucket).is_empty(),
        "leftover upload aborted"
    );
    assert!(
        files(&dir, ".partial").is_empty(),
        "leftover partial removed"
    );
    let meta = assert_local_complete(&dir);
    let key = meta.s3.expect("uploaded").key;
    let body = server.get_object(&bucket, &key);
    assert_eq!(sha256_hex(&body), meta.sha256);
    let _ = std::fs::remove_dir_all(&dir);
}
