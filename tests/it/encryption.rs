//! Encryption at rest with age, against real clusters, the real S3 server and the stock
//! `age` CLI (Debian's package, installed by scripts/setup.sh): no plaintext byte on disk
//! or in the bucket, during or after a run; verify and restore decrypt on the way in (one
//! streamed job, or parallel through an unnamed scratch file); a wrong or missing identity
//! exits 2 naming the recipients; a flipped or truncated ciphertext fails the checksum; the
//! files interoperate with `age -d` and `age -r` both ways, for keys from `age-keygen` and
//! from `pgbak keygen`; cron passes the settings through.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::s3::{pgbak_s3, sha256_hex};
use crate::support::{self, output_text, paths, pg16, restore_cmd, s3, Pg, TestDb};
use crate::verify::Dir;

/// The stock age CLI; setup.sh installs it, so its absence is a broken setup, said loudly.
fn age_cli(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed: run scripts/setup.sh (it installs Debian's age)")
        })
}

/// An identity made by `age-keygen`: (key file, public key).
fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new(age_cli("age-keygen"))
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let public = Command::new(age_cli("age-keygen"))
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    (
        key,
        String::from_utf8(public.stdout).unwrap().trim().to_owned(),
    )
}

/// An identity made by `pgbak keygen -o`: (key file, public key printed on stdout).
fn pgbak_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = support::pgbak_bare()
        .args(["keygen", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(public.starts_with("age1"), "{public}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "keygen writes 0600");
    (key, public)
}

/// pg_restore able to read pgbak's dumps (made by the harness's pg17 client when present).
fn pg_restore_bin(pg: &Pg) -> PathBuf {
    paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg.bin.clone())
        .join("pg_restore")
}

fn contains_pgdmp(bytes: &[u8]) -> bool {
    bytes.windows(5).any(|w| w == b"PGDMP")
}

/// Every regular file under `dir` holding the archive magic `PGDMP`.
fn plaintext_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(plaintext_files(&path));
        } else if std::fs::read(&path).is_ok_and(|b| contains_pgdmp(&b)) {
            found.push(path);
        }
    }
    found
}

/// Runs `cmd` while another thread scans `dir` for `PGDMP` over and over; returns the
/// output and every plaintext file seen, during the run and after it.
fn run_scanning(cmd: &mut Command, dir: &Path) -> (Output, Vec<PathBuf>) {
    let done = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (done, dir) = (done.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut scans = 0u32;
            while !done.load(Ordering::SeqCst) {
                seen.extend(plaintext_files(&dir));
                scans += 1;
            }
            seen.extend(plaintext_files(&dir));
            (seen, scans)
        })
    };
    let out = cmd.output().expect("running pgbak");
    done.store(true, Ordering::SeqCst);
    let (seen, scans) = scanner.join().unwrap();
    assert!(scans > 1, "the scanner ran during the backup");
    (out, seen)
}

fn backup_cmd(db: &TestDb<'_>, dir: &Path, recipients: &[&str]) -> Command {
    let mut cmd = support::pgbak(db.pg());
    cmd.args(["backup", "--no-s3", "--json", "--output-dir"])
        .arg(dir)
        .env("DATABASE_URL", db.url());
    for r in recipients {
        cmd.arg("--encrypt-to").arg(r);
    }
    cmd
}

