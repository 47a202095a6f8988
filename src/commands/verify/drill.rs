//! `pgbak verify --all-databases`: a whole-server drill. One `backup
//! --all-databases` run (the one `restore --all-databases` would rebuild
//! from: [`crate::runs::choose`]) is restored database by database and each
//! copy checked as `pgbak verify` checks one backup; the restore time of
//! each and of the whole server is measured and printed, and each
//! database's verdict (with its timing) is recorded beside its backup.
//!
//! The steps:
//! 1. the run: the inventory of the place and the choice of
//!    `restore --all-databases` (`--run`, `--server`);
//! 2. the target: with `--ephemeral` one throwaway cluster for the whole run,
//!    the run's globals replayed into it first (the roles its databases
//!    name then exist); on the source server or `--target-url` no role of
//!    the backup is ever created (a shared server's roles are not a drill's
//!    to change): each database goes into a temporary database, without the
//!    globals, and the drill says so;
//! 3. every database through [`crate::commands::each_database`]'s loop:
//!    fetched, then [`super::verify_located`] (its temporary database and
//!    throwaway role removed whichever way it ends);
//! 4. the throwaway cluster removed (also on an interruption or a failure:
//!    it is dropped with the run), the per-database rows and the totals
//!    printed (`--json` too); exit 1 naming every database that failed.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{verify_located, Report, Target, VerifyOptions};
use crate::archive::{self, Decrypt};
use crate::commands::each_database::Tally;
use crate::commands::restore::all::inventory::{Inventory, Member};
use crate::commands::restore::all::plan::{read_globals, ChosenRun};
use crate::error::{one_line, usage};
use crate::pg::client;
use crate::pg::ephemeral::{Cleanup, Ephemeral};
use crate::pg::globals;
use crate::pg::url::ConnSettings;
use crate::runs::choose::{self, Wish};
use crate::settings::commands::Output;
use crate::settings::restore::RunWanted;
use crate::signals::Signals;
use crate::storage::Destination;
use crate::ui;

/// One database of the drill (a row of `--json`'s `databases`).
#[derive(Debug, Serialize)]
pub struct Row {
    pub database: String,
    /// The backup (a path or an `s3://` URI).
    pub backup: String,
    pub passed: bool,
    /// The checks that failed, or why the database could not be verified.
    pub failed: Vec<String>,
    /// Fetching the backup from the bucket (0 for a local one).
    pub download_seconds: f64,
    /// pg_restore's wall time; None when it did not run.
    pub restore_seconds: Option<f64>,
    /// The checks on the copy.
    pub verify_seconds: Option<f64>,
    pub jobs: Option<u32>,
    pub bytes: u64,
}

/// The globals step of an `--ephemeral` drill.
#[derive(Debug, Default, Serialize)]
pub struct GlobalsStep {
    pub replayed: bool,
    /// Why the globals were not replayed (a drill on a shared server).
    pub note: Option<String>,
    /// What of the replay failed (it fails the drill: the rebuild would fail too).
    pub failed: Option<String>,
    pub roles_created: usize,
    pub seconds: f64,
}

/// The sums over the run.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub databases: usize,
    pub failed: usize,
    pub bytes: u64,
    pub download_seconds: f64,
    pub restore_seconds: f64,
    pub verify_seconds: f64,
    /// The whole-server rebuild on this machine: the globals, then every
    /// database fetched and restored, one after the other (the checks not
    /// counted): the RTO of a rebuild from this run.
    pub rebuild_seconds: f64,
    /// The drill from start to end (cluster start and checks included).
    pub wall_seconds: f64,
}

/// The drill's `--json` document.
#[derive(Debug, Serialize)]
pub struct Drill {
    pub passed: bool,
    pub run: String,
    pub server: String,
    /// Where the copies went: a throwaway cluster's directory, or `host:port`.
    pub target: String,
    pub globals: GlobalsStep,
    pub databases: Vec<Row>,
    pub totals: Totals,
}

