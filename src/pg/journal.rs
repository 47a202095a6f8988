//! The restore journal of `restore --all-databases`, kept on the target
//! server itself: which run is being restored (and of which server), the
//! roles that existed before pgbak first touched the server, and which
//! databases are done. A re-run reads it and continues the same run (a
//! newer run that appeared meanwhile, the rebuilt host's own cron for one,
//! is not taken), re-applies the roles and restores what was not done.
//!
//! It lives in a database of its own, [`DATABASE`], created from template0
//! (nothing of template1's runs in it), so it survives a pgbak killed at
//! any point and a target restart, is never inside a database being
//! dropped and restored, and is removed when the rebuild completes.
//! `backup --all-databases` never backs it up.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::client;
use super::url::ConnSettings;
use crate::meta::ServerIdentity;

/// The journal's database on the target.
pub const DATABASE: &str = "pgbak_restore_journal";

/// What the journal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub run_id: String,
    /// The server the run was taken from.
    pub server: Option<ServerIdentity>,
    /// Where the run was read from (a directory or an S3 prefix).
    pub source: String,
    pub started_at: String,
    /// Roles that existed before pgbak first touched the server.
    pub pre_existing: BTreeSet<String>,
    /// database -> `started`, `done` or `failed`.
    pub databases: BTreeMap<String, String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS public.run (
    only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    run_id text NOT NULL,
    server_name text,
    server_id text,
    source text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.pre_existing_role (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS public.database_state (
    name text PRIMARY KEY,
    state text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);";

/// The journal's connection settings on the target's server.
fn journal_conn(server: &ConnSettings) -> ConnSettings {
    server.with_dbname(DATABASE)
}

/// Reads the journal; None when the target has none (no rebuild under way).
pub async fn read(server: &ConnSettings) -> Result<Option<Journal>> {
    let client = match client::connect(&journal_conn(server)).await {
        Ok(client) => client,
        Err(err) if missing_database(&err) => return Ok(None),
        Err(err) => return Err(err).context("reading the restore journal on the target"),
    };
    let Some(run) = client
        .query_opt(
            "SELECT run_id, server_name, server_id, source, started_at::text FROM public.run",
            &[],
        )
        .await
        .context("reading the restore journal on the target")?
    else {
        return Ok(None);
    };
    let pre_existing = client
        .query("SELECT name FROM public.pre_existing_role", &[])
        .await
        .context("reading the restore journal's roles")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let databases = client
        .query("SELECT name, state FROM public.database_state", &[])
        .await
        .context("reading the restore journal's databases")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let name: Option<String> = run.get(1);
    Ok(Some(Journal {
        run_id: run.get(0),
        server: name.map(|name| ServerIdentity {
            name,
            system_identifier: run.get(2),
        }),
        source: run.get(3),
        started_at: run.get(4),
        pre_existing,
        databases,
    }))
}

/// The connection to a server's `postgres` database failed because the database is missing.
fn missing_database(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            == Some(&SqlState::INVALID_CATALOG_NAME)
    }) || crate::error::one_line(err).contains("the database does not exist")
}

/// Starts (or takes over) the journal for `run`: the database and tables
/// when missing; a different run than the journal's resets the databases'
/// states, and the pre-existing roles are recorded only the first time.
pub async fn begin(admin: &Client, server: &ConnSettings, run: &Journal) -> Result<()> {
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&DATABASE],
        )
        .await
        .context("looking for the restore journal")?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                client::quote_ident(DATABASE)
            ))
            .await
            .context("creating the restore journal's database on the target")?;
    }
    let client = client::connect(&journal_conn(server)).await?;
    client
        .batch_execute(SCHEMA)
        .await
        .context("creating the restore journal's tables")?;
    let (name, id) = match &run.server {
        Some(s) => (Some(s.name.clone()), s.system_identifier.clone()),
        None => (None, None),
    };
    let changed = client
        .query_opt("SELECT run_id FROM public.run", &[])
        .await
        .context("reading the restore journal")?
        .is_some_and(|r| r.get::<_, String>(0) != run.run_id);
    if changed {
        client
            .batch_execute("DELETE FROM public.database_state")
            .await
            .context("resetting the restore journal for another run")?;
    }
    client
        .execute(
            "INSERT INTO public.run (run_id, server_name, server_id, source) VALUES ($1, $2, $3, $4)
             ON CONFLICT (only_one) DO UPDATE SET run_id = $1, server_name = $2, server_id = $3,
                                                  source = $4",
            &[&run.run_id, &name, &id, &run.source],
        )
        .await
        .context("writing the restore journal")?;
    let roles: Vec<String> = run.pre_existing.iter().cloned().collect();
    client
        .execute(
            "INSERT INTO public.pre_existing_role SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&roles],
        )
        .await
        .context("writing the restore journal's roles")?;
    Ok(())
}

/// Records a database's state (`started`, `done`, `failed`), on a session of
/// its own (the target may have restarted since the last one).
pub async fn mark(server: &ConnSettings, database: &str, state: &str) -> Result<()> {
    let client = client::connect(&journal_conn(server)).await?;
    client
        .execute(
            "INSERT INTO public.database_state (name, state) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET state = $2, at = now()",
            &[&database, &state],
        )
        .await
        .with_context(|| format!("recording {database} as {state} in the restore journal"))?;
    Ok(())
}

/// Removes the journal: the rebuild is complete.
pub async fn remove(admin: &Client) -> Result<()> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            client::quote_ident(DATABASE)
        ))
        .await
        .context("removing the restore journal from the target")
}
