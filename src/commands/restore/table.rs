//! `restore --table`: the table with everything that belongs to it, chosen
//! from the archive's table of contents ([`crate::pg::table_toc`]), in one
//! transaction (all or nothing).
//!
//! Before anything is touched: a table that exists on the target is refused
//! (exit 2, saying what to pass) unless the operator said `--data-only`
//! (append the rows) or `--clean` (drop and recreate the table with what
//! belongs to it; refused, naming them, while objects outside the table
//! depend on it: another table's foreign key, a view). After: the rows and
//! the table's indexes, constraints, triggers, policies and sequences
//! against meta.json; the verdict is what happened to the table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use crate::error::usage;
use crate::meta::Meta;
use crate::pg::catalog::{self, Catalog, Depth};
use crate::pg::client::{self, quote_ident};
use crate::pg::restore::{sessions, Listing, TableWay};
use crate::pg::selection::Resolved;
use crate::pg::table_toc::{self, Entry, TableEntries};
use crate::settings::restore::RestoreOptions;
use crate::ui;

/// What a table restore will do, decided before the target is touched.
pub(super) struct TablePlan {
    pub way: TableWay,
    /// The `-L` list handed to pg_restore.
    pub list: String,
    pub taken: TableEntries,
    pub tables: BTreeSet<(String, String)>,
    /// Rows of each table before a `--data-only` append.
    pub before: BTreeMap<(String, String), u64>,
    /// Foreign keys left out because the table they reference is not in
    /// the target, in words (the restore names them as not carried over).
    pub skipped: Vec<String>,
    /// Those keys' entries (schema, tag), left out of the comparison too.
    skipped_keys: Vec<(String, String)>,
}

/// Plans the restore of the `--table` selection. `admin`: a session on the
/// target database (on another one with `--create-db`, which makes the
/// target anew: no table exists there); `opts`' table
/// way (`--data-only` or `--clean`) and lock wait. A table that exists without either, or with
/// `--clean` while something outside it depends on it, is a usage error
/// (exit 2) and nothing is touched.
pub(super) async fn plan(
    admin: &Client,
    listing: &Listing,
    resolved: &Resolved,
    meta: Option<&Meta>,
    opts: &RestoreOptions,
) -> Result<TablePlan> {
    let (choice, lock_wait) = (opts.table_way, opts.lock_wait_timeout);
    let target = (!opts.create_db).then_some(admin);
    if let Some(target) = target {
        // Counting and reading the catalog wait for table locks like any reader: bounded.
        client::set_lock_timeout(target, lock_wait).await?;
    }
    let entries = table_toc::parse(&listing.toc);
    let recorded = meta.and_then(|m| m.schema_objects.as_ref());
    let own = |entry: &Entry, schema: &str, table: &str| {
        recorded.is_none_or(|c| {
            c.constraints.iter().any(|k| {
                k.schema == schema && k.table == table && entry.tag == format!("{table} {}", k.name)
            })
        })
    };
    let taken = table_toc::belonging(&entries, &resolved.tables, &own);
    let mut plan = TablePlan {
        way: TableWay::Create,
        list: String::new(),
        taken,
        tables: resolved.tables.clone(),
        before: BTreeMap::new(),
        skipped: Vec::new(),
        skipped_keys: Vec::new(),
    };
    let schemas: BTreeSet<String> = resolved.tables.iter().map(|(s, _)| s.clone()).collect();
    let create_schemas = match target {
        None => schemas.into_iter().filter(|s| s != "public").collect(),
        Some(target) => {
            plan.way = decide(target, &plan, choice).await?;
            missing_schemas(target, &schemas).await?
        }
    };
    if plan.way != TableWay::DataOnly {
        skip_dangling_keys(target, &mut plan, &entries).await?;
    }
    if plan.way == TableWay::DataOnly {
        for (schema, table) in &plan.tables {
            let target = target.context("--data-only needs the target")?;
            let rows = rows_before(target, schema, table, lock_wait).await?;
            plan.before.insert((schema.clone(), table.clone()), rows);
        }
        plan.list = table_toc::list_file(&entries, &plan.taken.data, &BTreeSet::new());
    } else {
        plan.list = table_toc::list_file(&entries, &plan.taken.ids, &create_schemas);
    }
    describe(&plan, &entries);
    Ok(plan)
}

