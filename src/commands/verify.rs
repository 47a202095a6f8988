//! `pgbak verify`: prove a backup restores.
//!
//! The checks, in order, each printed as one PASS/FAIL line:
//! 1. meta.json is there and readable (without it the checks that need it are skipped, and
//!    verify fails: a backup without its meta.json is not complete);
//! 2. SHA-256 and size equal meta.json, before anything else: a truncated dump can still
//!    pass `pg_restore --list`;
//! 3. the archive is readable: `PGDMP` header, a pg_restore new enough and built with the
//!    archive's compression, `pg_restore --list`;
//! 4. a temporary database `<db>_verify_<UTC ts>` is created: on the source server, on
//!    `--target-url`, or in a throwaway `--ephemeral` cluster (where the globals backup
//!    beside the dump is replayed first, so owners, grants and policies are restored too);
//! 5. pg_restore succeeds (harmless warnings allowed);
//! 6. the expected tables exist; 7. every table's row count equals meta.json;
//! 8. every extension of the source exists; 9. the alembic revision equals meta.json;
//! 10. to 14. every index, constraint, trigger, row-level security policy and switch,
//!     and sequence meta.json recorded is in the copy, defined the same way (same
//!     server major) and, for sequences, not behind (`pg::catalog`).
//!
//! The checks on the copy race the stop signals. The temporary database (or cluster) is
//! removed on every way out, signals included, unless `--no-cleanup`. The result, with
//! the names of the failed checks, is recorded in meta.json's `verification`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::archive::{self, Located, MetaState, Wanted};
use crate::cli::{GlobalArgs, VerifyArgs};
use crate::encryption::decrypt::Source;
use crate::error::usage;
use crate::meta::{Meta, Verification};
use crate::pg::catalog::{self, Depth, Kind};
use crate::pg::client::{self, quote_ident, ServerVersion};
use crate::pg::ephemeral::Ephemeral;
use crate::pg::restore::{self as pg_restore, RestoreJob};
use crate::pg::url::{process_env, ConnSettings};
use crate::signals::Signals;
use crate::storage::select::Selector;
use crate::storage::BackupName;
use crate::ui;

/// The 13 application tables of the Enterprise Agent Platform (SPEC.md).
pub const DEFAULT_TABLES: [&str; 13] = [
    "users",
    "tenants",
    "conversations",
    "messages",
    "documents",
    "vector_chunks",
    "audit_logs",
    "agent_registry",
    "feedback",
    "token_budgets",
    "token_usage_records",
    "routing_decisions",
    "execution_plans",
];

/// Where the copy is restored.
#[derive(Debug, Clone)]
pub enum Target {
    /// A temporary database on the server of `VerifyOptions::conn` (the scripts' way).
    SourceServer,
    /// A temporary database on another server.
    Url(ConnSettings),
    /// A throwaway local cluster started from the chosen bin dir.
    Ephemeral,
}

/// Everything one verify needs, resolved.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The source server (the target too, by default).
    pub conn: ConnSettings,
    pub pg_bin_dir: Option<PathBuf>,
    pub target: Target,
    pub jobs: u32,
    /// `maintenance_work_mem` for the restore ("default": the server's).
    pub maintenance_work_mem: String,
    /// (schema, table) that must exist in the copy, besides meta.json's tables.
    pub expected_tables: Vec<(String, String)>,
    pub no_cleanup: bool,
    /// Write the result into meta.json's `verification`.
    pub record: bool,
    /// Decrypts `.dump.age` backups.
    pub identity_file: Option<PathBuf>,
    /// Where an encrypted backup is decrypted for a parallel restore.
    pub scratch_dir: Option<PathBuf>,
}

impl VerifyOptions {
    /// The defaults of `pgbak verify` for a backup of the server at `conn`.
    pub fn new(conn: ConnSettings, pg_bin_dir: Option<PathBuf>) -> VerifyOptions {
        VerifyOptions {
            conn,
            pg_bin_dir,
            target: Target::SourceServer,
            jobs: 4,
            maintenance_work_mem: "1GB".to_owned(),
            expected_tables: DEFAULT_TABLES
                .iter()
                .map(|t| ("public".to_owned(), (*t).to_owned()))
                .collect(),
            no_cleanup: false,
            record: true,
            identity_file: None,
            scratch_dir: None,
        }
    }

