//! A whole server at once: `backup --all-databases` (`restore --all-databases`
//! is `commands/restore/all.rs`).
//!
//! Backup: list the connectable non-template databases (new ones are picked up
//! by the next run, nothing to configure), drop those matching
//! `--exclude-database`, take the globals (roles, memberships, tablespaces),
//! then dump every database as a single backup would, each with its own file,
//! meta.json and retention group ([`each`]: at parity with one database,
//! verify included when cron asks for it). All of them record the run's id
//! (`cluster_run` in meta.json). One database failing does not stop the
//! others; the exit code and the error name the ones that failed. The run
//! leaves a record in the store when it starts and when it ends
//! ([`crate::runs`]): a killed or failed run is visible as one.

use std::process::ExitCode;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde_json::json;

use super::after::{after_dump, After};
use super::{self as backup, each};
use crate::alert::Step;
use crate::commands::each_database::Tally;
use crate::commands::verify::VerifyOptions;
use crate::error::one_line;
use crate::meta::ServerIdentity;
use crate::pg::client;
use crate::runs::{self, Item, RunRecord};
use crate::settings::backup::BackupJob;
use crate::settings::commands::Output;
use crate::signals::Signals;
use crate::storage::Stores;
use crate::ui;

/// Splits the server's databases into (dumped, excluded).
pub fn choose(all: &[String], excludes: &[glob::Pattern]) -> (Vec<String>, Vec<String>) {
    all.iter()
        .cloned()
        .partition(|db| !excludes.iter().any(|p| p.matches(db)))
}

/// `backup --all-databases`: `job` names the database the list is read from.
pub async fn backup_all(
    job: &BackupJob,
    stores: &Stores,
    excludes: &[glob::Pattern],
    print: Output,
    signals: &mut Signals,
) -> Result<ExitCode> {
    backup::check_object_lock(job, stores).await?;
    let outcome = backup_run(job, stores, excludes, signals, None).await?;
    if print == Output::Json {
        ui::stdout_line(&serde_json::to_string_pretty(&outcome.summary())?);
    }
    outcome.result().map(|()| ExitCode::SUCCESS)
}

/// What one `--all-databases` run did.
pub struct RunOutcome {
    pub run_id: String,
    pub globals: Option<backup::Made>,
    pub databases: Vec<backup::Made>,
    pub excluded: Vec<String>,
    /// (database or `(globals)`, why), in run order.
    pub failed: Vec<(String, String)>,
    /// Those of `failed` whose local backup is complete: only the upload failed.
    pub upload_failed: Vec<String>,
    pub deleted: Vec<String>,
    /// Every database's steps, anomaly and outcome, in run order.
    pub runs: Vec<each::DatabaseRun>,
}

