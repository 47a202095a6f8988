use clap::Parser;

use super::*;
use crate::cli::Command;
use crate::error::{exit_code, USAGE};

fn global() -> GlobalSettings {
    GlobalSettings {
        verbosity: crate::ui::Verbosity::Normal,
        timeout: None,
        pg_bin_dir: None,
        lock_wait_timeout: Duration::from_secs(60),
        redactor: crate::ui::Redactor::none(),
    }
}

fn cron(flags: &[&str], env: &[(&str, &str)]) -> CronSettings {
    let argv = ["pgbak", "cron"].iter().chain(flags);
    let Command::Cron(args) = Cli::try_parse_from(argv).expect("parses").command else {
        unreachable!()
    };
    CronSettings::resolve_in(&global(), *args, &Env::from_pairs(env.to_vec()))
}

const URL: (&str, &str) = ("DATABASE_URL", "postgresql://u@db.example/app");

fn config_error(settings: CronSettings) -> Option<u8> {
    settings.config.err().map(|err| exit_code(&err))
}

#[test]
fn a_run_resolves_with_its_group_and_defaults() {
    let s = cron(&["--backup-dir", "/b", "--lock-wait", "30m"], &[URL]);
    assert!(s.reporting.is_ok() && !s.check_config);
    assert_eq!((s.log_keep, s.lock_wait), (30, Duration::from_secs(1800)));
    assert_eq!(s.reporter.group.database, "app");
    assert_eq!(s.reporter.group.mode, "full");
    let config = s.config.expect("valid");
    assert_eq!(config.plan.job.output_dir, PathBuf::from("/b"));
    assert!(!config.verify && matches!(config.verify_target, Target::SourceServer));
    let s = cron(&["--all-databases", "--check-config"], &[URL]);
    assert!(s.check_config);
    assert_eq!(s.reporter.group.database, ALL_DATABASES);
}

#[test]
fn verify_from_the_flag_or_the_strict_variable() {
    // (flags, VERIFY_ON_BACKUP, verify on, or None for exit 2)
    let cases: [(&[&str], Option<&str>, Option<bool>); 5] = [
        (&[], None, Some(false)),
        (&["--verify"], None, Some(true)),
        (&[], Some("yes"), Some(true)),
        (&["--verify"], Some("false"), Some(true)),
        (&[], Some("yes-please"), None),
    ];
    for (flags, value, want) in cases {
        let mut env = vec![URL];
        env.extend(value.map(|v| ("VERIFY_ON_BACKUP", v)));
        let s = cron(flags, &env);
        assert!(s.reporting.is_ok(), "the reporting part stands apart");
        let got = s.config.as_ref().ok().map(|c| c.verify);
        assert_eq!(got, want, "{flags:?} {value:?}");
        if want.is_none() {
            assert_eq!(config_error(s), Some(USAGE));
        }
    }
}

#[test]
fn the_verify_target_is_a_url_or_a_throwaway_cluster() {
    let s = cron(
        &["--verify-target-url", "postgresql://v:pw@other/x"],
        &[URL],
    );
    let Target::Url(conn) = s.config.expect("valid").verify_target else {
        panic!("a URL target")
    };
    assert_eq!(
        (conn.host.to_string(), conn.dbname),
        ("other".to_owned(), "x".to_owned())
    );
    let s = cron(&["--verify-ephemeral"], &[URL]);
    assert!(matches!(
        s.config.expect("valid").verify_target,
        Target::Ephemeral
    ));
    assert!(cron(&["--verify-target-url", "mysql://x"], &[URL])
        .config
        .is_err());
}

#[test]
fn each_part_fails_on_its_own() {
    // A bad heartbeat URL: the alert still works, the rest is resolved.
    let s = cron(
        &[
            "--heartbeat-url",
            "ftp://x",
            "--alert-webhook-url",
            "https://hooks.example/t",
        ],
        &[URL],
    );
    assert!(s.reporting.is_err() && s.reporter.alert.is_some() && s.reporter.heartbeat.is_none());
    assert!(s.config.is_ok());
    // No database named: a configuration error the reporter still reports.
    let s = cron(
        &["--heartbeat-url", "https://hc-ping.com/u"],
        &[("PGUSER", "ops")],
    );
    assert!(s.reporting.is_ok() && s.reporter.heartbeat.is_some());
    assert_eq!(s.reporter.group.database, "");
    assert_eq!(config_error(s), Some(USAGE));
}

#[test]
fn verifying_encrypted_backups_needs_an_identity() {
    let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let s = cron(&["--encrypt-to", key, "--verify"], &[URL]);
    assert_eq!(config_error(s), Some(USAGE));
    let s = cron(&["--encrypt-to", key], &[URL]);
    assert!(s
        .config
        .expect("no verify, no identity needed")
        .plan
        .job
        .recipients
        .is_some());
}
