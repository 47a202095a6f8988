//! What restore does to the target before pg_restore runs: the operator's
//! confirmation, `--create-db`'s drop and create, the schemas of a `--schema`
//! selection, the `-L` list of a `--table` selection.

use std::collections::BTreeSet;

use anyhow::{anyhow, Context, Result};
use tokio_postgres::error::SqlState;

use crate::error::usage;
use crate::meta::Meta;
use crate::pg::client::{self, quote_ident};
use crate::pg::url::ConnSettings;
use crate::signals::Signals;

/// Creates the selected schemas that the target lacks (owned by the restoring user).
pub(super) async fn create_schemas(
    conn: &ConnSettings,
    schemas: &BTreeSet<String>,
    signals: &mut Signals,
) -> Result<()> {
    let target = signals.guard(client::connect(conn)).await?;
    for schema in schemas {
        target
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ))
            .await
            .map_err(|e| db_error(e, &format!("creating schema {}", quote_ident(schema))))?;
    }
    Ok(())
}

/// The `-L` list of an exact `--table` selection, in a private temp file.
pub(super) fn write_list(list: &str) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("pgbak-restore-list-")
        .tempfile()
        .context("creating the pg_restore list file")?;
    file.write_all(list.as_bytes())
        .and_then(|()| file.flush())
        .context("writing the pg_restore list file")?;
    Ok(file)
}

/// The connection for DROP/CREATE DATABASE: another database on the same
/// server (one cannot drop the database one is connected to).
pub(super) fn maintenance_conn(conn: &ConnSettings, create_db: bool) -> ConnSettings {
    if !create_db {
        return conn.clone();
    }
    let other = if conn.dbname == "postgres" {
        "template1"
    } else {
        "postgres"
    };
    conn.with_dbname(other)
}

pub(super) async fn confirm(
    conn: &ConnSettings,
    dump: &std::path::Path,
    meta: Option<&Meta>,
    create_db: bool,
    signals: &mut Signals,
) -> Result<()> {
    let about = meta.map_or_else(
        || "no meta.json".to_owned(),
        |m| {
            format!(
                "database {}, {} backup finished {}, alembic {}",
                m.database,
                m.mode,
                m.finished_at,
                m.alembic_revision.as_deref().unwrap_or("none")
            )
        },
    );
    let (host, port) = (conn.host.to_string(), conn.port);
    let mut text = format!(
        "\nAbout to restore\n  backup:   {} ({about})\n  into:     database {} on host {host} port {port} (user {})\n",
        dump.display(),
        quote_ident(&conn.dbname),
        conn.user
    );
    if let Some(meta) = meta.filter(|m| m.database != conn.dbname) {
        text.push_str(&format!(
            "  NOTE:     the backup is of database {}, NOT of the target {}\n",
            quote_ident(&meta.database),
            quote_ident(&conn.dbname)
        ));
    }
    if create_db {
        text.push_str(
            "  --create-db: the database is DROPPED (its sessions terminated) and created again\n",
        );
    } else {
        text.push_str("  objects are added to the existing database\n");
    }
    text.push_str(&format!(
        "Type the database name ({}) to continue: ",
        conn.dbname
    ));
    eprint!("{text}");
    let answer = signals
        .guard(async {
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .context("reading the confirmation stopped unexpectedly")?
            .context("reading the confirmation")
        })
        .await?;
    if answer.trim_end_matches(['\n', '\r']) != conn.dbname {
        return Err(usage(
            "the name typed does not match the database name: nothing was restored",
        ));
    }
    Ok(())
}

/// Terminates the database's sessions, drops it and creates it again with
/// the recorded properties. Returns what could not be carried over.
pub(super) async fn recreate_database(
    admin: &tokio_postgres::Client,
    name: &str,
    props: Option<&crate::meta::DatabaseProperties>,
    roles: &BTreeSet<String>,
    owners: bool,
) -> Result<Vec<String>> {
    let quoted = quote_ident(name);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .with_context(|| format!("terminating the sessions of {quoted}"))?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
        .map_err(|e| db_error(e, &format!("dropping {quoted}")))?;
    crate::pg::dbprops::create_database(admin, name, props, roles, owners).await
}

pub(super) fn db_error(err: tokio_postgres::Error, what: &str) -> anyhow::Error {
    let hint = match err.code() {
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            " (the user needs CREATEDB and ownership of the database)"
        }
        _ => "",
    };
    let message = err
        .as_db_error()
        .map_or_else(|| err.to_string(), |d| d.message().to_owned());
    anyhow!("{what}: {message}{hint}")
}