/// The rows of a table before `--data-only` appends to it. A lock held on
/// it for longer than `--lock-wait-timeout` is an error naming its holders.
async fn rows_before(target: &Client, schema: &str, table: &str, waited: Duration) -> Result<u64> {
    let err = match client::count_rows(target, schema, table).await {
        Ok(count) => return Ok(count.rows_or_zero()),
        Err(err) => err,
    };
    let locked = err
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
    if !locked {
        return Err(err);
    }
    let holders = sessions::holders(target, schema, table).await;
    anyhow::bail!(
        "not restoring: a lock on {}.{} was not granted within --lock-wait-timeout {} (held by \
         {}); end that session, or restore when it is done",
        quote_ident(schema),
        quote_ident(table),
        humantime::format_duration(waited),
        if holders.is_empty() {
            "another session".to_owned()
        } else {
            holders.join(", ")
        }
    )
}

/// The tables' own foreign keys that reference a table the target lacks
/// (restoring one table of a backup into a scratch database): left out and
/// named, with what hangs on them (a comment), instead of failing the
/// whole restore.
async fn skip_dangling_keys(
    target: Option<&Client>,
    plan: &mut TablePlan,
    entries: &[Entry],
) -> Result<()> {
    let mut dropped: BTreeSet<u32> = BTreeSet::new();
    for (id, referenced) in &plan.taken.references {
        let mut absent = Vec::new();
        for (schema, table) in referenced {
            let there = match target {
                Some(target) => relation(target, schema, table).await?.is_some(),
                None => false,
            };
            if !there {
                absent.push(format!("{schema}.{table}"));
            }
        }
        let Some(entry) = entries.iter().find(|e| e.id == *id) else {
            continue;
        };
        if absent.is_empty() {
            continue;
        }
        dropped.insert(*id);
        plan.skipped_keys
            .push((entry.schema.clone(), entry.tag.clone()));
        plan.skipped.push(format!(
            "foreign key {}.{} (it references {}, which the target lacks: restore that table \
             too, or add the key by hand)",
            entry.schema,
            entry.tag,
            absent.join(", ")
        ));
    }
    let hanging: Vec<u32> = entries
        .iter()
        .filter(|e| e.deps.iter().any(|d| dropped.contains(d)))
        .map(|e| e.id)
        .collect();
    plan.taken
        .ids
        .retain(|id| !dropped.contains(id) && !hanging.contains(id));
    for skipped in &plan.skipped {
        ui::warn(&format!("not restored: {skipped}"));
    }
    Ok(())
}

/// How the existing tables are treated: Create when none exists; else the
/// operator's choice, or a refusal saying what to pass.
async fn decide(target: &Client, plan: &TablePlan, choice: Option<TableWay>) -> Result<TableWay> {
    let mut existing = Vec::new();
    for (schema, table) in &plan.tables {
        if let Some(oid) = relation(target, schema, table).await? {
            existing.push((format!("{schema}.{table}"), oid));
        }
    }
    let names: Vec<&str> = existing.iter().map(|(n, _)| n.as_str()).collect();
    match choice {
        None if existing.is_empty() => Ok(TableWay::Create),
        None => Err(usage(format!(
            "not restoring: {} already exist(s) in the target database; pass --data-only to \
             append the backup's rows to it (one transaction: a row that breaks a constraint \
             appends nothing), or --clean to drop it and restore it as in the backup with its \
             indexes, constraints, triggers, policies, sequences and grants; nothing was touched",
            names.join(", ")
        ))),
        Some(TableWay::DataOnly) if existing.len() < plan.tables.len() => Err(usage(format!(
            "not restoring: --data-only appends rows to existing tables, but {} {} not in the \
             target database; restore it without --data-only to create it; nothing was touched",
            absent(plan, &names).join(", "),
            if plan.tables.len() - existing.len() == 1 {
                "is"
            } else {
                "are"
            }
        ))),
        Some(TableWay::Clean) => {
            let oids: Vec<u32> = existing.iter().map(|(_, oid)| *oid).collect();
            let mut outside = Vec::new();
            for oid in &oids {
                outside.extend(dependents(target, *oid, &oids).await?);
            }
            if !outside.is_empty() {
                return Err(usage(format!(
                    "not restoring with --clean: objects outside {} depend on it and would have \
                     to be dropped with it: {}; drop or change them first (and create them again \
                     afterwards), or restore into another database; nothing was touched",
                    names.join(", "),
                    outside.join(", ")
                )));
            }
            Ok(TableWay::Clean)
        }
        Some(way) => Ok(way),
    }
}

fn absent(plan: &TablePlan, existing: &[&str]) -> Vec<String> {
    plan.tables
        .iter()
        .map(|(s, t)| format!("{s}.{t}"))
        .filter(|n| !existing.contains(&n.as_str()))
        .collect()
}

