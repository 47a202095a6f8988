//! `pgbak restore`: put a backup into the database of DATABASE_URL / PG*.
//!
//! The steps, in order:
//! 1. without a terminal and without `--no-confirm`: refuse at once (exit 2);
//! 2. find the backup; an encrypted one (`.dump.age`) needs an identity that
//!    fits (exit 2 otherwise); check its SHA-256 against meta.json, read its
//!    header and `pg_restore --list`: nothing touches the target before the
//!    backup is known good (`--create-db --jobs 1` from S3 streams the dump into
//!    the staging copy: its SHA-256 is known at the end, and the copy dropped when it differs);
//! 3. ask the operator to type the database name (host, port, database, backup shown);
//! 4. `--create-db`: a staging database under a temporary name, created with the
//!    properties meta.json recorded (owner, locale, settings, ACL; see [`crate::pg::dbprops`]);
//! 5. pg_restore `--jobs N` into it (or into the existing database), with owners and
//!    privileges when every role the backup needs exists on the target (else it stops,
//!    naming them, unless `--no-owner`), harmless warnings told from errors, lock waits
//!    bounded by `--lock-wait-timeout` and the blocking session named;
//! 6. row counts against meta.json (printed on stdout) and the alembic revision;
//!    with `--create-db`, only then the staging database replaces the target
//!    (its sessions terminated, the old one dropped), so nobody but pgbak ever
//!    connects to a half-restored database; `alembic stamp head` only when asked.
//!
//! This file runs the steps; `target.rs` holds what is done to the target before
//! pg_restore (confirmation, --create-db, selections), `after.rs` the checks after it,
//! `all.rs` `--all-databases` (the globals, then every database of a run through
//! [`restore_into`]).

mod after;
pub(crate) mod all;
mod confirm;
mod owners;
mod table;
mod target;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::archive::restore::Restored;
use crate::archive::{self, Backup, Header, MetaState, Wanted};
use crate::encryption::decrypt::Plain;
use crate::error::{one_line, usage};
use crate::meta::Meta;
use crate::mode::Mode;
use crate::pg::client::{self, quote_ident};
use crate::pg::restore::{self as pg_restore, RestoreJob};
use crate::pg::selection::Resolved;
use crate::pg::tools::PgTools;
use crate::pg::url::ConnSettings;
use crate::settings::restore::{RestoreOptions, RestoreSettings, Restoring};
use crate::signals::Signals;
use crate::storage::Destination;
use crate::ui;

pub use owners::missing_roles;
use owners::owners_wanted;
use target::{confirm, create_schemas, maintenance_conn, select, write_list};

pub async fn run(settings: RestoreSettings, from: &[Destination]) -> Result<ExitCode> {
    let ok = match &settings.restoring {
        Restoring::AllDatabases(_, wanted) => {
            all::restore_all(&settings.conn, from, wanted, &settings.options).await?
        }
        Restoring::One(wanted) => {
            restore_into(&settings.options, wanted, from, &settings.conn).await?
        }
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::FAILED)
    })
}

