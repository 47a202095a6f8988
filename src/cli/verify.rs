//! `pgbak verify`.

use std::path::PathBuf;

use clap::Args;

use super::{BackupSourceArgs, Mode};
use crate::settings::vars;

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
    /// Expected table (SCHEMA.TABLE), repeatable; replaces the 13 application tables.
    #[arg(long = "expect-table", value_name = "SCHEMA.TABLE")]
    pub expect_tables: Vec<String>,
    /// File with one expected SCHEMA.TABLE per line; replaces the 13 application tables.
    #[arg(long, value_name = "FILE")]
    pub expect_tables_file: Option<PathBuf>,
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
}
