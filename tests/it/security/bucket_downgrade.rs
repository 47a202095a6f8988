//! Issue 22 item 5(a): no downgrade. Whoever can write to the bucket can put a plaintext
//! object (their own SQL, their own dump) where an encrypted one was, with a matching sha256 in
//! meta.json. When anything says the backup is encrypted (its name, its meta.json, its run, an
//! identity given, PGBAK_REQUIRE_ENCRYPTION), restore refuses it (exit 2, nothing changed) and
//! verify fails it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::keys::keygen;
use crate::support::roles::has_role;
use crate::support::runs::{owned_database_run, rebuild};
use crate::support::verify::check_named;
use crate::support::verify::Dir;
use crate::support::{self, edit_meta, one_file, output_text, sha256_hex, OwnedCluster};

/// A server with a role and a database, backed up `--all-databases`, encrypted to a fresh
/// key, into its own directory.
struct EncryptedRun {
    source: OwnedCluster,
    dir: Dir,
    /// The identity that decrypts the run.
    key: PathBuf,
    _keys: Dir,
}

impl EncryptedRun {
    /// `pgbak <args> <dump> --identity-file <key>` against the source's `dg_app`.
    fn pgbak_on_app(&self, args: &[&str], dump: &Path) -> std::process::Output {
        support::pgbak(&self.source)
            .args(args)
            .arg(dump)
            .arg("--identity-file")
            .arg(&self.key)
            .env("DATABASE_URL", self.source.url("dg_app"))
            .output()
            .unwrap()
    }
}

fn encrypted_run(hint: &str) -> EncryptedRun {
    let keys = Dir::new(&format!("{hint}-keys"));
    let dir = Dir::new(hint);
    let (key, public) = keygen(&keys, "key.txt");
    let extra = ["--encrypt-to", public.as_str()];
    let source = owned_database_run(&dir, "dg_app", "dg_app", "notes", 20, "", &extra);
    EncryptedRun {
        source,
        dir,
        key,
        _keys: keys,
    }
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

/// Removes the encrypted `sealed` and points its meta.json at a plaintext file of the same
/// name without `.age` (not written yet): the path of that file.
fn unsealed_name(sealed: &Path) -> PathBuf {
    let meta_path = meta_beside(sealed);
    let plain = sealed.with_extension("");
    std::fs::remove_file(sealed).unwrap();
    let plain_name = plain.file_name().unwrap().to_str().unwrap();
    edit_meta(&meta_path, |m| m["file"] = Value::from(plain_name));
    plain
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

/// `restore --all-databases` from `dir` into `target`, refused (exit 2) saying `why`.
fn restore_all_refused(target: &OwnedCluster, dir: &Path, identity: Option<&Path>, why: &str) {
    let out = restore_all(target, dir, identity);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(why),
        "{}",
        output_text(&out)
    );
}

fn restore_all(target: &OwnedCluster, dir: &Path, identity: Option<&Path>) -> std::process::Output {
    let mut cmd = rebuild(target, dir, &[]);
    if let Some(key) = identity {
        cmd.arg("--identity-file").arg(key);
    }
    cmd.output().unwrap()
}

#[test]
fn bucket_downgrade_a_plaintext_globals_object_in_place_of_the_encrypted_one_is_refused() {
    let run = encrypted_run("dg-all");
    let globals = one_file(&run.dir, "postgres_globals_", ".dump.age");
    replace_with_plaintext(&globals, HOSTILE_GLOBALS.as_bytes(), true);

    let target = support::private_cluster(16);
    restore_all_refused(&target, &run.dir, Some(&run.key), "is not encrypted");
    assert!(
        !has_role(&target, "evil"),
        "the hostile globals did not run"
    );
    assert!(!has_role(&target, "dg_app"), "nothing was restored");
}

#[test]
fn bucket_downgrade_a_plaintext_globals_backup_beside_an_encrypted_run_is_refused() {
    let run = encrypted_run("dg-all-b");
    // The encrypted globals removed, a plaintext one of the same run in its place.
    let sealed = one_file(&run.dir, "postgres_globals_", ".dump.age");
    let plain = unsealed_name(&sealed);
    replace_with_plaintext(&plain, HOSTILE_GLOBALS.as_bytes(), false);

    // No identity given: the run's encrypted database backups are what says it.
    let target = support::private_cluster(16);
    restore_all_refused(&target, &run.dir, None, "other backups of its run are");
    assert!(
        !has_role(&target, "evil"),
        "the hostile globals did not run"
    );
}

#[test]
fn bucket_downgrade_a_plaintext_dump_in_place_of_an_encrypted_one_fails_verify_and_restore() {
    let run = encrypted_run("dg-one");
    // Someone's own (plaintext) dump, with a table of theirs.
    run.source.psql("postgres", "CREATE DATABASE dg_other");
    run.source.psql("dg_other", "CREATE TABLE planted (x int)");
    let other = Dir::new("dg-other");
    let out = support::backup(&run.source, "dg_other", &other, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let planted = std::fs::read(one_file(&other, "dg_other_full_", ".dump")).unwrap();
    let sealed = one_file(&run.dir, "dg_app_full_", ".dump.age");
    replace_with_plaintext(&sealed, &planted, true);

    let out = run.pgbak_on_app(
        &["verify", "--json", "--expect-table", "public.notes"],
        &sealed,
    );
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

    let out = run.pgbak_on_app(&["restore", "--no-confirm", "--create-db"], &sealed);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_eq!(
        run.source.psql("dg_app", "SELECT count(*) FROM notes"),
        "20"
    );
    assert_eq!(
        run.source.psql(
            "dg_app",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'planted'"
        ),
        "0"
    );
}

#[test]
fn bucket_downgrade_a_plaintext_database_backup_in_an_encrypted_run_is_refused_before_any_role() {
    let run = encrypted_run("dg-all-d");
    // The database's encrypted backup swapped for a plaintext one of the same run.
    let sealed = one_file(&run.dir, "dg_app_full_", ".dump.age");
    let plain = unsealed_name(&sealed);
    let other = Dir::new("dg-other-d");
    run.source.psql("postgres", "CREATE DATABASE dg_planted");
    let out = support::backup(&run.source, "dg_planted", &other, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let planted = std::fs::read(one_file(&other, "dg_planted_full_", ".dump")).unwrap();
    replace_with_plaintext(&plain, &planted, false);

    let target = support::private_cluster(16);
    restore_all_refused(&target, &run.dir, Some(&run.key), "dg_app_full_");
    // Refused before the globals: the run's roles are not there either.
    assert!(!has_role(&target, "dg_app"), "refused before the globals");
}