/// Restores the backup `wanted` names (from the first of `from` holding good
/// bytes of it) into `conn`'s database. Ok(false): the restore ran but a check failed (exit 1).
pub async fn restore_into(
    opts: &RestoreOptions,
    wanted: &Wanted,
    from: &[Destination],
    conn: &ConnSettings,
) -> Result<bool> {
    // 1: never hang waiting for an answer nobody can give.
    refuse_without_terminal(opts.confirm)?;
    let mut signals = Signals::new()?;

    // 2: the backup, checked before the target is touched.
    let backup = open_backup(opts, wanted, from, conn, &mut signals).await?;
    let (admin, plan) = plan(opts, conn, &backup, &mut signals).await?;
    // An encrypted backup for a parallel restore is decrypted now (into an
    // unnamed scratch file), so a failure here leaves the target untouched.
    // A table restore is one transaction, which pg_restore runs as one job.
    let jobs = if plan.table.is_some() {
        1
    } else {
        opts.tuning.jobs
    };
    let (plain, jobs) = backup
        .readable(jobs, &mut signals)
        .await
        .with_context(|| format!("not restoring {}", backup.located.dump.display()))?;

    // 3: the operator confirms, naming the database.
    if opts.confirm {
        confirm(
            conn,
            &backup.located.dump,
            backup.meta(),
            opts.create_db,
            &mut signals,
        )
        .await?;
    }

    // 4: with --create-db, a fresh database under a temporary name, so that
    // nobody but pgbak sees it before it is complete.
    let (mut not_restored, into) =
        prepare_target(opts, conn, &backup, &admin, &plan, &mut signals).await?;
    not_restored.extend(plan.table.iter().flat_map(|t| t.skipped.iter().cloned()));
    drop(admin);

    // 5: pg_restore (an encrypted backup decrypted on the way in).
    let outcome = match run_pg_restore(opts, &into, &backup, &plan, plain, jobs, &mut signals).await
    {
        Ok(outcome) => outcome,
        Err(err) => return Err(abandoned(opts, conn, &into, err).await),
    };
    let restored = judge_restore(opts, &outcome, &mut not_restored);
    let mut failed = !restored;

    // 6: the restored database against meta.json, before anybody else can see it.
    if plan.table.is_some() && !restored {
        ui::error(
            "pg_restore ran in one transaction, which was rolled back: the target is as it was",
        );
    } else {
        match after::check_copy(opts, &into, &backup, &plan, &conn.dbname, &mut signals).await {
            Ok(matches) => failed |= !matches,
            // Interrupted, or the copy could not be read: the copy goes, as after pg_restore.
            Err(err) => return Err(abandoned(opts, conn, &into, err).await),
        }
    }
    if failed {
        let streamed = backup.located.stream.is_some();
        if streamed {
            // Restored from bytes that may not be the backup's: nothing of it is kept.
            target::drop_staging(conn, &into.dbname).await;
        }
        after::report_failure(conn, &into, &backup, opts.create_db && !streamed);
        return Ok(false);
    }
    if opts.create_db {
        // A signal since pg_restore: the copy goes and the target stays. The swap,
        // once begun, is finished (two statements): never dropped between the
        // target's drop and the copy's rename, which would leave neither name.
        if let Err(err) = crate::signals::check() {
            return Err(abandoned(opts, conn, &into, err).await);
        }
        target::swap_in(conn, &into.dbname).await.with_context(|| {
            format!(
                "putting the restored database in place of {}",
                quote_ident(&conn.dbname)
            )
        })?;
    }
    if opts.alembic_stamp && !after::alembic_stamp().await {
        after::report_failure(conn, conn, &backup, false);
        return Ok(false);
    }
    ui::info(&format!(
        "restore complete: {} into database {} on {} ({}){}",
        backup.located.dump.display(),
        quote_ident(&conn.dbname),
        conn.endpoint(),
        if plan.owners {
            "owners and privileges restored"
        } else {
            "without owners and privileges"
        },
        if not_restored.is_empty() {
            String::new()
        } else {
            format!("; not carried over: {}", not_restored.join("; "))
        }
    ));
    Ok(true)
}

/// `err`, once the restore has a place `into`: with `--create-db` that is the
/// staging copy, which goes first (the target was never touched).
async fn abandoned(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    into: &ConnSettings,
    err: anyhow::Error,
) -> anyhow::Error {
    if opts.create_db {
        target::drop_staging(conn, &into.dbname).await;
    }
    err
}

/// Step 1: never hang waiting for an answer nobody can give.
pub(super) fn refuse_without_terminal(confirm: bool) -> Result<()> {
    if confirm && !std::io::stdin().is_terminal() {
        return Err(usage(
            "refusing to restore: stdin is not a terminal, so nobody can confirm; \
             pass --no-confirm to restore without asking",
        ));
    }
    Ok(())
}

/// The backup, opened and checked, with its header.
struct Checked {
    backup: Backup,
    header: Header,
}

impl std::ops::Deref for Checked {
    type Target = Backup;

