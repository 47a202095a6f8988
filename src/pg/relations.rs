//! Reading the application's own relations (row counts, `alembic_version`)
//! from pgbak's session without running code a database user wrote: each is
//! looked up in the catalog first and read only when it is an ordinary table
//! (a view, a foreign table or a materialized view is refused: reading it
//! would run its definition, as pgbak's role), with built-in functions only
//! (the session's search_path is pinned, [`super::client::session_options`]).

use anyhow::{bail, Context, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::client::{qualified, quote_ident};
use crate::meta::TableRows;

/// Tables counted in one statement: one row of as many `count(*)` columns
/// (a target list holds at most 1,664).
const COUNTED_AT_ONCE: usize = 400;
const _: () = assert!(COUNTED_AT_ONCE <= 1664);

/// Exact row counts of `tables`, in the caller's transaction (and so its
/// snapshot); a table that is gone or is not one any more fails the count.
pub async fn row_counts(client: &Client, tables: &[(String, String)]) -> Result<Vec<TableRows>> {
    let counted = counts(client, tables).await?;
    tables
        .iter()
        .zip(counted)
        .map(|((schema, name), count)| {
            let rows = match count {
                Count::Rows(rows) => rows,
                Count::Missing => bail!("counting rows of {schema}.{name}: the table is gone"),
                Count::NotATable(kind) => bail!(
                    "counting rows of {schema}.{name}: it is {kind} now, not a table \
                     (pgbak reads only ordinary tables: no user code runs in its session)"
                ),
            };
            Ok(TableRows {
                schema: schema.clone(),
                name: name.clone(),
                rows: Some(rows),
            })
        })
        .collect()
}

/// What counting each of `tables` finds, in order. A few hundred at a time:
/// one catalog lookup says they are all ordinary tables, then one statement
/// counts them, instead of two round trips per table (thousands for a large
/// schema: beside pg_dump they outlasted it). A batch with one that is not (or
/// is gone) is counted table by table, which tells which.
pub async fn counts(client: &Client, tables: &[(String, String)]) -> Result<Vec<Count>> {
    let mut out = Vec::with_capacity(tables.len());
    for batch in tables.chunks(COUNTED_AT_ONCE) {
        match counts_at_once(client, batch).await? {
            Some(rows) => out.extend(rows.into_iter().map(Count::Rows)),
            None => {
                for (schema, name) in batch {
                    out.push(count_rows(client, schema, name).await?);
                }
            }
        }
    }
    Ok(out)
}

/// The counts of `batch` in one statement, once the catalog says each is an
/// ordinary (or partitioned) table; None when one is not, or is gone.
async fn counts_at_once(client: &Client, batch: &[(String, String)]) -> Result<Option<Vec<u64>>> {
    let (schemas, names): (Vec<&str>, Vec<&str>) = batch
        .iter()
        .map(|(schema, name)| (schema.as_str(), name.as_str()))
        .unzip();
    let tables = client
        .query_one(
            "SELECT pg_catalog.count(*) FROM unnest($1::text[], $2::text[]) AS w(schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
              WHERE c.relkind IN ('r', 'p')",
            &[&schemas, &names],
        )
        .await
        .context("looking up the tables to count in the catalog")?
        .get::<_, i64>(0);
    if usize::try_from(tables).ok() != Some(batch.len()) {
        return Ok(None);
    }
    match client.query_one(&count_statement(batch), &[]).await {
        Ok(row) => Ok(Some(
            (0..batch.len())
                .map(|i| u64::try_from(row.get::<_, i64>(i)).unwrap_or_default())
                .collect(),
        )),
        Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(err) => {
            Err(err).with_context(|| format!("counting the rows of {} tables", batch.len()))
        }
    }
}

/// One row: the count of each table, in order. Pure.
fn count_statement(batch: &[(String, String)]) -> String {
    let columns: Vec<String> = batch
        .iter()
        .map(|(schema, name)| {
            format!(
                "(SELECT pg_catalog.count(*) FROM ONLY {})",
                qualified(schema, name)
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// What counting one relation's rows found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Count {
    Rows(u64),
    /// No relation of that name.
    Missing,
    /// A relation that is not an ordinary table (a view, a foreign table, a
    /// table with rules): reading it could run code its owner wrote, as
    /// pgbak's role, so it is not read. The kind, for the message.
    NotATable(String),
}

impl Count {
    /// The rows counted; 0 for a relation that is missing or was not read
    /// (a comparison with a recorded count then shows the difference).
    pub fn rows_or_zero(&self) -> u64 {
        match self {
            Count::Rows(rows) => *rows,
            Count::Missing | Count::NotATable(_) => 0,
        }
    }
}

/// What a relation is, from the catalog, before pgbak reads anything of it:
/// None when there is none; the kind when it is not a table pgbak may read.
/// A table pgbak counts is ordinary or partitioned (`relkind` r/p); views,
/// materialized views, foreign tables and sequences are refused (their reads
/// run code a database user wrote, or reach another server).
async fn readable_table(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Option<Result<(), String>>> {
    // A SELECT fires no rule of a table (an ON SELECT rule makes a view of
    // it), so the rules of a table whose rows are counted do not matter.
    let row = client
        .query_opt(
            "SELECT c.relkind::text, false FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .with_context(|| format!("looking up {schema}.{name} in the catalog"))?;
    Ok(row.map(|row| relation_verdict(&row.get::<_, String>(0), row.get(1))))
}

/// Ok when a relation of this `relkind` (with or without rules) is a table
/// pgbak may read; else what it is. Pure.
pub fn relation_verdict(relkind: &str, has_rules: bool) -> Result<(), String> {
    let kind = match relkind {
        "r" | "p" if has_rules => return Err("a table with rules".to_owned()),
        "r" | "p" => return Ok(()),
        "v" => "a view",
        "m" => "a materialized view",
        "f" => "a foreign table",
        "S" => "a sequence",
        "c" => "a composite type",
        "i" | "I" => "an index",
        "t" => "a TOAST table",
        _ => "not a table",
    };
    Err(kind.to_owned())
}

/// The exact row count of one table, its partitions or children not
/// included, read only once the catalog says it is an ordinary table.
pub async fn count_rows(client: &Client, schema: &str, name: &str) -> Result<Count> {
    match readable_table(client, schema, name).await? {
        None => return Ok(Count::Missing),
        Some(Err(kind)) => return Ok(Count::NotATable(kind)),
        Some(Ok(())) => {}
    }
    let sql = format!(
        "SELECT pg_catalog.count(*) FROM ONLY {}",
        qualified(schema, name)
    );
    match client.query_one(&sql, &[]).await {
        Ok(row) => Ok(Count::Rows(
            u64::try_from(row.get::<_, i64>(0)).unwrap_or_default(),
        )),
        Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Count::Missing),
        Err(err) => Err(err).with_context(|| format!("counting rows of {schema}.{name}")),
    }
}

/// The Alembic revision in `alembic_version`, None when there is none;
/// several heads are joined with ",". The table is found in the catalog
/// (`public`'s first, else the first schema by name: Alembic's default is the
/// first schema of the application's search_path) and read only when it is an
/// ordinary table without rules whose `version_num` has a built-in string
/// type: a view, a table with rules or a column of a user-defined type would
/// run code a database user wrote, as pgbak's role. Such an `alembic_version`
/// is not read: the revision is None and a warning names what it is.
pub async fn alembic_revision(client: &Client) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, c.relkind::text, c.relhasrules,
                    (SELECT a.atttypid IN (25, 1043, 1042, 19)
                       FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = 'version_num' AND NOT a.attisdropped)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = 'alembic_version'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_%'
              ORDER BY n.nspname <> 'public', n.nspname
              LIMIT 1",
            &[],
        )
        .await
        .context("looking for alembic_version")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let schema: String = row.get(0);
    let refused = match (
        relation_verdict(&row.get::<_, String>(1), row.get(2)),
        row.get::<_, Option<bool>>(3),
    ) {
        (Err(kind), _) => Some(kind),
        (Ok(()), None) => Some("a table without a version_num column".to_owned()),
        (Ok(()), Some(false)) => {
            Some("a table whose version_num is not of a built-in text type".to_owned())
        }
        (Ok(()), Some(true)) => None,
    };
    if let Some(kind) = refused {
        crate::ui::warn(&format!(
            "{}.alembic_version is {kind}: its revision is not read (pgbak's session never runs \
             code a database user can define) and none is recorded",
            quote_ident(&schema)
        ));
        return Ok(None);
    }
    let rows = client
        .query(
            &format!(
                "SELECT version_num::text FROM ONLY {} ORDER BY version_num::text COLLATE \"C\"",
                qualified(&schema, "alembic_version")
            ),
            &[],
        )
        .await
        .context("reading alembic_version")?;
    let revisions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok((!revisions.is_empty()).then(|| revisions.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_counts_each_table_in_order_quoted() {
        let batch = [
            ("public".to_owned(), "users".to_owned()),
            ("Odd \"Schema\"".to_owned(), "t; DROP TABLE x".to_owned()),
        ];
        assert_eq!(
            count_statement(&batch),
            "SELECT (SELECT pg_catalog.count(*) FROM ONLY \"public\".\"users\"), \
             (SELECT pg_catalog.count(*) FROM ONLY \"Odd \"\"Schema\"\"\".\"t; DROP TABLE x\")"
        );
    }

    #[test]
    fn only_ordinary_tables_without_rules_are_read() {
        for (relkind, rules, want) in [
            ("r", false, Ok(())),
            ("p", false, Ok(())),
            ("r", true, Err("a table with rules")),
            ("v", false, Err("a view")),
            ("m", false, Err("a materialized view")),
            ("f", false, Err("a foreign table")),
            ("S", false, Err("a sequence")),
            ("x", false, Err("not a table")),
        ] {
            assert_eq!(
                relation_verdict(relkind, rules),
                want.map_err(str::to_owned),
                "{relkind} {rules}"
            );
        }
    }
}