    pub fn from_args(global: &GlobalArgs, args: &VerifyArgs) -> Result<VerifyOptions> {
        pg_restore::validate_memory_setting(&args.maintenance_work_mem)?;
        let mut opts =
            VerifyOptions::new(crate::settings::connection()?, global.pg_bin_dir.clone());
        if let Some(url) = &args.target_url {
            opts.target = Target::Url(
                ConnSettings::from_url(url, &process_env).context("reading --target-url")?,
            );
        } else if args.ephemeral {
            opts.target = Target::Ephemeral;
        }
        opts.jobs = args.jobs.max(1);
        opts.maintenance_work_mem = args.maintenance_work_mem.clone();
        opts.no_cleanup = args.no_cleanup;
        opts.identity_file = args.decrypt.identity_file.clone();
        opts.scratch_dir = args.decrypt.scratch_dir.clone();
        let mut expected: Vec<String> = args.expect_tables.clone();
        if let Some(file) = &args.expect_tables_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                usage(format!(
                    "cannot read --expect-tables-file {}: {e}",
                    file.display()
                ))
            })?;
            expected.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        if !expected.is_empty() || args.expect_tables_file.is_some() {
            opts.expected_tables = expected.iter().map(|t| split_table(t)).collect();
        }
        Ok(opts)
    }
}

/// `schema.table`, or `table` in `public`.
pub fn split_table(text: &str) -> (String, String) {
    match text.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), text.to_owned()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// The outcome of one verify; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backup: PathBuf,
    pub meta: Option<PathBuf>,
    /// True only when no check failed.
    pub passed: bool,
    /// Set when verify could not run at all (its target server was unreachable,
    /// the throwaway cluster did not start): no verdict on the backup, so
    /// nothing is recorded in its meta.json.
    pub could_not_run: Option<String>,
    pub checks: Vec<Check>,
    /// Where the copy went (`host:port`, or the throwaway cluster's directory).
    pub target: Option<String>,
    pub temp_database: Option<String>,
    /// With --no-cleanup: what was left, and the command that removes it.
    pub left_in_place: Option<String>,
    pub pg_restore_warnings: Vec<String>,
    pub duration_seconds: f64,
}

impl Report {
    fn new(located: &Located) -> Report {
        Report {
            backup: located.dump.clone(),
            meta: located.meta_path.clone(),
            passed: false,
            could_not_run: None,
            checks: Vec::new(),
            target: None,
            temp_database: None,
            left_in_place: None,
            pg_restore_warnings: Vec::new(),
            duration_seconds: 0.0,
        }
    }

    fn add(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        let detail = detail.into();
        match status {
            Status::Pass => ui::info(&format!("PASS  {name}: {detail}")),
            Status::Fail => ui::error(&format!("FAIL  {name}: {detail}")),
            Status::Skip => ui::warn(&format!("SKIP  {name}: {detail}")),
        }
        self.checks.push(Check {
            name: name.to_owned(),
            status,
            detail,
        });
    }

    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.add(name, Status::Pass, detail);
    }

    fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.add(name, Status::Fail, detail);
    }

    fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.add(name, Status::Skip, detail);
    }

    /// Marks every named check that has not run as skipped, with the reason.
    fn skip_rest(&mut self, reason: &str) {
        for name in CHECKS {
            if !self.checks.iter().any(|c| c.name == *name) {
                self.skip(name, reason);
            }
        }
    }

    fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

const META: &str = "meta.json";
const CHECKSUM: &str = "checksum";
const ARCHIVE: &str = "archive readable";
const TEMP_DB: &str = "temp database created";
const RESTORE: &str = "restore succeeded";
const TABLES: &str = "expected tables present";
const ROWS: &str = "row counts match";
const EXTENSIONS: &str = "extensions present";
const ALEMBIC: &str = "alembic revision matches";
const INDEXES: &str = "indexes match";
const CONSTRAINTS: &str = "constraints match";
const TRIGGERS: &str = "triggers match";
const POLICIES: &str = "row-level security matches";
const SEQUENCES: &str = "sequences match";
const CHECKS: &[&str] = &[
    META,
    CHECKSUM,
    ARCHIVE,
    TEMP_DB,
    RESTORE,
    TABLES,
    ROWS,
    EXTENSIONS,
    ALEMBIC,
    INDEXES,
    CONSTRAINTS,
    TRIGGERS,
    POLICIES,
    SEQUENCES,
];
/// The checks run on the restored copy.
const COPY_CHECKS: &[&str] = &[
    TABLES,
    ROWS,
    EXTENSIONS,
    ALEMBIC,
    INDEXES,
    CONSTRAINTS,
    TRIGGERS,
    POLICIES,
    SEQUENCES,
];

/// The check that compares one kind of schema object.
fn schema_check(kind: Kind) -> &'static str {
    match kind {
        Kind::Index => INDEXES,
        Kind::Constraint => CONSTRAINTS,
        Kind::Trigger => TRIGGERS,
        Kind::Policy => POLICIES,
        Kind::Sequence => SEQUENCES,
    }
}

