//! Checks 6 to 14, on the restored copy: the expected tables, every row count,
//! the extensions, the alembic revision, then the schema objects meta.json
//! recorded in the dump's snapshot (indexes, constraints, triggers, row-level
//! security, sequences).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::report::{CheckId, Report};
use crate::archive;
use crate::meta::Meta;
use crate::mode::Mode;
use crate::pg::catalog::{self, Depth, Kind};
use crate::pg::client::{self, Count};

/// What the copy is compared with.
pub struct Expected<'a> {
    pub meta: Option<&'a Meta>,
    /// (schema, table) that must exist besides meta.json's tables.
    pub tables: &'a [(String, String)],
    /// The source's extensions (meta.json's, else the archive's).
    pub extensions: &'a BTreeSet<String>,
}

/// Runs every check on the copy. `Err` when the copy could not be read.
pub async fn on_copy(
    copy: &Client,
    expected: &Expected<'_>,
    copy_major: u32,
    report: &mut Report,
) -> Result<()> {
    let present = present_tables(copy).await?;
    tables(&present, expected, report);
    rows(copy, expected.meta, report).await?;
    extensions(copy, expected.extensions, report).await?;
    alembic(copy, expected.meta, report).await;
    schema_objects(copy, expected.meta, copy_major, report).await
}

fn tables(present: &BTreeSet<(String, String)>, expected: &Expected<'_>, report: &mut Report) {
    let recorded: BTreeSet<(String, String)> = expected.meta.map_or_else(BTreeSet::new, |meta| {
        meta.tables
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect()
    });
    let named: BTreeSet<(String, String)> = expected.tables.iter().cloned().collect();
    match tables_verdict(present, &recorded, &named) {
        Verdict::Nothing => report.skip(
            CheckId::Tables,
            "no meta.json to say which tables the backup holds, and no --expect-table / \
             PGBAK_EXPECT_TABLES",
        ),
        Verdict::Pass(detail) => report.pass(CheckId::Tables, detail),
        Verdict::Fail(detail) => report.fail(CheckId::Tables, detail),
    }
}

enum Verdict {
    Nothing,
    Pass(String),
    Fail(String),
}

/// The expected tables check, pure: every table meta.json `recorded` and
/// every one the operator `named` must be `present` in the copy.
fn tables_verdict(
    present: &BTreeSet<(String, String)>,
    recorded: &BTreeSet<(String, String)>,
    named: &BTreeSet<(String, String)>,
) -> Verdict {
    let wanted: BTreeSet<&(String, String)> = recorded.iter().chain(named).collect();
    if wanted.is_empty() {
        return Verdict::Nothing;
    }
    let sources = match (recorded.len(), named.len()) {
        (r, 0) => format!("{r} recorded in meta.json"),
        (0, n) => format!("{n} named by --expect-table / PGBAK_EXPECT_TABLES"),
        (r, n) => {
            format!("{r} recorded in meta.json, {n} named by --expect-table / PGBAK_EXPECT_TABLES")
        }
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|t| !present.contains(**t))
        .map(|(s, t)| {
            let why = if recorded.contains(&(s.clone(), t.clone())) {
                ""
            } else {
                " (named, not in the backup)"
            };
            format!("{s}.{t}{why}")
        })
        .collect();
    if missing.is_empty() {
        return Verdict::Pass(format!("all {} present ({sources})", wanted.len()));
    }
    Verdict::Fail(format!(
        "not in the restored copy: {}; {} of the {} expected tables ({sources}) are missing",
        missing.join(", "),
        missing.len(),
        wanted.len()
    ))
}

async fn rows(copy: &Client, meta: Option<&Meta>, report: &mut Report) -> Result<()> {
    let meta = match meta {
        None => {
            report.skip(CheckId::Rows, "no meta.json to compare with");
            return Ok(());
        }
        Some(meta) if meta.tables.iter().all(|t| t.rows.is_none()) => {
            report.skip(
                CheckId::Rows,
                format!("a {} backup records no row counts", meta.mode),
            );
            return Ok(());
        }
        Some(meta) => meta,
    };
    let mut mismatches = Vec::new();
    let mut total = 0u64;
    let recorded: Vec<_> = meta.tables.iter().filter(|t| t.rows.is_some()).collect();
    let names: Vec<(String, String)> = recorded
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect();
    let counted = client::counts(copy, &names).await.context("in the copy")?;
    for (table, have) in recorded.into_iter().zip(counted) {
        let want = table.rows.unwrap_or_default();
        match have {
            Count::Rows(have) if have == want => total += have,
            Count::Rows(have) => mismatches.push(format!(
                "{}.{}: {want} in meta.json, {have} restored",
                table.schema, table.name
            )),
            Count::Missing => mismatches.push(format!(
                "{}.{}: {want} in meta.json, table missing",
                table.schema, table.name
            )),
            Count::NotATable(kind) => mismatches.push(format!(
                "{}.{}: {want} in meta.json, but the copy has {kind} there (not read)",
                table.schema, table.name
            )),
        }
    }
    if mismatches.is_empty() {
        report.pass(
            CheckId::Rows,
            format!(
                "{} tables, {total} rows, equal to meta.json",
                meta.tables.len()
            ),
        );
    } else {
        report.fail(CheckId::Rows, mismatches.join("; "));
    }
    Ok(())
}

async fn extensions(copy: &Client, source: &BTreeSet<String>, report: &mut Report) -> Result<()> {
    let installed = client::extensions(copy).await?;
    let absent: Vec<&str> = source
        .iter()
        .filter(|e| !installed.contains_key(*e))
        .map(String::as_str)
        .collect();
    if absent.is_empty() {
        let listed: Vec<String> = source
            .iter()
            .map(|e| format!("{e} {}", installed.get(e).cloned().unwrap_or_default()))
            .collect();
        report.pass(CheckId::Extensions, listed.join(", "));
    } else {
        report.fail(
            CheckId::Extensions,
            format!("missing in the copy: {}", absent.join(", ")),
        );
    }
    Ok(())
}

