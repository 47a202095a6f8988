//! The upload: a streaming multipart upload with bounded memory, part sizes that stay under the
//! part limit, checksums, storage class, server-side encryption, remote retention, settings
//! refused before dumping; a backup in the bucket verifies and restores.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pgbak::meta::Meta;

use crate::support::bucket::{
    assert_bucket_empty, assert_local_complete, assert_no_secret, backup_dir, files, pgbak_s3,
    s3_case, sha256_hex, small_parts,
};
use crate::support::verify::check_named;
use crate::support::{self, output_text, pg16, run, s3, S3Server};

/// Head of an object, through the harness's client: (size, ETag, SHA-256 checksum).
fn head(server: &S3Server, bucket: &str, key: &str) -> (i64, String, Option<String>) {
    let client = server.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt
        .block_on(
            client
                .head_object()
                .bucket(bucket)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send(),
        )
        .unwrap_or_else(|e| panic!("head {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    (
        out.content_length().unwrap_or(-1),
        out.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
        out.checksum_sha256().map(str::to_owned),
    )
}

/// Number of parts of a multipart object, from its ETag (`<md5>-<parts>`).
fn parts_of(etag: &str) -> u32 {
    etag.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// Runs `cmd`, sampling the process's peak RSS (VmHWM) until it exits.
fn run_measuring_peak_rss(cmd: &mut Command) -> (Output, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning pgbak");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_reader =
        std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak_kib = peak_kib.max(kib);
                }
            }
        }
        if child.try_wait().expect("waiting").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("waiting");
    let out = Output {
        status,
        stdout: out_reader.join().unwrap().into_bytes(),
        stderr: err_reader.join().unwrap().into_bytes(),
    };
    (out, peak_kib * 1024)
}

