//! cron's configuration from its environment and env file: an empty variable means its default
//! and never hides the env file's value; the storage-class warning is shown once, also by
//! `--check-config`.

use crate::support::cron::{cron, down_url, Dirs};
use crate::support::{output_text, pgbak_bare, run};

#[test]
fn cron_empty_variables_mean_their_defaults() {
    // A blank `KEY=` line in an environment file, as `${KEY:-default}` treated it in the scripts.
    let dirs = Dirs::new("empty-env");
    let mut cmd = cron(pgbak_bare(), &dirs, &down_url());
    for key in [
        "BACKUP_KEEP",
        "LOG_KEEP",
        "ALERT_WEBHOOK_URL",
        "ALERT_WEBHOOK_FORMAT",
        "ALERT_SERVICE",
        "PAGERDUTY_ROUTING_KEY",
        "HEARTBEAT_URL",
        "VERIFY_ON_BACKUP",
        "S3_BUCKET",
        "PGBAK_COMPRESS",
    ] {
        cmd.env(key, "");
    }
    let out = run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run starts: {}",
        output_text(&out)
    );
    let (_, text) = dirs.only_log();
    assert!(text.contains("keep last 7, verify off"), "{text}");
}

#[test]
fn cron_empty_variable_does_not_hide_the_env_file_value() {
    // `KEEP=` in the unit's environment counts as unset, so the environment
    // file's value applies, as `${BACKUP_KEEP:-...}` would have taken it.
    let dirs = Dirs::new("empty-vs-file");
    std::fs::create_dir_all(&dirs.root).unwrap();
    let env_file = dirs.root.join("pgbak.env");
    std::fs::write(
        &env_file,
        "BACKUP_KEEP=3
VERIFY_ON_BACKUP=true
",
    )
    .unwrap();
    let out = run(cron(pgbak_bare(), &dirs, &down_url())
        .arg("--env-file")
        .arg(&env_file)
        .env("BACKUP_KEEP", "")
        .env("VERIFY_ON_BACKUP", ""));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let (_, text) = dirs.only_log();
    assert!(text.contains("keep last 3, verify on"), "{text}");
}

#[test]
fn cron_storage_class_warning_is_shown_once_and_at_check_config() {
    let dirs = Dirs::new("ia-warning");
    let s3_env = [
        ("S3_BUCKET", "b"),
        ("S3_STORAGE_CLASS", "STANDARD_IA"),
        ("BACKUP_KEEP", "7"),
    ];
    let warned = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stderr).contains("bills 30 days minimum")
    };
    let mut first = cron(pgbak_bare(), &dirs, &down_url());
    first.envs(s3_env);
    let out = run(&mut first);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(warned(&out), "the first run warns: {}", output_text(&out));
    let mut second = cron(pgbak_bare(), &dirs, &down_url());
    second.envs(s3_env);
    let out = run(&mut second);
    assert!(!warned(&out), "not every night: {}", output_text(&out));
    let mut check = cron(pgbak_bare(), &dirs, &down_url());
    check.envs(s3_env).arg("--check-config");
    let out = run(&mut check);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(warned(&out), "--check-config always shows it");
}
