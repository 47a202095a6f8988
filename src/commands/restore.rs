//! `pgbak restore`: put a backup into the database of DATABASE_URL / PG*.
//!
//! The steps, in order:
//! 1. without a terminal and without `--no-confirm`: refuse at once (exit 2);
//! 2. find the backup; an encrypted one (`.dump.age`) needs an identity that
//!    fits (exit 2 otherwise); check its SHA-256 against meta.json, read its
//!    header and `pg_restore --list`: nothing touches the target before the
//!    backup is known good;
//! 3. ask the operator to type the database name (host, port, database, backup shown);
//! 4. `--create-db`: terminate sessions, drop and recreate the database with the
//!    properties meta.json recorded (owner, locale, settings, ACL; see [`crate::pg::dbprops`]);
//! 5. pg_restore `--jobs N`, with owners and privileges when every role the backup
//!    needs exists on the target (else it stops, naming them, unless `--no-owner`),
//!    harmless warnings told from errors;
//! 6. row counts against meta.json (printed on stdout), the alembic revision against
//!    meta.json, and `alembic stamp head` only when asked.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::error::SqlState;

use crate::archive::{self, MetaState, Wanted};
use crate::cli::RestoreArgs;
use crate::encryption::decrypt::Source;
use crate::error::usage;
use crate::meta::Meta;
use crate::mode::Mode;
use crate::pg::client::{self, quote_ident};
use crate::pg::restore::{self as pg_restore, RestoreJob};
use crate::pg::selection::{self, Resolved};
use crate::pg::url::ConnSettings;
use crate::settings::commands::GlobalSettings;
use crate::signals::Signals;
use crate::storage::select::Selector;
use crate::ui;

pub async fn run(global: &GlobalSettings, args: RestoreArgs) -> Result<ExitCode> {
    if args.all_databases {
        return super::cluster::restore_all(global, args).await;
    }
    let conn = crate::settings::connection()?;
    Ok(if restore_into(global, &args, &conn).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::FAILED)
    })
}

