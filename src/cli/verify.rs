//! `pgbak verify`.

use std::path::PathBuf;

use clap::Args;

use super::{BackupSourceArgs, Mode};
use crate::settings::vars;

/// The tables a restored copy must hold besides those its meta.json recorded
/// at dump time (which are always expected): shared by verify and cron.
#[derive(Debug, Clone, Default, Args)]
pub struct ExpectArgs {
    /// A table the restored copy must hold besides those meta.json recorded:
    /// [DB:]SCHEMA.TABLE (a bare TABLE is in public; without DB: for every database).
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(
        long = "expect-table",
        env = vars::PGBAK_EXPECT_TABLES,
        value_delimiter = ',',
        value_name = "[DB:]SCHEMA.TABLE"
    )]
    pub tables: Vec<String>,
    /// File of such tables, one per line (`#` comments), added to --expect-table.
    #[arg(long = "expect-tables-file", env = vars::PGBAK_EXPECT_TABLES_FILE, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Without BACKUP_FILE: verify the newest backup of this mode.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    #[command(flatten)]
    pub source: BackupSourceArgs,
    /// Leave the temporary database (or cluster) in place and print how to remove it.
    #[arg(long)]
    pub no_cleanup: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub expect: ExpectArgs,
    /// Restore into this server instead of the source server (its URL; the password may be in it).
    #[arg(
        long,
        env = vars::PGBAK_VERIFY_TARGET_URL,
        value_name = "URL",
        hide_env_values = true
    )]
    pub target_url: Option<String>,
    /// Restore into a throwaway local cluster (initdb + postgres from the chosen bin dir), removed afterwards.
    #[arg(long, conflicts_with = "target_url")]
    pub ephemeral: bool,
    /// A drill: verify a whole `backup --all-databases` run (the newest complete one), every
    /// database restored and checked, with the restore time of each and of the whole server.
    /// With --ephemeral the globals are replayed first; on the source server or --target-url
    /// no role of the backup is created (temporary databases, without the globals).
    #[arg(long, conflicts_with = "backup")]
    pub all_databases: bool,
    /// With --all-databases: verify this run (its id, as `list --runs` shows it).
    #[arg(long, value_name = "RUN_ID", requires = "all_databases")]
    pub run: Option<String>,
    /// With --all-databases: the server whose runs to verify (its name or system identifier),
    /// when the prefix holds several.
    #[arg(long, value_name = "NAME_OR_ID", requires = "all_databases")]
    pub server: Option<String>,
    /// After a passed verify, write its restore time (`pgbak_restore_duration_seconds` of the
    /// backup's group) into this node_exporter textfile, cron's series kept.
    #[arg(long, env = vars::METRICS_FILE, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Check the settings (where the backups are, S3, the identity, the target), then exit
    /// without reading a backup or connecting: 0 when valid, 2 when not.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub reprove: ReproveArgs,
}

/// Re-proving the retained backups of a store, not one backup: read back
/// (`--checksum-only`), or a few restored (`--sample N`).
#[derive(Debug, Clone, Default, Args)]
pub struct ReproveArgs {
    /// Read every retained backup back from its store (the bucket when S3 is configured, else
    /// --backup-dir) and check its sha256 (and that --identity-file decrypts it), without
    /// restoring. A mismatch records a failed verdict on that backup (exit 1, naming it).
    #[arg(long, conflicts_with_all = ["backup", "all_databases"])]
    pub checksum_only: bool,
    /// Restore (a full verify) the N retained full backups proven longest ago: never
    /// restored first, then the oldest restore verdict.
    #[arg(long, value_name = "N", conflicts_with_all = ["backup", "all_databases"])]
    pub sample: Option<u32>,
    /// Backups read at once by --checksum-only.
    #[arg(
        long,
        default_value_t = 4,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub parallel: u16,
    /// With --checksum-only or --sample: only this database's backups (repeatable; default:
    /// every database in the store).
    #[arg(long = "database", value_name = "NAME")]
    pub databases: Vec<String>,
}