pub async fn run(
    opts: &VerifyOptions,
    wanted: &RunWanted,
    from: &[Destination],
    output: Output,
) -> Result<ExitCode> {
    let started = Instant::now();
    let mut signals = Signals::new()?;

    // 1: the run.
    let (inventory, sources) = signals.guard(Inventory::read_across(from)).await?;
    let wish = Wish {
        run: wanted.run.as_deref(),
        server: wanted.server.as_deref(),
        journal: None,
    };
    let choice = choose::choose(&inventory.views, &wish)
        .map_err(|refusal| usage(format!("no drill: {refusal}")))?;
    let (run, server) = crate::commands::restore::all::run_of(&inventory, &choice, sources)?;
    ui::info(&format!(
        "drill of run {} of {} ({}), read from {}: {} database(s)",
        run.id,
        choose::server_text(server.as_ref()),
        choice.why,
        inventory.place,
        run.databases.len()
    ));
    // One encrypted backup makes the run encrypted: a plaintext member fails its verify.
    let mut opts = opts.clone();
    opts.require_encryption |= std::iter::once(&run.globals)
        .chain(&run.databases)
        .any(|m| m.meta.encryption.is_some());

    // 2-3: the target, the globals, every database; 4: the cluster removed.
    let mut cluster: Option<Ephemeral> = None;
    let drilled = drill(&opts, &run, &mut cluster, &mut signals).await;
    if let Some(cluster) = cluster {
        close(cluster, opts.no_cleanup).await;
    }
    let (target, globals, databases) = drilled?;
    let mut drill = Drill {
        passed: false,
        run: run.id.clone(),
        server: choose::server_text(server.as_ref()),
        target,
        globals,
        totals: totals(&databases),
        databases,
    };
    drill.totals.wall_seconds = tenths(started.elapsed().as_secs_f64());
    drill.totals.rebuild_seconds = tenths(drill.totals.rebuild_seconds + drill.globals.seconds);
    drill.passed = drill.totals.failed == 0 && drill.globals.failed.is_none();
    summarize(&drill);
    if output == Output::Json {
        ui::stdout_line(&serde_json::to_string_pretty(&drill).context("encoding the drill")?);
    }
    Ok(if drill.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::FAILED)
    })
}

/// Steps 2-3. The cluster, once started, is in `cluster` for the caller to
/// remove whichever way this ends.
async fn drill(
    opts: &VerifyOptions,
    run: &ChosenRun,
    cluster: &mut Option<Ephemeral>,
    signals: &mut Signals,
) -> Result<(String, GlobalsStep, Vec<Row>)> {
    let (server, target, globals) = match &opts.target {
        Target::Ephemeral => {
            let started = start_cluster(opts, run, cluster, signals).await?;
            let text = format!("throwaway cluster in {}", started.dir.display());
            let conn = started.conn("postgres");
            let globals = match replay_globals(&conn, run, &opts.decrypt(), signals).await {
                Ok(globals) => globals,
                Err(err) if crate::error::is_interruption(&err) => return Err(err),
                Err(err) => {
                    let why = format!("could not be replayed: {}", one_line(&err));
                    ui::error(&format!("globals {}: {why}", run.globals.source));
                    GlobalsStep {
                        failed: Some(why),
                        ..GlobalsStep::default()
                    }
                }
            };
            (conn, text, globals)
        }
        Target::SourceServer | Target::Url(_) => {
            let conn = match &opts.target {
                Target::Url(conn) => conn.clone(),
                _ => opts.conn.clone(),
            };
            let note = "not replayed: a drill on a shared server (the source, or --target-url) \
                        creates no role of the backup; each database is restored into a \
                        temporary database without owners and privileges (--ephemeral replays \
                        the globals too)";
            ui::info(&format!("globals {note}"));
            let globals = GlobalsStep {
                note: Some(note.to_owned()),
                ..GlobalsStep::default()
            };
            (conn.clone(), conn.endpoint(), globals)
        }
    };
    let mut rows = Vec::new();
    let mut tally = Tally::default();
    for member in &run.databases {
        let db = &member.meta.database;
        ui::info(&format!("drill: database {db:?} from {}", member.source));
        let one = VerifyOptions {
            target: Target::Url(server.clone()),
            ..opts.for_database(&opts.conn.with_dbname(db))
        };
        let fetched = Instant::now();
        let verified = async {
            let located = signals
                .guard(archive::locate_across(
                    &member.wanted(),
                    &run.sources,
                    &|_| Ok(()),
                ))
                .await?;
            let download = fetched.elapsed().as_secs_f64();
            let report = verify_located(&one, located, signals).await?;
            anyhow::Ok((download, report))
        };
        let row = match verified.await {
            Ok((download, report)) => row_of(member, download, &report),
            Err(err) => {
                let err = tally.take(db, &format!("database {db:?}"), err)?;
                Row {
                    database: db.clone(),
                    backup: member.source.clone(),
                    passed: false,
                    failed: vec![one_line(&err)],
                    download_seconds: 0.0,
                    restore_seconds: None,
                    verify_seconds: None,
                    jobs: None,
                    bytes: member.meta.size_bytes,
                }
            }
        };
        rows.push(row);
    }
    Ok((target, globals, rows))
}