pub async fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<ExitCode> {
    let opts = VerifyOptions::from_args(global, &args)?;
    let mut signals = Signals::new()?;
    let located = archive::locate(&Wanted {
        backup: args.backup.as_deref(),
        backup_dir: &args.backup_dir,
        from_s3: args.from_s3,
        s3: &args.s3,
        select: &Selector {
            database: opts.conn.dbname.clone(),
            mode: args.mode,
            include_failed: args.include_failed,
        },
    })
    .await?;
    let report = verify_located(&opts, &located, &mut signals).await?;
    if args.json {
        ui::stdout_line(&serde_json::to_string_pretty(&report).context("encoding the report")?);
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::FAILED)
    })
}

/// Verifies the local backup `dump` (its meta.json beside it). Check failures
/// are in the report; `Err` is an interruption (exit 130/143) or a fault of
/// pgbak's own surroundings. The temporary database or cluster is gone when
/// this returns, whichever way, unless `opts.no_cleanup`.
pub async fn verify_backup(
    opts: &VerifyOptions,
    dump: &Path,
    signals: &mut Signals,
) -> Result<Report> {
    verify_located(opts, &Located::local(dump), signals).await
}

/// The temporary database and, for --ephemeral, the cluster holding it.
struct Place {
    admin: ConnSettings,
    database: Option<String>,
    cluster: Option<Ephemeral>,
    /// The session holding the temporary database's advisory lock.
    lock_holder: Option<tokio_postgres::Client>,
}

pub async fn verify_located(
    opts: &VerifyOptions,
    located: &Located,
    signals: &mut Signals,
) -> Result<Report> {
    let clock = Instant::now();
    let mut report = Report::new(located);
    ui::info(&format!("verifying {}", located.dump.display()));
    let meta_state = archive::read_meta(located);
    // A missing or wrong identity is a usage error (exit 2) before anything is touched.
    let source = Source::open(
        &located.dump,
        meta_state.meta(),
        opts.identity_file.as_deref(),
        opts.scratch_dir.as_deref(),
    )?;
    let mut place: Option<Place> = None;
    let outcome = run_checks(
        opts,
        located,
        &source,
        &meta_state,
        signals,
        &mut report,
        &mut place,
    )
    .await;
    if let Some(place) = place {
        remove_place(opts, place, &mut report).await;
    }
    outcome?;
    report.passed = !report.failed();
    report.duration_seconds = (clock.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    if report.passed {
        ui::info(&format!(
            "verify passed: {} checks in {:.1}s ({})",
            report.checks.len(),
            report.duration_seconds,
            located.dump.display()
        ));
    } else if report.could_not_run.is_some() {
        ui::error(&format!(
            "verify could not run (no server to restore into), so {} is neither passed nor \
             failed; nothing recorded in its meta.json",
            located.dump.display()
        ));
    } else {
        ui::error(&format!(
            "verify FAILED: {} of {} checks failed ({}): {}",
            failed.len(),
            report.checks.len(),
            failed.join(", "),
            located.dump.display()
        ));
    }
    if let (MetaState::Read(meta), Some(path)) = (&meta_state, &located.meta_path) {
        if opts.record && !located.temporary && report.could_not_run.is_none() {
            if let Err(err) = record(meta, path, &report) {
                ui::warn(&format!(
                    "could not record the result in {}: {}",
                    path.display(),
                    crate::error::one_line(&err)
                ));
            }
        }
    }
    Ok(report)
}

/// Writes `verification` into meta.json (atomically; the other keys as they were).
fn record(meta: &Meta, path: &Path, report: &Report) -> Result<()> {
    let mut meta = meta.clone();
    meta.verification = Some(Verification {
        verified_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        passed: report.passed,
        pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
        failed_checks: report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.clone())
            .collect(),
    });
    meta.write(path)
}

