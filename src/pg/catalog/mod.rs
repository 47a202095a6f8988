//! The schema objects a restored copy must bring back, beyond tables and rows:
//! indexes, constraints (foreign keys included), triggers, row-level security
//! (policies and the per-table switches) and sequences with their values.
//!
//! `pgbak backup` reads them in the dump's snapshot, before pg_dump starts, and
//! records them in meta.json (`schema_objects`); `pgbak verify` reads the same
//! on the restored copy and [`compare`]s. Definitions come from the server's
//! own `pg_get_*def` functions with `search_path` pinned to `pg_catalog`, so
//! two servers of one major version print one object the same way; across
//! major versions only presence (kind and name) is compared. Objects of system
//! schemas and of extensions (`pg_depend.deptype = 'e'`) are left out: the
//! extension brings them, the dump does not.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::mode::Mode;

mod compare;
pub use compare::{compare, Compared, Depth, Kind};

/// Schema objects of one database at one instant (meta.json's `schema_objects`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub indexes: Vec<Index>,
    /// Primary key, unique, foreign key, check, exclusion and constraint-trigger
    /// constraints of tables (NOT NULL is part of the table's definition; a
    /// partition's copies of its parent's constraints come back with the parent's).
    pub constraints: Vec<Constraint>,
    /// User triggers (not the internal ones behind foreign keys).
    pub triggers: Vec<Trigger>,
    pub policies: Vec<Policy>,
    /// Tables with row-level security enabled or forced.
    pub row_security: Vec<RowSecurity>,
    pub sequences: Vec<Sequence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `pg_get_indexdef`.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `primary key`, `unique`, `foreign key`, `check`, `exclusion` or `trigger`.
    pub kind: String,
    /// `pg_get_constraintdef` (ends in `NOT VALID` for a constraint not validated).
    pub definition: String,
    pub validated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `pg_get_triggerdef`.
    pub definition: String,
    /// `enabled` (the default), `disabled`, `replica` (fires only in replica
    /// sessions) or `always`.
    pub enabled: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    pub permissive: bool,
    /// Role names, sorted (`public` for PUBLIC).
    pub roles: Vec<String>,
    /// The USING expression (`pg_get_expr`), if any.
    pub using: Option<String>,
    pub with_check: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSecurity {
    pub schema: String,
    pub table: String,
    /// `relrowsecurity`.
    pub enabled: bool,
    /// `relforcerowsecurity`.
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub schema: String,
    pub name: String,
    /// `pg_sequences.last_value`: null when the sequence was never used, when
    /// pgbak's user may not read it, and in a schema-only backup (which holds
    /// no sequence values).
    pub last_value: Option<i64>,
    /// Negative for a descending sequence ("ahead" is then lower).
    pub increment: i64,
}

/// A backup's first part of the record: the sequences (None for a data-only
/// dump, which records nothing; no values for a schema-only one). Read in the
/// dump's snapshot transaction before pg_dump starts: sequences only move
/// forward, so every value pg_dump then writes is at least the recorded one.
/// Reading them waits for no table lock.
pub async fn sequences_for_backup(client: &Client, mode: Mode) -> Result<Option<Vec<Sequence>>> {
    match mode {
        Mode::Data | Mode::Globals => Ok(None),
        Mode::Schema => sequences(client, false).await.map(Some),
        Mode::Full => sequences(client, true).await.map(Some),
    }
}

/// A backup's second part: everything else, read in the snapshot while
/// pg_dump runs (the definitions wait for a table lock that pg_dump waits
/// for too). None when the first part recorded nothing.
pub async fn for_backup(
    client: &Client,
    sequences: Option<Vec<Sequence>>,
) -> Result<Option<Catalog>> {
    let Some(sequences) = sequences else {
        return Ok(None);
    };
    let mut catalog = definitions(client).await?;
    catalog.sequences = sequences;
    Ok(Some(catalog))
}

/// Reads the current database's schema objects (sequence values only when
/// `with_values`).
pub async fn read(client: &Client, with_values: bool) -> Result<Catalog> {
    let mut catalog = definitions(client).await?;
    catalog.sequences = sequences(client, with_values).await?;
    Ok(catalog)
}

/// Everything but the sequences. The session's `search_path` is `pg_catalog`
/// while it runs (so definitions name every schema) and restored after.
async fn definitions(client: &Client) -> Result<Catalog> {
    let previous: String = client
        .query_one(
            "SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', false)",
            &[],
        )
        .await
        .context("pinning search_path to read the schema objects")?
        .get(0);
    let read = read_pinned(client).await;
    let restored = client
        .execute("SELECT set_config('search_path', $1, false)", &[&previous])
        .await
        .context("restoring search_path after reading the schema objects");
    let catalog = read?;
    restored?;
    Ok(catalog)
}

/// A relation `t` in namespace `n` that pg_dump writes: a user schema, not an
/// extension's member.
const USER_RELATION: &str = r"n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = t.oid AND d.deptype = 'e')";

async fn read_pinned(client: &Client) -> Result<Catalog> {
    Ok(Catalog {
        indexes: indexes(client).await?,
        constraints: constraints(client).await?,
        triggers: triggers(client).await?,
        policies: policies(client).await?,
        row_security: row_security(client).await?,
        sequences: Vec::new(),
    })
}

