use super::*;
use crate::cli::{Cli, Command};
use crate::error::{exit_code, USAGE};
use crate::settings::env::parse_with;

fn global() -> GlobalSettings {
    GlobalSettings {
        verbosity: crate::ui::Verbosity::Normal,
        timeout: None,
        pg_bin_dir: Some(PathBuf::from("/opt/pg/bin")),
        lock_wait_timeout: std::time::Duration::from_secs(60),
        redactor: crate::ui::Redactor::none(),
    }
}

/// The command line `pgbak COMMAND FLAGS`, parsed against `env` as a run
/// parses it (each flag's variable included).
fn parsed(command: &str, flags: &[&str], env: &Env) -> Result<Command> {
    let head = ["pgbak", command];
    let argv = head.iter().chain(flags);
    let cli = parse_with::<Cli>(argv, env).map_err(|e| usage(e.to_string()))?;
    Ok(cli.command)
}

const URL: (&str, &str) = ("DATABASE_URL", "postgresql://u:pw@db.example:5433/app");

fn backup(flags: &[&str], env: &[(&str, &str)]) -> Result<BackupSettings> {
    let env = Env::loaded(env.iter().copied());
    let Command::Backup(args) = parsed("backup", flags, &env)? else {
        unreachable!()
    };
    BackupSettings::resolve_in(&global(), args, &env)
}

fn cron(flags: &[&str], env: &[(&str, &str)]) -> Result<BackupPlan> {
    let env = Env::loaded(env.iter().copied());
    let Command::Cron(args) = parsed("cron", flags, &env)? else {
        unreachable!()
    };
    let dir = PathBuf::from("/var/backups/x");
    BackupPlan::resolve_in(&global(), &args.dump, dir, Runner::Unattended, &env)
}

fn is_usage(result: Result<impl std::fmt::Debug>) -> bool {
    result.is_err_and(|err| exit_code(&err) == USAGE)
}

#[test]
fn a_backup_resolves_into_typed_values() {
    let s = backup(&["--output-dir", "/b", "--label", "pre-migration"], &[URL]).unwrap();
    let job = &s.plan.job;
    assert_eq!(job.conn.dbname, "app");
    assert_eq!(job.conn.port, 5433);
    assert_eq!(job.output_dir, PathBuf::from("/b"));
    assert_eq!(job.label.as_deref(), Some("pre-migration"));
    assert_eq!(job.mode, Mode::Full);
    assert_eq!(job.policy, Policy::last(7), "retention default");
    assert_eq!(job.anomaly, Some(50), "anomaly default");
    assert_eq!(
        job.pg_bin_dir,
        global().pg_bin_dir,
        "from the global settings"
    );
    assert!(job.s3.is_none() && job.lock.is_none() && job.recipients.is_none());
    assert!(!job.no_role_passwords && !job.pause_replay);
    assert!(s.plan.all_databases.is_none() && !s.globals);
    assert_eq!(s.output, Output::Table);
    let s = backup(
        &["--json", "--keep", "3", "--anomaly-threshold", "0"],
        &[URL],
    )
    .unwrap();
    assert_eq!(s.output, Output::Json);
    assert_eq!((s.plan.job.policy.last, s.plan.job.anomaly), (3, None));
}

#[test]
fn a_bucket_means_an_upload_unless_no_s3() {
    let s = backup(&["--s3-bucket", "b", "--s3-prefix", "p"], &[URL]).unwrap();
    let s3 = s.plan.job.s3.expect("uploads");
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "p/"));
    let s = backup(&["--s3-bucket", "b", "--no-s3"], &[URL]).unwrap();
    assert!(s.plan.job.s3.is_none());
    // A lock is moot without an upload, and an error without a bucket.
    let s = backup(
        &["--s3-bucket", "b", "--no-s3", "--s3-object-lock-days", "3"],
        &[URL],
    )
    .unwrap();
    assert!(s.plan.job.lock.is_none());
    assert!(is_usage(backup(&["--s3-object-lock-days", "3"], &[URL])));
    let s = backup(&["--s3-bucket", "b", "--s3-object-lock-days", "3"], &[URL]).unwrap();
    assert_eq!(s.plan.job.lock.map(|l| l.days), Some(3));
}

#[test]
fn the_flag_or_the_variable_leaves_role_passwords_out() {
    // (flags, PGBAK_NO_ROLE_PASSWORDS, the value for backup and cron alike, or None for exit 2)
    type Case<'a> = (&'a [&'a str], Option<&'a str>, Option<bool>);
    let cases: [Case; 6] = [
        (&[], None, Some(false)),
        (&[], Some("true"), Some(true)),
        (&[], Some("off"), Some(false)),
        // One parser for both: a typo is exit 2, not "off" (backup read it as "off" before).
        (&[], Some("yes-please"), None),
        (&["--no-role-passwords"], None, Some(true)),
        (&["--no-role-passwords"], Some("false"), Some(true)),
    ];
    for (flags, value, want) in cases {
        let mut env = vec![URL];
        if let Some(value) = value {
            env.push(("PGBAK_NO_ROLE_PASSWORDS", value));
        }
        let got = backup(flags, &env);
        match want {
            None => assert!(is_usage(got), "backup {flags:?} {value:?}"),
            Some(want) => assert_eq!(got.unwrap().plan.job.no_role_passwords, want),
        }
        let got = cron(flags, &env).ok().map(|p| p.job.no_role_passwords);
        assert_eq!(got, want, "cron {flags:?} {value:?}");
    }
}