async fn run_checks(
    opts: &VerifyOptions,
    located: &Located,
    source: &Source,
    meta_state: &MetaState,
    signals: &mut Signals,
    report: &mut Report,
    place: &mut Option<Place>,
) -> Result<()> {
    // 1-2: meta.json and the checksum, before anything reads the archive.
    let meta = meta_state.meta();
    match meta_state {
        MetaState::Read(_) => report.pass(
            META,
            located
                .meta_path
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
        ),
        MetaState::Unavailable(why) => {
            report.fail(
                META,
                format!(
                    "{why}; without it these checks are skipped: {CHECKSUM}, {ROWS}, {ALEMBIC} \
                     and the schema objects (extensions are taken from the archive)"
                ),
            );
            report.skip(CHECKSUM, "no meta.json to compare with");
        }
    }
    if let Some(meta) = meta {
        let checked = signals
            .guard(archive::check_checksum(&located.dump, meta))
            .await?;
        match checked {
            Ok(detail) => report.pass(CHECKSUM, detail),
            Err(detail) => {
                report.fail(CHECKSUM, detail);
                report.skip_rest("the file does not match its checksum");
                return Ok(());
            }
        }
    }

    // 3: the header, the tools, and the table of contents.
    let header = match source.header()? {
        Ok(header) => header,
        Err(detail) => {
            report.fail(ARCHIVE, detail);
            report.skip_rest("the archive cannot be read");
            return Ok(());
        }
    };
    let (admin, server) = match &opts.target {
        Target::Ephemeral => (None, None),
        Target::SourceServer | Target::Url(_) => {
            let conn = match &opts.target {
                Target::Url(conn) => conn,
                _ => &opts.conn,
            };
            let connected = signals
                .guard(async {
                    let client = client::connect(conn).await?;
                    let version = client::server_version(&client).await?;
                    Ok((client, version))
                })
                .await;
            match connected {
                Ok((client, version)) => (Some((conn.clone(), client)), Some(version)),
                Err(err) if crate::error::exit_code(&err) != crate::error::FAILED => {
                    return Err(err)
                }
                Err(err) => {
                    report.fail(TEMP_DB, crate::error::one_line(&err));
                    report.skip_rest("no server to restore into");
                    report.could_not_run = Some(crate::error::one_line(&err));
                    return Ok(());
                }
            }
        }
    };
    let tools =
        match archive::pick_tools(opts.pg_bin_dir.as_deref(), &header, meta, server.as_ref()) {
            Ok(tools) => tools,
            Err(detail) => {
                report.fail(ARCHIVE, detail);
                report.skip_rest("no pg_restore that can read the archive");
                return Ok(());
            }
        };
    let plain = source.for_list()?;
    let listed = signals.guard(pg_restore::list(&tools, plain.input())).await;
    let listed = match (listed?, plain.finish()) {
        (Ok(_), Err(err)) if source.encrypted() => Err(crate::error::one_line(&err)),
        (listed, _) => listed,
    };
    let listing = match listed {
        Ok(listing) => {
            report.pass(
                ARCHIVE,
                format!(
                    "pg_restore --list reads {} entries ({} with table data); archive format {}, {} compression, pg_restore {}{}",
                    listing.entries,
                    listing.table_data,
                    header.version_text(),
                    header.compression.name(),
                    tools.version,
                    if source.encrypted() {
                        "; age-encrypted, decrypted on the way"
                    } else {
                        ""
                    }
                ),
            );
            listing
        }
        Err(detail) => {
            report.fail(ARCHIVE, detail);
            report.skip_rest("the archive cannot be read");
            return Ok(());
        }
    };

    if meta.is_some_and(|m| m.mode == "data") {
        // Rows without tables: there is nothing to restore them into.
        report.skip_rest(
            "a data-only backup cannot be restored on its own (it creates no tables); \
             verify the full backup of the same database",
        );
        return Ok(());
    }

    // 4: the temporary database (for --ephemeral, after the globals, when there are some).
    let mut owners = false;
    let (admin_conn, admin_client, server) = match admin {
        Some((conn, client)) => (conn, client, server),
        None => {
            let cluster = match signals
                .guard(Ephemeral::start(&tools, opts.no_cleanup))
                .await
            {
                Ok(cluster) => cluster,
                Err(err) if crate::error::exit_code(&err) != crate::error::FAILED => {
                    return Err(err)
                }
                Err(err) => {
                    report.fail(TEMP_DB, crate::error::one_line(&err));
                    report.skip_rest("no server to restore into");
                    report.could_not_run = Some(crate::error::one_line(&err));
                    return Ok(());
                }
            };
            let conn = cluster.conn("postgres");
            *place = Some(Place {
                admin: conn.clone(),
                database: None,
                cluster: Some(cluster),
                lock_holder: None,
            });
            let client = signals.guard(client::connect(&conn)).await?;
            let version = client::server_version(&client).await?;
            owners = super::globals::into_ephemeral(
                &client,
                located,
                meta,
                opts.identity_file.as_deref(),
            )
            .await;
            (conn, client, Some(version))
        }
    };
    report.target = Some(match place.as_ref().and_then(|p| p.cluster.as_ref()) {
        Some(cluster) => format!("throwaway cluster in {}", cluster.dir.display()),
        None => admin_conn.endpoint(),
    });
    let base = meta
        .map(|m| m.database.clone())
        .or_else(|| {
            located
                .dump
                .file_name()
                .and_then(|n| BackupName::parse(&n.to_string_lossy()))
                .map(|n| n.database)
        })
        .unwrap_or_else(|| opts.conn.dbname.clone());
    if place.as_ref().is_none_or(|p| p.cluster.is_none()) {
        sweep_dead_runs(&admin_client).await;
    }
    // The place is known before CREATE DATABASE runs: a signal in between still drops it.
    let slot = &mut place
        .get_or_insert_with(|| Place {
            admin: admin_conn.clone(),
            database: None,
            cluster: None,
            lock_holder: None,
        })
        .database;
    let temp_name = match signals
        .guard(create_temp_db(&admin_client, &base, &admin_conn, slot))
        .await?
    {
        Ok(name) => name,
        Err(detail) => {
            report.fail(TEMP_DB, detail);
            report.skip_rest("no temporary database");
            return Ok(());
        }
    };
    report.temp_database = Some(temp_name.clone());
    report.pass(
        TEMP_DB,
        format!(
            "{} on {}",
            quote_ident(&temp_name),
            report.target.clone().unwrap_or_default()
        ),
    );
    // The session that created it holds its advisory lock until the run ends:
    // no other run's sweep drops a live run's database.
    if let Some(place) = place.as_mut() {
        place.lock_holder = Some(admin_client);
    }

    // 5: the restore, after making sure the server has every extension the archive needs.
    let copy_conn = admin_conn.with_dbname(&temp_name);
    let server_major = server.as_ref().map_or(tools.major, ServerVersion::major);
    let source_extensions: BTreeSet<String> = match meta {
        Some(meta) => meta.extensions.keys().cloned().collect(),
        None => listing.extensions.iter().cloned().collect(),
    };
    let copy = signals.guard(client::connect(&copy_conn)).await?;
    let missing = unavailable_extensions(&copy, &source_extensions).await?;
    if !missing.is_empty() {
        report.fail(
            RESTORE,
            format!(
                "the verify server ({}) lacks the extension(s) {}: {}",
                report.target.clone().unwrap_or_default(),
                missing.join(", "),
                install_hint(&missing, server_major)
            ),
        );
        report.skip_rest("the restore could not run");
        return Ok(());
    }
    let restore_clock = Instant::now();
    let (plain, jobs) = match signals.guard(source.for_restore(opts.jobs)).await {
        Ok(opened) => opened,
        Err(err) if crate::error::exit_code(&err) != crate::error::FAILED => return Err(err),
        Err(err) => {
            report.fail(RESTORE, crate::error::one_line(&err));
            report.skip_rest("the archive could not be decrypted");
            return Ok(());
        }
    };
    ui::info(&format!(
        "restoring into {} with {} jobs (maintenance_work_mem {})",
        quote_ident(&temp_name),
        jobs,
        opts.maintenance_work_mem
    ));
    let mut outcome = pg_restore::restore(
        &RestoreJob {
            tools: &tools,
            conn: &copy_conn,
            input: plain.input(),
            jobs,
            maintenance_work_mem: &opts.maintenance_work_mem,
            list_file: None,
            schemas: &[],
            owners,
        },
        signals,
    )
    .await?;
    if let Err(err) = plain.finish() {
        outcome.errors.push(crate::error::one_line(&err));
    }
    for warning in pg_restore::distinct(&outcome.warnings) {
        ui::warn(&format!("pg_restore (harmless): {warning}"));
    }
    report.pg_restore_warnings = outcome.warnings.clone();
    if outcome.succeeded() && !outcome.not_created.is_empty() {
        // The rows are there, but a copy without its policies is not the backup.
        report.fail(
            RESTORE,
            format!(
                "pg_restore could not create {} object(s) because a role they name does not \
                 exist on the verify server: {}. Create the roles first (a globals backup, \
                 `pgbak restore --all-databases`), or verify with --target-url on a server \
                 that has them",
                outcome.not_created.len(),
                outcome.not_created.join(", ")
            ),
        );
    } else if outcome.succeeded() {
        report.pass(
            RESTORE,
            format!(
                "pg_restore finished in {:.1}s ({} harmless warning(s))",
                restore_clock.elapsed().as_secs_f64(),
                outcome.warnings.len()
            ),
        );
    } else {
        let mut detail = pg_restore::failure(&outcome).to_string();
        if let Some(ext) = outcome.missing_extension() {
            detail = format!(
                "{detail}. {}",
                install_hint(std::slice::from_ref(&ext), server_major)
            );
        }
        report.fail(RESTORE, detail);
    }

    // 6-14: the copy against the expectations and meta.json, racing the stop
    // signals (a count can wait on a lock). A copy that cannot be read (the
    // server went away) fails the checks; the report still prints.
    let checked = signals
        .guard(check_copy(
            &copy,
            opts,
            meta,
            &source_extensions,
            server_major,
            report,
        ))
        .await;
    if let Err(err) = checked {
        // A stop (signal or --timeout) is no verdict on the copy.
        if crate::error::exit_code(&err) != crate::error::FAILED
            || crate::signals::pending().is_some()
        {
            return Err(err);
        }
        let detail = format!(
            "reading the restored copy: {}",
            crate::error::one_line(&err)
        );
        for name in COPY_CHECKS {
            if !report.checks.iter().any(|c| c.name == *name) {
                report.fail(name, detail.clone());
            }
        }
    }
    Ok(())
}

