//! `pgbak restore`.

use clap::Args;

use super::BackupSourceArgs;

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
--alembic-stamp is off by default: `alembic stamp head` marks the restored schema as \
the newest migration without running any, which hides a backup taken before the latest \
migrations. Compare the revision pgbak prints and run `alembic upgrade head` instead, \
unless you know the schema is current.")]
pub struct RestoreArgs {
    #[command(flatten)]
    pub source: BackupSourceArgs,
    /// Restore a backup of another database (meta.json's `database` differs from the target's).
    #[arg(long)]
    pub allow_other_database: bool,
    /// Terminate sessions, drop and recreate the target database first, with the owner,
    /// encoding/locale, settings and privileges the backup recorded.
    #[arg(long)]
    pub create_db: bool,
    /// Restore without owners and privileges (every object owned by the restoring user),
    /// for a target that lacks the backup's roles.
    #[arg(long)]
    pub no_owner: bool,
    /// Rebuild a whole server: the globals of the newest --all-databases run, then every
    /// database of that run (each dropped and created again). DATABASE_URL names the
    /// server (its database is only used to connect).
    #[arg(long, conflicts_with_all = ["backup", "tables", "schemas"])]
    pub all_databases: bool,
    /// With --all-databases: restore this run (its id, as `list --runs` and the plan show it)
    /// instead of the newest complete one or the one the target's restore journal continues.
    #[arg(long, value_name = "RUN_ID", requires = "all_databases")]
    pub run: Option<String>,
    /// With --all-databases: the server whose runs to restore (its name or system identifier;
    /// `unknown` for backups made before pgbak recorded servers), when the prefix holds several.
    #[arg(long, value_name = "NAME_OR_ID", requires = "all_databases")]
    pub server: Option<String>,
    /// With --all-databases: make the roles that existed on the target before the restore as
    /// the backup has them too (attributes, password, settings, memberships). Without it they
    /// are left as they are and every difference is named.
    #[arg(long, requires = "all_databases")]
    pub reset_roles: bool,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long)]
    pub no_confirm: bool,
    /// Longest wait of any restore statement (pg_restore's, pgbak's row counts) for a lock held
    /// by another session: then it is cancelled and the restore fails, naming that session.
    #[arg(
        long,
        env = crate::settings::vars::PGBAK_LOCK_WAIT_TIMEOUT,
        default_value = "10m",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub lock_wait_timeout: std::time::Duration,
    /// Restore only this table, with its indexes, constraints, triggers, policies, owned sequences,
    /// defaults, comments and grants: SCHEMA.TABLE, or a name found in one schema (repeatable).
    /// Checked against the archive first: a selection matching nothing is exit 2 and touches
    /// nothing; an existing table is refused (exit 2) without --data-only or --clean.
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<String>,
    /// With --table, when the table exists: append the backup's rows to it (one transaction:
    /// a row that breaks a constraint appends nothing, and the error is reported).
    #[arg(long, requires = "tables", conflicts_with_all = ["clean", "create_db"])]
    pub data_only: bool,
    /// With --table, when the table exists: drop it and restore it as in the backup, with its
    /// indexes, constraints, triggers, policies, sequences and grants (refused while a view or
    /// another table's foreign key depends on it).
    #[arg(long, requires = "tables", conflicts_with = "create_db")]
    pub clean: bool,
    /// Restore only this schema (repeatable; checked against the archive first).
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Run `alembic stamp head` afterwards (see below for why this is off by default).
    #[arg(long)]
    pub alembic_stamp: bool,
    /// pg_restore `--role`: after connecting, create the objects as this role (SET ROLE), so
    /// they are owned by it with --no-owner and the dump's statements run with its privileges.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
}