    fn deref(&self) -> &Backup {
        &self.backup
    }
}

/// Step 2a: finds the backup and checks what needs no server: an identity
/// that fits, that it is a database backup of the target (or allowed), the
/// checksum, the header.
async fn open_backup(
    opts: &RestoreOptions,
    wanted: &Wanted,
    from: &[Destination],
    conn: &ConnSettings,
    signals: &mut Signals,
) -> Result<Checked> {
    // A downloaded backup's meta.json is asked before its dump is fetched.
    let named = match wanted {
        Wanted::S3Object { s3, key } => format!("s3://{}/{key}", s3.bucket),
        Wanted::Stored(file) => archive::first_address(from, file),
        _ => "the newest backup under the S3 prefix".to_owned(),
    };
    let before_download =
        |meta: Option<&Meta>| refuse_other(meta, &named, opts.allow_other_database, conn);
    // Streamed into pg_restore as it downloads only where a bad stream's work can be
    // thrown away unseen: one job, a whole database into --create-db's staging copy.
    let stream = opts.create_db
        && opts.tuning.jobs == 1
        && opts.tables.is_empty()
        && opts.schemas.is_empty();
    let located = archive::locate_streaming(wanted, from, &before_download, stream);
    let located = signals.guard(located).await?;
    let backup = Backup::open(located, &opts.tuning.decrypt)?;
    let dump = backup.located.dump.display().to_string();
    // Not a plaintext object where an encrypted one belongs, signed when signatures are required.
    let trusted = backup
        .authentic(&opts.tuning.decrypt)
        .map_err(|why| usage(format!("not restoring {dump}: {why}")))?;
    ui::info(&format!("{dump}: {trusted}"));
    if !backup.located.temporary {
        refuse_other(
            backup.meta(),
            &backup.located.dump.display(),
            opts.allow_other_database,
            conn,
        )?;
    }
    if let Some(meta) = backup.meta().filter(|_| opts.create_db) {
        // --create-db turns the recorded properties into SQL: refuse values
        // PostgreSQL could not have recorded before the target is touched.
        crate::pg::meta_values::check_meta(meta)
            .map_err(|why| usage(format!("not restoring {dump}: {why}")))?;
    }
    let checksum = backup.checksum(signals).await;
    match (
        checksum.with_context(|| format!("not restoring {dump}"))?,
        &backup.meta_state,
    ) {
        (Some(detail), _) => ui::info(&format!("checksum: {detail}")),
        (None, MetaState::Unavailable(why)) => ui::warn(&format!(
            "{why}: the checksum cannot be checked, and row counts and the alembic revision \
             cannot be compared afterwards"
        )),
        (None, MetaState::Read(_)) => {}
    }
    let header = backup
        .header()
        .with_context(|| format!("not restoring {dump}"))?;
    Ok(Checked { backup, header })
}

/// A globals backup is no database; a backup of another database needs
/// `--allow-other-database` (exit 2 otherwise). `dump` names the backup.
fn refuse_other(
    meta: Option<&Meta>,
    dump: &dyn std::fmt::Display,
    allow_other: bool,
    conn: &ConnSettings,
) -> Result<()> {
    if meta.is_some_and(|m| m.mode == Mode::Globals) {
        return Err(usage(format!(
            "{dump} is a globals backup (roles and tablespaces as plain SQL from pg_dumpall), not a \
             database: restore it with `pgbak restore --all-databases` or `psql -f`"
        )));
    }
    if let Some(meta) = meta.filter(|m| m.database != conn.dbname) {
        if !allow_other {
            return Err(usage(format!(
                "not restoring: {dump} is a backup of database {:?}, the target is {:?}; \
                 pass --allow-other-database to restore it there anyway",
                meta.database, conn.dbname
            )));
        }
        ui::warn(&format!(
            "restoring a backup of database {:?} into database {:?} (--allow-other-database)",
            meta.database, conn.dbname
        ));
    }
    Ok(())
}

