//! Encryption at rest with age, against real clusters, the real S3 server and the stock
//! `age` CLI (Debian's package, installed by scripts/setup.sh): no plaintext byte on disk,
//! in the bucket or on the wire, during or after a run, the globals file of an
//! `--all-databases` run included; the files decrypt with `age -d`; cron passes the settings
//! through; retention rotates plaintext and encrypted backups as one group; `--encrypt-to`
//! keeps an ssh key whose comment holds a comma.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{
    age_cli_decrypt_and_list, age_keygen, backup_cmd, contains_pgdmp, meta_file, plaintext_files,
    summary,
};
use crate::support::bucket::{pgbak_s3, sha256_hex};
use crate::support::verify::Dir;
use crate::support::{self, output_text, pg16, pgbak_bare, run, s3};

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

#[test]
fn encryption_backup_is_ciphertext_on_disk_and_the_age_cli_decrypts_it() {
    let pg = pg16();
    let db = pg.fixture_db("enc cli", 0.05);
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

#[test]
fn encryption_s3_bucket_holds_only_ciphertext_and_restores_from_s3() {
    let pg = pg16();
    let db = pg.fixture_db("enc s3", 0.05);
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
    let db = pg.fixture_db("enc wire", 0.1);
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
    let db = pg.fixture_db("enc cron", 0.02);
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
    assert!(crate::support::bucket::files(&dir, ".age").is_empty());

    let out = cron(Some(&key));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dumps = crate::support::bucket::files(&dir, ".dump.age");
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(crate::support::bucket::files(&dir, ".dump").is_empty());
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
    let db = pg.fixture_db("enc keep", 0.01);
    let keys = Dir::new("enc-keep-keys");
    let dir = Dir::new("enc-keep");
    let (_, public) = age_keygen(&keys, "key.txt");
    crate::support::verify::backup(&db, &dir);
    for _ in 0..2 {
        let out = backup_cmd(&db, &dir, &[&public])
            .args(["--keep", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // Turning encryption on keeps one history: the old plaintext dump rotated out.
    assert!(crate::support::bucket::files(&dir, ".dump").is_empty());
    assert_eq!(crate::support::bucket::files(&dir, ".dump.age").len(), 2);
    assert_eq!(crate::support::bucket::files(&dir, ".meta.json").len(), 2);
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
    let sealed = crate::support::bucket::files(&dir, ".dump.age");
    assert!(sealed.iter().any(|f| f.contains("_globals_")), "{sealed:?}");
    assert!(
        sealed.iter().any(|f| f.starts_with("enc_app_full_")),
        "{sealed:?}"
    );
    assert!(crate::support::bucket::files(&dir, ".dump").is_empty());
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
    crate::support::verify::assert_passed_with_the_roles(&out);
}

/// An SSH public key whose comment holds a comma (ssh-keygen -C takes any text).
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN ops team, backups@example";

/// `--encrypt-to` is repeatable and takes a key as it is: an SSH key whose
/// comment holds a comma is one recipient (on main it was split in two,
/// "invalid recipient"). The variable still takes a comma-separated list.
#[test]
fn encrypt_to_keeps_an_ssh_key_whose_comment_has_a_comma() {
    let pg = pg16();
    let db = pg.db_with("encrypt comma", "CREATE TABLE t (id int)");
    let dir = Dir::new("encrypt-comma");
    let (_, age_key) = {
        let out = run(pgbak_bare().args(["keygen"]));
        assert!(out.status.success(), "{}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let public = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap()
            .to_owned();
        (text, public)
    };
    let out = run(&mut support::backup_cmd(
        pg,
        &db.name,
        &dir,
        &[
            "--no-s3",
            "--json",
            "--encrypt-to",
            SSH_KEY,
            "--encrypt-to",
            &age_key,
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recipients = summary["meta"]["encryption"]["recipients"]
        .as_array()
        .unwrap();
    assert_eq!(recipients.len(), 2, "{recipients:?}");
    std::thread::sleep(Duration::from_millis(1100));
    let mut cmd = support::backup_cmd(pg, &db.name, &dir, &["--no-s3", "--json"]);
    let out = run(cmd.env("PGBAK_AGE_RECIPIENTS", format!("{age_key},{SSH_KEY}")));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["meta"]["encryption"]["recipients"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
