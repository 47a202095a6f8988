//! The upload marker `<key>.uploading` and the stale-upload cleanup that
//! reads it: a live run's upload is never aborted (whatever the stale age),
//! uploads without a live writer are, and the markers are not backups to
//! list, check or retention.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use pgbak::cli::Mode;
use pgbak::storage::BackupName;
use serde_json::json;

use crate::support::bucket::{backup_dir, pgbak_s3, s3_case, small_parts};
use crate::support::{self, output_text, pg16, run, s3, S3Server};

/// The dump file name of `db`'s full backup at `second` past 2020-01-01.
fn old_dump(db: &str, second: u32) -> String {
    let at = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, second).unwrap();
    BackupName::new(db, Mode::Full, None, at).dump_file()
}

/// Starts a multipart upload of `key` directly on the server; its id.
fn open_upload(server: &S3Server, bucket: &str, key: &str) -> String {
    let client = server.client();
    support::s3::block_on(
        client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send(),
    )
    .expect("creating a multipart upload")
    .upload_id()
    .expect("an upload id")
    .to_owned()
}

/// A marker as pgbak writes it.
fn marker(upload_id: &str, host: &str, pid: u32, refreshed: chrono::DateTime<Utc>) -> Vec<u8> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .ok();
    let pid_namespace = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.display().to_string());
    json!({
        "upload_id": upload_id, "host": host, "pid": pid,
        "boot_id": boot_id, "pid_namespace": pid_namespace,
        "started": refreshed, "refreshed": refreshed, "pgbak_version": "0.1.0",
    })
    .to_string()
    .into_bytes()
}

fn keys(server: &S3Server, bucket: &str) -> Vec<String> {
    server
        .list_objects(bucket, "")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The keys of the bucket's open multipart uploads.
fn open_upload_keys(server: &S3Server, bucket: &str) -> Vec<String> {
    server
        .multipart_uploads(bucket)
        .into_iter()
        .map(|u| u.key)
        .collect()
}

#[test]
fn s3_cleanup_never_aborts_a_live_upload_from_another_directory() {
    let pg = pg16();
    let db = pg.fixture_db("s3 live elsewhere", 0.3);
    let server = s3();
    let bucket = server.fresh_bucket("liveelsewhere");
    let (dir_a, dir_b) = (backup_dir("s3-live-a"), backup_dir("s3-live-b"));
    // Run A uploads slowly (another host or output directory, as far as B knows).
    let link = support::proxy::SlowLink::new(server.port, 50_000);
    let a = small_parts(
        &mut pgbak_s3(&db, server, &bucket, "p/"),
        support::s3::PART_MIN_SIZE,
    )
    .env("S3_ENDPOINT_URL", link.endpoint())
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
    assert!(
        keys(server, &bucket).contains(&format!("{a_key}.uploading")),
        "A's marker: {:?}",
        keys(server, &bucket)
    );

    // Run B, same database and mode, another directory, and a stale age of 0
    // (moto reports every upload as started in 2010 anyway): only A's marker
    // can keep A's upload alive.
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .env("PGBAK_S3_STALE_UPLOAD_AGE", "0")
        .args(["backup", "--output-dir"])
        .arg(&dir_b));
    assert!(out.status.success(), "{}", output_text(&out));
    let open = open_upload_keys(server, &bucket);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    let a_out = a.wait_with_output().unwrap();
    assert!(
        open.contains(&a_key),
        "B aborted A's live upload {a_key}: {}",
        output_text(&out)
    );
    assert_eq!(a_out.status.code(), Some(143), "{}", output_text(&a_out));
    // A stopped: its upload is aborted and its marker gone.
    assert!(server.multipart_uploads(&bucket).is_empty());
    assert!(
        !keys(server, &bucket)
            .iter()
            .any(|k| k.ends_with(".uploading")),
        "{:?}",
        keys(server, &bucket)
    );
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}

#[test]
fn s3_cleanup_aborts_uploads_whose_marker_shows_no_live_writer() {
    let (db, server, bucket, dir) = s3_case("s3 markers", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let now = Utc::now();
    let this_host = crate::support::cron::host_name();
    let exited = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let key = |second| format!("p/{}", old_dump(&db.name, second));
    // (key, marker, aborted): moto says every upload started in 2010, so
    // each is older than the default stale age of 24 h.
    type Writer<'a> = Option<(&'a str, u32, chrono::DateTime<Utc>)>;
    let cases: [(String, Writer, bool); 5] = [
        (key(1), None, true),
        (
            key(2),
            Some(("db-host-02", 7, now - chrono::Duration::hours(30))),
            true,
        ),
        (key(3), Some(("db-host-02", 7, now)), false),
        (key(4), Some((this_host.as_str(), exited, now)), true),
        (
            key(5),
            Some((this_host.as_str(), std::process::id(), now)),
            false,
        ),
    ];
    for (key, writer, _) in &cases {
        let id = open_upload(server, &bucket, key);
        if let Some((host, pid, refreshed)) = writer {
            let body = marker(&id, host, *pid, *refreshed);
            server.put_object(&bucket, &format!("{key}.uploading"), body, None);
        }
    }
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let open = open_upload_keys(server, &bucket);
    let objects = keys(server, &bucket);
    for (key, writer, aborted) in &cases {
        assert_eq!(
            !open.contains(key),
            *aborted,
            "{key}: {}",
            output_text(&out)
        );
        let has_marker = objects.contains(&format!("{key}.uploading"));
        assert_eq!(
            has_marker,
            writer.is_some() && !aborted,
            "{key}: {objects:?}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("aborting the multipart upload").count(),
        3,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_markers_are_not_backups_to_list_check_or_retention() {
    let (db, server, bucket, dir) = s3_case("s3 markers ignored", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let backup = |keep: &str| {
        let out = run(pgbak_s3(&db, server, &bucket, "p/")
            .args(["backup", "--keep", keep, "--output-dir"])
            .arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(Duration::from_millis(1100));
    };
    backup("0");
    backup("0");
    // A live upload of another host, older by name than every backup, and a
    // marker whose upload is gone.
    let live = format!("p/{}", old_dump(&db.name, 1));
    let id = open_upload(server, &bucket, &live);
    let fresh = marker(&id, "db-host-02", 7, Utc::now());
    server.put_object(&bucket, &format!("{live}.uploading"), fresh.clone(), None);
    let orphan = format!("p/{}.uploading", old_dump(&db.name, 2));
    server.put_object(&bucket, &orphan, fresh, None);

    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .args(["list", "--s3", "--json", "--backup-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed:#}");

    let nowhere = dir.join("no-local-dir");
    let mut check = support::pgbak_bare();
    for (key, value) in server.env() {
        check.env(key, value);
    }
    let out = run(check
        .env("AWS_SECRET_ACCESS_KEY", crate::support::bucket::SECRET)
        .env("S3_BUCKET", &bucket)
        .env("S3_PREFIX", "p/")
        .args([
            "check",
            "--s3",
            "--json",
            "--database",
            &db.name,
            "--backup-dir",
        ])
        .arg(&nowhere));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    let groups = report["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{report:#}");
    assert_eq!(groups[0]["status"], "unverified", "{report:#}");

    // Retention keeps one backup and leaves both markers alone.
    backup("1");
    let objects = keys(server, &bucket);
    assert_eq!(objects.len(), 4, "{objects:?}");
    assert!(
        objects.contains(&format!("{live}.uploading")),
        "{objects:?}"
    );
    assert!(objects.contains(&orphan), "{objects:?}");
    assert_eq!(
        server.multipart_uploads(&bucket).len(),
        1,
        "the live upload stays"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
