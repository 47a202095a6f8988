//! The small things a new user trips over (issue 25, item 4): `--env-file`
//! for the ad-hoc commands, `--encrypt-to` keys whose comment holds a comma,
//! messages that say what happened, `list --s3` without credentials, a
//! restore of another database's S3 object refused before the download, help
//! that shows only what a command uses, the all-databases upload alert.

use std::path::Path;
use std::time::Duration;

use crate::cron::{cron, run as run_cron, Dirs};
use crate::support::{
    self, free_port, output_text, pg16, pgbak, pgbak_bare, private_cluster, run, s3, HttpListener,
};
use crate::verify::{backup, Dir};

/// An SSH public key whose comment holds a comma (ssh-keygen -C takes any text).
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN ops team, backups@example";

fn write_env_file(dir: &Path, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join("pgbak.env");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// list, check, prune, verify and restore read the cron environment file
/// (`--env-file`, as cron does): one way to run ad-hoc commands with the
/// unattended settings. On main they refused the flag (exit 2).
#[test]
fn env_file_serves_the_ad_hoc_commands() {
    let pg = pg16();
    let db = pg.fresh_db("env file adhoc");
    db.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)");
    let dir = Dir::new("env-file-adhoc");
    let dump = backup(&db, &dir);
    let file = write_env_file(
        &dir,
        &[
            format!("DATABASE_URL={}", db.url()),
            format!("BACKUP_DIR={}", dir.display()),
            "PGBAK_CHECK_MAX_VERIFIED_AGE=0".to_owned(),
        ],
    );
    let stem = dump
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".dump", "");
    let env_file = file.to_str().unwrap();
    let out = run(pgbak_bare().args(["list", "--json", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&stem),
        "{}",
        output_text(&out)
    );
    let out = run(pgbak_bare().args(["check", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(pgbak_bare().args(["prune", "--dry-run", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(pgbak(pg).args(["verify", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    db.psql("DELETE FROM t");
    let out = run(pgbak(pg).args([
        "restore",
        "--no-confirm",
        "--create-db",
        "--env-file",
        env_file,
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(db.psql("SELECT count(*) FROM t"), "10");
    // A file that is not there is a usage error before anything runs.
    let out = run(pgbak_bare().args(["list", "--env-file", "/nonexistent/pgbak.env"]));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

/// `--encrypt-to` is repeatable and takes a key as it is: an SSH key whose
/// comment holds a comma is one recipient (on main it was split in two,
/// "invalid recipient"). The variable still takes a comma-separated list.
#[test]
fn encrypt_to_keeps_an_ssh_key_whose_comment_has_a_comma() {
    let pg = pg16();
    let db = pg.fresh_db("encrypt comma");
    db.psql("CREATE TABLE t (id int)");
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

/// `list --s3` without any credentials says so (exit 2), not "IMDS is disabled".
#[test]
fn list_s3_without_credentials_says_they_are_missing() {
    let out = run(pgbak_bare()
        .args(["list", "--s3", "--backup-dir", "/nonexistent/pgbak"])
        .env("S3_BUCKET", "nobody")
        .env("S3_ENDPOINT_URL", s3().env()[0].1.clone())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", "/nonexistent"));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(!stderr.contains("IMDS"), "{stderr}");
}

/// A restore of an `s3://` object that is another database's backup reads
/// its meta.json and refuses (exit 2) before downloading the dump: moto's
/// request log shows no GET of the dump (on main the dump was downloaded first).
#[test]
fn restore_of_another_databases_s3_object_refuses_before_the_download() {
    let pg = pg16();
    let db = pg.fresh_db("other s3 source");
    db.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)");
    let target = pg.fresh_db("other s3 target");
    let server = s3();
    let bucket = server.fresh_bucket("other");
    let dir = Dir::new("other-s3");
    let out = run(crate::s3::pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--json", "--output-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = format!("p/{}", summary["meta"]["file"].as_str().unwrap());
    let out = run(crate::s3::pgbak_s3(&target, server, &bucket, "p/").args([
        "restore",
        &format!("s3://{bucket}/{key}"),
        "--no-confirm",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-other-database"),
        "{}",
        output_text(&out)
    );
    let log = server.log();
    assert!(
        log.contains(&format!("/{bucket}/p/")),
        "moto logs requests: {log}"
    );
    let fetched: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("\"GET /{bucket}/{key}")))
        .filter(|l| !l.contains(".meta.json"))
        .collect();
    assert!(fetched.is_empty(), "the dump was downloaded: {fetched:?}");
}

/// list, check and prune connect to no database: their help shows neither
/// --pg-bin-dir nor --lock-wait-timeout; the commands that dump or restore do.
#[test]
fn help_shows_only_the_options_a_command_uses() {
    let help = |command: &str| -> String {
        let out = run(pgbak_bare().args([command, "--help"]));
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for command in ["list", "check", "prune", "unpin"] {
        let text = help(command);
        for option in ["--pg-bin-dir", "--lock-wait-timeout"] {
            assert!(
                !text.contains(option),
                "{command} --help shows {option}:\n{text}"
            );
        }
    }
    for (command, options) in [
        ("backup", &["--pg-bin-dir", "--lock-wait-timeout"][..]),
        ("cron", &["--pg-bin-dir", "--lock-wait-timeout"]),
        ("verify", &["--pg-bin-dir"]),
        ("restore", &["--pg-bin-dir"]),
    ] {
        let text = help(command);
        for option in options {
            assert!(
                text.contains(option),
                "{command} --help lacks {option}:\n{text}"
            );
        }
    }
    // The old place, before the command, still works.
    let out = run(pgbak_bare().args(["--pg-bin-dir", "/nonexistent", "backup", "--help"]));
    assert!(out.status.success(), "{}", output_text(&out));
}

/// With --backup-dir given, the "nothing found" error does not tell the
/// operator to pass --backup-dir; it names the directory searched.
#[test]
fn nothing_found_in_the_given_backup_dir_says_so() {
    let pg = pg16();
    let db = pg.fresh_db("empty dir");
    let dir = Dir::new("empty-dir");
    let out = run(pgbak(pg)
        .args(["verify", "--backup-dir"])
        .arg(&*dir)
        .env("DATABASE_URL", db.url()));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(!stderr.contains("pass --backup-dir"), "{stderr}");
}

/// An `--all-databases` cron whose uploads fail alerts "backup upload
/// failed", as documented (on main: "backup failed").
#[test]
fn cron_all_databases_upload_failure_alerts_upload_failed() {
    let pg = private_cluster(16);
    let dirs = Dirs::new("all-upload");
    let hook = HttpListener::ok();
    let out = run_cron(
        cron(support::pgbak(&pg), &dirs, &pg.url("postgres"))
            .arg("--all-databases")
            .env("ALERT_WEBHOOK_URL", hook.url())
            .env("S3_BUCKET", "pgbak-all-down")
            .env(
                "S3_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let requests = hook.wait_for(1, Duration::from_secs(5));
    let body = requests[0].json();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL backup upload failed on"),
        "{body}"
    );
    assert!(!dirs.dumps().is_empty(), "the local backups are complete");
}
