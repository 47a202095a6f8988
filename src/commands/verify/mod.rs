//! `pgbak verify`: prove a backup restores.
//!
//! The checks, in order, each printed as one PASS/FAIL line:
//! 1. meta.json is there and readable (without it the checks that need it are skipped, and
//!    verify fails: a backup without its meta.json is not complete);
//! 2. SHA-256 and size equal meta.json, before anything else: a truncated dump can still
//!    pass `pg_restore --list` (`--jobs 1` from S3: streamed into pg_restore, settled at its end);
//! 3. the archive is readable: `PGDMP` header, a pg_restore new enough and built with the
//!    archive's compression, `pg_restore --list`;
//! 4. a temporary database `<db>_verify_<UTC ts>` is created: on the source server, on
//!    `--target-url`, or in a throwaway `--ephemeral` cluster (where the globals backup
//!    beside the dump is replayed first, so the roles policies name exist), owned by a
//!    throwaway unprivileged role that pg_restore logs in as: the dump's code never runs
//!    with more privilege than that role's (none);
//! 5. pg_restore succeeds (harmless warnings allowed), after pgbak created the archive's
//!    extensions itself;
//! 6. the expected tables exist; 7. every table's row count equals meta.json;
//! 8. every extension of the source exists; 9. the alembic revision equals meta.json;
//! 10. to 14. every index, constraint, trigger, row-level security policy and switch,
//!     and sequence meta.json recorded is in the copy, defined the same way (same
//!     server major) and, for sequences, not behind (`pg::catalog`).
//!
//! This file runs the steps; `report.rs` holds the checks' outcomes, `target.rs`
//! where the copy goes (and its removal), `checks.rs` checks 6 to 14. The checks on
//! the copy race the stop signals. The temporary database (or cluster) is removed on
//! every way out, signals included, unless `--no-cleanup`. The result, with the names
//! of the failed checks, is recorded where the backup lives: a `<stem>.verify.json`
//! verdict beside it (under the S3 prefix for a backup read from the bucket, in the
//! directory for a local file, whose meta.json's `verification` gets it too).

mod checks;
mod drill;
pub mod fresh;
mod report;
pub mod reprove;
mod target;
mod timing;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};

use crate::archive::restore::{self, Restored};
use crate::archive::{self, Backup, Located, MetaState, Untrusted};
use crate::meta::{Meta, Verification, VerifyTiming};
use crate::mode::Mode;
use crate::pg::client::{self, quote_ident};
use crate::pg::restore::{self as pg_restore, Listing, RestoreJob};
use crate::pg::tools::PgTools;
use crate::settings::commands::Output;
use crate::settings::verify::VerifySettings;
use crate::signals::Signals;
use crate::storage::Destination;
use crate::ui;

pub use crate::settings::verify::{split_table, Target, VerifyOptions};
pub use report::{Check, CheckId, Report, Status};
use target::{Prepared, Server, TempTarget};

