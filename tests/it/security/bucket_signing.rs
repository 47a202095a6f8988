//! Issue 22 item 5(c): signatures. The backup host signs each meta.json (which holds the
//! dump's sha256) with its ed25519 key; verify and restore, given the trusted public keys,
//! refuse a backup that is unsigned, edited after signing, re-signed by another key or renamed.
//! The format is OpenSSH's sshsig: `ssh-keygen -Y verify` checks pgbak's signatures and pgbak
//! accepts `ssh-keygen -Y sign`'s, over the canonical form `jq -cjS` prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::bucket::pgbak_s3;
use crate::support::keys::keygen_with;
use crate::support::roles::has_role;
use crate::support::runs::{owned_database_run, rebuild};
use crate::support::verify::check_named;
use crate::support::verify::Dir;
use crate::support::{self, edit_meta, one_file, output_text, pg16, s3, OwnedCluster, TestDb};

/// `pgbak keygen --sign -o DIR/NAME`: (private key file, public key line).
fn signing_key(dir: &Path, name: &str) -> (PathBuf, String) {
    keygen_with(&["--sign"], dir, name)
}

/// A trusted-keys file holding `publics`.
fn trusted(dir: &Path, name: &str, publics: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("# backup hosts\n{}\n", publics.join("\n"))).unwrap();
    path
}

/// The newest `<db>_full_*` dump in `dir` and its meta.json.
fn newest(dir: &Path, db: &str) -> (PathBuf, PathBuf) {
    let dump = support::files(dir)
        .into_iter()
        .rfind(|f| f.starts_with(&format!("{db}_full_")) && f.ends_with(".dump"))
        .unwrap_or_else(|| panic!("no backup of {db} in {:?}", support::files(dir)));
    let meta = dump.replace(".dump", ".meta.json");
    (dir.join(dump), dir.join(meta))
}

fn restore(db: &TestDb<'_>, dump: &Path, keys: &Path) -> Output {
    support::pgbak(db.pg())
        .args(["restore", "--no-confirm", "--create-db", "--trusted-keys"])
        .arg(keys)
        .arg(dump)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap()
}

