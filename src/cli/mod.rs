//! The command line: every subcommand, flag and environment variable, with the
//! `///` lines that become `--help`. clap only: the values are turned into
//! the settings each command runs with in [`crate::settings`].
//!
//! One file per command group's arguments ([`backup`], [`restore`],
//! [`verify`], [`cron`], [`check`], [`store`] for list/prune/unpin), the
//! argument groups several commands share in [`shared`] (and [`source`]:
//! the backup restore and verify read), and the value
//! parsers in [`parse`]. Everything is re-exported here, so
//! `pgbak::cli::BackupArgs` and `pgbak::cli::parse_duration` keep their paths.

mod backup;
mod check;
mod cron;
mod parse;
mod restore;
mod shared;
mod source;
mod store;
mod sync;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use self::backup::{BackupArgs, DumpArgs};
pub use self::check::CheckArgs;
pub use self::cron::{CronArgs, CronReportArgs, CronReportOnly};
pub use self::parse::{parse_duration, parse_limit};
pub use self::restore::RestoreArgs;
pub use self::shared::{
    AnomalyArgs, BackupDirArgs, DecryptArgs, EncryptArgs, EnvFileArgs, ObjectLockArgs,
    RetentionArgs, S3Args, ToArgs, ToolsArgs,
};
pub use self::source::BackupSourceArgs;
pub use self::store::{ListArgs, PruneArgs, UnpinArgs};
pub use self::sync::SyncArgs;
pub use self::verify::{ExpectArgs, ReproveArgs, VerifyArgs};
pub use crate::mode::Mode;
pub use crate::settings::choices::{AlertFormat, HeartbeatKind, LockMode};
use crate::settings::vars;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the job failed (dump, upload, a verify check, restore)
  2    bad usage or configuration; nothing was attempted
  75   another pgbak run holds the lock
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM

Connection: DATABASE_URL (postgresql://, postgres://, postgresql+asyncpg://, ...)
or the libpq variables PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE.";

/// Backups of PostgreSQL (+ pgvector) that are proven to restore.
#[derive(Debug, Parser)]
#[command(
    name = "pgbak",
    version = crate::version::LINE,
    long_version = crate::version::long(),
    about,
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Accepted before the command too (`pgbak --pg-bin-dir DIR backup`), as it always was;
    /// shown in the help of the commands that run the client tools.
    #[arg(long, hide = true, value_name = "DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// More detail, including the child commands run (never with passwords).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Stop the whole run after this long (e.g. 2h, 90m): children stopped, temporary files
    /// and databases removed, nothing half-written, exit 1. Off by default.
    #[arg(long, global = true, env = vars::PGBAK_TIMEOUT, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Accepted before the command too, as `--pg-bin-dir` (see `pgbak backup --help`).
    #[arg(long, hide = true, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_wait_timeout: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump the database (pg_dump custom format) with a checksummed meta.json; upload to S3 when configured.
    Backup(BackupArgs),
    /// Restore a backup into the database of DATABASE_URL / PG*.
    Restore(RestoreArgs),
    /// Prove a backup restores: checksum, restore into a temporary database, compare rows, tables, extensions.
    Verify(VerifyArgs),
    /// Unattended run for crontab/systemd: backup, optional verify, retention, log file, alerts.
    Cron(Box<CronArgs>),
    /// List backups on disk and in S3, newest first.
    List(ListArgs),
    /// Is every database's newest backup, and newest verified backup, fresh? No database connection needed.
    Check(CheckArgs),
    /// Create an age identity (private key file, 0600) for encrypted backups; prints its public key.
    Keygen(KeygenArgs),
    /// Apply the retention rules without making a backup (--dry-run shows what would go).
    Prune(PruneArgs),
    /// Remove the pin the anomaly check put on a backup, so retention may delete it again.
    Unpin(UnpinArgs),
    /// Copy to every destination the backups another one holds and its retention keeps (--dry-run lists them).
    Sync(SyncArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or with --dir write one page per subcommand.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity here (created 0600, never overwritten); default: stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A signing key instead (ed25519, OpenSSH format) for PGBAK_SIGNING_KEY_FILE; its public
    /// key goes into the readers' PGBAK_TRUSTED_KEYS file.
    #[arg(long)]
    pub sign: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Install, for example:
  pgbak man > /usr/local/share/man/man1/pgbak.1
  pgbak man --dir /usr/local/share/man/man1     # pgbak.1, pgbak-backup.1, pgbak-verify.1, ...")]
pub struct ManArgs {
    /// Write pgbak.1 and one page per subcommand (pgbak-backup.1, ...) into DIR (created if
    /// missing; existing pages replaced) instead of printing pgbak.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Install, for example:
  pgbak completions bash > /etc/bash_completion.d/pgbak
  pgbak completions zsh  > /usr/local/share/zsh/site-functions/_pgbak
  pgbak completions fish > ~/.config/fish/completions/pgbak.fish")]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
