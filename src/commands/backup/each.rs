//! One database of an `--all-databases` run, at parity with a one-database
//! `pgbak cron`: the backup (a failed upload keeps the complete local
//! backup), then the same steps after the dump ([`super::after::after_dump`]:
//! with `verify`, cron's verify into the server or a throwaway cluster with
//! the run's globals replayed first; the anomaly check; retention). Every
//! step is timed for the metrics of its (server, database, mode, label) group.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::after::{after_dump, timed, After};
use super::Made;
use crate::alert::Step;
use crate::anomaly::Findings;
use crate::commands::verify::VerifyOptions;
use crate::metrics::StepMetric;
use crate::settings::backup::BackupJob;
use crate::signals::Signals;
use crate::storage::Stores;

/// What happened to one database of the run.
pub struct DatabaseRun {
    pub database: String,
    pub started: DateTime<Utc>,
    pub duration: Duration,
    /// The backup, when it completed locally.
    pub made: Option<Made>,
    pub steps: Vec<StepMetric>,
    /// The anomaly check pinned the previous backup: a warning, not a failure.
    pub anomaly: Option<Findings>,
    pub deleted: Vec<String>,
    /// The step that failed first, and why.
    pub error: Option<(Step, anyhow::Error)>,
}

/// The steps for the database `job` connects to. `verify`: the options of
/// cron's verify (its connection is replaced by `job`'s), None without it.
pub async fn one_database(
    job: &BackupJob,
    stores: &Stores,
    signals: &mut Signals,
    verify: Option<&VerifyOptions>,
) -> DatabaseRun {
    let clock = Instant::now();
    let mut run = DatabaseRun {
        database: job.conn.dbname.clone(),
        started: Utc::now(),
        duration: Duration::ZERO,
        made: None,
        steps: Vec::new(),
        anomaly: None,
        deleted: Vec::new(),
        error: None,
    };
    let dumped = timed(
        &mut run.steps,
        Step::Backup,
        super::dump_local_first(job, stores, signals),
    )
    .await;
    match dumped {
        Err(err) => run.error = Some((Step::Backup, err)),
        Ok(dumped) => {
            run.made = Some(dumped.made.clone());
            // Each database is held to its own meta.json's tables, plus the
            // explicit entries naming it (`db:schema.table`) or every database.
            let after = After::new(job, stores, verify);
            let done = after_dump(&after, dumped, signals, &mut run.steps).await;
            run.anomaly = done.anomaly;
            run.deleted = done.deleted;
            run.error = done.error;
        }
    }
    run.duration = clock.elapsed();
    run
}