/// Checks 6-14 on the restored copy: expected tables, row counts, extensions,
/// alembic, then the schema objects.
async fn check_copy(
    copy: &tokio_postgres::Client,
    opts: &VerifyOptions,
    meta: Option<&Meta>,
    source_extensions: &BTreeSet<String>,
    copy_major: u32,
    report: &mut Report,
) -> Result<()> {
    let present = present_tables(copy).await?;
    let mut expected: BTreeSet<(String, String)> = opts.expected_tables.iter().cloned().collect();
    if let Some(meta) = meta {
        expected.extend(
            meta.tables
                .iter()
                .map(|t| (t.schema.clone(), t.name.clone())),
        );
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|t| !present.contains(*t))
        .map(|(s, t)| format!("{s}.{t}"))
        .collect();
    if missing.is_empty() {
        report.pass(TABLES, format!("all {} present", expected.len()));
    } else {
        report.fail(
            TABLES,
            format!(
                "{} of {} missing: {}",
                missing.len(),
                expected.len(),
                missing.join(", ")
            ),
        );
    }

    match meta {
        None => report.skip(ROWS, "no meta.json to compare with"),
        Some(meta) if meta.tables.iter().all(|t| t.rows.is_none()) => report.skip(
            ROWS,
            format!("a {} backup records no row counts", meta.mode),
        ),
        Some(meta) => {
            let mut mismatches = Vec::new();
            let mut total = 0u64;
            for table in meta.tables.iter() {
                let Some(want) = table.rows else { continue };
                let have = if present.contains(&(table.schema.clone(), table.name.clone())) {
                    count_rows(copy, &table.schema, &table.name).await?
                } else {
                    None
                };
                match have {
                    Some(have) if have == want => total += have,
                    Some(have) => mismatches.push(format!(
                        "{}.{}: {want} in meta.json, {have} restored",
                        table.schema, table.name
                    )),
                    None => mismatches.push(format!(
                        "{}.{}: {want} in meta.json, table missing",
                        table.schema, table.name
                    )),
                }
            }
            if mismatches.is_empty() {
                report.pass(
                    ROWS,
                    format!(
                        "{} tables, {total} rows, equal to meta.json",
                        meta.tables.len()
                    ),
                );
            } else {
                report.fail(ROWS, mismatches.join("; "));
            }
        }
    }

    let copy_extensions = client::extensions(copy).await?;
    let absent: Vec<&String> = source_extensions
        .iter()
        .filter(|e| !copy_extensions.contains_key(*e))
        .collect();
    if absent.is_empty() {
        let listed: Vec<String> = source_extensions
            .iter()
            .map(|e| {
                format!(
                    "{e} {}",
                    copy_extensions.get(e).cloned().unwrap_or_default()
                )
            })
            .collect();
        report.pass(EXTENSIONS, listed.join(", "));
    } else {
        report.fail(
            EXTENSIONS,
            format!(
                "missing in the copy: {}",
                absent
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    match meta {
        None => report.skip(ALEMBIC, "no meta.json to compare with"),
        Some(meta) if meta.mode == "schema" => report.skip(
            ALEMBIC,
            "a schema backup holds no rows, alembic_version's included",
        ),
        Some(meta) => {
            let have = client::alembic_revision(copy).await.ok().flatten();
            if have == meta.alembic_revision {
                report.pass(
                    ALEMBIC,
                    have.map_or_else(
                        || "no alembic_version, as in meta.json".to_owned(),
                        |r| format!("{r}, as in meta.json"),
                    ),
                );
            } else {
                report.fail(
                    ALEMBIC,
                    format!(
                        "the copy has {}, meta.json says {}",
                        have.as_deref().unwrap_or("none"),
                        meta.alembic_revision.as_deref().unwrap_or("none")
                    ),
                );
            }
        }
    }
    check_schema_objects(copy, meta, copy_major, report).await
}

/// Checks 10-14: every index, constraint, trigger, policy and sequence that
/// meta.json recorded is in the copy, defined the same way (when both servers
/// are of one major version), and no sequence is behind.
async fn check_schema_objects(
    copy: &tokio_postgres::Client,
    meta: Option<&Meta>,
    copy_major: u32,
    report: &mut Report,
) -> Result<()> {
    let recorded = match meta {
        None => {
            for kind in Kind::ALL {
                report.skip(schema_check(kind), "no meta.json to compare with");
            }
            return Ok(());
        }
        Some(meta) => match &meta.schema_objects {
            Some(recorded) => recorded,
            None => {
                for kind in Kind::ALL {
                    report.skip(
                        schema_check(kind),
                        "meta.json records no schema objects (written by a pgbak that did not \
                         record them): not compared",
                    );
                }
                return Ok(());
            }
        },
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
    for (kind, outcome) in catalog::compare(recorded, &copy_objects, depth) {
        let name = schema_check(kind);
        if outcome.problems.is_empty() {
            let what = if kind == Kind::Sequence {
                "present, none behind meta.json"
            } else if depth == Depth::Definitions {
                "present, defined as in meta.json"
            } else {
                "present"
            };
            report.pass(
                name,
                format!("{} {}, {what}{across}", outcome.recorded, kind.plural()),
            );
        } else {
            report.fail(name, listed(&outcome.problems, 10));
        }
    }
    Ok(())
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

/// `<db>_verify_<UTC ts>`, cut to PostgreSQL's 63-byte limit on a character boundary.
pub fn temp_db_name(base: &str, at: chrono::DateTime<Utc>) -> String {
    let suffix = format!("_verify_{}", at.format("%Y%m%dT%H%M%S"));
    let mut base = base.to_owned();
    while base.len() + suffix.len() > 63 - 3 {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// Creates the temporary database from template0 (nothing preinstalled to
/// collide with the archive). Ok(name), or Err(detail) for the report.
async fn create_temp_db(
    client: &tokio_postgres::Client,
    base: &str,
    conn: &ConnSettings,
    slot: &mut Option<String>,
) -> Result<Result<String, String>> {
    let first = temp_db_name(base, Utc::now());
    for attempt in 1..=9 {
        let name = if attempt == 1 {
            first.clone()
        } else {
            format!("{first}_{attempt}")
        };
        *slot = Some(name.clone());
        let sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name));
        let created = client.batch_execute(&sql).await;
        if created.is_err() {
            // Not ours (taken by another verify, or never created): never drop it.
            *slot = None;
        }
        match created {
            Ok(()) => {
                mark_owner(client, &name).await;
                return Ok(Ok(name));
            }
            Err(err) if err.code() == Some(&SqlState::DUPLICATE_DATABASE) => continue,
            Err(err) if err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                return Ok(Err(format!(
                    "user {:?} may not create databases on {}: grant CREATEDB, or verify with \
                     --target-url (another server) or --ephemeral (a throwaway local cluster)",
                    conn.user,
                    conn.endpoint()
                )))
            }
            Err(err) => {
                return Ok(Err(format!(
                    "creating {} on {}: {}",
                    quote_ident(&name),
                    conn.endpoint(),
                    err.as_db_error()
                        .map_or_else(|| err.to_string(), |d| d.message().to_owned())
                )))
            }
        }
    }
    Ok(Err(format!(
        "creating {first}: every variant of the name is taken on {}",
        conn.endpoint()
    )))
}

/// The comment that marks a temporary database as a live verify's. The mark
/// is for people; what decides is the advisory lock below.
fn owner_mark() -> String {
    format!(
        "{OWNER_MARK}{} on {}",
        std::process::id(),
        crate::settings::host_name()
    )
}

const OWNER_MARK: &str = "pgbak verify: pid ";

/// High half of the advisory lock key a live verify holds for its temporary
/// database ("pgbx"); the low half is the database's oid. pg_locks shows it
/// as classid = this, objid = oid, objsubid = 1, from any database and host.
const LOCK_CLASS: i64 = 0x7067_6278;

/// Takes the session-level advisory lock for `db` on `client` (a session
/// that lives as long as the run), then writes the mark. A run that dies
/// (SIGKILL, power loss, a lost host) loses its session and so its lock.
async fn mark_owner(client: &tokio_postgres::Client, db: &str) {
    let locked = client
        .execute(
            "SELECT pg_advisory_lock(($1::bigint << 32) | oid::bigint) \
               FROM pg_database WHERE datname = $2",
            &[&LOCK_CLASS, &db],
        )
        .await;
    if let Err(err) = locked {
        // Unmarked, it is never swept: a leftover, never a lost live database.
        ui::debug(&format!("locking {db} as this run's: {err}"));
        return;
    }
    let sql = format!(
        "COMMENT ON DATABASE {} IS '{}'",
        quote_ident(db),
        owner_mark().replace('\'', "''")
    );
    if let Err(err) = client.batch_execute(&sql).await {
        ui::debug(&format!("marking {db} as this run's: {err}"));
    }
}

/// Drops temporary databases that verify runs left when they were killed:
/// marked ones whose run no longer holds its advisory lock, whichever host
/// or output directory that run had. Databases kept with --no-cleanup carry
/// no mark and stay.
async fn sweep_dead_runs(client: &tokio_postgres::Client) {
    let rows = match client
        .query(
            "SELECT d.datname::text, shobj_description(d.oid, 'pg_database') FROM pg_database d \
              WHERE shobj_description(d.oid, 'pg_database') LIKE 'pgbak verify: pid %' \
                AND NOT EXISTS (SELECT 1 FROM pg_locks l \
                                 WHERE l.locktype = 'advisory' AND l.granted \
                                   AND l.classid = $1::bigint::oid AND l.objid = d.oid \
                                   AND l.objsubid = 1)",
            &[&LOCK_CLASS],
        )
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            ui::debug(&format!("looking for leftover temporary databases: {err}"));
            return;
        }
    };
    for row in rows {
        let (db, comment): (String, String) = (row.get(0), row.get(1));
        ui::info(&format!(
            "dropping the temporary database {} left by a verify run that died ({comment})",
            quote_ident(&db)
        ));
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&db));
        if let Err(err) = client.batch_execute(&sql).await {
            ui::warn(&format!("could not drop {}: {err}", quote_ident(&db)));
        }
    }
}