#[test]
fn s3_three_backups_keep_two_standard_ia_with_matching_checksums() {
    let (db, server, bucket, dir) = s3_case("s3 keep", 0.05);
    let prefix = "enterprise-agents/postgres/";
    for _ in 0..3 {
        let out = run(pgbak_s3(&db, server, &bucket, prefix)
            .args(["backup", "--keep", "2", "--output-dir"])
            .arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
        assert_no_secret(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--keep 2 with storage class STANDARD_IA"),
            "the 30-day minimum warning: {err}"
        );
    }
    let objects = server.list_objects(&bucket, prefix);
    let dumps: Vec<_> = objects
        .iter()
        .filter(|o| o.key.ends_with(".dump"))
        .collect();
    let metas: Vec<_> = objects
        .iter()
        .filter(|o| o.key.ends_with(".meta.json"))
        .collect();
    assert_eq!(dumps.len(), 2, "{objects:?}");
    assert_eq!(metas.len(), 2, "{objects:?}");
    assert_eq!(objects.len(), 4, "{objects:?}");
    assert_eq!(files(&dir, ".dump").len(), 2);
    for dump in dumps {
        assert_eq!(
            dump.storage_class.as_deref(),
            Some("STANDARD_IA"),
            "{dump:?}"
        );
        let meta_key = dump.key.replace(".dump", ".meta.json");
        let meta = Meta::parse(
            std::str::from_utf8(&server.get_object(&bucket, &meta_key)).expect("utf-8"),
        )
        .expect("the bucket's meta.json parses");
        let bytes = server.get_object(&bucket, &dump.key);
        assert_eq!(sha256_hex(&bytes), meta.sha256, "{}", dump.key);
        assert_eq!(bytes.len() as u64, meta.size_bytes);
        let s3 = meta.s3.as_ref().expect("meta.json records the upload");
        assert_eq!(s3.bucket, bucket);
        assert_eq!(s3.key, dump.key);
        assert_eq!(s3.storage_class, "STANDARD_IA");
        assert_eq!(dump.key, format!("{prefix}{}", meta.file));
        // The local meta.json is the same document, and the local dump the same bytes.
        let local = Meta::read(&dir.join(meta_key.rsplit('/').next().unwrap())).unwrap();
        assert_eq!(local, meta);
        assert_eq!(std::fs::read(dir.join(&meta.file)).unwrap(), bytes);
        // The store kept the SHA-256 checksum pgbak sent and compared.
        let (size, _, checksum) = head(server, &bucket, &dump.key);
        assert_eq!(size as u64, meta.size_bytes);
        assert!(
            checksum.is_some(),
            "SHA-256 checksum stored for {}",
            dump.key
        );
    }
    assert!(server.multipart_uploads(&bucket).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_large_dump_uploads_as_multipart_with_bounded_memory() {
    let (db, server, bucket, dir) = s3_case("s3 multipart", 0.05);
    // 256 KiB parts, 2 in flight: at most 3 part buffers (768 KiB) at any time.
    let (out, peak) = run_measuring_peak_rss(
        small_parts(&mut pgbak_s3(&db, server, &bucket, "mp/"), 256 * 1024)
            .env("S3_CONCURRENCY", "2")
            .args(["backup", "--compress", "none", "--output-dir"])
            .arg(&dir),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let meta = assert_local_complete(&dir);
    let key = format!("mp/{}", meta.file);
    let (size, etag, checksum) = head(server, &bucket, &key);
    assert_eq!(size as u64, meta.size_bytes);
    let parts = parts_of(&etag);
    assert!(
        parts > 3 && meta.size_bytes > 3 * 256 * 1024,
        "{parts} parts for {} bytes",
        meta.size_bytes
    );
    assert_eq!(parts as u64, meta.size_bytes.div_ceil(256 * 1024));
    assert!(
        checksum
            .as_deref()
            .is_some_and(|c| c.ends_with(&format!("-{parts}")) || !c.contains('-')),
        "composite checksum {checksum:?}"
    );
    assert_eq!(sha256_hex(&server.get_object(&bucket, &key)), meta.sha256);
    // Memory does not follow the dump's size: the peak stays far below it
    // and below the 64 MiB target.
    assert!(peak > 0, "VmHWM was read");
    assert!(
        peak < 64 << 20,
        "peak RSS {} MiB for a {} MiB dump",
        peak >> 20,
        meta.size_bytes >> 20
    );
    assert!(server.multipart_uploads(&bucket).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_part_size_grows_to_stay_under_max_parts() {
    let (db, server, bucket, dir) = s3_case("s3 max parts", 0.05);
    // 64 KiB parts and at most 8 of them: only growing parts can hold the dump.
    let out = run(small_parts(
        &mut pgbak_s3(&db, server, &bucket, ""),
        support::s3::PART_MIN_SIZE,
    )
    .args(["backup", "--s3-max-parts", "8", "--output-dir"])
    .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let meta = assert_local_complete(&dir);
    assert!(meta.size_bytes > 8 * support::s3::PART_MIN_SIZE as u64);
    let (_, etag, _) = head(server, &bucket, &meta.file);
    let parts = parts_of(&etag);
    assert!(parts <= 8 && parts > 1, "{parts} parts");
    assert_eq!(
        sha256_hex(&server.get_object(&bucket, &meta.file)),
        meta.sha256
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_checksum_calculation_when_required_uploads_without_checksums() {
    let (db, server, bucket, dir) = s3_case("s3 when required", 0.05);
    let out = run(
        small_parts(&mut pgbak_s3(&db, server, &bucket, "p/"), 512 * 1024)
            .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
            .args(["backup", "--storage-class", "STANDARD", "--output-dir"])
            .arg(&dir),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let meta = assert_local_complete(&dir);
    let key = format!("p/{}", meta.file);
    let (size, _, checksum) = head(server, &bucket, &key);
    assert_eq!(size as u64, meta.size_bytes);
    assert_eq!(checksum, None, "no SHA-256 checksum was sent");
    assert_eq!(
        meta.s3.as_ref().map(|s| s.storage_class.as_str()),
        Some("STANDARD")
    );
    let objects = server.list_objects(&bucket, "p/");
    assert!(objects
        .iter()
        .all(|o| o.storage_class.as_deref().unwrap_or("STANDARD") == "STANDARD"));
    assert_eq!(sha256_hex(&server.get_object(&bucket, &key)), meta.sha256);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_bad_settings_exit_2_before_dumping() {
    let pg = pg16();
    let db = pg.fresh_db("s3 bad settings");
    let server = s3();
    let dir = backup_dir("s3-bad");
    for (var, value) in [
        ("S3_SSE", "rot13"),
        ("S3_STORAGE_CLASS", "standard ia"),
        ("S3_ENDPOINT_URL", "not a url"),
        ("S3_MAX_PARTS", "0"),
    ] {
        let out = run(pgbak_s3(&db, server, "some-bucket", "")
            .env(var, value)
            .args(["backup", "--output-dir"])
            .arg(&dir));
        assert_eq!(out.status.code(), Some(2), "{var}: {}", output_text(&out));
        assert!(files(&dir, "").is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_dump_beyond_max_parts_fails_the_upload_and_keeps_the_local_backup() {
    let (db, server, bucket, dir) = s3_case("s3 too many parts", 0.05);
    // Two parts of 64 and 128 KiB cannot hold the dump.
    let out = run(small_parts(
        &mut pgbak_s3(&db, server, &bucket, ""),
        support::s3::PART_MIN_SIZE,
    )
    .args(["backup", "--s3-max-parts", "2", "--output-dir"])
    .arg(&dir));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--s3-max-parts 2"),
        "{}",
        output_text(&out)
    );
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    assert_bucket_empty(server, &bucket);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_verify_and_restore_from_the_bucket_reproduce_the_fixture() {
    let pg = pg16();
    let (db, server, bucket, dir) = s3_case("s3 e2e", 0.05);
    let prefix = "e2e/";
    let out = run(pgbak_s3(&db, server, &bucket, prefix)
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let meta = assert_local_complete(&dir);
    // Downloads go to a temp dir under TMPDIR; nothing may stay there.
    let tmp = backup_dir("s3-e2e-tmp");
    let uri = format!("s3://{bucket}/{prefix}{}", meta.file);

    for source in [vec![uri.as_str()], vec!["--from-s3"]] {
        let out = run(pgbak_s3(&db, server, &bucket, prefix)
            .env("TMPDIR", &tmp)
            .arg("verify")
            .args(&source)
            .arg("--json"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{source:?}: {}",
            output_text(&out)
        );
        assert_no_secret(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
        assert_eq!(report["passed"], true, "{report:#}");
        let checksum = check_named(&report, "checksum");
        assert_eq!(checksum["status"], "pass");
        assert!(files(&tmp, "").is_empty(), "{:?}", files(&tmp, ""));
    }

    // By URI into another database (allowed explicitly); the newest backup of the
    // database itself into that database.
    let before = pg.table_digests(&db.name);
    let other = pg.fresh_db("s3 e2e target uri");
    for (target, source) in [
        (&other, vec![uri.as_str(), "--allow-other-database"]),
        (&db, vec!["--from-s3"]),
    ] {
        let out = run(pgbak_s3(target, server, &bucket, prefix)
            .env("TMPDIR", &tmp)
            .arg("restore")
            .args(&source)
            .args(["--create-db", "--no-confirm"]));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{source:?}: {}",
            output_text(&out)
        );
        assert_eq!(pg.table_digests(&target.name), before, "{source:?}");
        assert!(files(&tmp, "").is_empty(), "{:?}", files(&tmp, ""));
    }
    for d in [&dir, &tmp] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn s3_server_side_encryption_is_requested_for_both_objects() {
    let (db, server, bucket, dir) = s3_case("s3 sse", 0.05);
    let out = run(pgbak_s3(&db, server, &bucket, "sse/")
        .env("S3_SSE", "AES256")
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    let meta = assert_local_complete(&dir);
    let client = server.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for key in [
        format!("sse/{}", meta.file),
        format!("sse/{}", meta.file.replace(".dump", ".meta.json")),
    ] {
        let head = rt
            .block_on(client.head_object().bucket(&bucket).key(&key).send())
            .expect("head");
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("AES256"),
            "{key}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