/// The oid of relation `schema.name` in the target, if there is one.
async fn relation(target: &Client, schema: &str, name: &str) -> Result<Option<u32>> {
    let row = target
        .query_opt(
            "SELECT c.oid FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .with_context(|| format!("looking for {schema}.{name} in the target database"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The schemas of `wanted` that the target lacks (the list creates them).
async fn missing_schemas(target: &Client, wanted: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let mut missing = BTreeSet::new();
    for schema in wanted {
        let row = target
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                &[schema],
            )
            .await
            .context("looking for the table's schema in the target database")?;
        if row.is_none() {
            missing.insert(schema.clone());
        }
    }
    Ok(missing)
}

/// Objects outside the table `oid` (and outside the other tables of
/// `chosen`) that depend on it or on what belongs to it: another table's
/// foreign key or default, a view, a function body. `DROP TABLE` without
/// CASCADE would refuse, and with CASCADE drop them: neither is a restore.
async fn dependents(target: &Client, oid: u32, chosen: &[u32]) -> Result<Vec<String>> {
    let rows = target
        .query(
            "WITH belongs AS (
                 SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid AS classid, $1::oid AS objid
                 UNION
                 SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
                  WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
             )
             SELECT DISTINCT
                    CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                         THEN (SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0)
                                 FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)
                         ELSE pg_catalog.pg_describe_object(d.classid, d.objid, 0) END,
                    COALESCE(
                      (SELECT c.conrelid FROM pg_catalog.pg_constraint c
                        WHERE d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND c.oid = d.objid),
                      (SELECT r.ev_class FROM pg_catalog.pg_rewrite r
                        WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = d.objid),
                      (SELECT t.tgrelid FROM pg_catalog.pg_trigger t
                        WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.oid = d.objid),
                      (SELECT p.polrelid FROM pg_catalog.pg_policy p
                        WHERE d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND p.oid = d.objid),
                      (SELECT a.adrelid FROM pg_catalog.pg_attrdef a
                        WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND a.oid = d.objid),
                      0::oid)
               FROM pg_catalog.pg_depend d
               JOIN belongs b ON d.refclassid = b.classid AND d.refobjid = b.objid
              WHERE d.deptype = 'n'
                AND NOT EXISTS (SELECT 1 FROM belongs x WHERE x.classid = d.classid AND x.objid = d.objid)
              ORDER BY 1",
            &[&oid],
        )
        .await
        .context("asking the target which objects depend on the table")?;
    Ok(rows
        .iter()
        .filter(|r| !chosen.contains(&r.get::<_, u32>(1)))
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect())
}

/// Says what will be restored, and what depends on the tables from outside.
fn describe(plan: &TablePlan, entries: &[Entry]) {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in entries.iter().filter(|e| plan.taken.ids.contains(&e.id)) {
        *kinds.entry(entry.kind).or_default() += 1;
    }
    let counted: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{n}× {}", k.to_lowercase()))
        .collect();
    let tables: Vec<String> = plan
        .tables
        .iter()
        .map(|(s, t)| format!("{s}.{t}"))
        .collect();
    let how = match plan.way {
        TableWay::Create => "created",
        TableWay::DataOnly => "its rows appended (--data-only)",
        TableWay::Clean => "dropped and created again (--clean)",
    };
    ui::info(&format!(
        "{}: {how}, in one transaction, with {}",
        tables.join(", "),
        counted.join(", ")
    ));
    if plan.way != TableWay::DataOnly && !plan.taken.outside.is_empty() {
        ui::warn(&format!(
            "not restored with {}: objects outside it that depend on it in the backup: {} \
             (restore them by hand if they are gone)",
            tables.join(", "),
            plan.taken.outside.join(", ")
        ));
    }
}

/// After pg_restore succeeded: the rows (created: equal to meta.json;
/// appended: grown by meta.json's count), the sequences not behind, and for
/// a created table its indexes, constraints, triggers, policies and
/// sequences as meta.json recorded them. True when the table is as it should be.
pub(super) async fn verdict(
    target: &Client,
    meta: &Meta,
    plan: &TablePlan,
    server_major: u32,
) -> Result<bool> {
    let rows_ok = rows(target, meta, plan).await?;
    if plan.way == TableWay::DataOnly {
        sequences_not_behind(target, meta, plan).await?;
        return Ok(rows_ok);
    }
    let Some(recorded) = &meta.schema_objects else {
        ui::warn("the backup's meta.json records no schema objects: the table's indexes and constraints were not compared");
        return Ok(rows_ok);
    };
    let want = only_these(recorded, plan);
    let have = only_these(&catalog::read(target, true).await?, plan);
    let depth = match crate::archive::major_of(&meta.server_version) {
        Some(major) if major != server_major => Depth::Presence,
        _ => Depth::Definitions,
    };
    let mut objects_ok = true;
    let mut counted = Vec::new();
    let sealed = meta.encryption.is_some();
    for (kind, outcome) in catalog::compare(&want, &have, depth) {
        let problems = if sealed {
            &outcome.sealed_problems
        } else {
            &outcome.problems
        };
        for problem in problems {
            ui::error(&format!("not as in the backup: {problem}"));
            objects_ok = false;
        }
        counted.push(format!("{} {}", outcome.recorded, kind.plural()));
    }
    if objects_ok {
        ui::info(&format!("as in the backup: {}", counted.join(", ")));
    }
    Ok(rows_ok && objects_ok)
}

