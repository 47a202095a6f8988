use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::error::{exit_code, USAGE};

fn global() -> GlobalSettings {
    GlobalSettings {
        verbosity: crate::ui::Verbosity::Normal,
        timeout: None,
        pg_bin_dir: Some(PathBuf::from("/opt/pg/bin")),
        lock_wait_timeout: std::time::Duration::from_secs(60),
        redactor: crate::ui::Redactor::none(),
    }
}

fn backup_args(flags: &[&str]) -> BackupArgs {
    let argv = ["pgbak", "backup"].iter().chain(flags);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Backup(args) => args,
        _ => unreachable!(),
    }
}

fn cron_dump_args(flags: &[&str]) -> DumpArgs {
    let argv = ["pgbak", "cron"].iter().chain(flags);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Cron(args) => args.dump,
        _ => unreachable!(),
    }
}

const URL: (&str, &str) = ("DATABASE_URL", "postgresql://u:pw@db.example:5433/app");

fn backup(flags: &[&str], env: &[(&str, &str)]) -> Result<BackupSettings> {
    BackupSettings::resolve_in(
        &global(),
        backup_args(flags),
        &Env::from_pairs(env.to_vec()),
    )
}

fn cron(flags: &[&str], env: &[(&str, &str)]) -> Result<BackupPlan> {
    BackupPlan::resolve_in(
        &global(),
        &cron_dump_args(flags),
        PathBuf::from("/var/backups/x"),
        Runner::Unattended,
        &Env::from_pairs(env.to_vec()),
    )
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
    // (flags, PGBAK_NO_ROLE_PASSWORDS, backup's value, cron's value or None for exit 2)
    type Case<'a> = (&'a [&'a str], Option<&'a str>, bool, Option<bool>);
    let cases: [Case; 6] = [
        (&[], None, false, Some(false)),
        (&[], Some("true"), true, Some(true)),
        (&[], Some("off"), false, Some(false)),
        // backup reads the variable as the scripts did; cron refuses a typo.
        (&[], Some("yes-please"), false, None),
        (&["--no-role-passwords"], None, true, Some(false)),
        (&["--no-role-passwords"], Some("false"), true, Some(false)),
    ];
    for (flags, value, want_backup, want_cron) in cases {
        let mut env = vec![URL];
        if let Some(value) = value {
            env.push(("PGBAK_NO_ROLE_PASSWORDS", value));
        }
        let got = backup(flags, &env).unwrap().plan.job.no_role_passwords;
        assert_eq!(got, want_backup, "backup {flags:?} {value:?}");
        let cron_flags: &[&str] = &[];
        let got = cron(cron_flags, &env).ok().map(|p| p.job.no_role_passwords);
        assert_eq!(got, want_cron, "cron {value:?}");
    }
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