fn verify(db: &TestDb<'_>, dump: &Path, keys: &Path) -> (Output, Value) {
    let out = support::pgbak(db.pg())
        .args([
            "verify",
            "--json",
            "--expect-table",
            "public.items",
            "--trusted-keys",
        ])
        .arg(keys)
        .arg(dump)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

/// Asserts a refused restore: exit 2, `why` in stderr, the target untouched.
fn assert_refused(out: &Output, why: &str, db: &TestDb<'_>) {
    assert_eq!(out.status.code(), Some(2), "{}", output_text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(why),
        "{why}: {}",
        output_text(out)
    );
    assert_eq!(db.psql("SELECT count(*) FROM items"), "30");
}

/// Removes the signature of the meta.json at `path`.
fn strip_signature(path: &Path) {
    edit_meta(path, |m| {
        m.as_object_mut().unwrap().remove("signature");
    });
}

/// A server with a role and a database, backed up `--all-databases`, signed.
fn signed_run(dir: &Path, key: &Path) -> OwnedCluster {
    let extra = ["--signing-key-file", key.to_str().unwrap()];
    owned_database_run(dir, "sg_app", "sg_app", "items", 30, "", &extra)
}

#[test]
fn bucket_signing_only_backups_signed_by_a_trusted_key_are_verified_or_restored() {
    let db = pg16().db_with(
        "signed",
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 30)",
    );
    let keys = Dir::new("sign-keys");
    let dir = Dir::new("sign-backups");
    let (key, public) = signing_key(&keys, "signing");
    let (other_key, other_public) = signing_key(&keys, "other");
    let ours = trusted(&keys, "trusted", &[&public]);

    // The key file is private and an OpenSSH key: ssh-keygen derives the same public key.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&key)
        .output()
        .unwrap();
    assert!(derived.status.success(), "{}", output_text(&derived));
    let derived = String::from_utf8_lossy(&derived.stdout);
    assert_eq!(
        derived.split_whitespace().take(2).collect::<Vec<_>>(),
        public.split_whitespace().take(2).collect::<Vec<_>>()
    );

    // An unsigned backup is refused once keys are trusted.
    let out = support::backup(db.pg(), &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let (unsigned, _) = newest(&dir, &db.name);
    assert_refused(&restore(&db, &unsigned, &ours), "not signed", &db);
    let (out, report) = verify(&db, &unsigned, &ours);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(
        check_named(&report, "meta.json")["status"],
        "fail",
        "{report:#}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // A signed one passes verify and restores.
    let out = support::backup(
        db.pg(),
        &db.name,
        &dir,
        &["--signing-key-file", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let (dump, meta) = newest(&dir, &db.name);
    assert!(support::read_meta(&meta)["signature"]
        .as_str()
        .is_some_and(|s| s.starts_with("-----BEGIN SSH SIGNATURE-----")));
    let (out, report) = verify(&db, &dump, &ours);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let detail = check_named(&report, "meta.json")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("signed by SHA256:"), "{detail}");
    // verify recorded its verdict in meta.json: the signature still holds.
    assert_eq!(support::read_meta(&meta)["verification"]["passed"], true);
    let out = restore(&db, &dump, &ours);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(db.psql("SELECT count(*) FROM items"), "30");

    // Edited after signing: a table's row count.
    let original = std::fs::read(&meta).unwrap();
    edit_meta(&meta, |m| m["tables"][0]["rows"] = Value::from(29));
    assert_refused(
        &restore(&db, &dump, &ours),
        "changed after it was signed",
        &db,
    );
    let (out, report) = verify(&db, &dump, &ours);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(
        check_named(&report, "meta.json")["status"],
        "fail",
        "{report:#}"
    );

    // Re-signed by another key (the edit kept): refused, naming the key.
    let mut tampered = pgbak::meta::Meta::read(&meta).unwrap();
    tampered.signature = None;
    let other = pgbak::signing::SigningKey::load(&other_key).unwrap();
    tampered.signature = Some(other.sign(&tampered).unwrap());
    tampered.write(&meta).unwrap();
    assert_refused(&restore(&db, &dump, &ours), "not a trusted key", &db);
    // ... which is accepted once that key is trusted too: trust is the file's to say.
    let both = trusted(&keys, "both", &[&public, &other_public]);
    // (the signature passes; the edited row count then fails the copy's check)
    let (out, report) = verify(&db, &dump, &both);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(
        check_named(&report, "meta.json")["status"],
        "pass",
        "{report:#}"
    );
    assert_eq!(
        check_named(&report, "row counts match")["status"],
        "fail",
        "{report:#}"
    );

    // Renamed to look newer: the signature names the file it was made for.
    std::fs::write(&meta, &original).unwrap();
    let newer_dump = dir.join(format!("{}_full_29991231T000000.dump", db.name));
    let newer_meta = dir.join(format!("{}_full_29991231T000000.meta.json", db.name));
    std::fs::copy(&dump, &newer_dump).unwrap();
    std::fs::copy(&meta, &newer_meta).unwrap();
    assert_refused(
        &restore(&db, &newer_dump, &ours),
        "signed for the file",
        &db,
    );
}

#[test]
fn bucket_signing_interoperates_with_ssh_keygen_both_ways() {
    let db = pg16().db_with(
        "signed ssh",
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 30)",
    );
    let keys = Dir::new("sign-ssh-keys");
    let dir = Dir::new("sign-ssh");
    let (key, public) = signing_key(&keys, "signing");
    let out = support::backup(
        db.pg(),
        &db.name,
        &dir,
        &["--signing-key-file", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let (dump, meta) = newest(&dir, &db.name);

    // The audit recipe of the README: the canonical form with jq, the signature, ssh-keygen.
    let jq = |filter: &str| {
        let out = Command::new("jq")
            .args(["-cjS", filter])
            .arg(&meta)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "jq (scripts/setup.sh installs it): {}",
            output_text(&out)
        );
        out.stdout
    };
    let message = jq("del(.signature, .verification, .pinned, .s3)");
    let message_file = keys.join("message");
    std::fs::write(&message_file, &message).unwrap();
    let sig_file = keys.join("message.sig");
    let signature = support::read_meta(&meta)["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(&sig_file, &signature).unwrap();
    let allowed = keys.join("allowed_signers");
    std::fs::write(&allowed, format!("backup@db {public}\n")).unwrap();
    let ssh_verify = |message: &[u8]| {
        let mut child = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "backup@db", "-n", "pgbak-backup@v1", "-s"])
            .arg(&sig_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(message).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = ssh_verify(&message);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut changed = message.clone();
    changed.push(b' ');
    assert!(!ssh_verify(&changed).status.success());

    // The other way: ssh-keygen signs the same canonical form; pgbak accepts the signature
    // (and trusts an allowed_signers file as its keys file).
    std::fs::remove_file(&sig_file).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-f"])
        .arg(&key)
        .args(["-n", "pgbak-backup@v1"])
        .arg(&message_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    // ed25519 signatures are deterministic: the very same bytes, so the same message and format.
    let theirs = std::fs::read_to_string(&sig_file).unwrap();
    assert_eq!(theirs, signature);
    edit_meta(&meta, |m| m["signature"] = Value::from(theirs));
    let (out, report) = verify(&db, &dump, &allowed);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(check_named(&report, "meta.json")["status"], "pass");
}

#[test]
fn bucket_signing_restore_all_databases_takes_only_a_signed_run() {
    let keys = Dir::new("sign-dr-keys");
    let dir = Dir::new("sign-dr");
    let (key, public) = signing_key(&keys, "signing");
    let ours = trusted(&keys, "trusted", &[&public]);
    let _source = signed_run(&dir, &key);
    let dr = |target: &OwnedCluster, trust: bool| {
        let mut cmd = rebuild(target, &dir, &[]);
        if trust {
            cmd.arg("--trusted-keys").arg(&ours);
        }
        cmd.output().unwrap()
    };
    let globals_meta = one_file(&dir, "postgres_globals_", ".meta.json");
    let original = std::fs::read(&globals_meta).unwrap();

    // The globals' signature stripped: refused before any role is created.
    strip_signature(&globals_meta);
    let target = support::private_cluster(16);
    let out = dr(&target, true);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed"));
    assert!(!has_role(&target, "sg_app"));

    // A database's signature stripped (the globals signed): refused before any role is
    // created, not half way through the run.
    std::fs::write(&globals_meta, &original).unwrap();
    let app_meta = one_file(&dir, "sg_app_full_", ".meta.json");
    let app_original = std::fs::read(&app_meta).unwrap();
    strip_signature(&app_meta);
    let out = dr(&target, true);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sg_app_full_"));
    assert!(!has_role(&target, "sg_app"));
    std::fs::write(&app_meta, &app_original).unwrap();
    strip_signature(&globals_meta);

    // Without trusted keys, DR says in one line that it trusts the bucket (and restores).
    let out = dr(&target, false);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("trusts whoever can write to the bucket")
            .count(),
        1,
        "{stderr}"
    );

    // The signed run restores with trusted keys.
    std::fs::write(&globals_meta, &original).unwrap();
    let target = support::private_cluster(16);
    let out = dr(&target, true);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(target.psql("sg_app", "SELECT count(*) FROM items"), "30");
}

#[test]
fn bucket_signing_holds_through_s3_where_the_location_is_added_after_signing() {
    let db = pg16().db_with(
        "signed s3",
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 30)",
    );
    let server = s3();
    let bucket = server.fresh_bucket("signed-s3");
    let keys = Dir::new("sign-s3-keys");
    let dir = Dir::new("sign-s3");
    let (key, public) = signing_key(&keys, "signing");
    let ours = trusted(&keys, "trusted", &[&public]);
    let out = pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--output-dir"])
        .arg(&*dir)
        .arg("--signing-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let (_, meta) = newest(&dir, &db.name);
    assert!(support::read_meta(&meta)["s3"]["key"].is_string());
    let out = pgbak_s3(&db, server, &bucket, "p/")
        .args([
            "verify",
            "--from-s3",
            "--expect-table",
            "public.items",
            "--trusted-keys",
        ])
        .arg(&ours)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = pgbak_s3(&db, server, &bucket, "p/")
        .args([
            "restore",
            "--from-s3",
            "--no-confirm",
            "--create-db",
            "--trusted-keys",
        ])
        .arg(&ours)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

#[test]
fn bucket_signing_cron_signs_and_its_verify_checks_the_signature() {
    use crate::support::cron::cron;
    use crate::support::cron::Dirs;
    let pg = pg16();
    let db = pg.fixture_db("signed cron", 0.01);
    let keys = Dir::new("sign-cron-keys");
    let (key, public) = signing_key(&keys, "signing");
    let (_, other_public) = signing_key(&keys, "other");

    // Only another host's key is trusted: the new backup's verify fails the run.
    let dirs = Dirs::new("sign-cron-untrusted");
    let out = cron(support::pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("PGBAK_SIGNING_KEY_FILE", &key)
        .env(
            "PGBAK_TRUSTED_KEYS",
            trusted(&keys, "others", &[&other_public]),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let (_, log) = dirs.only_log();
    assert!(log.contains("not a trusted key"), "{log}");

    // Its own key trusted: signed, verified, exit 0.
    let dirs = Dirs::new("sign-cron-ok");
    let out = cron(support::pgbak(pg), &dirs, &db.url())
        .arg("--verify")
        .env("PGBAK_SIGNING_KEY_FILE", &key)
        .env("PGBAK_TRUSTED_KEYS", trusted(&keys, "ours", &[&public]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let meta = support::read_meta(&dirs.backups.join(&dirs.metas()[0]));
    assert!(meta["signature"].is_string(), "{meta:#}");
    assert_eq!(meta["verification"]["passed"], true, "{meta:#}");

    // Encryption required but no recipient: refused before anything runs.
    let dirs = Dirs::new("sign-cron-require");
    let out = cron(support::pgbak(pg), &dirs, &db.url())
        .env("PGBAK_REQUIRE_ENCRYPTION", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(dirs.dumps().is_empty());
    // ... and a value that is not a boolean is a configuration error, not "off".
    let out = cron(support::pgbak(pg), &dirs, &db.url())
        .env("PGBAK_REQUIRE_ENCRYPTION", "ture")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(dirs.dumps().is_empty());
}