/// What the restore will do, decided before the target is touched.
struct Plan {
    server_major: u32,
    tools: PgTools,
    selection: Option<Resolved>,
    /// A `--table` selection: what it takes and how.
    table: Option<table::TablePlan>,
    /// pg_restore's `-L` list for a `--table` selection.
    list_file: Option<tempfile::NamedTempFile>,
    roles: BTreeSet<String>,
    owners: bool,
}

/// Step 2b: the target server: a pg_restore for it and the archive, the
/// archive's table of contents, an exact selection (exit 2 on a miss), the
/// extensions and the roles the backup needs. Also returns a session on the
/// target server (on another database with --create-db).
async fn plan(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    backup: &Checked,
    signals: &mut Signals,
) -> Result<(tokio_postgres::Client, Plan)> {
    let admin = signals
        .guard(client::connect(&maintenance_conn(conn, opts.create_db)))
        .await
        .map_err(|err| {
            if opts.create_db {
                err
            } else {
                err.context("the target database must exist (or pass --create-db to create it)")
            }
        })?;
    let server = client::server_version(&admin).await?;
    let meta = backup.meta();
    let tools = backup
        .tools(&backup.header, opts.pg_bin_dir.as_deref(), Some(&server))
        .map_err(|e| usage(one_line(&e)))?;
    let listing = backup
        .list(&tools, signals)
        .await
        .with_context(|| format!("not restoring {}", backup.located.dump.display()))?;
    ui::info(&backup.describe(&backup.header, &listing, &tools));
    let selection = select(opts, &listing)?;
    let table = match selection.as_ref().filter(|s| !s.tables.is_empty()) {
        Some(resolved) => {
            // The count before an append may wait for a table lock.
            let planned = table::plan(&admin, &listing, resolved, meta, opts);
            let admin_conn = maintenance_conn(conn, opts.create_db);
            Some(crate::pg::cancel::guarded(signals, &admin, &admin_conn, planned).await?)
        }
        None => None,
    };
    let list_file = match &table {
        Some(table) => {
            // Checked now: a table restore runs through psql (pg::restore::script).
            let psql = tools.tool("psql");
            if !psql.is_file() {
                return Err(usage(format!(
                    "not restoring: a table restore runs in one transaction through psql, and \
                     there is no {} beside pg_restore; install the PostgreSQL client package \
                     that has both (or point --pg-bin-dir at one)",
                    psql.display()
                )));
            }
            Some(write_list(&table.list)?)
        }
        None => None,
    };
    if selection.is_none() {
        let wanted = backup.wanted_extensions(&listing);
        if let Some(missing) = client::missing_extensions(&admin, &wanted, server.major()).await? {
            bail!(
                "not restoring: the server at {} {missing}, {ELSEWHERE}",
                conn.endpoint()
            );
        }
    }
    let roles = client::role_names(&admin).await?;
    let owners = owners_wanted(opts.no_owner, meta, &roles, conn)?;
    let plan = Plan {
        server_major: server.major(),
        tools,
        selection,
        table,
        list_file,
        roles,
        owners,
    };
    Ok((admin, plan))
}

/// Step 4: with --create-db, a staging database (a leftover one dropped
/// first) created with the recorded properties, which pg_restore fills and
/// which replaces the target only once complete; for a schema selection, the
/// schemas pg_restore `-n` does not create. Returns what could not be
/// carried over and the database pg_restore restores into.
async fn prepare_target(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    backup: &Checked,
    admin: &tokio_postgres::Client,
    plan: &Plan,
    signals: &mut Signals,
) -> Result<(Vec<String>, ConnSettings)> {
    let mut not_restored = Vec::new();
    let mut into = conn.clone();
    if opts.create_db {
        let staging = target::staging_name(&conn.dbname);
        // Not raced with signals (a CREATE that committed then was left): checked after.
        let created = target::create_staging(
            admin,
            &staging,
            backup.meta().and_then(|m| m.database_properties.as_ref()),
            &plan.roles,
            plan.owners,
        )
        .await
        .and_then(|items| crate::signals::check().map(|()| items));
        not_restored = match created {
            Ok(items) => items,
            Err(err) => {
                target::drop_staging(conn, &staging).await;
                return Err(err);
            }
        };
        ui::info(&format!(
            "created database {} on {}: restored there, it replaces {} once complete (until \
             then nobody else sees the restore)",
            quote_ident(&staging),
            conn.endpoint(),
            quote_ident(&conn.dbname)
        ));
        for item in &not_restored {
            ui::warn(&format!("not restored: {item}"));
        }
        into = conn.with_dbname(&staging);
    }
    if plan.list_file.is_none() {
        if let Some(resolved) = &plan.selection {
            // pg_restore -n restores a schema's objects, not the schema itself.
            if let Err(err) = create_schemas(&into, &resolved.schemas, signals).await {
                return Err(abandoned(opts, conn, &into, err).await);
            }
        }
    }
    Ok((not_restored, into))
}