/// The summary of a successful `backup --json`: (dump path, meta).
fn summary(out: &Output) -> (PathBuf, Value) {
    assert!(out.status.success(), "{}", output_text(out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    (
        PathBuf::from(summary["dump"].as_str().unwrap()),
        summary["meta"].clone(),
    )
}

/// `age -d -i KEY FILE | pg_restore --list`: (pg_restore's output, the plaintext's SHA-256).
fn age_cli_decrypt_and_list(pg: &Pg, key: &Path, file: &Path) -> (Output, String) {
    let decrypted = Command::new(age_cli("age"))
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{}", output_text(&decrypted));
    let mut list = Command::new(pg_restore_bin(pg))
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // pg_restore --list stops reading after the table of contents: a broken pipe is fine.
    let _ = list.stdin.take().unwrap().write_all(&decrypted.stdout);
    (
        list.wait_with_output().unwrap(),
        sha256_hex(&decrypted.stdout),
    )
}

fn verify(db: &TestDb<'_>, dump: &Path, extra: &[&str]) -> (Output, Value) {
    let out = support::pgbak(db.pg())
        .arg("verify")
        .arg(dump)
        .arg("--json")
        .args(extra)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

fn check<'r>(report: &'r Value, name: &str) -> &'r str {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
}

#[test]
fn encryption_backup_is_ciphertext_on_disk_and_the_age_cli_decrypts_it() {
    let pg = pg16();
    let db = pg.fresh_db("enc cli");
    db.load_fixture(0.05);
    let keys = Dir::new("enc-cli-keys");
    let dir = Dir::new("enc-cli");
    let (key, public) = age_keygen(&keys, "key.txt");
    let (_, other) = age_keygen(&keys, "other.txt");
    let (out, plaintext) = run_scanning(&mut backup_cmd(&db, &dir, &[&public, &other]), &dir);
    let (dump, meta) = summary(&out);
    assert!(
        plaintext.is_empty(),
        "plaintext archives on disk: {plaintext:?}"
    );
    assert!(
        dump.to_string_lossy().ends_with(".dump.age"),
        "{}",
        dump.display()
    );
    let bytes = std::fs::read(&dump).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    // meta.json: the ciphertext's checksum first, the plaintext's in `encryption`.
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    assert_eq!(meta["size_bytes"], bytes.len() as u64);
    assert_eq!(
        meta["file"],
        dump.file_name().unwrap().to_string_lossy().as_ref()
    );
    assert_eq!(meta["encryption"]["format"], "age");
    assert_eq!(
        meta["encryption"]["recipients"],
        serde_json::json!([public, other])
    );
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.join(meta_file(&dump))).unwrap()).unwrap();
    assert_eq!(on_disk, meta);
    // The stock CLI decrypts it, straight into pg_restore --list.
    let (listed, plain_sha) = age_cli_decrypt_and_list(pg, &key, &dump);
    assert!(listed.status.success(), "{}", output_text(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public users"));
    assert_eq!(meta["encryption"]["plaintext_sha256"], plain_sha);
    // `list` shows it as encrypted.
    let out = support::pgbak_bare()
        .args(["list", "--json", "--backup-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["encrypted"], true, "{list}");
    assert_eq!(list[0]["complete"], true, "{list}");
}

fn meta_file(dump: &Path) -> String {
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    let stem = name
        .strip_suffix(".dump.age")
        .or_else(|| name.strip_suffix(".dump"))
        .unwrap();
    format!("{stem}.meta.json")
}

#[test]
fn encryption_verify_and_restore_decrypt_with_a_pgbak_keygen_identity() {
    let pg = pg16();
    let db = pg.fresh_db("enc verify");
    db.load_fixture(0.05);
    let keys = Dir::new("enc-verify-keys");
    let dir = Dir::new("enc-verify");
    let scratch = Dir::new("enc-verify-scratch");
    let (key, public) = pgbak_keygen(&keys, "pgbak.key");
    let (dump, _) = summary(&backup_cmd(&db, &dir, &[&public]).output().unwrap());
    // The stock CLI reads pgbak's identity file too.
    let (listed, _) = age_cli_decrypt_and_list(pg, &key, &dump);
    assert!(listed.status.success(), "{}", output_text(&listed));

    let key_arg = key.to_string_lossy().into_owned();
    let scratch_arg = scratch.to_string_lossy().into_owned();
    // Parallel: decrypted into an unnamed file in the scratch dir; one job: streamed.
    for extra in [
        vec![
            "--identity-file",
            &key_arg,
            "--jobs",
            "4",
            "--scratch-dir",
            &scratch_arg,
        ],
        vec!["--identity-file", &key_arg, "--jobs", "1"],
    ] {
        let (out, report) = verify(&db, &dump, &extra);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        assert_eq!(report["passed"], true);
        assert_eq!(check(&report, "checksum"), "pass");
        assert_eq!(check(&report, "row counts match"), "pass");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("into an unnamed 0600 file"),
            extra.contains(&"4"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(&*scratch).unwrap().count(),
            0,
            "scratch left empty"
        );
    }

    // Restore (env identity, 4 jobs through the default scratch) reproduces every row.
    let target = pg.fresh_db("enc verify target");
    let out = restore_cmd(
        &target,
        &dump,
        &["--no-confirm", "--create-db", "--jobs", "4"],
    )
    .env("PGBAK_AGE_IDENTITY_FILE", &key)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(pg.table_digests(&target.name), pg.table_digests(&db.name));
}

#[test]
fn encryption_age_cli_encrypted_dump_restores_with_pgbak_and_ssh_keys_work() {
    let pg = pg16();
    let db = pg.fresh_db("enc ssh");
    db.load_fixture(0.02);
    let keys = Dir::new("enc-ssh-keys");
    let dir = Dir::new("enc-ssh");
    // An archive encrypted by the stock CLI to an age-keygen key restores with pgbak (1 job).
    let plain = crate::verify::backup(&db, &dir);
    let (key, public) = age_keygen(&keys, "key.txt");
    let sealed = dir.join("cli_full_20260101T000000.dump.age");
    let out = Command::new(age_cli("age"))
        .arg("-r")
        .arg(&public)
        .arg("-o")
        .arg(&sealed)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let target = pg.fresh_db("enc ssh target");
    let out = restore_cmd(
        &target,
        &sealed,
        &["--no-confirm", "--create-db", "--jobs", "1"],
    )
    .arg("--identity-file")
    .arg(&key)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(pg.table_digests(&target.name), pg.table_digests(&db.name));

    // SSH keys: an ed25519 public key as the recipient, its private key as the identity.
    let ssh = keys.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ops@example", "-f"])
        .arg(&ssh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let ssh_public = std::fs::read_to_string(keys.join("id_ed25519.pub")).unwrap();
    let (dump, meta) = summary(
        &backup_cmd(&db, &dir, &[ssh_public.trim()])
            .output()
            .unwrap(),
    );
    let recorded = meta["encryption"]["recipients"][0].as_str().unwrap();
    assert!(
        recorded.starts_with("ssh-ed25519 AAAA") && !recorded.contains("ops@"),
        "{recorded}"
    );
    let ssh_arg = ssh.to_string_lossy().into_owned();
    let (out, report) = verify(&db, &dump, &["--identity-file", &ssh_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(report["passed"], true);
    // And the stock CLI decrypts it with the SSH key.
    let (listed, _) = age_cli_decrypt_and_list(pg, &ssh, &dump);
    assert!(listed.status.success(), "{}", output_text(&listed));
}

#[test]
fn encryption_wrong_or_missing_identity_exits_2_naming_the_recipients() {
    let pg = pg16();
    let db = pg.fresh_db("enc wrong key");
    db.load_fixture(0.02);
    let keys = Dir::new("enc-wrong-keys");
    let dir = Dir::new("enc-wrong");
    let (_, public) = age_keygen(&keys, "right.txt");
    let (wrong, _) = age_keygen(&keys, "wrong.txt");
    let (dump, _) = summary(&backup_cmd(&db, &dir, &[&public]).output().unwrap());
    let temp_dbs = || {
        pg.databases()
            .into_iter()
            .filter(|d| d.starts_with(&format!("{}_verify", db.name)))
            .count()
    };
    let wrong_arg = wrong.to_string_lossy().into_owned();
    for extra in [vec![], vec!["--identity-file", wrong_arg.as_str()]] {
        let (out, _) = verify(&db, &dump, &extra);
        assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&public), "names the recipient: {err}");
        assert_eq!(temp_dbs(), 0, "no temporary database was created");
    }
    // Restore: the target is not touched.
    let target = pg.fresh_db("enc wrong target");
    target.psql("CREATE TABLE keep_me (x int)");
    let out = restore_cmd(
        &target,
        &dump,
        &["--no-confirm", "--create-db", "--identity-file", &wrong_arg],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&public));
    assert_eq!(target.psql("SELECT count(*) FROM keep_me"), "0");
    // A secret key where a recipient belongs: exit 2, the secret not repeated.
    let secret = std::fs::read_to_string(&wrong).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let out = backup_cmd(&db, &dir, &[secret]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        !output_text(&out).contains(&secret[16..]),
        "{}",
        output_text(&out)
    );
}

#[test]
fn encryption_flipped_byte_or_truncated_ciphertext_fails_verify_at_the_checksum() {
    let pg = pg16();
    let db = pg.fresh_db("enc corrupt");
    db.load_fixture(0.02);
    let keys = Dir::new("enc-corrupt-keys");
    let dir = Dir::new("enc-corrupt");
    let (key, public) = age_keygen(&keys, "key.txt");
    let (dump, _) = summary(&backup_cmd(&db, &dir, &[&public]).output().unwrap());
    let good = std::fs::read(&dump).unwrap();
    let key_arg = key.to_string_lossy().into_owned();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let truncated = good[..good.len() - 1000].to_vec();
    for (what, bytes) in [("flipped", flipped), ("truncated", truncated)] {
        std::fs::write(&dump, &bytes).unwrap();
        let (out, report) = verify(&db, &dump, &["--identity-file", &key_arg]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", output_text(&out));
        assert_eq!(check(&report, "checksum"), "fail", "{what}: {report}");
        assert_eq!(check(&report, "restore succeeded"), "skip", "{what}");
    }
}

#[test]
fn encryption_s3_bucket_holds_only_ciphertext_and_restores_from_s3() {
    let pg = pg16();
    let db = pg.fresh_db("enc s3");
    db.load_fixture(0.05);
    let server = s3();
    let bucket = server.fresh_bucket("enc");
    let prefix = "enc/";
    let keys = Dir::new("enc-s3-keys");
    let dir = Dir::new("enc-s3");
    let (key, public) = age_keygen(&keys, "key.txt");
    let (out, plaintext) = run_scanning(
        pgbak_s3(&db, server, &bucket, prefix)
            .args(["backup", "--json", "--encrypt-to", &public, "--output-dir"])
            .arg(&*dir),
        &dir,
    );
    let (dump, meta) = summary(&out);
    assert!(plaintext.is_empty(), "{plaintext:?}");
    let objects = server.list_objects(&bucket, prefix);
    assert_eq!(objects.len(), 2, "{objects:?}");
    for object in &objects {
        let bytes = server.get_object(&bucket, &object.key);
        if object.key.ends_with(".dump.age") {
            assert!(!contains_pgdmp(&bytes), "plaintext in {}", object.key);
            assert_eq!(sha256_hex(&bytes), meta["sha256"]);
            assert_eq!(bytes, std::fs::read(&dump).unwrap());
        } else {
            assert!(object.key.ends_with(".meta.json"), "{}", object.key);
        }
    }
    // Restore straight from the bucket: the download is ciphertext, decrypted on the way in.
    let target = pg.fresh_db("enc s3 target");
    let uri = format!("s3://{bucket}/{prefix}{}", meta["file"].as_str().unwrap());
    let out = pgbak_s3(&target, server, &bucket, prefix)
        .args([
            "restore",
            &uri,
            "--no-confirm",
            "--create-db",
            "--allow-other-database",
            "--jobs",
            "1",
        ])
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(pg.table_digests(&target.name), pg.table_digests(&db.name));
    // Verify the newest in the bucket.
    let out = pgbak_s3(&db, server, &bucket, prefix)
        .args(["verify", "--from-s3", "--jobs", "2"])
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// What leaves the host: every byte pgbak sent to the S3 server during an encrypted
/// backup (each part of the multipart upload and meta.json), recorded by a proxy on the
/// wire, holds no archive byte in plaintext. The same recording of an unencrypted backup
/// does hold the archive's `PGDMP` magic, so the check can see plaintext when it is there.
#[test]
fn encryption_no_plaintext_byte_goes_over_the_wire_to_s3() {
    let pg = pg16();
    let db = pg.fresh_db("enc wire");
    db.load_fixture(0.1);
    let server = s3();
    let bucket = server.fresh_bucket("encwire");
    let keys = Dir::new("enc-wire-keys");
    let (_key, public) = age_keygen(&keys, "key.txt");
    let part = support::s3::PART_MIN_SIZE.to_string();
    let upload = |extra: &[&str]| -> (Vec<Vec<u8>>, Value) {
        let dir = Dir::new("enc-wire");
        let link = support::proxy::SlowLink::recording(server.port);
        let out = pgbak_s3(&db, server, &bucket, "wire/")
            .env("S3_ENDPOINT_URL", link.endpoint())
            .env("PGBAK_S3_MIN_PART_SIZE", &part)
            .env("PGBAK_S3_PART_SIZE", &part)
            .args(["backup", "--json", "--output-dir"])
            .arg(&*dir)
            .args(extra)
            .output()
            .unwrap();
        let (_, meta) = summary(&out);
        (link.sent(), meta)
    };

    let (sent, meta) = upload(&["--encrypt-to", &public]);
    let total: usize = sent.iter().map(Vec::len).sum();
    let size = meta["size_bytes"].as_u64().expect("size_bytes") as usize;
    assert!(
        size > 4 * support::s3::PART_MIN_SIZE,
        "the dump spans several parts"
    );
    assert!(total > size, "the whole dump went through the proxy");
    assert!(
        sent.iter()
            .any(|s| s.windows(21).any(|w| w == b"age-encryption.org/v1")),
        "the age header went over the wire"
    );
    assert!(
        !sent.iter().any(|s| contains_pgdmp(s)),
        "plaintext archive bytes went to S3"
    );

    let (sent, _) = upload(&[]);
    assert!(
        sent.iter().any(|s| contains_pgdmp(s)),
        "an unencrypted upload shows its magic on the wire"
    );
}

#[test]
fn encryption_cron_takes_its_keys_from_the_environment() {
    let pg = pg16();
    let db = pg.fresh_db("enc cron");
    db.load_fixture(0.02);
    let keys = Dir::new("enc-cron-keys");
    let dir = Dir::new("enc-cron");
    let logs = Dir::new("enc-cron-logs");
    let (key, public) = age_keygen(&keys, "key.txt");
    let (_, other) = age_keygen(&keys, "other.txt");
    let recipients = keys.join("recipients.txt");
    std::fs::write(&recipients, format!("# ops\n{other}\n")).unwrap();
    let cron = |identity: Option<&Path>| {
        let mut cmd = support::pgbak(pg);
        cmd.args(["cron", "--verify"])
            .env("DATABASE_URL", db.url())
            .env("BACKUP_DIR", &*dir)
            .env("LOG_DIR", &*logs)
            .env("PGBAK_AGE_RECIPIENTS", &public)
            .env("PGBAK_AGE_RECIPIENTS_FILE", &recipients);
        if let Some(identity) = identity {
            cmd.env("PGBAK_AGE_IDENTITY_FILE", identity);
        }
        cmd.output().unwrap()
    };
    // Verifying without the private key cannot work: exit 2 before anything is dumped.
    let out = cron(None);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(crate::s3::files(&dir, ".age").is_empty());

    let out = cron(Some(&key));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dumps = crate::s3::files(&dir, ".dump.age");
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(crate::s3::files(&dir, ".dump").is_empty());
    assert!(plaintext_files(&dir).is_empty());
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join(meta_file(&dir.join(&dumps[0])))).unwrap())
            .unwrap();
    assert_eq!(
        meta["encryption"]["recipients"],
        serde_json::json!([public, other])
    );
    assert_eq!(meta["verification"]["passed"], true);
}

#[test]
fn encryption_retention_rotates_plaintext_and_encrypted_backups_as_one_group() {
    let pg = pg16();
    let db = pg.fresh_db("enc keep");
    db.load_fixture(0.01);
    let keys = Dir::new("enc-keep-keys");
    let dir = Dir::new("enc-keep");
    let (_, public) = age_keygen(&keys, "key.txt");
    crate::verify::backup(&db, &dir);
    for _ in 0..2 {
        let out = backup_cmd(&db, &dir, &[&public])
            .args(["--keep", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // Turning encryption on keeps one history: the old plaintext dump rotated out.
    assert!(crate::s3::files(&dir, ".dump").is_empty());
    assert_eq!(crate::s3::files(&dir, ".dump.age").len(), 2);
    assert_eq!(crate::s3::files(&dir, ".meta.json").len(), 2);
}

#[test]
fn encryption_covers_the_globals_file_of_an_all_databases_run() {
    let source = support::private_cluster(16);
    source.psql("postgres", "CREATE ROLE enc_app LOGIN PASSWORD 'enc-Pa55'");
    source.psql("postgres", "CREATE DATABASE enc_app OWNER enc_app");
    source.psql("postgres", "CREATE ROLE enc_reader");
    // A policy naming a role: a copy restored without the globals cannot create it.
    source.psql(
        "enc_app",
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g; \
         ALTER TABLE notes OWNER TO enc_app; \
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY notes_read ON notes FOR SELECT TO enc_reader USING (true)",
    );
    let keys = Dir::new("enc-all-keys");
    let dir = Dir::new("enc-all");
    let (key, public) = age_keygen(&keys, "key.txt");
    let out = support::pgbak(&source)
        .args(["backup", "--all-databases", "--no-s3", "--output-dir"])
        .arg(&*dir)
        .args(["--encrypt-to", &public])
        .env("DATABASE_URL", source.url("postgres"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let sealed = crate::s3::files(&dir, ".dump.age");
    assert!(sealed.iter().any(|f| f.contains("_globals_")), "{sealed:?}");
    assert!(
        sealed.iter().any(|f| f.starts_with("enc_app_full_")),
        "{sealed:?}"
    );
    assert!(crate::s3::files(&dir, ".dump").is_empty());
    for file in &sealed {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{file}");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !contains_pgdmp(&bytes) && !text.contains("CREATE ROLE"),
            "{file}"
        );
    }
    // Rebuild on an empty server from the encrypted run: roles first (decrypted in memory).
    let target = support::private_cluster(16);
    let out = support::pgbak(&target)
        .args(["restore", "--all-databases", "--no-confirm", "--backup-dir"])
        .arg(&*dir)
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .env("DATABASE_URL", target.url("postgres"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        target.table_digests("enc_app"),
        source.table_digests("enc_app")
    );
    assert_eq!(
        target.psql(
            "enc_app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'"
        ),
        "enc_app"
    );

    // verify --ephemeral decrypts the encrypted globals file (in memory) and replays it
    // into its throwaway cluster before the restore: the owner and the policy's role exist,
    // so the policy is created and the copy passes.
    let app_dump = dir.join(
        sealed
            .iter()
            .find(|f| f.starts_with("enc_app_full_"))
            .unwrap(),
    );
    let out = support::pgbak(&source)
        .args([
            "verify",
            "--ephemeral",
            "--json",
            "--expect-table",
            "public.notes",
        ])
        .arg(&app_dump)
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .env("DATABASE_URL", source.url("enc_app"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    let warnings = report["pg_restore_warnings"].as_array().unwrap();
    assert!(
        !warnings
            .iter()
            .any(|w| w.as_str().unwrap_or_default().contains("role")),
        "{report:#}"
    );
}

#[test]
fn encryption_a_scratch_dir_without_room_is_exit_2_before_the_target_is_touched() {
    let Some(tmpfs) = crate::support::Tmpfs::mount("64k") else {
        return;
    };
    std::fs::create_dir(tmpfs.path()).unwrap();
    let pg = pg16();
    let db = pg.fresh_db("enc scratch");
    db.load_fixture(0.02);
    let keys = Dir::new("enc-scratch-keys");
    let dir = Dir::new("enc-scratch");
    let (key, public) = age_keygen(&keys, "key.txt");
    let (dump, _) = summary(&backup_cmd(&db, &dir, &[&public]).output().unwrap());
    let target = pg.fresh_db("enc scratch target");
    target.psql("CREATE TABLE keep_me (x int)");
    let out = restore_cmd(
        &target,
        &dump,
        &["--no-confirm", "--create-db", "--jobs", "4"],
    )
    .arg("--scratch-dir")
    .arg(tmpfs.path())
    .env("PGBAK_AGE_IDENTITY_FILE", &key)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--scratch-dir"),
        "{}",
        output_text(&out)
    );
    assert_eq!(target.psql("SELECT count(*) FROM keep_me"), "0");
    assert_eq!(std::fs::read_dir(tmpfs.path()).unwrap().count(), 0);
}
