//! `pgbak restore` of one database: round trips, `--create-db` and the database's properties, the
//! confirmation (and Ctrl-C or a timeout at its prompt, `--all-databases`' too), pg_restore's
//! sessions on the server (locks, signals, a server that stops), one table, and which backup is
//! taken when no file is named. `--all-databases` is `dr::`.

mod confirm;
mod database;
mod prompt;
mod selection;
mod sessions;
mod table;
mod table_sessions;

use crate::support::TestDb;

/// Tables of the target's public schema.
pub(crate) fn tables(db: &TestDb<'_>) -> Vec<String> {
    db.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The staging copies of `target` on its server (`pgbak_restoring_<name>_<hash>`, the name
/// cut at 30 characters). Only the target's own: other tests' restores hold theirs on the
/// shared server meanwhile, and a restore whose check fails leaves its copy for inspection.
pub(crate) fn staging_copies(target: &TestDb<'_>) -> Vec<String> {
    let ours = format!(
        "pgbak_restoring_{}_",
        target.name.chars().take(30).collect::<String>()
    );
    target
        .pg()
        .databases()
        .into_iter()
        .filter(|d| d.starts_with(&ours))
        .collect()
}
