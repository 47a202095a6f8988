//! `pgbak check`'s settings, resolved at dispatch: where to look (the
//! directory, and the S3 prefix with `--s3`), which groups, the limits they
//! are judged by, and where the verdict goes (stdout, the Prometheus
//! textfile, the heartbeat). A bad value (an S3 setting, the heartbeat URL)
//! is exit 2 before anything is listed, read or pinged.

use std::path::PathBuf;

use anyhow::Result;

use super::commands::{s3_if, Output};
use crate::cli::CheckArgs;
use crate::error::{one_line, usage};
use crate::heartbeat::Heartbeat;
use crate::mode::Mode;
use crate::storage::s3::S3Settings;
use crate::storage::safe_database_name;

/// The limits a group is judged by; None turns a check off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_age: Option<std::time::Duration>,
    pub max_verified_age: Option<std::time::Duration>,
    /// `--max-rto`: the newest passed verify's restore time.
    pub max_rto: Option<std::time::Duration>,
}

/// `pgbak check`.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub backup_dir: PathBuf,
    /// The S3 prefix too, with `--s3`.
    pub s3: Option<S3Settings>,
    /// `--database`, as file names spell them; empty: every database.
    pub databases: Vec<String>,
    pub mode: Mode,
    pub label: Option<String>,
    pub limits: Limits,
    pub output: Output,
    /// `--report`: the audit report instead of the table.
    pub report: Option<super::choices::AuditFormat>,
    /// The node_exporter textfile to write.
    pub prometheus: Option<PathBuf>,
    pub heartbeat: Option<Heartbeat>,
    /// meta.json files read from S3 at once (at least 1).
    pub read_concurrency: usize,
    /// `--check-config`: stop after resolving these.
    pub check_config: bool,
    /// An `--all-databases` run without an end after this long was killed.
    pub max_run_duration: std::time::Duration,
    /// Every retained backup proven (restore or checksum) within this span; None: not checked.
    pub max_unproven_age: Option<std::time::Duration>,
}

impl CheckSettings {
    pub fn resolve(args: CheckArgs) -> Result<CheckSettings> {
        if let Some(url) = &args.heartbeat_url {
            super::transport::warn_if_cleartext(
                "HEARTBEAT_URL",
                url,
                "the ping and the URL's token",
            );
        }
        let heartbeat = args
            .heartbeat_url
            .as_deref()
            .map(|url| Heartbeat::new(url, args.heartbeat_kind))
            .transpose()
            .map_err(|e| usage(one_line(&e)))?;
        let s3 = s3_if(args.s3, &args.s3_args).map_err(|e| usage(one_line(&e)))?;
        Ok(CheckSettings {
            backup_dir: args.backup_dir.path,
            s3,
            databases: args
                .databases
                .iter()
                .map(|d| safe_database_name(d))
                .collect(),
            mode: args.mode,
            label: args.label,
            // Globals backups are never verified: only their age is checked.
            limits: Limits {
                max_rto: Some(args.max_rto).filter(|d| !d.is_zero() && args.mode != Mode::Globals),
                ..limits(
                    args.max_age,
                    if args.mode == Mode::Globals {
                        std::time::Duration::ZERO
                    } else {
                        args.max_verified_age
                    },
                )
            },
            output: Output::from_flag(args.json),
            report: args.report,
            prometheus: args.prometheus,
            heartbeat,
            read_concurrency: usize::from(args.read_concurrency).max(1),
            check_config: args.check_config,
            max_run_duration: args.max_run_duration,
            max_unproven_age: Some(args.max_unproven_age).filter(|d| !d.is_zero()),
        })
    }
}

/// A limit of 0 turns its check off.
fn limits(max_age: std::time::Duration, max_verified_age: std::time::Duration) -> Limits {
    Limits {
        max_age: Some(max_age).filter(|d| !d.is_zero()),
        max_verified_age: Some(max_verified_age).filter(|d| !d.is_zero()),
        max_rto: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::error::{exit_code, USAGE};
    use clap::Parser;
    use std::time::Duration;

    fn resolve(argv: &[&str]) -> Result<CheckSettings> {
        let mut all = vec!["pgbak", "check"];
        all.extend_from_slice(argv);
        match Cli::try_parse_from(all).unwrap().command {
            crate::cli::Command::Check(args) => CheckSettings::resolve(args),
            _ => unreachable!("parsed as check"),
        }
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            limits(day, Duration::ZERO),
            Limits {
                max_age: Some(day),
                max_verified_age: None,
                max_rto: None,
            }
        );
        let settings = resolve(&["--max-age", "0", "--max-verified-age", "2d"]).unwrap();
        assert_eq!(settings.limits.max_age, None);
        assert_eq!(settings.limits.max_verified_age, Some(2 * day));
    }

    #[test]
    fn databases_are_matched_as_file_names_spell_them() {
        let settings = resolve(&["--database", "app", "--database", "a b"]).unwrap();
        assert_eq!(settings.databases[0], "app");
        assert_eq!(settings.databases[1], safe_database_name("a b"));
        assert_eq!(
            settings.s3.map(|s| s.bucket),
            None,
            "no --s3, no bucket needed"
        );
    }

    #[test]
    fn bad_values_are_usage_errors_before_anything_runs() {
        for argv in [
            &["--heartbeat-url", "not a url"][..],
            &["--s3", "--s3-bucket", ""],
            &["--s3", "--s3-bucket", "b", "--s3-endpoint-url", "::"],
        ] {
            let err = resolve(argv).unwrap_err();
            assert_eq!(exit_code(&err), USAGE, "{argv:?}: {err:#}");
        }
    }
}