#[test]
fn every_boolean_variable_is_strict_for_backup_and_cron_alike() {
    // Each variable with a value the scripts' lenient reading took as "off"
    // (or clap's boolish parser as a boolean): now exit 2 for both commands.
    for (name, value) in [
        ("PGBAK_ALL_DATABASES", "ture"),
        ("PGBAK_NO_ROLE_PASSWORDS", "enabled"),
        ("PGBAK_PAUSE_REPLAY", "y"),
        ("PGBAK_REQUIRE_ENCRYPTION", "maybe"),
    ] {
        let env = [URL, (name, value)];
        assert!(is_usage(backup(&[], &env)), "backup {name}={value}");
        assert!(is_usage(cron(&[], &env)), "cron {name}={value}");
    }
}

#[test]
fn pause_replay_from_the_flag_or_the_variable_unless_no_pause_replay() {
    let pause = |flags: &[&str], value: Option<&str>| {
        let mut env = vec![URL];
        env.extend(value.map(|v| ("PGBAK_PAUSE_REPLAY", v)));
        let backup = backup(flags, &env).unwrap().plan.job.pause_replay;
        let cron = cron(flags, &env).unwrap().job.pause_replay;
        assert_eq!(backup, cron, "{flags:?} {value:?}");
        backup
    };
    assert!(!pause(&[], None));
    assert!(pause(&["--pause-replay"], None));
    assert!(pause(&[], Some("on")));
    assert!(!pause(&[], Some("0")));
    assert!(!pause(&["--no-pause-replay"], Some("true")));
    assert!(!pause(
        &["--no-pause-replay", "--pause-replay"],
        Some("true")
    ));
    assert!(!pause(&["--pause-replay", "--no-pause-replay"], None));
}

#[test]
fn require_encryption_from_the_flag_or_the_variable() {
    let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let required = [URL, ("PGBAK_REQUIRE_ENCRYPTION", "yes")];
    assert!(is_usage(backup(&[], &required)));
    assert!(is_usage(backup(&["--require-encryption"], &[URL])));
    assert!(backup(&["--encrypt-to", key], &required).is_ok());
    assert!(backup(&[], &[URL, ("PGBAK_REQUIRE_ENCRYPTION", "no")]).is_ok());
}

#[test]
fn all_databases_from_the_flag_or_the_variable_takes_full_backups_only() {
    let all = |flags: &[&str], env: &[(&str, &str)]| {
        backup(flags, env).map(|s| s.plan.all_databases.map(|p| p.len()))
    };
    assert_eq!(all(&[], &[URL]).unwrap(), None);
    assert_eq!(all(&["--all-databases"], &[URL]).unwrap(), Some(0));
    let env = [URL, ("PGBAK_ALL_DATABASES", "true")];
    assert_eq!(
        all(&["--exclude-database", "a*,b?"], &env).unwrap(),
        Some(2)
    );
    assert!(is_usage(all(&["--mode", "schema"], &env)));
    assert!(is_usage(all(&["--exclude-database", "["], &env)));
    assert_eq!(all(&["--no-all-databases"], &env).unwrap(), None);
    // The same rules for cron, whose variable is strict.
    assert_eq!(
        cron(&["--all-databases"], &[URL])
            .unwrap()
            .all_databases
            .map(|p| p.len()),
        Some(0)
    );
    assert!(is_usage(cron(
        &["--all-databases", "--mode", "data"],
        &[URL]
    )));
    assert!(is_usage(cron(
        &[],
        &[URL, ("PGBAK_ALL_DATABASES", "maybe")]
    )));
    assert!(cron(&[], &[URL, ("PGBAK_ALL_DATABASES", "0")])
        .unwrap()
        .all_databases
        .is_none());
}

#[test]
fn cron_must_name_its_database_backup_may_use_libpq_defaults() {
    let env = [("PGUSER", "ops")];
    assert!(backup(&[], &env).is_ok());
    assert!(is_usage(cron(&[], &env)));
    let plan = cron(&[], &[("PGHOST", "db"), ("PGDATABASE", "app")]).unwrap();
    assert_eq!(plan.job.conn.dbname, "app");
    assert_eq!(plan.job.output_dir, PathBuf::from("/var/backups/x"));
    assert!(plan.job.label.is_none());
}

#[test]
fn bad_values_are_usage_errors() {
    for flags in [
        &["--label", "no spaces"][..],
        &["--anomaly-threshold", "101"],
        &["--keep-within", "soon"],
        &["--s3-object-lock-mode", "governance"],
        &["--encrypt-to", "not-a-key"],
        &["--s3-bucket", "b", "--s3-sse-kms-key-id", "k"],
    ] {
        assert!(is_usage(backup(flags, &[URL])), "{flags:?}");
    }
    assert!(is_usage(backup(&[], &[("DATABASE_URL", "mysql://x/y")])));
}

#[test]
fn exclude_patterns_are_globs() {
    let patterns = exclude_patterns(&["*_test".into(), " ".into(), "scratch-?".into()]).unwrap();
    assert_eq!(patterns.len(), 2, "blank patterns are dropped");
    assert!(patterns[0].matches("app_test") && patterns[1].matches("scratch-1"));
    assert!(exclude_patterns(&["[".into()]).is_err());
}
