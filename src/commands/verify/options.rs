//! What one verify needs, resolved from flags and environment: the source
//! connection, where the copy goes, the restore's tuning, the expected tables.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::VerifyArgs;
use crate::error::usage;
use crate::pg::restore as pg_restore;
use crate::pg::url::ConnSettings;
use crate::settings::commands::GlobalSettings;

/// The 13 application tables of the Enterprise Agent Platform (SPEC.md).
pub const DEFAULT_TABLES: [&str; 13] = [
    "users",
    "tenants",
    "conversations",
    "messages",
    "documents",
    "vector_chunks",
    "audit_logs",
    "agent_registry",
    "feedback",
    "token_budgets",
    "token_usage_records",
    "routing_decisions",
    "execution_plans",
];

/// Where the copy is restored.
#[derive(Debug, Clone)]
pub enum Target {
    /// A temporary database on the server of `VerifyOptions::conn` (the scripts' way).
    SourceServer,
    /// A temporary database on another server.
    Url(ConnSettings),
    /// A throwaway local cluster started from the chosen bin dir.
    Ephemeral,
}

/// Everything one verify needs, resolved.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The source server (the target too, by default).
    pub conn: ConnSettings,
    pub pg_bin_dir: Option<PathBuf>,
    pub target: Target,
    pub jobs: u32,
    /// `maintenance_work_mem` for the restore ("default": the server's).
    pub maintenance_work_mem: String,
    /// (schema, table) that must exist in the copy, besides meta.json's tables.
    pub expected_tables: Vec<(String, String)>,
    pub no_cleanup: bool,
    /// Write the result into meta.json's `verification`.
    pub record: bool,
    /// Decrypts `.dump.age` backups.
    pub identity_file: Option<PathBuf>,
    /// Where an encrypted backup is decrypted for a parallel restore.
    pub scratch_dir: Option<PathBuf>,
}

impl VerifyOptions {
    /// The defaults of `pgbak verify` for a backup of the server at `conn`.
    pub fn new(conn: ConnSettings, pg_bin_dir: Option<PathBuf>) -> VerifyOptions {
        VerifyOptions {
            conn,
            pg_bin_dir,
            target: Target::SourceServer,
            jobs: 4,
            maintenance_work_mem: "1GB".to_owned(),
            expected_tables: DEFAULT_TABLES
                .iter()
                .map(|t| ("public".to_owned(), (*t).to_owned()))
                .collect(),
            no_cleanup: false,
            record: true,
            identity_file: None,
            scratch_dir: None,
        }
    }

    pub fn from_args(global: &GlobalSettings, args: &VerifyArgs) -> Result<VerifyOptions> {
        pg_restore::validate_memory_setting(&args.maintenance_work_mem)?;
        let mut opts =
            VerifyOptions::new(crate::settings::connection()?, global.pg_bin_dir.clone());
        if let Some(url) = &args.target_url {
            opts.target = Target::Url(
                crate::settings::connection_from_url(url).context("reading --target-url")?,
            );
        } else if args.ephemeral {
            opts.target = Target::Ephemeral;
        }
        opts.jobs = args.jobs.max(1);
        opts.maintenance_work_mem = args.maintenance_work_mem.clone();
        opts.no_cleanup = args.no_cleanup;
        opts.identity_file = args.decrypt.identity_file.clone();
        opts.scratch_dir = args.decrypt.scratch_dir.clone();
        let mut expected: Vec<String> = args.expect_tables.clone();
        if let Some(file) = &args.expect_tables_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                usage(format!(
                    "cannot read --expect-tables-file {}: {e}",
                    file.display()
                ))
            })?;
            expected.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        if !expected.is_empty() || args.expect_tables_file.is_some() {
            opts.expected_tables = expected.iter().map(|t| split_table(t)).collect();
        }
        Ok(opts)
    }
}

/// `schema.table`, or `table` in `public`.
pub fn split_table(text: &str) -> (String, String) {
    match text.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_tables_default_to_public() {
        assert_eq!(split_table("users"), ("public".into(), "users".into()));
        assert_eq!(split_table("app.users"), ("app".into(), "users".into()));
    }
}