/// One database's row from its verify's report.
fn row_of(member: &Member, download: f64, report: &Report) -> Row {
    let mut failed: Vec<String> = report
        .failed()
        .into_iter()
        .map(|c| c.name().to_owned())
        .collect();
    if let Some(why) = &report.could_not_run {
        failed.push(format!("could not run: {why}"));
    }
    let timing = report.timing.as_ref();
    Row {
        database: member.meta.database.clone(),
        backup: member.source.clone(),
        passed: report.passed,
        failed,
        download_seconds: tenths(download),
        restore_seconds: timing.map(|t| t.restore_seconds),
        verify_seconds: timing.map(|t| t.verify_seconds),
        jobs: timing.map(|t| t.jobs),
        bytes: member.meta.size_bytes,
    }
}

/// The throwaway cluster, from client tools new enough for every backup of
/// the run; in `cluster` as soon as it runs.
async fn start_cluster<'c>(
    opts: &VerifyOptions,
    run: &ChosenRun,
    cluster: &'c mut Option<Ephemeral>,
    signals: &mut Signals,
) -> Result<&'c Ephemeral> {
    let need = run
        .databases
        .iter()
        .filter_map(|m| archive::major_of(&m.meta.pg_dump_version))
        .max()
        .unwrap_or_default();
    // (The backups' pg_dump major stands for the server's: the cluster must read them.)
    let tools = crate::pg::tools::find(opts.pg_bin_dir.as_deref(), need, &need.to_string())?;
    let cleanup = if opts.no_cleanup {
        Cleanup::Keep
    } else {
        Cleanup::Remove
    };
    let started = signals
        .guard(Ephemeral::start(&tools, cleanup, &opts.ephemeral_user))
        .await
        .context("starting the throwaway cluster for the drill")?;
    ui::info(&format!(
        "throwaway cluster (PostgreSQL {}) in {}",
        tools.version,
        started.dir.display()
    ));
    Ok(cluster.insert(started))
}

/// The run's globals into the throwaway cluster, checked as `restore
/// --all-databases` checks them (checksum, decryption, signature, only what
/// pg_dumpall writes), replayed as its superuser.
async fn replay_globals(
    conn: &ConnSettings,
    run: &ChosenRun,
    decrypt: &Decrypt,
    signals: &mut Signals,
) -> Result<GlobalsStep> {
    let clock = Instant::now();
    let (parsed, _) = read_globals(&run.globals, &run.sources, decrypt, signals).await?;
    let client = signals.guard(client::connect(conn)).await?;
    let present = client::role_names(&client).await?;
    let replay = globals::Replay {
        globals: &parsed,
        pre_existing: &present,
        reset: false,
        lock_wait_timeout: std::time::Duration::from_secs(60),
    };
    let applied = globals::apply(&client, conn, &replay, signals).await?;
    let failed = (!applied.failed.is_empty())
        .then(|| format!("not replayed: {}", applied.failed.join("; ")));
    if let Some(failed) = &failed {
        ui::error(&format!("globals {}: {failed}", run.globals.source));
    }
    ui::info(&format!(
        "globals {} replayed into the throwaway cluster: {} role(s) created",
        run.globals.source,
        applied.created_roles.len()
    ));
    Ok(GlobalsStep {
        replayed: true,
        note: None,
        failed,
        roles_created: applied.created_roles.len(),
        seconds: tenths(clock.elapsed().as_secs_f64()),
    })
}