/// Drops the temporary database and stops the cluster, or with --no-cleanup
/// says what was left and how to remove it.
async fn remove_place(opts: &VerifyOptions, place: Place, report: &mut Report) {
    if opts.no_cleanup {
        let mut left = Vec::new();
        if let Some(db) = &place.database {
            // Kept on purpose: unmark it so no later run sweeps it away.
            if let Ok(client) = client::connect(&place.admin).await {
                let sql = format!(
                    "COMMENT ON DATABASE {} IS 'pgbak verify --no-cleanup'",
                    quote_ident(db)
                );
                let _ = client.batch_execute(&sql).await;
            }
            left.push(format!(
                "temporary database {} on {} (drop it with: psql -d postgres -c 'DROP DATABASE {} WITH (FORCE)')",
                quote_ident(db),
                place.admin.endpoint(),
                quote_ident(db).replace('\'', "'\\''")
            ));
        }
        if let Some(cluster) = place.cluster {
            left.push(format!(
                "throwaway cluster in {} (socket there, port {}; remove it with: {})",
                cluster.dir.display(),
                place.admin.port,
                cluster.removal_hint()
            ));
            cluster.leave();
        }
        let text = left.join("; ");
        ui::warn(&format!("--no-cleanup: left {text}"));
        report.left_in_place = Some(text);
        return;
    }
    if let Some(cluster) = place.cluster {
        // Removing the cluster removes the database with it.
        if let Err(err) = cluster.remove().await {
            ui::warn(&format!(
                "removing the throwaway cluster: {}",
                crate::error::one_line(&err)
            ));
        }
        return;
    }
    if let Some(db) = &place.database {
        if let Err(err) = drop_database(&place.admin, db).await {
            ui::error(&format!(
                "could not drop the temporary database {} on {}: {} (drop it by hand: DROP DATABASE {} WITH (FORCE))",
                quote_ident(db),
                place.admin.endpoint(),
                crate::error::one_line(&err),
                quote_ident(db)
            ));
        } else {
            ui::info(&format!(
                "dropped the temporary database {}",
                quote_ident(db)
            ));
        }
    }
}