async fn alembic(copy: &Client, meta: Option<&Meta>, report: &mut Report) {
    let meta = match meta {
        None => return report.skip(CheckId::Alembic, "no meta.json to compare with"),
        Some(meta) if meta.mode == Mode::Schema => {
            return report.skip(
                CheckId::Alembic,
                "a schema backup holds no rows, alembic_version's included",
            )
        }
        Some(meta) => meta,
    };
    let have = client::alembic_revision(copy).await.ok().flatten();
    if have == meta.alembic_revision {
        report.pass(
            CheckId::Alembic,
            have.map_or_else(
                || "no alembic_version, as in meta.json".to_owned(),
                |r| format!("{r}, as in meta.json"),
            ),
        );
    } else {
        report.fail(
            CheckId::Alembic,
            format!(
                "the copy has {}, meta.json says {}",
                have.as_deref().unwrap_or("none"),
                meta.alembic_revision.as_deref().unwrap_or("none")
            ),
        );
    }
}

/// Checks 10 to 14: every index, constraint, trigger, policy and sequence that
/// meta.json recorded is in the copy, defined the same way (when both servers
/// are of one major version), and no sequence is behind.
async fn schema_objects(
    copy: &Client,
    meta: Option<&Meta>,
    copy_major: u32,
    report: &mut Report,
) -> Result<()> {
    let recorded = match meta.map(|m| m.schema_objects.as_ref()) {
        Some(Some(recorded)) => recorded,
        None => {
            skip_schema(report, "no meta.json to compare with");
            return Ok(());
        }
        Some(None) => {
            skip_schema(
                report,
                "meta.json records no schema objects (written by a pgbak that did not record \
                 them): not compared",
            );
            return Ok(());
        }
    };
    let source_major = meta.and_then(|m| archive::major_of(&m.server_version));
    let (depth, across) = match source_major {
        Some(major) if major != copy_major => (
            Depth::Presence,
            format!(
                "; the backup's server is PostgreSQL {major} and the copy's {copy_major}, so \
                 definitions are not compared, only kind and name"
            ),
        ),
        _ => (Depth::Definitions, String::new()),
    };
    let copy_objects = catalog::read(copy, true).await?;
    // An encrypted backup's definitions are sealed: the report (logs, alerts)
    // names what differs, never how.
    let sealed = meta.is_some_and(|m| m.encryption.is_some());
    for (kind, outcome) in catalog::compare(recorded, &copy_objects, depth) {
        let check = CheckId::for_kind(kind);
        let problems = if sealed {
            &outcome.sealed_problems
        } else {
            &outcome.problems
        };
        if !problems.is_empty() {
            report.fail(check, listed(problems, 10));
            continue;
        }
        let what = if kind == Kind::Sequence {
            "present, none behind meta.json"
        } else if depth == Depth::Definitions {
            "present, defined as in meta.json"
        } else {
            "present"
        };
        report.pass(
            check,
            format!("{} {}, {what}{across}", outcome.recorded, kind.plural()),
        );
    }
    Ok(())
}

fn skip_schema(report: &mut Report, why: &str) {
    for kind in Kind::ALL {
        report.skip(CheckId::for_kind(kind), why);
    }
}

/// The first `max` items joined, and how many more there are.
fn listed(items: &[String], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > max {
        text.push_str(&format!("; and {} more", items.len() - max));
    }
    text
}

/// Tables and partitioned tables of the copy, outside the system schemas.
async fn present_tables(client: &Client) -> Result<BTreeSet<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .context("listing the copy's tables")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_and_counted() {
        let items: Vec<String> = (1..=12).map(|i| format!("index i{i} missing")).collect();
        let text = listed(&items, 10);
        assert!(text.starts_with("index i1 missing; index i2 missing"));
        assert!(text.ends_with("index i10 missing; and 2 more"), "{text}");
        assert_eq!(listed(&items[..1], 10), "index i1 missing");
    }

    #[test]
    fn the_tables_verdict_says_what_is_missing_and_why_it_was_expected() {
        let set = |names: &[&str]| -> BTreeSet<(String, String)> {
            names
                .iter()
                .map(|n| crate::settings::expect::split_table(n))
                .collect()
        };
        let present = set(&["notes", "app.orders"]);
        let cases: [(&[&str], &[&str], &str); 5] = [
            (&[], &[], "skip"),
            (&["notes"], &[], "pass: all 1 present (1 recorded in meta.json)"),
            (&["notes", "app.orders"], &["notes"], "pass: all 2 present (2 recorded in meta.json, 1 named"),
            (
                &["notes", "gone"],
                &["users"],
                "fail: not in the restored copy: public.gone, public.users (named, not in the backup); \
                 2 of the 3 expected tables (2 recorded in meta.json, 1 named by --expect-table / \
                 PGBAK_EXPECT_TABLES) are missing",
            ),
            (&[], &["users"], "fail: not in the restored copy: public.users (named, not in the backup); 1 of the 1 expected tables (1 named by"),
        ];
        for (recorded, named, want) in cases {
            let got = match tables_verdict(&present, &set(recorded), &set(named)) {
                Verdict::Nothing => "skip".to_owned(),
                Verdict::Pass(d) => format!("pass: {d}"),
                Verdict::Fail(d) => format!("fail: {d}"),
            };
            assert!(got.starts_with(want), "{recorded:?} {named:?}: {got}");
        }
    }
}