/// Removes the throwaway cluster, or with `--no-cleanup` says where it is.
async fn close(cluster: Ephemeral, no_cleanup: bool) {
    if no_cleanup {
        let removal = cluster.removal_hint();
        let dir = cluster.dir.display().to_string();
        let connect = cluster.leave();
        ui::warn(&format!(
            "--no-cleanup: left the throwaway cluster in {dir} ({connect}; remove it with: {removal})"
        ));
        return;
    }
    if let Err(err) = cluster.remove().await {
        ui::warn(&format!(
            "removing the throwaway cluster: {}",
            one_line(&err)
        ));
    }
}

/// The sums of the rows; the rebuild time is every database's fetch and
/// restore (the caller adds the globals').
fn totals(rows: &[Row]) -> Totals {
    let sum = |f: &dyn Fn(&Row) -> f64| tenths(rows.iter().map(f).sum());
    Totals {
        databases: rows.len(),
        failed: rows.iter().filter(|r| !r.passed).count(),
        bytes: rows.iter().map(|r| r.bytes).sum(),
        download_seconds: sum(&|r| r.download_seconds),
        restore_seconds: sum(&|r| r.restore_seconds.unwrap_or_default()),
        verify_seconds: sum(&|r| r.verify_seconds.unwrap_or_default()),
        rebuild_seconds: sum(&|r| r.download_seconds + r.restore_seconds.unwrap_or_default()),
        wall_seconds: 0.0,
    }
}

/// One line per database, then the whole server's, then the verdict.
fn summarize(drill: &Drill) {
    let rebuild = drill.totals.rebuild_seconds;
    for r in &drill.databases {
        let seconds = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
        let line = format!(
            "  {}: {} (restore {}, checks {}, download {:.1}s, {}, {} job(s))",
            r.database,
            if r.passed {
                "passed".to_owned()
            } else {
                format!("FAILED: {}", r.failed.join(", "))
            },
            seconds(r.restore_seconds),
            seconds(r.verify_seconds),
            r.download_seconds,
            ui::bytes(r.bytes),
            r.jobs.map_or_else(|| "-".to_owned(), |j| j.to_string())
        );
        if r.passed {
            ui::info(&line);
        } else {
            ui::error(&line);
        }
    }
    ui::info(&format!(
        "whole-server rebuild from run {} on this machine: {rebuild:.1}s (globals {:.1}s, \
         downloads {:.1}s, restores {:.1}s); checks {:.1}s; {} database(s), {}; drill {:.1}s",
        drill.run,
        drill.globals.seconds,
        drill.totals.download_seconds,
        drill.totals.restore_seconds,
        drill.totals.verify_seconds,
        drill.totals.databases,
        ui::bytes(drill.totals.bytes),
        drill.totals.wall_seconds
    ));
    let failed: Vec<&str> = drill
        .databases
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.database.as_str())
        .collect();
    if drill.passed {
        ui::info(&format!(
            "drill passed: run {}, {} database(s) restored and checked on {}",
            drill.run, drill.totals.databases, drill.target
        ));
    } else if failed.is_empty() {
        ui::error(&format!(
            "drill FAILED: the globals of run {} could not be replayed",
            drill.run
        ));
    } else {
        ui::error(&format!(
            "drill FAILED for {} of {} database(s) of run {}: {}",
            failed.len(),
            drill.totals.databases,
            drill.run,
            failed.join(", ")
        ));
    }
}

/// Seconds to one decimal.
fn tenths(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}
