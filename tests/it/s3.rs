//! S3 / MinIO: the streaming multipart upload, its integrity check, remote
//! retention, what an S3 failure leaves behind, and `fetch_backup`. A real moto
//! server, real PostgreSQL, the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgbak::meta::Meta;
use pgbak::storage::s3::S3Settings;
use sha2::{Digest, Sha256};

use crate::support::{self, output_text, pg16, private_s3, s3, S3Server, TestDb};

/// The secret key the tests use; it must never appear in pgbak's output.
pub const SECRET: &str = "test-secret-key";

/// pgbak against `server`, bucket and prefix set, connected to `db`.
pub fn pgbak_s3(db: &TestDb, server: &S3Server, bucket: &str, prefix: &str) -> Command {
    let mut cmd = support::pgbak(db.pg());
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    cmd.env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("S3_BUCKET", bucket)
        .env("S3_PREFIX", prefix)
        .env("DATABASE_URL", db.url());
    cmd
}

/// What most S3 tests start from, named after `hint`: a fresh database with
/// the fixture at `scale` (none at 0), the shared S3 server, a fresh bucket
/// and a scratch backup directory.
pub fn s3_case(hint: &str, scale: f64) -> (TestDb<'static>, &'static S3Server, String, PathBuf) {
    let db = pg16().fresh_db(hint);
    if scale > 0.0 {
        db.load_fixture(scale);
    }
    let server = s3();
    let bucket = server.fresh_bucket(hint);
    (db, server, bucket, backup_dir(&hint.replace(' ', "-")))
}

/// Parts as small as moto takes (support::s3::PART_MIN_SIZE), the first one
/// `first` bytes, so a small dump still spans several parts.
pub fn small_parts(cmd: &mut Command, first: usize) -> &mut Command {
    cmd.env(
        "PGBAK_S3_MIN_PART_SIZE",
        support::s3::PART_MIN_SIZE.to_string(),
    )
    .env("PGBAK_S3_PART_SIZE", first.to_string())
}

pub fn backup_dir(hint: &str) -> PathBuf {
    support::scratch_dir(hint)
}

pub use crate::support::run;

