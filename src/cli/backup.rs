//! `pgbak backup`, and the flags it shares with `pgbak cron` ([`DumpArgs`]),
//! declared once.

use std::path::PathBuf;

use clap::Args;

use super::{AnomalyArgs, EncryptArgs, Mode, ObjectLockArgs, RetentionArgs, S3Args, ToolsArgs};
use crate::settings::{defaults, parse_bool, vars};

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub dump: DumpArgs,
    /// Directory for the .dump and .meta.json files (created 0700 if missing).
    #[arg(
        long,
        env = vars::BACKUP_DIR,
        default_value = defaults::BACKUP_DIR,
        value_name = "DIR"
    )]
    pub output_dir: PathBuf,
    /// Suffix for the file name, e.g. `pre-migration` ([A-Za-z0-9.-]+); kept apart by retention.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Print a JSON summary (the meta.json contents plus paths) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also back up the globals (pg_dumpall --globals-only) beside this database's backup.
    #[arg(long)]
    pub globals: bool,
    /// Refuse to run without --encrypt-to.
    #[arg(
        long,
        env = vars::PGBAK_REQUIRE_ENCRYPTION,
        value_parser = parse_bool,
        action = clap::ArgAction::SetTrue
    )]
    pub require_encryption: bool,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}

/// What to dump and where it goes: the flags `pgbak backup` and `pgbak cron`
/// share, resolved for both by `settings::backup`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// What to dump.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub anomaly: AnomalyArgs,
    /// Do not upload, even when S3_BUCKET is set.
    #[arg(long)]
    pub no_s3: bool,
    /// pg_dump --compress spec (e.g. zstd:3, gzip:6, lz4, none). Default: zstd:1 when pg_dump has it, else gzip:4.
    #[arg(long, env = vars::PGBAK_COMPRESS, value_name = "SPEC")]
    pub compress: Option<String>,
    /// On a hot standby: pause WAL replay while dumping, so the standby never cancels the dump
    /// (recovery conflict); resumed on every exit, and by the next run after a SIGKILL.
    #[arg(
        long,
        env = vars::PGBAK_PAUSE_REPLAY,
        value_parser = parse_bool,
        action = clap::ArgAction::SetTrue
    )]
    pub pause_replay: bool,
    /// Do not pause WAL replay, even when PGBAK_PAUSE_REPLAY=true (or --pause-replay) says to.
    #[arg(long)]
    pub no_pause_replay: bool,
    /// Every connectable non-template database of the server, each in its own backup, plus
    /// one globals backup (roles, memberships, tablespaces).
    /// DATABASE_URL names the database to connect to for the list (e.g. postgres).
    #[arg(
        long,
        env = vars::PGBAK_ALL_DATABASES,
        value_parser = parse_bool,
        action = clap::ArgAction::SetTrue
    )]
    pub all_databases: bool,
    /// Back up the one database of DATABASE_URL, even when PGBAK_ALL_DATABASES=true (or
    /// --all-databases) says all.
    #[arg(long)]
    pub no_all_databases: bool,
    /// Leave role passwords out of the globals backup (roles then restore without passwords).
    #[arg(
        long,
        env = vars::PGBAK_NO_ROLE_PASSWORDS,
        value_parser = parse_bool,
        action = clap::ArgAction::SetTrue
    )]
    pub no_role_passwords: bool,
    /// With --all-databases: skip databases matching this glob (repeatable; the environment
    /// variable takes a comma-separated list).
    #[arg(
        long = "exclude-database",
        env = vars::PGBAK_EXCLUDE_DATABASES,
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub exclude_databases: Vec<String>,
    /// The server's name in meta.json, groups, alerts and metrics (many servers may share a
    /// bucket); default: the connection's host:port (the machine's name for a unix socket).
    #[arg(long, env = vars::PGBAK_SERVER_NAME, value_name = "NAME")]
    pub server_name: Option<String>,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub object_lock: ObjectLockArgs,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub tools: ToolsArgs,
    /// Longest wait for a table lock (pg_dump --lock-wait-timeout and pgbak's own catalog
    /// queries): a session holding ACCESS EXCLUSIVE fails the backup after this, naming it.
    #[arg(
        long,
        env = vars::PGBAK_LOCK_WAIT_TIMEOUT,
        default_value = defaults::LOCK_WAIT_TIMEOUT,
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub lock_wait_timeout: std::time::Duration,
}