/// The rows of one catalog query, its failure saying what was being listed.
async fn query(client: &Client, what: &str, sql: &str) -> Result<Vec<tokio_postgres::Row>> {
    client
        .query(sql, &[])
        .await
        .with_context(|| format!("listing the database's {what}"))
}

async fn indexes(client: &Client) -> Result<Vec<Index>> {
    let sql = format!(
        "SELECT n.nspname::text, t.relname::text, i.relname::text, pg_get_indexdef(i.oid)
               FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE (x.indisvalid OR i.relkind = 'I') AND x.indisready AND {USER_RELATION}
              ORDER BY 1, 3"
    );
    Ok(query(client, "indexes", &sql)
        .await?
        .iter()
        .map(|r| Index {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            definition: r.get(3),
        })
        .collect())
}

async fn constraints(client: &Client) -> Result<Vec<Constraint>> {
    let sql = format!(
        "SELECT n.nspname::text, t.relname::text, c.conname::text, c.contype::text,
                    pg_get_constraintdef(c.oid), c.convalidated
               FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE c.contype IN ('p', 'u', 'f', 'c', 'x', 't') AND c.conparentid = 0
                AND {USER_RELATION}
              ORDER BY 1, 2, 3"
    );
    Ok(query(client, "constraints", &sql)
        .await?
        .iter()
        .map(|r| Constraint {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            kind: constraint_kind(r.get(3)).to_owned(),
            definition: r.get(4),
            validated: r.get(5),
        })
        .collect())
}

async fn triggers(client: &Client) -> Result<Vec<Trigger>> {
    let sql = format!(
        "SELECT n.nspname::text, t.relname::text, g.tgname::text, pg_get_triggerdef(g.oid),
                    g.tgenabled::text
               FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE NOT g.tgisinternal AND {USER_RELATION}
              ORDER BY 1, 2, 3"
    );
    Ok(query(client, "triggers", &sql)
        .await?
        .iter()
        .map(|r| Trigger {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            definition: r.get(3),
            enabled: trigger_state(r.get(4)).to_owned(),
        })
        .collect())
}

async fn policies(client: &Client) -> Result<Vec<Policy>> {
    let sql = format!(
        "SELECT n.nspname::text, t.relname::text, p.polname::text,
                    CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                  WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                    p.polpermissive,
                    ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
                            FROM unnest(p.polroles) r ORDER BY 1),
                    pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
               FROM pg_policy p JOIN pg_class t ON t.oid = p.polrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE {USER_RELATION}
              ORDER BY 1, 2, 3"
    );
    Ok(query(client, "row-level security policies", &sql)
        .await?
        .iter()
        .map(|r| Policy {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            command: r.get(3),
            permissive: r.get(4),
            roles: r.get(5),
            using: r.get(6),
            with_check: r.get(7),
        })
        .collect())
}

async fn row_security(client: &Client) -> Result<Vec<RowSecurity>> {
    let sql = format!(
        "SELECT n.nspname::text, t.relname::text, t.relrowsecurity, t.relforcerowsecurity
               FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE (t.relrowsecurity OR t.relforcerowsecurity) AND {USER_RELATION}
              ORDER BY 1, 2"
    );
    Ok(query(client, "tables with row-level security", &sql)
        .await?
        .iter()
        .map(|r| RowSecurity {
            schema: r.get(0),
            table: r.get(1),
            enabled: r.get(2),
            forced: r.get(3),
        })
        .collect())
}

/// Sequences of user schemas, with their values when `with_values`.
async fn sequences(client: &Client, with_values: bool) -> Result<Vec<Sequence>> {
    // pg_catalog's own tables, not the pg_sequences view (which joins them
    // the same way): a backup reads them before pg_dump may start, and the
    // view's rewrite and join back by name cost a cold session a millisecond.
    let rows = client
        .query_typed(
            &format!(
                "SELECT n.nspname::text, t.relname::text,
                        CASE WHEN has_sequence_privilege(t.oid, 'SELECT,USAGE')
                             THEN pg_sequence_last_value(t.oid) END,
                        s.seqincrement
                   FROM pg_sequence s JOIN pg_class t ON t.oid = s.seqrelid
                   JOIN pg_namespace n ON n.oid = t.relnamespace
                  WHERE {USER_RELATION}
                  ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .context("listing the database's sequences")?;
    Ok(rows
        .iter()
        .map(|r| Sequence {
            schema: r.get(0),
            name: r.get(1),
            last_value: if with_values { r.get(2) } else { None },
            increment: r.get(3),
        })
        .collect())
}

fn constraint_kind(contype: &str) -> &'static str {
    match contype {
        "p" => "primary key",
        "u" => "unique",
        "f" => "foreign key",
        "c" => "check",
        "x" => "exclusion",
        "t" => "trigger",
        _ => "other",
    }
}

fn trigger_state(tgenabled: &str) -> &'static str {
    match tgenabled {
        "D" => "disabled",
        "R" => "replica",
        "A" => "always",
        _ => "enabled",
    }
}