/// `DROP DATABASE ... WITH (FORCE)` over a fresh connection (the old one may be gone).
pub async fn drop_database(admin: &ConnSettings, db: &str) -> Result<()> {
    let client = client::connect(admin).await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(db)
        ))
        .await
        .with_context(|| format!("dropping {}", quote_ident(db)))
}

async fn unavailable_extensions(
    client: &tokio_postgres::Client,
    wanted: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let rows = client
        .query("SELECT name::text FROM pg_available_extensions", &[])
        .await
        .context("listing the server's available extensions")?;
    let available: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(wanted
        .iter()
        .filter(|e| !available.contains(*e))
        .cloned()
        .collect())
}

/// What to install for missing extensions (pgvector's package is named after it).
pub fn install_hint(missing: &[String], server_major: u32) -> String {
    let packages: Vec<String> = missing
        .iter()
        .map(|e| match e.as_str() {
            "vector" => format!("postgresql-{server_major}-pgvector"),
            other => format!("the package providing {other} for PostgreSQL {server_major}"),
        })
        .collect();
    format!(
        "install {} on that server (Debian/Ubuntu, PGDG repository), or verify with --target-url / --ephemeral where it is installed",
        packages.join(", ")
    )
}

async fn present_tables(client: &tokio_postgres::Client) -> Result<BTreeSet<(String, String)>> {
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

async fn count_rows(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Option<u64>> {
    let sql = format!(
        "SELECT count(*) FROM ONLY {}",
        client::qualified(schema, table)
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .with_context(|| format!("counting rows of {schema}.{table} in the copy"))?;
    let n: i64 = row.get(0);
    Ok(u64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn temp_names_fit_postgres_limit() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap();
        assert_eq!(
            temp_db_name("enterprise_agents", at),
            "enterprise_agents_verify_20261125T020000"
        );
        let long = temp_db_name(&"é".repeat(40), at);
        assert!(long.len() <= 60, "{}", long.len());
        assert!(long.ends_with("_verify_20261125T020000"));
    }

    #[test]
    fn expected_tables_default_to_public() {
        assert_eq!(split_table("users"), ("public".into(), "users".into()));
        assert_eq!(split_table("app.users"), ("app".into(), "users".into()));
    }

    #[test]
    fn pgvector_hint_names_the_package_for_the_server() {
        let hint = install_hint(&["vector".to_owned()], 16);
        assert!(hint.contains("postgresql-16-pgvector"), "{hint}");
    }
}
