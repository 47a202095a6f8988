//! Each command's settings, resolved once at dispatch ([`crate::run`]) from
//! its parsed arguments (clap has already applied flag > environment >
//! default) into the typed values the command runs with: the command sees
//! no `cli` type, and a bad value is exit 2 before anything is touched.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{Command, GlobalArgs, KeygenArgs, ListArgs, PruneArgs, UnpinArgs};
use crate::error::usage;
use crate::retention::Policy;
use crate::storage::s3::S3Settings;
use crate::storage::{is_plain_file_name, BackupName};
use crate::ui::{Redactor, Verbosity};

/// How a command prints its result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// `--json`: one JSON document for scripts.
    Json,
}

impl Output {
    pub(super) fn from_flag(json: bool) -> Output {
        if json {
            Output::Json
        } else {
            Output::Table
        }
    }
}

/// The settings every command shares.
#[derive(Debug, Clone)]
pub struct GlobalSettings {
    pub verbosity: Verbosity,
    /// The whole run stops after this long.
    pub timeout: Option<std::time::Duration>,
    /// `--pg-bin-dir`: the client tools, when not found by version.
    pub pg_bin_dir: Option<PathBuf>,
    /// The longest wait for a table lock (pg_dump and pgbak's own queries).
    pub lock_wait_timeout: std::time::Duration,
    /// Every secret of the run ([`super::secrets`]), for the bodies that leave
    /// the machine (alerts, heartbeats); the output has its own copy.
    pub redactor: Redactor,
}

impl GlobalSettings {
    /// [`GlobalSettings::resolve`], with the client tools' settings of the
    /// commands that run them (`--pg-bin-dir`, `--lock-wait-timeout`: given
    /// after the command, or before it as they always could be; before wins).
    pub fn resolve_for(args: &GlobalArgs, command: &Command, redactor: Redactor) -> GlobalSettings {
        let mut global = Self::resolve(args, redactor);
        let (tools, lock_wait) = match command {
            Command::Backup(a) => (Some(&a.dump.tools), Some(a.dump.lock_wait_timeout)),
            Command::Cron(a) => (Some(&a.dump.tools), Some(a.dump.lock_wait_timeout)),
            Command::Verify(a) => (Some(&a.source.tools), None),
            Command::Restore(a) => (Some(&a.source.tools), Some(a.lock_wait_timeout)),
            _ => (None, None),
        };
        if global.pg_bin_dir.is_none() {
            global.pg_bin_dir = tools.and_then(|t| t.pg_bin_dir.clone());
        }
        if let (None, Some(wait)) = (args.lock_wait_timeout, lock_wait) {
            global.lock_wait_timeout = wait;
        }
        global
    }

    /// `redactor`: the secrets of the whole command line ([`super::secrets::redactor`]).
    pub fn resolve(args: &GlobalArgs, redactor: Redactor) -> GlobalSettings {
        let verbosity = if args.quiet {
            Verbosity::Quiet
        } else if args.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        GlobalSettings {
            verbosity,
            timeout: args.timeout,
            pg_bin_dir: args.pg_bin_dir.clone(),
            lock_wait_timeout: args
                .lock_wait_timeout
                .unwrap_or_else(super::defaults::lock_wait_timeout),
            redactor,
        }
    }
}

/// `pgbak keygen`.
#[derive(Debug, Clone)]
pub struct KeygenSettings {
    /// Where the identity goes; None: stdout.
    pub output: Option<PathBuf>,
    /// `--sign`: an ed25519 signing key instead of an age identity.
    pub sign: bool,
}

impl KeygenSettings {
    pub fn resolve(args: KeygenArgs) -> KeygenSettings {
        KeygenSettings {
            output: args.output,
            sign: args.sign,
        }
    }
}

/// `pgbak list`.
#[derive(Debug, Clone)]
pub struct ListSettings {
    pub backup_dir: PathBuf,
    /// The S3 prefix too, with `--s3`.
    pub s3: Option<S3Settings>,
    /// The rules whose verdict the RETENTION column shows.
    pub policy: Policy,
    pub output: Output,
    /// `--runs`: the runs instead of the backups.
    pub runs: bool,
}

impl ListSettings {
    pub fn resolve(args: ListArgs) -> Result<ListSettings> {
        Ok(ListSettings {
            backup_dir: args.backup_dir.path,
            s3: s3_if(args.s3, &args.s3_args)?,
            policy: super::groups::retention_policy(&args.retention)?,
            output: Output::from_flag(args.json),
            runs: args.runs,
        })
    }
}

/// `pgbak prune`.
#[derive(Debug, Clone)]
pub struct PruneSettings {
    pub policy: Policy,
    /// The local directory, unless `--no-local`.
    pub local: Option<PathBuf>,
    /// The S3 prefix, with `--s3`.
    pub s3: Option<S3Settings>,
    /// Show the decisions; delete nothing.
    pub dry_run: bool,
    pub output: Output,
}