impl RunOutcome {
    /// The `--json` summary.
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "cluster_run": self.run_id,
            "globals": self.globals.as_ref().map(|g| json!({
                "dump": g.dump, "meta_path": g.meta_path, "meta": g.meta,
            })),
            "databases": self.databases.iter().map(|m| json!({
                "database": m.meta.database, "dump": m.dump, "meta_path": m.meta_path, "meta": m.meta,
            })).collect::<Vec<_>>(),
            "excluded": self.excluded,
            "failed": self.failed.iter().map(|(db, why)| json!({"database": db, "error": why})).collect::<Vec<_>>(),
            "anomalies": self.runs.iter().filter_map(|r| r.anomaly.as_ref().map(|a| json!({"database": r.database, "anomaly": a.summary()}))).collect::<Vec<_>>(),
            "deleted": self.deleted,
        })
    }

    /// True when backups failed, and each only in its upload (the local
    /// backups are complete): `pgbak cron` alerts "backup upload failed".
    pub fn only_uploads_failed(&self) -> bool {
        !self.failed.is_empty()
            && self
                .failed
                .iter()
                .all(|(db, _)| self.upload_failed.contains(db))
    }

    /// Ok when every backup of the run succeeded, else an error naming the failed ones.
    pub fn result(&self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        bail!(
            "{} of {} backups of run {} failed: {}",
            self.failed.len(),
            self.databases.len() + usize::from(self.globals.is_some()) + self.failed.len(),
            self.run_id,
            self.failed
                .iter()
                .map(|(db, why)| format!("{db} ({why})"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// The run: the globals, then every chosen database, each with its retention
/// (and, with `verify`, its verify: [`each`]). Only an interruption stops it early.
pub async fn backup_run(
    base: &BackupJob,
    stores: &Stores,
    excludes: &[glob::Pattern],
    signals: &mut Signals,
    verify: Option<&VerifyOptions>,
) -> Result<RunOutcome> {
    let mut job = base.clone();
    let run_id = Utc::now().format("%Y%m%dT%H%M%S").to_string();
    job.cluster_run = Some(run_id.clone());
    let admin = signals.guard(client::connect(&job.conn)).await?;
    let rows = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .context("listing the server's databases")?;
    let server = ServerIdentity {
        name: job.server_name.clone(),
        system_identifier: client::system_identifier(&admin).await,
    };
    drop(admin);
    // A restore journal pgbak left on this server is no database of its own.
    let all: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|db| db != crate::pg::journal::DATABASE)
        .collect();
    let (databases, excluded) = choose(&all, excludes);
    let mut record = RunRecord::start(&run_id, server, &databases, &excluded);
    store_record(stores, &record).await;
    ui::info(&format!(
        "backing up {} database(s) of {} and the globals (run {run_id}){}",
        databases.len(),
        job.conn.endpoint(),
        if excluded.is_empty() {
            String::new()
        } else {
            format!("; excluded: {}", excluded.join(", "))
        }
    ));
    let mut outcome = RunOutcome {
        run_id,
        globals: None,
        databases: Vec::new(),
        excluded,
        failed: Vec::new(),
        upload_failed: Vec::new(),
        deleted: Vec::new(),
        runs: Vec::new(),
    };
    let mut tally = Tally::default();
    let globals = backup_globals(&job, stores, signals, databases.clone()).await;
    outcome.deleted.extend(globals.deleted);
    match globals.error {
        None => outcome.globals = globals.made,
        Some((step, err)) => {
            tally.take(GLOBALS, "globals", err)?;
            if step == Step::Upload {
                outcome.upload_failed.push(GLOBALS.to_owned());
            }
        }
    }
    for db in &databases {
        let mut one = job.clone();
        one.conn = job.conn.with_dbname(db);
        let mut run = each::one_database(&one, stores, signals, verify).await;
        outcome.deleted.append(&mut run.deleted);
        match run.error.take() {
            Some((step, err)) => {
                let err = tally.take(db, &format!("database {db:?}"), err)?;
                if step == Step::Upload {
                    outcome.upload_failed.push(db.clone());
                }
                run.error = Some((step, err));
            }
            None => outcome.databases.extend(run.made.clone()),
        }
        outcome.runs.push(run);
    }
    outcome.failed = tally.failed;
    end_record(stores, &mut record, &outcome).await;
    if outcome.failed.is_empty() {
        // Each backup's retention ran while this run was still incomplete, so
        // the previous complete run was kept whole; now that this run is the
        // newest complete one, the older runs' backups go as the policy says.
        let mut gone = Vec::new();
        for made in outcome.globals.iter().chain(&outcome.databases) {
            gone.extend(backup::apply_retention(&job, stores, made).await?);
        }
        outcome.deleted.extend(gone);
        ui::info(&format!(
            "run {} complete: the globals and {} database(s)",
            outcome.run_id,
            outcome.databases.len()
        ));
    }
    Ok(outcome)
}

/// Writes the run's record where its backups go: every destination (the
/// directory, the `S3_*` bucket, each `--to` one), so each destination's
/// retention knows its newest complete run and a disaster recovery from any
/// one of them finds the run. A record that cannot be written is warned
/// about, naming the destination: the backups themselves are what matter,
/// and their meta.json name the run.
async fn store_record(stores: &Stores, record: &RunRecord) {
    for destination in stores.destinations() {
        let store = &destination.store;
        let stored = crate::signals::unless_stopped(store.store_run(record)).await;
        if let Err(err) = stored {
            let doing = if store.is_bucket() {
                "uploading"
            } else {
                "writing"
            };
            ui::warn(&format!(
                "{doing} the run record at {}: {}",
                destination.name,
                one_line(&err)
            ));
        }
    }
}

/// The run's record at its end: every backup's outcome.
async fn end_record(stores: &Stores, record: &mut RunRecord, outcome: &RunOutcome) {
    let failed = |what: &str| {
        outcome
            .failed
            .iter()
            .find(|(db, _)| db == what)
            .map(|(_, why)| why.clone())
    };
    let globals = Item {
        file: outcome.globals.as_ref().map(|g| g.name.dump_file()),
        error: failed(GLOBALS)
            .or_else(|| outcome.globals.is_none().then(|| "not taken".to_owned())),
    };
    let mut items: BTreeMap<String, Item> = outcome
        .databases
        .iter()
        .map(|m| {
            let item = Item {
                file: Some(m.name.dump_file()),
                error: None,
            };
            (m.meta.database.clone(), item)
        })
        .collect();
    for (db, why) in outcome.failed.iter().filter(|(db, _)| db != GLOBALS) {
        items.insert(
            db.clone(),
            Item {
                file: None,
                error: Some(why.clone()),
            },
        );
    }
    runs::finish(record, globals, items);
    store_record(stores, record).await;
}

/// What the run's failures call its globals backup.
const GLOBALS: &str = "(globals)";

/// The run's globals backup and the steps after it ([`after_dump`]).
async fn backup_globals(
    job: &BackupJob,
    stores: &Stores,
    signals: &mut Signals,
    databases: Vec<String>,
) -> AfterGlobals {
    let dumped = match crate::commands::globals::backup(job, stores, signals, databases).await {
        Ok(dumped) => dumped,
        Err(err) => {
            return AfterGlobals {
                made: None,
                deleted: Vec::new(),
                error: Some((Step::Backup, err)),
            }
        }
    };
    let made = dumped.made.clone();
    let after = After::new(job, stores, None);
    let done = after_dump(&after, dumped, signals, &mut Vec::new()).await;
    AfterGlobals {
        made: Some(made),
        deleted: done.deleted,
        error: done.error,
    }
}

/// What [`backup_globals`] did.
struct AfterGlobals {
    made: Option<backup::Made>,
    deleted: Vec<String>,
    error: Option<(Step, anyhow::Error)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_databases_match_globs() {
        let all: Vec<String> = ["app", "app_test", "postgres", "scratch-1", "weird \"db\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let excludes = crate::settings::backup::exclude_patterns(&[
            "*_test".into(),
            "scratch-?".into(),
            " ".into(),
        ])
        .unwrap();
        let (kept, excluded) = choose(&all, &excludes);
        assert_eq!(kept, vec!["app", "postgres", "weird \"db\""]);
        assert_eq!(excluded, vec!["app_test", "scratch-1"]);
    }
}
