//! The environment file and the `*_FILE` secrets are read into pgbak's own
//! snapshot of the environment, never exported into its process: each
//! consumer gets them explicitly. These tests hold them out of the process
//! environment pgbak starts with and check that they still reach the AWS SDK
//! (keys, profile), a child process, and the command line's conflicts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::bucket::{assert_no_secret, SECRET};
use crate::support::cron::{cron, Dirs};
use crate::support::{self, output_text, pg16, pgbak, restore_cmd, run, s3, S3Server};

/// What pgbak's process gets for `server`: only what cannot come from the
/// environment file (no keys; no instance metadata to fall back on).
fn without_keys(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
}

fn write_env_file(path: &Path, server: &S3Server, bucket: &str, extra: &str) {
    std::fs::write(
        path,
        format!(
            "S3_BUCKET={bucket}\nS3_PREFIX=env-file/\nS3_ENDPOINT_URL={}\nAWS_REGION=us-east-1\n{extra}",
            server.endpoint
        ),
    )
    .unwrap();
}

fn assert_uploaded(server: &S3Server, bucket: &str, dirs: &Dirs) {
    let keys: Vec<String> = server
        .list_objects(bucket, "env-file/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    let dumps = dirs.dumps();
    assert_eq!(dumps.len(), 1);
    assert!(keys.contains(&format!("env-file/{}", dumps[0])), "{keys:?}");
}

#[test]
fn env_s3_keys_only_in_the_cron_env_file_reach_the_store() {
    let pg = pg16();
    let db = pg.fixture_db("env file keys", 0.05);
    let server = s3();
    let bucket = server.fresh_bucket("env-file-keys");
    let dirs = Dirs::new("env-file-keys");
    std::fs::create_dir_all(&dirs.root).unwrap();
    let env_file = dirs.root.join("pgbak.env");
    let keys = format!("AWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY={SECRET}\n");
    write_env_file(&env_file, server, &bucket, &keys);
    let out = run(without_keys(&mut cron(pgbak(pg), &dirs, &db.url()))
        .arg("--env-file")
        .arg(&env_file));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_uploaded(server, &bucket, &dirs);
    assert_no_secret(&out);
    let (_, log) = dirs.only_log();
    assert!(!log.contains(SECRET), "{log}");
}

#[test]
fn env_s3_profile_named_in_the_cron_env_file_is_used() {
    let pg = pg16();
    let db = pg.fixture_db("env file profile", 0.05);
    let server = s3();
    let bucket = server.fresh_bucket("env-file-profile");
    let dirs = Dirs::new("env-file-profile");
    let home = dirs.root.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    // Only the named profile has keys: the default one would find none.
    std::fs::write(
        home.join(".aws/credentials"),
        format!("[backups]\naws_access_key_id = test\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let env_file = dirs.root.join("pgbak.env");
    write_env_file(&env_file, server, &bucket, "AWS_PROFILE=backups\n");
    let out = run(without_keys(&mut cron(pgbak(pg), &dirs, &db.url()))
        .env("HOME", &home)
        .arg("--env-file")
        .arg(&env_file));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_uploaded(server, &bucket, &dirs);
}

#[test]
fn env_s3_secret_key_from_its_file_reaches_the_store() {
    let pg = pg16();
    let db = pg.fixture_db("secret key file", 0.05);
    let server = s3();
    let bucket = server.fresh_bucket("secret-key-file");
    let dirs = Dirs::new("secret-key-file");
    std::fs::create_dir_all(&dirs.root).unwrap();
    let key_file = dirs.root.join("aws-secret");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    let out = run(without_keys(&mut pgbak(pg))
        .env("DATABASE_URL", db.url())
        .env("S3_BUCKET", &bucket)
        .env("S3_PREFIX", "env-file/")
        .env("S3_ENDPOINT_URL", &server.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY_FILE", &key_file)
        .args(["backup", "-v", "--output-dir"])
        .arg(&dirs.backups));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_uploaded(server, &bucket, &dirs);
    assert_no_secret(&out);
}

#[test]
fn env_a_secret_from_its_file_reaches_a_child_process() {
    let pg = pg16();
    let (_source, _dir, dump) = crate::support::verify::fixture_backup(pg, "env child", 0.05);
    let target = pg.fresh_db("env child target");
    // A stand-in `alembic` on PATH that records the DATABASE_URL it was given.
    let bin = crate::support::verify::Dir::new("env-child-bin");
    let seen = bin.join("seen");
    let script = bin.join("alembic");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"$DATABASE_URL\" > {}\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url_file = bin.join("database-url");
    std::fs::write(&url_file, format!("{}\n", target.url())).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(restore_cmd(
        &target,
        &dump,
        &["--create-db", "--no-confirm", "--alembic-stamp"],
    )
    .env_remove("DATABASE_URL")
    .env("DATABASE_URL_FILE", &url_file)
    .env("PATH", &path));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), target.url());
}

#[test]
fn env_a_target_url_from_its_file_conflicts_with_ephemeral_as_the_variable_does() {
    let tmp = crate::support::verify::Dir::new("env-conflict");
    let url_file = tmp.join("target-url");
    std::fs::write(&url_file, "postgresql://u:p@127.0.0.1:1/db\n").unwrap();
    for (name, value) in [
        (
            "PGBAK_VERIFY_TARGET_URL",
            "postgresql://u:p@127.0.0.1:1/db".as_ref(),
        ),
        ("PGBAK_VERIFY_TARGET_URL_FILE", url_file.as_os_str()),
    ] {
        let out = run(support::pgbak_bare()
            .env(name, value)
            .args(["verify", "--ephemeral"]));
        assert_eq!(out.status.code(), Some(2), "{name}: {}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("'--ephemeral' cannot be used with '--target-url"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("u:p@"), "{stderr}");
    }
}
