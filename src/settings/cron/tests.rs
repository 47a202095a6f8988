use super::*;
use crate::cli::{Cli, Command};
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

/// `pgbak cron FLAGS` with the variables `env`, as the run would parse and resolve them.
fn parsed(flags: &[&str], env: &[(&str, &str)]) -> Result<CronSettings, clap::Error> {
    let env = Env::loaded(env.iter().copied());
    let argv = ["pgbak", "cron"].iter().chain(flags);
    let Command::Cron(args) = crate::settings::env::parse_with::<Cli>(argv, &env)?.command else {
        unreachable!()
    };
    Ok(CronSettings::resolve_in(&global(), *args, &env))
}

fn cron(flags: &[&str], env: &[(&str, &str)]) -> CronSettings {
    parsed(flags, env).expect("parses")
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
    assert!(config.verify.is_none());
    let s = cron(&["--verify"], &[URL]);
    let verify = s.config.expect("valid").verify.expect("verifies");
    assert!(matches!(verify.target, Target::SourceServer));
    // `pgbak verify`'s defaults, written once.
    assert_eq!(verify.jobs, crate::settings::defaults::RESTORE_JOBS);
    assert_eq!(
        verify.maintenance_work_mem,
        crate::settings::defaults::MAINTENANCE_WORK_MEM
    );
    assert!(verify.record && !verify.no_cleanup);
    let s = cron(&["--all-databases", "--check-config"], &[URL]);
    assert!(s.check_config);
    assert_eq!(s.reporter.group.database, ALL_DATABASES);
}

#[test]
fn verify_from_the_flag_or_the_strict_variable_unless_no_verify() {
    // (flags, VERIFY_ON_BACKUP, verify on, or None when the command line is refused: exit 2)
    let cases: [(&[&str], Option<&str>, Option<bool>); 10] = [
        (&[], None, Some(false)),
        (&["--verify"], None, Some(true)),
        (&[], Some("yes"), Some(true)),
        (&[], Some("ON"), Some(true)),
        (&["--verify"], Some("false"), Some(true)),
        (&[], Some("yes-please"), None),
        // --no-verify switches a `true` in the environment off for one run.
        (&["--no-verify"], Some("true"), Some(false)),
        (&["--no-verify"], None, Some(false)),
        // --no-verify wins over --verify too, wherever it stands.
        (&["--no-verify", "--verify"], Some("true"), Some(false)),
        (&["--verify", "--no-verify"], None, Some(false)),
    ];
    for (flags, value, want) in cases {
        let mut env = vec![URL];
        env.extend(value.map(|v| ("VERIFY_ON_BACKUP", v)));
        let s = parsed(flags, &env);
        let got = s
            .as_ref()
            .ok()
            .map(|s| s.config.as_ref().expect("valid").verify.is_some());
        assert_eq!(got, want, "{flags:?} {value:?}");
        if let Err(err) = s {
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            let line = describe_refusal(&[], &err);
            assert!(line.contains("not a boolean"), "{line}");
        }
    }
}

#[test]
fn all_databases_from_the_variable_unless_no_all_databases() {
    let all = |flags: &[&str], value: &str| {
        let s = cron(flags, &[URL, ("PGBAK_ALL_DATABASES", value)]);
        let config = s.config.expect("valid");
        assert_eq!(
            s.reporter.group.database == ALL_DATABASES,
            config.plan.all_databases.is_some(),
            "the group and the plan agree"
        );
        config.plan.all_databases.is_some()
    };
    assert!(all(&[], "true"));
    assert!(!all(&[], "off"));
    assert!(!all(&["--no-all-databases"], "true"));
    assert!(!all(&["--no-all-databases", "--all-databases"], "false"));
    assert!(!all(&["--all-databases", "--no-all-databases"], "true"));
    assert!(parsed(&[], &[URL, ("PGBAK_ALL_DATABASES", "ture")]).is_err());
}

#[test]
fn the_verify_target_is_a_url_or_a_throwaway_cluster() {
    let s = cron(
        &[
            "--verify",
            "--verify-target-url",
            "postgresql://v:pw@other/x",
        ],
        &[URL],
    );
    let verify = |s: CronSettings| s.config.expect("valid").verify.expect("verifies").target;
    let Target::Url(conn) = verify(s) else {
        panic!("a URL target")
    };
    assert_eq!(
        (conn.host.to_string(), conn.dbname),
        ("other".to_owned(), "x".to_owned())
    );
    let s = cron(&["--verify", "--verify-ephemeral"], &[URL]);
    assert!(matches!(verify(s), Target::Ephemeral));
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
