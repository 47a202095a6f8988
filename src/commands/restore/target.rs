//! What restore does to the target around pg_restore: the operator's
//! confirmation, `--create-db`'s staging database and its swap into place,
//! the schemas of a `--schema` selection, the `-L` list of a `--table` selection.

use std::collections::BTreeSet;

use anyhow::{anyhow, Context, Result};
use tokio_postgres::error::SqlState;

use crate::error::usage;
use crate::meta::Meta;
use crate::pg::client::{self, quote_ident};
use crate::pg::restore::Listing;
use crate::pg::selection::{self, Resolved};
use crate::pg::url::ConnSettings;
use crate::settings::restore::RestoreOptions;
use crate::signals::Signals;
use crate::ui;

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
    super::confirm::typed(&text, "database name", &conn.dbname, signals).await
}

/// The staging database of a `--create-db` restore of `name`: readable,
/// the same for every run (a leftover of a killed run is found and
/// dropped), and distinct per target (a hash of the whole name).
pub fn staging_name(name: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("pgbak_restoring_{readable}_{}", &hash[..8])
}

/// Creates the staging database with the recorded properties (a leftover
/// one dropped first). Returns what could not be carried over.
pub(super) async fn create_staging(
    admin: &tokio_postgres::Client,
    staging: &str,
    props: Option<&crate::meta::DatabaseProperties>,
    roles: &BTreeSet<String>,
    owners: bool,
) -> Result<Vec<String>> {
    let quoted = quote_ident(staging);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
        .map_err(|e| db_error(e, &format!("dropping the leftover {quoted}")))?;
    crate::pg::dbprops::create_database(admin, staging, props, roles, owners).await
}

/// Removes a staging database after an interruption or an error (best
/// effort, bounded: the next restore of the database removes it too).
pub(super) async fn drop_staging(conn: &ConnSettings, staging: &str) {
    let work = async {
        let admin = client::connect(&maintenance_conn(conn, true)).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(staging)
            ))
            .await
            .map_err(|e| db_error(e, &format!("dropping {}", quote_ident(staging))))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), work).await {
        Ok(Ok(())) => crate::ui::info(&format!(
            "removed the unfinished copy {}; {} was not touched",
            quote_ident(staging),
            quote_ident(&conn.dbname)
        )),
        Ok(Err(err)) => crate::ui::warn(&format!(
            "the unfinished copy {} is left (the next restore removes it): {}",
            quote_ident(staging),
            crate::error::one_line(&err)
        )),
        Err(_) => crate::ui::warn(&format!(
            "the unfinished copy {} is left (the next restore removes it)",
            quote_ident(staging)
        )),
    }
}

/// Puts the restored staging database in place of the target: the
/// target's sessions terminated and the target dropped, then the staging
/// database renamed. Its properties (settings, ACL, comment) are kept by
/// the rename. Between the two statements the name does not exist, so a
/// client never connects to anything but the old or the complete new database.
pub(super) async fn swap_in(conn: &ConnSettings, staging: &str) -> Result<()> {
    let admin = client::connect(&maintenance_conn(conn, true)).await?;
    let (target, from) = (quote_ident(&conn.dbname), quote_ident(staging));
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {target} WITH (FORCE)"))
        .await
        .map_err(|e| db_error(e, &format!("dropping {target}")))?;
    let mut attempt = 0;
    loop {
        // Nobody should be there, but a superuser may have found the name.
        admin
            .execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
                  WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
                &[&staging],
            )
            .await
            .with_context(|| format!("terminating the sessions of {from}"))?;
        match admin
            .batch_execute(&format!("ALTER DATABASE {from} RENAME TO {target}"))
            .await
        {
            Ok(()) => break,
            Err(e) if attempt < 20 && e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(db_error(e, &format!("renaming {from} to {target}"))),
        }
    }
    crate::ui::info(&format!(
        "database {target} on {} is the restored one now",
        conn.endpoint()
    ));
    Ok(())
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

/// `--table`/`--schema` resolved against the archive's table of contents:
/// exact, or nothing is touched (exit 2). None without a selection.
pub(super) fn select(opts: &RestoreOptions, listing: &Listing) -> Result<Option<Resolved>> {
    if opts.tables.is_empty() && opts.schemas.is_empty() {
        return Ok(None);
    }
    let toc = selection::parse_toc(&listing.toc);
    let resolved = selection::resolve(&toc, &opts.tables, &opts.schemas)
        .map_err(|detail| usage(format!("not restoring: {detail}")))?;
    let described: Vec<String> = if resolved.tables.is_empty() {
        resolved
            .schemas
            .iter()
            .map(|s| format!("schema {s}"))
            .collect()
    } else {
        resolved
            .tables
            .iter()
            .map(|(s, t)| format!("{s}.{t}"))
            .collect()
    };
    ui::info(&format!("selected: {}", described.join(", ")));
    Ok(Some(resolved))
}
