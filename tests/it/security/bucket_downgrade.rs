//! Issue 22 item 5(a): no downgrade. Whoever can write to the bucket can put a plaintext
//! object (their own SQL, their own dump) where an encrypted one was, with a matching sha256 in
//! meta.json. When anything says the backup is encrypted (its name, its meta.json, its run, an
//! identity given, PGBAK_REQUIRE_ENCRYPTION), restore refuses it (exit 2, nothing changed) and
//! verify fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::keys::keygen;
use crate::support::verify::check_named;
use crate::support::verify::Dir;
use crate::support::{self, output_text, sha256_hex, OwnedCluster};

/// A server with a role and a database, backed up `--all-databases`, encrypted, into `dir`.
fn encrypted_run(dir: &Path, public: &str) -> OwnedCluster {
    let source = support::private_cluster(16);
    source.psql("postgres", "CREATE ROLE dg_app LOGIN PASSWORD 'dg-Pa55'");
    source.psql("postgres", "CREATE DATABASE dg_app OWNER dg_app");
    source.psql(
        "dg_app",
        "CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes SELECT generate_series(1, 20); \
         ALTER TABLE notes OWNER TO dg_app",
    );
    let out = support::pgbak(&source)
        .args(["backup", "--all-databases", "--no-s3", "--output-dir"])
        .arg(dir)
        .args(["--encrypt-to", public])
        .env("DATABASE_URL", source.url("postgres"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    source
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn file(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<String> = support::files(dir)
        .into_iter()
        .filter(|f| f.starts_with(prefix) && f.ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{prefix}*{suffix} in {:?}",
        support::files(dir)
    );
    dir.join(&found[0])
}

/// The meta.json beside a `.dump` or `.dump.age`.
fn meta_beside(dump: &Path) -> PathBuf {
    let name = dump.file_name().unwrap().to_str().unwrap();
    let stem = name
        .strip_suffix(".dump.age")
        .or_else(|| name.strip_suffix(".dump"))
        .unwrap();
    dump.with_file_name(format!("{stem}.meta.json"))
}

/// Puts `bytes` where `dump` is, with a meta.json whose checksum and size match them.
fn replace_with_plaintext(dump: &Path, bytes: &[u8], keep_encryption_section: bool) {
    std::fs::write(dump, bytes).unwrap();
    let meta_path = meta_beside(dump);
    let mut meta = support::read_meta(&meta_path);
    meta["sha256"] = Value::from(sha256_hex(dump));
    meta["size_bytes"] = Value::from(bytes.len());
    if !keep_encryption_section {
        meta["encryption"] = Value::Null;
    }
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

const HOSTILE_GLOBALS: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\
    CREATE ROLE evil;\nALTER ROLE evil WITH SUPERUSER LOGIN PASSWORD 'evil-Pa55';\n";

fn has_role(pg: &OwnedCluster, role: &str) -> bool {
    pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
    ) == "1"
}

fn restore_all(target: &OwnedCluster, dir: &Path, identity: Option<&Path>) -> std::process::Output {
    let mut cmd: Command = support::pgbak(target);
    cmd.args(["restore", "--all-databases", "--no-confirm", "--backup-dir"])
        .arg(dir)
        .env("DATABASE_URL", target.url("postgres"));
    if let Some(key) = identity {
        cmd.arg("--identity-file").arg(key);
    }
    cmd.output().unwrap()
}

#[test]
fn bucket_downgrade_a_plaintext_globals_object_in_place_of_the_encrypted_one_is_refused() {
    let keys = Dir::new("dg-keys");
    let dir = Dir::new("dg-all");
    let (key, public) = keygen(&keys, "key.txt");
    let _source = encrypted_run(&dir, &public);
    let globals = file(&dir, "postgres_globals_", ".dump.age");
    replace_with_plaintext(&globals, HOSTILE_GLOBALS.as_bytes(), true);

    let target = support::private_cluster(16);
    let out = restore_all(&target, &dir, Some(&key));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not encrypted"),
        "{}",
        output_text(&out)
    );
    assert!(!has_role(&target, "evil"), "{}", output_text(&out));
    assert!(!has_role(&target, "dg_app"), "nothing was restored");
}

#[test]
fn bucket_downgrade_a_plaintext_globals_backup_beside_an_encrypted_run_is_refused() {
    let keys = Dir::new("dg-keys-b");
    let dir = Dir::new("dg-all-b");
    let (_key, public) = keygen(&keys, "key.txt");
    let _source = encrypted_run(&dir, &public);
    // The encrypted globals removed, a plaintext one of the same run in its place.
    let sealed = file(&dir, "postgres_globals_", ".dump.age");
    let meta_path = meta_beside(&sealed);
    let plain = sealed.with_extension("");
    std::fs::remove_file(&sealed).unwrap();
    let mut meta = support::read_meta(&meta_path);
    meta["file"] = Value::from(plain.file_name().unwrap().to_str().unwrap());
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    replace_with_plaintext(&plain, HOSTILE_GLOBALS.as_bytes(), false);

    // No identity given: the run's encrypted database backups are what says it.
    let target = support::private_cluster(16);
    let out = restore_all(&target, &dir, None);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("other backups of its run are"),
        "{}",
        output_text(&out)
    );
    assert!(!has_role(&target, "evil"), "{}", output_text(&out));
}

#[test]
fn bucket_downgrade_a_plaintext_dump_in_place_of_an_encrypted_one_fails_verify_and_restore() {
    let keys = Dir::new("dg-keys-c");
    let dir = Dir::new("dg-one");
    let (key, public) = keygen(&keys, "key.txt");
    let source = encrypted_run(&dir, &public);
    // Someone's own (plaintext) dump, with a table of theirs.
    source.psql("postgres", "CREATE DATABASE dg_other");
    source.psql("dg_other", "CREATE TABLE planted (x int)");
    let other = Dir::new("dg-other");
    let out = support::backup(&source, "dg_other", &other, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let planted = std::fs::read(file(&other, "dg_other_full_", ".dump")).unwrap();
    let sealed = file(&dir, "dg_app_full_", ".dump.age");
    replace_with_plaintext(&sealed, &planted, true);

    let out = support::pgbak(&source)
        .args(["verify", "--json", "--expect-table", "public.notes"])
        .arg(&sealed)
        .arg("--identity-file")
        .arg(&key)
        .env("DATABASE_URL", source.url("dg_app"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checksum = check_named(&report, "checksum");
    assert_eq!(checksum["status"], "fail", "{report:#}");
    assert!(
        checksum["detail"]
            .as_str()
            .unwrap()
            .contains("not encrypted"),
        "{report:#}"
    );

    let out = support::pgbak(&source)
        .args(["restore", "--no-confirm", "--create-db"])
        .arg(&sealed)
        .arg("--identity-file")
        .arg(&key)
        .env("DATABASE_URL", source.url("dg_app"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_eq!(source.psql("dg_app", "SELECT count(*) FROM notes"), "20");
    assert_eq!(
        source.psql(
            "dg_app",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'planted'"
        ),
        "0"
    );
}

#[test]
fn bucket_downgrade_a_plaintext_database_backup_in_an_encrypted_run_is_refused_before_any_role() {
    let keys = Dir::new("dg-keys-d");
    let dir = Dir::new("dg-all-d");
    let (key, public) = keygen(&keys, "key.txt");
    let source = encrypted_run(&dir, &public);
    // The database's encrypted backup swapped for a plaintext one of the same run.
    let sealed = file(&dir, "dg_app_full_", ".dump.age");
    let meta_path = meta_beside(&sealed);
    let plain = sealed.with_extension("");
    std::fs::remove_file(&sealed).unwrap();
    let mut meta = support::read_meta(&meta_path);
    meta["file"] = Value::from(plain.file_name().unwrap().to_str().unwrap());
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let other = Dir::new("dg-other-d");
    source.psql("postgres", "CREATE DATABASE dg_planted");
    let out = support::backup(&source, "dg_planted", &other, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let planted = std::fs::read(file(&other, "dg_planted_full_", ".dump")).unwrap();
    replace_with_plaintext(&plain, &planted, false);

    let target = support::private_cluster(16);
    let out = restore_all(&target, &dir, Some(&key));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dg_app_full_"),
        "{}",
        output_text(&out)
    );
    // Refused before the globals: the run's roles are not there either.
    assert!(!has_role(&target, "dg_app"), "{}", output_text(&out));
}