pub fn assert_no_secret(out: &Output) {
    let text = output_text(out);
    assert!(!text.contains(SECRET), "secret in output:\n{text}");
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Files in `dir` with the given suffix, sorted (the run locks left out).
pub fn files(dir: &Path, suffix: &str) -> Vec<String> {
    support::files(dir)
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// The one complete local backup in `dir`: its dump bytes match its meta.json.
pub(crate) fn assert_local_complete(dir: &Path) -> Meta {
    let dumps = files(dir, ".dump");
    let metas = files(dir, ".meta.json");
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(files(dir, ".partial").is_empty());
    let meta = Meta::read(&dir.join(&metas[0])).expect("reading meta.json");
    let bytes = std::fs::read(dir.join(&dumps[0])).expect("reading the dump");
    assert_eq!(meta.file, dumps[0]);
    assert_eq!(meta.size_bytes, bytes.len() as u64);
    assert_eq!(meta.sha256, sha256_hex(&bytes));
    assert!(bytes.starts_with(b"PGDMP"));
    meta
}

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
    assert_no_secret(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("ERROR") && last.contains("is complete, but uploading it to s3://"),
        "one-line error: {stderr}"
    );
    assert!(
        last.contains(&format!("127.0.0.1:{closed}")) || last.contains("onnect"),
        "{last}"
    );
    let meta = assert_local_complete(&dir);
    assert_eq!(meta.s3, None);
    // Nothing reached the (real) bucket the run was pointed away from.
    assert!(server.list_objects(&bucket, "").is_empty());
    assert!(server.multipart_uploads(&bucket).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

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
fn s3_server_killed_mid_upload_exits_1_and_keeps_the_local_backup() {
    let pg = pg16();
    let db = pg.fresh_db("s3 killed");
    db.load_fixture(0.3);
    let server = private_s3();
    let bucket = server.fresh_bucket("killed");
    let dir = backup_dir("s3-killed");
    let child = start_slow_upload(&db, &server, &bucket, &dir);
    server.kill();
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_no_secret(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("is complete, but uploading it to s3://"),
        "{stderr}"
    );
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
    assert!(server.list_objects(&bucket, "").is_empty());
    assert!(server.multipart_uploads(&bucket).is_empty());
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

/// Credentials for in-process S3 calls (`fetch_backup`), set once.
fn in_process_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

fn s3_args(server: &S3Server, bucket: &str, prefix: &str) -> pgbak::cli::S3Args {
    pgbak::cli::S3Args {
        bucket: Some(bucket.to_owned()),
        prefix: Some(prefix.to_owned()),
        endpoint_url: Some(server.endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        storage_class: "STANDARD_IA".parse().unwrap(),
        max_parts: 10_000,
        concurrency: 4,
        ..Default::default()
    }
}

fn fetch(
    args: &pgbak::cli::S3Args,
    uri: Option<&str>,
    db: &str,
    dest: &Path,
) -> anyhow::Result<pgbak::storage::Fetched> {
    in_process_credentials();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Without a URI: the newest full backup of `db`.
    let select = pgbak::storage::select::Selector {
        database: db.to_owned(),
        mode: pgbak::cli::Mode::Full,
        include_failed: false,
    };
    rt.block_on(async {
        let open = |s: S3Settings| pgbak::storage::Place::S3(Box::new(s)).open();
        let (store, file) = match uri {
            Some(uri) => {
                let (bucket, key) = pgbak::storage::s3::parse_uri(uri)?;
                let settings = S3Settings::from_args(args, None)?.in_bucket(&bucket);
                let file = key.rsplit('/').next().unwrap_or(&key).to_owned();
                (open(settings).beside(&key), file)
            }
            None => {
                let store = open(S3Settings::from_args(args, None)?);
                let name = pgbak::storage::select::newest(&store, &select, "").await?;
                (store, name.dump_file())
            }
        };
        store.download(&file, dest, &|_| Ok(())).await
    })
}

#[test]
fn fetch_backup_by_uri_and_newest_full_under_prefix() {
    let (db, server, bucket, dir) = s3_case("s3 fetch", 0.05);
    let prefix = "fetch/";
    for mode in ["full", "full", "schema"] {
        let out = run(pgbak_s3(&db, server, &bucket, prefix)
            .args(["backup", "--mode", mode, "--keep", "0", "--output-dir"])
            .arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let dumps = files(&dir, ".dump");
    assert_eq!(dumps.len(), 3);
    let fulls: Vec<&String> = dumps.iter().filter(|d| d.contains("_full_")).collect();
    let (older, newer) = (fulls[0], fulls[1]);
    // A newer full dump without its meta.json is not complete: never picked.
    let mut later = pgbak::storage::BackupName::parse(newer).expect("a backup name");
    later.timestamp += chrono::Duration::hours(1);
    let incomplete = later.dump_file();
    server.put_object(
        &bucket,
        &format!("{prefix}{incomplete}"),
        b"PGDMP junk".to_vec(),
        None,
    );

    let dest = backup_dir("s3-fetch-dest");
    let fetched =
        fetch(&s3_args(server, &bucket, prefix), None, &db.name, &dest).expect("fetching newest");
    assert_eq!(fetched.dump, dest.join(newer));
    assert_eq!(
        std::fs::read(&fetched.dump).unwrap(),
        std::fs::read(dir.join(newer)).unwrap()
    );
    let meta = Meta::read(fetched.meta.as_ref().expect("meta fetched")).unwrap();
    assert_eq!(
        meta.sha256,
        sha256_hex(&std::fs::read(&fetched.dump).unwrap())
    );
    assert!(pgbak::storage::fsio::is_private(&fetched.dump));

    let dest2 = backup_dir("s3-fetch-dest2");
    // The URI names its own bucket; the configured one does not matter.
    let other = s3_args(server, "unused-bucket", "elsewhere/");
    let uri = format!("s3://{bucket}/{prefix}{older}");
    let fetched = fetch(&other, Some(&uri), "", &dest2).expect("fetching by URI");
    assert_eq!(fetched.dump, dest2.join(older));
    assert_eq!(
        std::fs::read(&fetched.dump).unwrap(),
        std::fs::read(dir.join(older)).unwrap()
    );
    assert!(fetched.meta.is_some());
    for d in [&dir, &dest, &dest2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn fetch_backup_refuses_hostile_keys_and_checksum_mismatches() {
    let server = s3();
    let bucket = server.fresh_bucket("fetch-hostile");
    let dest = backup_dir("s3-hostile");
    let args = s3_args(server, &bucket, "");
    for uri in [
        format!("s3://{bucket}/../x_full_20261125T020000.dump"),
        format!("s3://{bucket}/a/../../x_full_20261125T020000.dump"),
        format!("s3://{bucket}/a/./x_full_20261125T020000.dump"),
        format!("s3://{bucket}/notes.txt"),
        format!("s3://{bucket}/"),
    ] {
        let err = fetch(&args, Some(&uri), "", &dest).expect_err(&uri);
        assert_eq!(pgbak::error::exit_code(&err), 2, "{uri}: {err:#}");
    }
    // A dump whose bytes differ from its meta.json: refused, nothing left behind.
    let name = "x_full_20261125T020000";
    let mut meta: serde_json::Value = serde_json::json!({
        "format_version": 1, "database": "x", "mode": "full", "label": null,
        "file": format!("{name}.dump"), "size_bytes": 10, "sha256": "a".repeat(64),
        "started_at": "2026-11-25T02:00:00Z", "finished_at": "2026-11-25T02:00:01Z",
        "duration_seconds": 1.0, "compression": "zstd:1", "server_version": "16.1",
        "pg_dump_version": "17.1", "alembic_revision": null, "extensions": {}, "tables": [],
        "host": "h", "pgbak_version": "0.1.0", "s3": null
    });
    server.put_object(
        &bucket,
        &format!("p/{name}.dump"),
        b"PGDMP12345".to_vec(),
        None,
    );
    server.put_object(
        &bucket,
        &format!("p/{name}.meta.json"),
        meta.to_string().into_bytes(),
        None,
    );
    let uri = format!("s3://{bucket}/p/{name}.dump");
    let err = fetch(&args, Some(&uri), "", &dest).expect_err("checksum mismatch");
    assert!(
        format!("{err:#}").contains("does not match its meta.json"),
        "{err:#}"
    );
    assert!(files(&dest, "").is_empty(), "{:?}", files(&dest, ""));
    // A meta.json naming a path outside the directory is not read at all.
    meta["file"] = serde_json::json!("../../etc/passwd.dump");
    meta["sha256"] = serde_json::json!(sha256_hex(b"PGDMP12345"));
    server.put_object(
        &bucket,
        &format!("p/{name}.meta.json"),
        meta.to_string().into_bytes(),
        None,
    );
    assert!(fetch(&args, Some(&uri), "", &dest).is_err());
    assert!(files(&dest, "").is_empty());
    // With a good meta.json the same object downloads and checks out.
    meta["file"] = serde_json::json!(format!("{name}.dump"));
    server.put_object(
        &bucket,
        &format!("p/{name}.meta.json"),
        meta.to_string().into_bytes(),
        None,
    );
    let fetched = fetch(&args, Some(&uri), "", &dest).expect("good fetch");
    assert_eq!(std::fs::read(&fetched.dump).unwrap(), b"PGDMP12345");
    // Nothing under the prefix: a clear error.
    let empty = s3_args(server, &bucket, "nothing-here/");
    let err = fetch(&empty, None, "db", &dest).expect_err("empty prefix");
    assert!(
        format!("{err:#}").contains("no complete full backup"),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(&dest);
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
    assert!(server.list_objects(&bucket, "").is_empty());
    assert!(server.multipart_uploads(&bucket).is_empty());
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
        let checksum = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "checksum")
            .expect("a checksum check");
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

#[test]
fn s3_outage_mid_upload_keeps_local_backup_and_next_run_leaves_nothing_open() {
    let (db, server, bucket, dir) = s3_case("s3 outage", 0.3);
    // An outage of the store while the S3 server keeps its state: a proxy whose plug is pulled.
    let mut proxy = support::proxy::SlowLink::new(server.port, 0);
    let child = start_slow_upload_via(&db, server, &proxy.endpoint(), &bucket, &dir);
    proxy.cut();
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_no_secret(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("is complete, but uploading it to s3://"),
        "{stderr}"
    );
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
fn s3_sigint_mid_upload_aborts_the_multipart_upload() {
    let (db, server, bucket, dir) = s3_case("s3 sigint", 0.3);
    let child = start_slow_upload(&db, server, &bucket, &dir);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("waiting for pgbak");
    assert_eq!(out.status.code(), Some(130), "{}", output_text(&out));
    assert!(server.list_objects(&bucket, "").is_empty());
    assert!(server.multipart_uploads(&bucket).is_empty());
    assert!(files(&dir, "").is_empty(), "{:?}", files(&dir, ""));
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