impl PruneSettings {
    pub fn resolve(args: PruneArgs) -> Result<PruneSettings> {
        Ok(PruneSettings {
            policy: super::groups::retention_policy(&args.retention)?,
            local: (!args.no_local).then_some(args.backup_dir.path),
            s3: s3_if(args.s3, &args.s3_args)?,
            dry_run: args.dry_run,
            output: Output::from_flag(args.json),
        })
    }
}

/// `pgbak unpin`.
#[derive(Debug, Clone)]
pub struct UnpinSettings {
    pub name: BackupName,
    pub backup_dir: PathBuf,
    /// The S3 prefix, with `--s3`.
    pub s3: Option<S3Settings>,
}

impl UnpinSettings {
    pub fn resolve(args: UnpinArgs) -> Result<UnpinSettings> {
        Ok(UnpinSettings {
            name: backup_name(&args.name)?,
            backup_dir: args.backup_dir.path,
            s3: s3_if(args.s3, &args.s3_args)?,
        })
    }
}

/// The S3 settings when `wanted` (a `--s3` flag): then a bucket is required.
pub(super) fn s3_if(wanted: bool, args: &crate::cli::S3Args) -> Result<Option<S3Settings>> {
    wanted
        .then(|| S3Settings::from_args(args, None))
        .transpose()
}

/// A backup named as `list` prints it: `NAME`, `NAME.dump` or `NAME.meta.json`.
fn backup_name(text: &str) -> Result<BackupName> {
    let stem = text
        .strip_suffix(".dump")
        .or_else(|| text.strip_suffix(".meta.json"))
        .unwrap_or(text);
    let file = format!("{stem}.dump");
    match BackupName::parse(&file) {
        Some(name) if is_plain_file_name(&file) => Ok(name),
        _ => Err(usage(format!(
            "{text:?} is not a backup name like enterprise_agents_full_20261125T020000"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_are_accepted_in_the_forms_list_prints() {
        for text in [
            "db_full_20261125T020000",
            "db_full_20261125T020000.dump",
            "db_full_20261125T020000.meta.json",
        ] {
            assert_eq!(backup_name(text).unwrap().stem(), "db_full_20261125T020000");
        }
        for bad in ["", "../x_full_20261125T020000", "nonsense"] {
            assert!(backup_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quiet_wins_over_verbose_and_json_is_an_output() {
        let global = |verbose, quiet| GlobalArgs {
            pg_bin_dir: None,
            verbose,
            quiet,
            timeout: None,
            lock_wait_timeout: None,
        };
        let level = |v, q| GlobalSettings::resolve(&global(v, q), Redactor::none()).verbosity;
        assert_eq!(level(false, false), Verbosity::Normal);
        assert_eq!(level(true, false), Verbosity::Verbose);
        assert_eq!(level(false, true), Verbosity::Quiet);
        assert_eq!(Output::from_flag(true), Output::Json);
        assert_eq!(Output::from_flag(false), Output::Table);
    }

    #[test]
    fn the_tool_settings_belong_to_the_commands_that_run_the_tools() {
        use clap::Parser;
        let resolve = |argv: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| e.kind())?;
            let global = GlobalSettings::resolve_for(&cli.global, &cli.command, Redactor::none());
            Ok::<_, clap::error::ErrorKind>((global.pg_bin_dir, global.lock_wait_timeout.as_secs()))
        };
        let dir = |d: &str| Some(PathBuf::from(d));
        let cases: [(&[&str], _); 6] = [
            (
                &[
                    "pgbak",
                    "backup",
                    "--pg-bin-dir",
                    "/a",
                    "--lock-wait-timeout",
                    "1m",
                ],
                Ok((dir("/a"), 60)),
            ),
            (
                &["pgbak", "--pg-bin-dir", "/b", "cron", "--pg-bin-dir", "/a"],
                Ok((dir("/b"), 600)),
            ),
            (
                &["pgbak", "--lock-wait-timeout", "2m", "backup"],
                Ok((None, 120)),
            ),
            (
                &["pgbak", "restore", "--pg-bin-dir", "/r"],
                Ok((dir("/r"), 600)),
            ),
            (
                &["pgbak", "list", "--pg-bin-dir", "/x"],
                Err(clap::error::ErrorKind::UnknownArgument),
            ),
            (
                &["pgbak", "check", "--lock-wait-timeout", "1m"],
                Err(clap::error::ErrorKind::UnknownArgument),
            ),
        ];
        for (argv, want) in cases {
            assert_eq!(resolve(argv), want, "{argv:?}");
        }
    }
}
