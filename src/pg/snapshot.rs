//! The instant a backup describes: a REPEATABLE READ transaction exports its
//! snapshot, pg_dump imports it (`--snapshot`), and the same transaction reads
//! the catalog facts meta.json records (row counts, extensions, alembic,
//! database properties, roles, schema objects), so dump and counts describe
//! one instant.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::catalog;
use super::client::{self, ServerVersion};
use crate::meta::{DatabaseProperties, TableRows};
use crate::mode::Mode;
use crate::signals::Signals;

/// The exported snapshot pg_dump shares, whether it was taken on a standby,
/// and the sequences read in it before pg_dump started.
pub struct Snapshot {
    pub id: String,
    pub standby: bool,
    pub sequences: Option<Vec<catalog::Sequence>>,
}

impl Snapshot {
    /// Opens the REPEATABLE READ transaction whose snapshot pg_dump shares,
    /// and reads the sequences in it (see [`catalog::sequences_for_backup`]).
    pub async fn export(
        client: &Client,
        standby: bool,
        mode: Mode,
        signals: &mut Signals,
    ) -> Result<Snapshot> {
        // One round trip: pg_dump waits for the id and the sequences. The
        // server runs the three in the order sent, so the sequences are read
        // in the transaction, in the snapshot.
        let (begun, id, sequences) = signals
            .guard(async {
                Ok(tokio::join!(
                    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
                    client.query_typed_one("SELECT pg_export_snapshot()", &[]),
                    catalog::sequences_for_backup(client, mode),
                ))
            })
            .await?;
        begun.context("opening the snapshot transaction")?;
        let id = id.context("exporting the snapshot")?.get(0);
        let sequences = sequences?;
        Ok(Snapshot {
            id,
            standby,
            sequences,
        })
    }
}

/// What the snapshot transaction read while pg_dump ran.
pub struct Catalog {
    pub extensions: BTreeMap<String, String>,
    pub tables: Vec<TableRows>,
    pub alembic_revision: Option<String>,
    /// On a standby: unlogged tables, whose rows pg_dump skips there.
    pub unlogged_skipped: Vec<String>,
    pub properties: DatabaseProperties,
    pub roles: Vec<String>,
    /// Indexes, constraints, triggers, RLS, and the sequences read before pg_dump.
    pub schema_objects: Option<catalog::Catalog>,
}

/// The catalog in the snapshot. On a standby the rows of unlogged tables
/// cannot be read (and pg_dump skips them): they are recorded with 0 rows,
/// which is exactly what the dump holds, and listed as skipped.
pub async fn read_catalog(
    client: &Client,
    mode: Mode,
    server: &ServerVersion,
    standby: bool,
    sequences: Option<Vec<catalog::Sequence>>,
) -> Result<Catalog> {
    let schema_objects = catalog::for_backup(client, sequences).await?;
    let properties = client::database_properties(client, server).await?;
    let roles = client::dependent_roles(client).await?;
    let extensions = client::extensions(client).await?;
    let alembic_revision = client::alembic_revision(client).await?;
    let names = client::user_tables(client).await?;
    let unlogged = if standby {
        client::unlogged_tables(client).await?
    } else {
        Vec::new()
    };
    let tables = if mode == Mode::Schema {
        names
            .into_iter()
            .map(|(schema, name)| TableRows {
                schema,
                name,
                rows: None,
            })
            .collect()
    } else {
        let (skipped, counted): (Vec<_>, Vec<_>) =
            names.into_iter().partition(|t| unlogged.contains(t));
        let mut tables = client::row_counts(client, &counted).await?;
        tables.extend(skipped.into_iter().map(|(schema, name)| TableRows {
            schema,
            name,
            rows: Some(0),
        }));
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        tables
    };
    Ok(Catalog {
        extensions,
        tables,
        alembic_revision,
        unlogged_skipped: unlogged
            .iter()
            .map(|(schema, name)| format!("{schema}.{name}"))
            .collect(),
        properties,
        roles,
        schema_objects,
    })
}
