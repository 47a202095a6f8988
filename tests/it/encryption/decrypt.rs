//! Reading an encrypted backup back: verify and restore decrypt with a `pgbak keygen` identity
//! (streamed, or parallel through an unnamed scratch file), files from the `age` CLI and ssh keys
//! work, a wrong or missing identity exits 2 naming the recipients, a flipped or truncated
//! ciphertext fails the checksum, a scratch dir without room is exit 2 before the target is
//! touched.

use std::process::Command;

use super::{
    age_cli, age_cli_decrypt_and_list, age_keygen, backup_cmd, check, pgbak_keygen, summary, verify,
};
use crate::support::verify::Dir;
use crate::support::{output_text, pg16, restore_cmd};

#[test]
fn encryption_verify_and_restore_decrypt_with_a_pgbak_keygen_identity() {
    let pg = pg16();
    let db = pg.fixture_db("enc verify", 0.05);
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
    let db = pg.fixture_db("enc ssh", 0.02);
    let keys = Dir::new("enc-ssh-keys");
    let dir = Dir::new("enc-ssh");
    // An archive encrypted by the stock CLI to an age-keygen key restores with pgbak (1 job).
    let plain = crate::support::verify::backup(&db, &dir);
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
    let db = pg.fixture_db("enc wrong key", 0.02);
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
    let target = pg.db_with("enc wrong target", "CREATE TABLE keep_me (x int)");
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
    let db = pg.fixture_db("enc corrupt", 0.02);
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
fn encryption_a_scratch_dir_without_room_is_exit_2_before_the_target_is_touched() {
    let Some(tmpfs) = crate::support::Tmpfs::mount("64k") else {
        return;
    };
    std::fs::create_dir(tmpfs.path()).unwrap();
    let pg = pg16();
    let db = pg.fixture_db("enc scratch", 0.02);
    let keys = Dir::new("enc-scratch-keys");
    let dir = Dir::new("enc-scratch");
    let (key, public) = age_keygen(&keys, "key.txt");
    let (dump, _) = summary(&backup_cmd(&db, &dir, &[&public]).output().unwrap());
    let target = pg.db_with("enc scratch target", "CREATE TABLE keep_me (x int)");
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