/// Verifies the backup `settings` names, read from the first of `from` (the
/// destinations, in order) that holds good bytes of it.
pub async fn run(settings: VerifySettings, from: &[Destination]) -> Result<ExitCode> {
    if settings.check_config {
        ui::info(&format!(
            "configuration OK: verify {} from {}",
            if settings.all_databases.is_some() {
                "a whole --all-databases run"
            } else {
                "one backup"
            },
            from.iter()
                .map(|d| d.store.describe())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(wanted) = &settings.all_databases {
        return drill::run(&settings.options, wanted, from, settings.output).await;
    }
    let mut signals = Signals::new()?;
    // Raced with the signals: a download stopped midway leaves nothing (its directory goes).
    let stream = settings.options.jobs == 1;
    let located = archive::locate_streaming(&settings.backup, from, &|_| Ok(()), stream);
    let located = signals.guard(located).await?;
    let report = verify_located(&settings.options, located, &mut signals).await?;
    if settings.output == Output::Json {
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
    verify_located(opts, Located::local(dump), signals).await
}

/// One verify's inputs, read-only for every step.
pub(super) struct Verifying<'a> {
    opts: &'a VerifyOptions,
    backup: &'a Backup,
}

impl Verifying<'_> {
    fn meta(&self) -> Option<&Meta> {
        self.backup.meta()
    }

    fn located(&self) -> &Located {
        &self.backup.located
    }
}

pub async fn verify_located(
    opts: &VerifyOptions,
    located: Located,
    signals: &mut Signals,
) -> Result<Report> {
    let clock = Instant::now();
    let mut report = Report::new(&located);
    ui::info(&format!("verifying {}", located.dump.display()));
    // A missing or wrong identity is a usage error (exit 2) before anything is touched.
    let backup = Backup::open(located, &opts.decrypt())?;
    let run = Verifying {
        opts,
        backup: &backup,
    };
    let mut place: Option<TempTarget> = None;
    let outcome = run_checks(&run, signals, &mut report, &mut place).await;
    if let Some(place) = place {
        target::remove(opts.no_cleanup, place, &mut report).await;
    }
    outcome?;
    report.passed = report.failed().is_empty();
    report.duration_seconds = (clock.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let located = &backup.located;
    report::summarize(&report, located);
    if opts.record && report.could_not_run.is_none() {
        if let MetaState::Read(meta) = &backup.meta_state {
            record(meta, located, &verification_of(&report)).await;
        }
    }
    if let (Some(path), MetaState::Read(meta)) = (&opts.metrics_file, &backup.meta_state) {
        timing::write_metric(path, meta, &report);
    }
    Ok(report)
}

/// The verdict of a finished verify.
fn verification_of(report: &Report) -> Verification {
    Verification {
        verified_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        passed: report.passed,
        pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
        failed_checks: report
            .failed()
            .into_iter()
            .map(|c| c.name().to_owned())
            .collect(),
        timing: report.timing.clone(),
    }
}

/// Records the verdict where the backup lives (its store: a
/// `<stem>.verify.json` beside it; in a directory also in its meta.json's
/// `verification`, atomically, the other keys as they were), and at every
/// other destination that holds it. A failure is a warning (an error line
/// when it could be recorded nowhere): the verdict is still the exit code.
async fn record(meta: &Meta, located: &Located, verification: &Verification) {
    let mut failed = 0;
    for origin in located.origin.iter().chain(&located.also) {
        match origin
            .store
            .record_verdict(&origin.file, meta, verification)
            .await
        {
            Ok(Some(place)) => ui::info(&format!("verdict recorded in {place}")),
            Ok(None) => {}
            Err(err) => {
                failed += 1;
                ui::warn(&format!(
                    "could not record the verdict beside {}: {}",
                    origin.store.address(&origin.file),
                    crate::error::one_line(&err)
                ));
            }
        }
    }
    if failed > 0 && failed == located.origin.iter().count() + located.also.len() {
        ui::error(&format!(
            "the verdict on {} could be recorded at no destination",
            located.dump.display()
        ));
    }
}

/// The steps; each either goes on or has already said in the report why the
/// rest is skipped. `Err` is an interruption or a fault of pgbak's own.
async fn run_checks(
    run: &Verifying<'_>,
    signals: &mut Signals,
    report: &mut Report,
    place: &mut Option<TempTarget>,
) -> Result<()> {
    if !meta_and_checksum(run, signals, report).await? {
        return Ok(());
    }
    let Some(mut archive) = open_archive(run, signals, report).await? else {
        return Ok(());
    };
    if run.meta().is_some_and(|m| m.mode == Mode::Data) {
        // Rows without tables: there is nothing to restore them into.
        report.skip_rest(
            "a data-only backup cannot be restored on its own (it creates no tables, indexes \
             or policies); verify the full backup of the same database",
        );
        return Ok(());
    }
    let Some(prepared) = target::prepare(
        run,
        archive.server.take(),
        &archive.tools,
        signals,
        report,
        place,
    )
    .await?
    else {
        return Ok(());
    };
    let extensions = run.backup.wanted_extensions(&archive.listing);
    let copy = signals.guard(client::connect(&prepared.copy_conn)).await?;
    let restored = restore_copy(
        run,
        &archive,
        &prepared,
        &copy,
        &extensions,
        signals,
        report,
    );
    let restored = restored.await?;
    report.settle_streamed(run.located())?;
    if !restored {
        return Ok(());
    }
    check_copy(run, &prepared, &copy, &extensions, signals, report).await
}

/// Checks 1-2: meta.json, and the checksum before anything reads the archive.
/// False when the file does not match its checksum (the rest is skipped).
async fn meta_and_checksum(
    run: &Verifying<'_>,
    signals: &mut Signals,
    report: &mut Report,
) -> Result<bool> {
    // A plaintext object where an encrypted one belongs, or a meta.json not
    // signed by a trusted key: the backup cannot be believed, nothing more is read.
    let untrusted = |report: &mut Report, id: CheckId, why: String| {
        report.fail(id, why);
        report.skip_rest("the backup cannot be trusted");
        Ok(false)
    };
    let trust = run.backup.authentic(&run.opts.decrypt());
    match (&run.backup.meta_state, trust) {
        (_, Err(Untrusted::Plaintext(why))) => return untrusted(report, CheckId::Checksum, why),
        (_, Err(Untrusted::Signature(why))) => return untrusted(report, CheckId::Meta, why),
        (MetaState::Read(_), Ok(trusted)) => report.pass(
            CheckId::Meta,
            format!(
                "{}; {trusted}",
                run.located()
                    .meta_path
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string())
            ),
        ),
        (MetaState::Unavailable(why), Ok(_)) => {
            report.fail(
                CheckId::Meta,
                format!(
                    "{why}; without it these checks are skipped: {}, {}, {} and the schema \
                     objects (extensions are taken from the archive)",
                    CheckId::Checksum,
                    CheckId::Rows,
                    CheckId::Alembic
                ),
            );
            report.skip(CheckId::Checksum, "no meta.json to compare with");
            return Ok(true);
        }
    }
    if run.located().stream.is_some() {
        return Ok(true); // Known once the dump has streamed (Report::settle_streamed).
    }
    let checked = run.backup.checksum(signals).await;
    match report.settle(
        CheckId::Checksum,
        checked,
        "the file does not match its checksum",
    )? {
        Some(detail) => {
            report.pass(CheckId::Checksum, detail.unwrap_or_default());
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The archive, readable, and the server to restore into (None for --ephemeral).
struct Opened {
    tools: PgTools,
    listing: Listing,
    server: Option<Server>,
}

/// Check 3: the header, the target server (its version decides the tools),
/// a pg_restore that reads the archive, and its table of contents.
async fn open_archive(
    run: &Verifying<'_>,
    signals: &mut Signals,
    report: &mut Report,
) -> Result<Option<Opened>> {
    let backup = run.backup;
    let unreadable = "the archive cannot be read";
    let Some(header) = report.settle(CheckId::Archive, backup.header(), unreadable)? else {
        return Ok(None);
    };
    let server = match run.opts.target {
        Target::Ephemeral => None,
        Target::SourceServer | Target::Url(_) => match target::connect(run, signals, report).await?
        {
            Some(server) => Some(server),
            None => return Ok(None),
        },
    };
    let tools = backup.tools(
        &header,
        run.opts.pg_bin_dir.as_deref(),
        server.as_ref().map(|s| &s.version),
    );
    let no_tools = "no pg_restore that can read the archive";
    let Some(tools) = report.settle(CheckId::Archive, tools, no_tools)? else {
        return Ok(None);
    };
    let listing = backup.list(&tools, signals).await;
    let Some(listing) = report.settle(CheckId::Archive, listing, unreadable)? else {
        return Ok(None);
    };
    report.pass(CheckId::Archive, backup.describe(&header, &listing, &tools));
    Ok(Some(Opened {
        tools,
        listing,
        server,
    }))
}

/// Check 5: pg_restore into the temporary database, after making sure the
/// server has every extension the archive needs. False when it could not run.
async fn restore_copy(
    run: &Verifying<'_>,
    archive: &Opened,
    prepared: &Prepared,
    copy: &tokio_postgres::Client,
    extensions: &BTreeSet<String>,
    signals: &mut Signals,
    report: &mut Report,
) -> Result<bool> {
    if let Some(missing) =
        client::missing_extensions(copy, extensions, prepared.server_major).await?
    {
        report.fail(
            CheckId::Restore,
            format!(
                "the verify server ({}) {missing}, {ELSEWHERE}",
                report.target.clone().unwrap_or_default()
            ),
        );
        report.skip_rest("the restore could not run");
        return Ok(false);
    }
    // Created by pgbak itself, as the connecting role: the throwaway role
    // that restores may not create most extensions.
    let created = signals
        .guard(create_extensions(run, archive, prepared, copy, extensions))
        .await;
    if report
        .settle(CheckId::Restore, created, "the restore could not run")?
        .is_none()
    {
        return Ok(false);
    }
    let (plain, jobs) = match run.backup.readable(run.opts.jobs, signals).await {
        Ok(opened) => opened,
        Err(err) if crate::error::exit_code(&err) != crate::error::FAILED => return Err(err),
        Err(err) => {
            report.fail(CheckId::Restore, crate::error::one_line(&err));
            report.skip_rest("the archive could not be decrypted");
            return Ok(false);
        }
    };
    ui::info(&format!(
        "restoring into {} with {} jobs (maintenance_work_mem {})",
        quote_ident(&prepared.name),
        jobs,
        run.opts.maintenance_work_mem
    ));
    // As the throwaway role, logged in as it: no code of the dump runs with
    // more than that role's privilege (none); no owners, privileges or
    // tablespaces, which it could not set anyway, and not the entries only a
    // superuser (or an extension's owner) may create (named in the verdict).
    let (toc, left_out) = pg_restore::superuser_only(&archive.listing.toc);
    let list_file = write_list(&toc)?;
    let mwm = &run.opts.maintenance_work_mem;
    let job = RestoreJob {
        list_file: Some(list_file.path()),
        ..RestoreJob::new(&archive.tools, &prepared.restore_conn, jobs, mwm)
    };
    let mut restored = restore::restore(plain, &job, prepared.server_major, signals).await?;
    let outcome = &mut restored.verdict;
    for object in left_out {
        if !outcome.needs_superuser.contains(&object) {
            outcome.needs_superuser.push(object);
        }
    }
    report.pg_restore_warnings = outcome.warnings.clone();
    report.timing = Some(VerifyTiming {
        restore_seconds: timing::hundredths(restored.duration),
        verify_seconds: 0.0,
        jobs,
        bytes: run.meta().map_or_else(
            || std::fs::metadata(&run.located().dump).map_or(0, |m| m.len()),
            |m| m.size_bytes,
        ),
    });
    report_restore(&restored, report);
    Ok(true)
}

/// Where else a backup can be verified when this server lacks an extension.
const ELSEWHERE: &str = "or verify with --target-url / --ephemeral where it is installed";

/// Check 5's line: passed (naming what only a superuser could create),
/// failed, or restored without the objects a missing role names.
fn report_restore(restored: &Restored, report: &mut Report) {
    let outcome = &restored.verdict;
    if let Some(failure) = &restored.failure {
        let detail = match &restored.missing {
            Some(missing) => format!("{failure}. {}, {ELSEWHERE}", missing.install_hint()),
            None => failure.clone(),
        };
        report.fail(CheckId::Restore, detail);
    } else if !outcome.not_created.is_empty() {
        // The rows are there, but a copy without its policies is not the backup.
        report.fail(
            CheckId::Restore,
            format!(
                "pg_restore could not create {} object(s) because a role they name does not \
                 exist on the verify server: {}. Create the roles first (a globals backup, \
                 `pgbak restore --all-databases`), or verify with --target-url on a server \
                 that has them",
                outcome.not_created.len(),
                outcome.not_created.join(", ")
            ),
        );
    } else {
        let mut detail = format!(
            "pg_restore finished in {:.1}s ({} harmless warning(s))",
            restored.duration.as_secs_f64(),
            outcome.warnings.len()
        );
        if !outcome.needs_superuser.is_empty() {
            // Not in the copy, and no check covers them: named, not failed.
            detail.push_str(&format!(
                "; not created in the copy because only a superuser may create them and verify \
                 restores as an unprivileged role: {}",
                outcome.needs_superuser.join(", ")
            ));
        }
        report.pass(CheckId::Restore, detail);
    }
}

/// A table of contents for pg_restore's `--use-list`, in a temporary file.
fn write_list(toc: &str) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().context("writing the restore's TOC list")?;
    file.write_all(toc.as_bytes())
        .context("writing the restore's TOC list")?;
    Ok(file)
}

/// The extensions the archive creates (of those meta.json or the archive
/// lists as the source's), each in the schema the archive names, created in
/// the temporary database as the connecting role. A failure is a Finding.
async fn create_extensions(
    run: &Verifying<'_>,
    archive: &Opened,
    prepared: &Prepared,
    copy: &tokio_postgres::Client,
    extensions: &BTreeSet<String>,
) -> Result<()> {
    let plain = run.backup.source.for_list()?;
    let found =
        pg_restore::extension_schemas(&archive.tools, plain.input(), &archive.listing.toc).await;
    plain.finish()?;
    let wanted: Vec<(String, String)> = found?
        .into_iter()
        .filter(|(name, _)| extensions.contains(name))
        .collect();
    crate::pg::verify_role::create_extensions(copy, &prepared.role, &wanted).await
}

/// Checks 6-14 on the copy, racing the stop signals (a count can wait on a
/// lock). A copy that cannot be read (the server went away) fails the checks
/// not yet decided; the report still prints.
async fn check_copy(
    run: &Verifying<'_>,
    prepared: &Prepared,
    copy: &tokio_postgres::Client,
    extensions: &BTreeSet<String>,
    signals: &mut Signals,
    report: &mut Report,
) -> Result<()> {
    // Entries naming a database apply to backups of that database.
    let database = run.meta().map_or(&run.opts.conn.dbname, |m| &m.database);
    let tables = run.opts.expected_tables.for_database(database);
    let expected = checks::Expected {
        meta: run.meta(),
        tables: &tables,
        extensions,
    };
    let clock = Instant::now();
    let checked = signals
        .guard(checks::on_copy(
            copy,
            &expected,
            prepared.server_major,
            report,
        ))
        .await;
    if let Some(timing) = report.timing.as_mut() {
        timing.verify_seconds = timing::hundredths(clock.elapsed());
    }
    if let Err(err) = checked {
        // A stop (signal or --timeout) is no verdict on the copy.
        if crate::error::exit_code(&err) != crate::error::FAILED
            || crate::signals::pending().is_some()
        {
            return Err(err);
        }
        report.fail_rest_on_copy(&format!(
            "reading the restored copy: {}",
            crate::error::one_line(&err)
        ));
    }
    Ok(())
}