/// Where else a backup can be restored when this server lacks an extension.
const ELSEWHERE: &str = "or restore into a server where it is installed";

/// Step 5: pg_restore into the target, reading `plain` (the archive, or its
/// decryption), with the plan's selection and owners.
async fn run_pg_restore(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    backup: &Checked,
    plan: &Plan,
    plain: Plain,
    jobs: u32,
    signals: &mut Signals,
) -> Result<Restored> {
    ui::info(&format!(
        "restoring {} into database {} on {} with {} jobs (maintenance_work_mem {})",
        backup.located.dump.display(),
        quote_ident(&conn.dbname),
        conn.endpoint(),
        jobs,
        opts.tuning.maintenance_work_mem
    ));
    let mwm = &opts.tuning.maintenance_work_mem;
    let job = RestoreJob {
        list_file: plan.list_file.as_ref().map(tempfile::NamedTempFile::path),
        schemas: if plan.list_file.is_some() {
            &[]
        } else {
            &opts.schemas
        },
        tablespaces: true,
        role: opts.role.as_deref(),
        owners: plan.owners,
        table_way: plan.table.as_ref().map(|t| t.way),
        lock_wait_timeout: Some(opts.lock_wait_timeout),
        ..RestoreJob::new(&plan.tools, conn, jobs, mwm)
    };
    archive::restore::restore(plain, &job, plan.server_major, signals).await
}

/// Step 5's verdict: objects not created named (and added to `not_restored`),
/// errors printed. True when pg_restore succeeded.
fn judge_restore(
    opts: &RestoreOptions,
    restored: &Restored,
    not_restored: &mut Vec<String>,
) -> bool {
    let outcome = &restored.verdict;
    for object in &outcome.not_created {
        ui::warn(&format!(
            "not restored: {object} (a role it names does not exist on this server; create \
             the roles first, e.g. from a globals backup, then restore again)"
        ));
        not_restored.push(format!("{object} (role missing)"));
    }
    for object in &outcome.needs_superuser {
        ui::error(&format!(
            "not restored: {object} (only a superuser may create it: restore as one)"
        ));
        not_restored.push(format!("{object} (needs a superuser)"));
    }
    if restored.succeeded() && outcome.needs_superuser.is_empty() {
        ui::info(&format!(
            "pg_restore finished in {:.1}s ({} harmless warning(s))",
            restored.duration.as_secs_f64(),
            outcome.warnings.len()
        ));
        return true;
    }
    for error in pg_restore::distinct(&outcome.errors) {
        ui::error(&format!("pg_restore: {error}"));
    }
    if !outcome.blockers.is_empty() {
        ui::error(&format!(
            "a lock was not granted within --lock-wait-timeout {} (blocked by {}): pgbak cancelled \
             the statement; end that session, or restore when it is done",
            humantime::format_duration(opts.lock_wait_timeout),
            outcome.blockers.join(", ")
        ));
    }
    let failure = restored.failure.as_deref().unwrap_or_default();
    match &restored.missing {
        Some(missing) => ui::error(&format!(
            "{failure}. {}, {ELSEWHERE}",
            missing.install_hint()
        )),
        None if !failure.is_empty() => ui::error(failure),
        None => {}
    }
    false
}