/// Restores one backup into `conn`'s database. Ok(false): the restore ran but
/// a check failed (exit 1).
pub async fn restore_into(
    global: &GlobalSettings,
    args: &RestoreArgs,
    conn: &ConnSettings,
) -> Result<bool> {
    // 1: never hang waiting for an answer nobody can give.
    if !args.no_confirm && !std::io::stdin().is_terminal() {
        return Err(usage(
            "refusing to restore: stdin is not a terminal, so nobody can confirm; \
             pass --no-confirm to restore without asking",
        ));
    }
    pg_restore::validate_memory_setting(&args.maintenance_work_mem)?;
    let mut signals = Signals::new()?;

    // 2: the backup, checked before the target is touched.
    let located = archive::locate(&Wanted {
        backup: args.backup.as_deref(),
        backup_dir: &args.backup_dir,
        from_s3: args.from_s3,
        s3: &args.s3,
        select: &Selector {
            database: conn.dbname.clone(),
            mode: Mode::Full,
            include_failed: args.include_failed,
        },
    })
    .await?;
    let meta_state = archive::read_meta(&located);
    let meta = meta_state.meta();
    if meta.is_some_and(|m| m.mode == Mode::Globals) {
        return Err(usage(format!(
            "{} is a globals backup (roles and tablespaces as plain SQL from pg_dumpall), not a \
             database: restore it with `pgbak restore --all-databases` or `psql -f`",
            located.dump.display()
        )));
    }
    if let Some(meta) = meta.filter(|m| m.database != conn.dbname) {
        if !args.allow_other_database {
            return Err(usage(format!(
                "not restoring: {} is a backup of database {:?}, the target is {:?}; \
                 pass --allow-other-database to restore it there anyway",
                located.dump.display(),
                meta.database,
                conn.dbname
            )));
        }
        ui::warn(&format!(
            "restoring a backup of database {:?} into database {:?} (--allow-other-database)",
            meta.database, conn.dbname
        ));
    }
    let source = Source::open(
        &located.dump,
        meta,
        args.decrypt.identity_file.as_deref(),
        args.decrypt.scratch_dir.as_deref(),
    )?;
    match &meta_state {
        MetaState::Read(meta) => {
            match signals
                .guard(archive::check_checksum(&located.dump, meta))
                .await?
            {
                Ok(detail) => ui::info(&format!("checksum: {detail}")),
                Err(detail) => bail!("not restoring {}: {detail}", located.dump.display()),
            }
        }
        MetaState::Unavailable(why) => ui::warn(&format!(
            "{why}: the checksum cannot be checked, and row counts and the alembic revision \
             cannot be compared afterwards"
        )),
    }
    let header = source
        .header()?
        .map_err(|detail| anyhow!("not restoring {}: {detail}", located.dump.display()))?;

    let selective = !args.tables.is_empty() || !args.schemas.is_empty();
    let admin_conn = maintenance_conn(conn, args.create_db);
    let admin = signals
        .guard(client::connect(&admin_conn))
        .await
        .map_err(|err| {
            if args.create_db {
                err
            } else {
                err.context("the target database must exist (or pass --create-db to create it)")
            }
        })?;
    let server = client::server_version(&admin).await?;
    let tools = archive::pick_tools(global.pg_bin_dir.as_deref(), &header, meta, Some(&server))
        .map_err(usage)?;
    let plain = source.for_list()?;
    let listed = signals
        .guard(pg_restore::list(&tools, plain.input()))
        .await?;
    let finished = plain.finish();
    let listing =
        listed.map_err(|detail| anyhow!("not restoring {}: {detail}", located.dump.display()))?;
    finished.with_context(|| format!("not restoring {}", located.dump.display()))?;
    ui::info(&format!(
        "archive: {} entries, format {}, {} compression; pg_restore {}",
        listing.entries,
        header.version_text(),
        header.compression.name(),
        tools.version
    ));
    // An exact selection, or nothing is touched (exit 2).
    let selection = if selective {
        let toc = selection::parse_toc(&listing.toc);
        let resolved = selection::resolve(&toc, &args.tables, &args.schemas)
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
        Some(resolved)
    } else {
        None
    };
    let list_file = match selection.as_ref().and_then(|s| s.list.as_deref()) {
        Some(list) => Some(write_list(list)?),
        None => None,
    };
    if !selective {
        let wanted: BTreeSet<String> = match meta {
            Some(meta) => meta.extensions.keys().cloned().collect(),
            None => listing.extensions.iter().cloned().collect(),
        };
        let rows = admin
            .query("SELECT name::text FROM pg_available_extensions", &[])
            .await
            .context("listing the server's available extensions")?;
        let available: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let missing: Vec<String> = wanted.difference(&available).cloned().collect();
        if !missing.is_empty() {
            bail!(
                "not restoring: the server at {} lacks the extension(s) {}; {}",
                conn.endpoint(),
                missing.join(", "),
                super::verify::install_hint(&missing, server.major())
            );
        }
    }

    let roles = client::role_names(&admin).await?;
    let owners = owners_wanted(args.no_owner, meta, &roles, conn)?;

    // An encrypted backup for a parallel restore is decrypted now (into an
    // unnamed scratch file), so a failure here leaves the target untouched.
    let (plain, jobs) = signals
        .guard(source.for_restore(args.jobs.max(1)))
        .await
        .with_context(|| format!("not restoring {}", located.dump.display()))?;

    // 3: the operator confirms, naming the database.
    if !args.no_confirm {
        confirm(conn, &located.dump, meta, args.create_db, &mut signals).await?;
    }

    // 4: a fresh database when asked.
    let mut not_restored = Vec::new();
    if args.create_db {
        not_restored = recreate_database(
            &admin,
            &conn.dbname,
            meta.and_then(|m| m.database_properties.as_ref()),
            &roles,
            owners,
        )
        .await?;
        ui::info(&format!(
            "dropped and created database {} on {}",
            quote_ident(&conn.dbname),
            conn.endpoint()
        ));
        for item in &not_restored {
            ui::warn(&format!("not restored: {item}"));
        }
    }
    drop(admin);
    if list_file.is_none() {
        if let Some(resolved) = &selection {
            // pg_restore -n restores a schema's objects, not the schema itself.
            create_schemas(conn, &resolved.schemas, &mut signals).await?;
        }
    }

    // 5: pg_restore (an encrypted backup decrypted on the way in).
    ui::info(&format!(
        "restoring {} into database {} on {} with {} jobs (maintenance_work_mem {})",
        located.dump.display(),
        quote_ident(&conn.dbname),
        conn.endpoint(),
        jobs,
        args.maintenance_work_mem
    ));
    let clock = std::time::Instant::now();
    let mut outcome = pg_restore::restore(
        &RestoreJob {
            tools: &tools,
            conn,
            input: plain.input(),
            jobs,
            maintenance_work_mem: &args.maintenance_work_mem,
            list_file: list_file.as_ref().map(tempfile::NamedTempFile::path),
            schemas: if list_file.is_some() {
                &[]
            } else {
                &args.schemas
            },
            owners,
        },
        &mut signals,
    )
    .await?;
    if let Err(err) = plain.finish() {
        outcome.errors.push(crate::error::one_line(&err));
    }
    for warning in pg_restore::distinct(&outcome.warnings) {
        ui::warn(&format!("pg_restore (harmless): {warning}"));
    }
    for object in &outcome.not_created {
        ui::warn(&format!(
            "not restored: {object} (a role it names does not exist on this server; create \
             the roles first, e.g. from a globals backup, then restore again)"
        ));
        not_restored.push(format!("{object} (role missing)"));
    }
    let mut failed = false;
    if outcome.succeeded() {
        ui::info(&format!(
            "pg_restore finished in {:.1}s ({} harmless warning(s))",
            clock.elapsed().as_secs_f64(),
            outcome.warnings.len()
        ));
    } else {
        for error in pg_restore::distinct(&outcome.errors) {
            ui::error(&format!("pg_restore: {error}"));
        }
        let mut err = pg_restore::failure(&outcome);
        if let Some(ext) = outcome.missing_extension() {
            err = err.context(super::verify::install_hint(
                std::slice::from_ref(&ext),
                server.major(),
            ));
        }
        ui::error(&crate::error::one_line(&err));
        failed = true;
    }

    // 6: the restored database against meta.json.
    let target = signals.guard(client::connect(conn)).await?;
    if let Some(meta) = meta {
        if !compare_rows(&target, meta, selection.as_ref()).await? {
            failed = true;
        }
        let have = client::alembic_revision(&target).await.ok().flatten();
        if selective {
            // A selective restore need not include alembic_version.
        } else if have == meta.alembic_revision {
            ui::info(&format!(
                "alembic revision {} matches the backup",
                have.as_deref().unwrap_or("(none)")
            ));
        } else {
            ui::warn(&format!(
                "alembic revision is {} but the backup's meta.json says {}: if the application \
                 is newer than this backup, run `alembic upgrade head`",
                have.as_deref().unwrap_or("(none)"),
                meta.alembic_revision.as_deref().unwrap_or("(none)")
            ));
        }
    }
    if args.alembic_stamp && !alembic_stamp().await {
        failed = true;
    }
    if failed {
        ui::error(&format!(
            "restore of {} into {} FAILED (see above)",
            located.dump.display(),
            quote_ident(&conn.dbname)
        ));
        return Ok(false);
    }
    ui::info(&format!(
        "restore complete: {} into database {} on {} ({}){}",
        located.dump.display(),
        quote_ident(&conn.dbname),
        conn.endpoint(),
        if owners {
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

/// Whether pg_restore restores owners and privileges: yes when every role the
/// backup depends on exists on the target; an error naming the missing ones
/// otherwise; no with `--no-owner`, and for backups whose meta.json predates
/// role recording (restored as before, with a warning).
fn owners_wanted(
    no_owner: bool,
    meta: Option<&Meta>,
    roles: &BTreeSet<String>,
    conn: &ConnSettings,
) -> Result<bool> {
    if no_owner {
        return Ok(false);
    }
    let Some(needed) = meta.and_then(|m| m.roles.as_ref()) else {
        ui::warn(
            "the backup does not record the roles it needs (no meta.json, or one written by an \
             older pgbak): restoring without owners and privileges, as with --no-owner",
        );
        return Ok(false);
    };
    let missing = missing_roles(needed, roles);
    if !missing.is_empty() {
        bail!(
            "not restoring: the backup's owners and grants need the role(s) {} that do not exist on {}; \
             restore the roles first (pgbak restore --all-databases, or psql -f the globals backup) \
             or pass --no-owner to restore without owners and privileges",
            missing.join(", "),
            conn.endpoint()
        );
    }
    Ok(true)
}

/// The roles of `needed` that `existing` lacks, in order.
pub fn missing_roles(needed: &[String], existing: &BTreeSet<String>) -> Vec<String> {
    needed
        .iter()
        .filter(|r| !existing.contains(*r))
        .cloned()
        .collect()
}

/// Creates the selected schemas that the target lacks (owned by the restoring user).
async fn create_schemas(
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
fn write_list(list: &str) -> Result<tempfile::NamedTempFile> {
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
fn maintenance_conn(conn: &ConnSettings, create_db: bool) -> ConnSettings {
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

async fn confirm(
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
async fn recreate_database(
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

fn db_error(err: tokio_postgres::Error, what: &str) -> anyhow::Error {
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

/// Prints every table's rows, backup vs restored, on stdout. With --table or
/// --schema only the selected tables are compared. True when all match.
async fn compare_rows(
    client: &tokio_postgres::Client,
    meta: &Meta,
    selection: Option<&Resolved>,
) -> Result<bool> {
    let selected = |schema: &str, name: &str| selection.is_none_or(|s| s.contains(schema, name));
    let wanted: Vec<_> = meta
        .tables
        .iter()
        .filter(|t| t.rows.is_some() && selected(&t.schema, &t.name))
        .collect();
    if wanted.is_empty() {
        ui::info("row counts: nothing to compare (the backup records none for the selection)");
        return Ok(true);
    }
    let width = wanted
        .iter()
        .map(|t| t.schema.len() + t.name.len() + 1)
        .max()
        .unwrap_or(5)
        .max(5);
    ui::stdout_line(&format!(
        "{:<width$}  {:>12}  {:>12}  result",
        "table", "backup", "restored"
    ));
    let mut all_match = true;
    for table in wanted {
        let want = table.rows.unwrap_or_default();
        let sql = format!(
            "SELECT count(*) FROM ONLY {}",
            client::qualified(&table.schema, &table.name)
        );
        let have = match client.query_one(&sql, &[]).await {
            Ok(row) => Some(row.get::<_, i64>(0)),
            Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("counting rows of {}.{}", table.schema, table.name))
            }
        };
        let (shown, ok) = match have {
            Some(n) => (n.to_string(), u64::try_from(n).ok() == Some(want)),
            None => ("missing".to_owned(), false),
        };
        all_match &= ok;
        ui::stdout_line(&format!(
            "{:<width$}  {:>12}  {:>12}  {}",
            format!("{}.{}", table.schema, table.name),
            want,
            shown,
            if ok { "ok" } else { "MISMATCH" }
        ));
    }
    if all_match {
        ui::info("row counts match the backup's meta.json");
    } else {
        ui::error("row counts differ from the backup's meta.json (see the table on stdout)");
    }
    Ok(all_match)
}

/// `alembic stamp head`, when alembic is on PATH (as the scripts did: without it,
/// a warning). False when it ran and failed.
async fn alembic_stamp() -> bool {
    let Some(alembic) = crate::settings::find_on_path("alembic") else {
        ui::warn("--alembic-stamp: alembic is not on PATH; the revision was not stamped");
        return true;
    };
    let mut cmd = tokio::process::Command::new(&alembic);
    cmd.args(["stamp", "head"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match crate::pg::tools::run(cmd, "alembic stamp head").await {
        Ok(out) if out.success => {
            ui::info(&format!("ran {} stamp head", alembic.display()));
            true
        }
        Ok(out) => {
            ui::error(&format!(
                "alembic stamp head failed (exit {}): {}",
                out.code.map_or("signal".to_owned(), |c| c.to_string()),
                pg_restore::one_line(&out.stderr)
            ));
            false
        }
        Err(err) => {
            ui::error(&crate::error::one_line(&err));
            false
        }
    }
}