/// The recorded objects of the plan's tables and their sequences.
fn only_these(all: &Catalog, plan: &TablePlan) -> Catalog {
    let ours =
        |schema: &String, table: &String| plan.tables.contains(&(schema.clone(), table.clone()));
    let skipped = |k: &catalog::Constraint| {
        plan.skipped_keys
            .iter()
            .any(|(schema, tag)| *schema == k.schema && *tag == format!("{} {}", k.table, k.name))
    };
    Catalog {
        indexes: all
            .indexes
            .iter()
            .filter(|o| ours(&o.schema, &o.table))
            .cloned()
            .collect(),
        constraints: all
            .constraints
            .iter()
            .filter(|o| ours(&o.schema, &o.table) && !skipped(o))
            .cloned()
            .collect(),
        triggers: all
            .triggers
            .iter()
            .filter(|o| ours(&o.schema, &o.table))
            .cloned()
            .collect(),
        policies: all
            .policies
            .iter()
            .filter(|o| ours(&o.schema, &o.table))
            .cloned()
            .collect(),
        row_security: all
            .row_security
            .iter()
            .filter(|o| ours(&o.schema, &o.table))
            .cloned()
            .collect(),
        sequences: all
            .sequences
            .iter()
            .filter(|s| {
                plan.taken
                    .sequences
                    .contains(&(s.schema.clone(), s.name.clone()))
            })
            .cloned()
            .collect(),
    }
}

/// The rows of each table against meta.json, printed on stdout.
async fn rows(target: &Client, meta: &Meta, plan: &TablePlan) -> Result<bool> {
    let mut ok = true;
    for table in meta
        .tables
        .iter()
        .filter(|t| plan.tables.contains(&(t.schema.clone(), t.name.clone())))
    {
        let Some(want) = table.rows else { continue };
        let have = client::count_rows(target, &table.schema, &table.name)
            .await?
            .rows_or_zero();
        let name = format!("{}.{}", table.schema, table.name);
        let (line, good) = match plan.before.get(&(table.schema.clone(), table.name.clone())) {
            Some(before) => {
                let added = have.saturating_sub(*before);
                (format!("{name}: {before} rows before, {added} appended, {have} now; the backup holds {want}"), added == want)
            }
            None => (
                format!("{name}: {have} rows restored, the backup holds {want}"),
                have == want,
            ),
        };
        ui::stdout_line(&format!("{line}{}", if good { "" } else { "  MISMATCH" }));
        ok &= good;
    }
    if !ok {
        ui::error("the restored rows differ from the backup's meta.json (see stdout)");
    }
    Ok(ok)
}

/// After an append: no sequence of the table behind the value meta.json
/// recorded, or the next insert would hand out an id the appended rows hold.
async fn sequences_not_behind(target: &Client, meta: &Meta, plan: &TablePlan) -> Result<()> {
    let Some(recorded) = &meta.schema_objects else {
        return Ok(());
    };
    for seq in recorded.sequences.iter().filter(|s| {
        plan.taken
            .sequences
            .contains(&(s.schema.clone(), s.name.clone()))
    }) {
        let Some(value) = seq.last_value else {
            continue;
        };
        let name = format!("{}.{}", quote_ident(&seq.schema), quote_ident(&seq.name));
        let sql = if seq.increment < 0 {
            format!("SELECT pg_catalog.setval($1::text::pg_catalog.regclass, $2) FROM {name} WHERE last_value > $2")
        } else {
            format!("SELECT pg_catalog.setval($1::text::pg_catalog.regclass, $2) FROM {name} WHERE last_value < $2")
        };
        let moved = target
            .query(&sql, &[&name, &value])
            .await
            .with_context(|| format!("moving {name} up to the backup's value"))?;
        if !moved.is_empty() {
            ui::info(&format!(
                "sequence {name} moved to {value}, the backup's value"
            ));
        }
    }
    Ok(())
}
