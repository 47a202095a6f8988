//! One database of an `--all-databases` run, at parity with a one-database
//! `pgbak cron`: the backup (a failed upload keeps the complete local
//! backup), with `verify` the same verify as cron's step 7 (into the server,
//! or a throwaway cluster with the run's globals replayed first), then the
//! anomaly check and retention of [`super::after_backup`]. Every step is
//! timed for the metrics of its (server, database, mode, label) group.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::Made;
use crate::alert::Step;
use crate::anomaly::Findings;
use crate::commands::verify::{fresh, VerifyOptions};
use crate::metrics::StepMetric;
use crate::settings::backup::BackupJob;
use crate::signals::Signals;

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

impl DatabaseRun {
    /// Runs `work` as `step`, timed; its error ends the database's steps.
    async fn step<T>(
        &mut self,
        step: Step,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Option<T> {
        let clock = Instant::now();
        let result = work.await;
        self.steps.push(StepMetric {
            step: step.as_str(),
            success: result.is_ok(),
            duration: clock.elapsed(),
        });
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.error = Some((step, err));
                None
            }
        }
    }
}

/// The steps for the database `job` connects to. `verify`: the options of
/// cron's verify (its connection is replaced by `job`'s), None without it.
pub async fn one_database(
    job: &BackupJob,
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
    steps(job, signals, verify, &mut run).await;
    run.duration = clock.elapsed();
    run
}

async fn steps(
    job: &BackupJob,
    signals: &mut Signals,
    verify: Option<&VerifyOptions>,
    run: &mut DatabaseRun,
) {
    let Some((made, upload_failed)) = run
        .step(Step::Backup, super::dump_local_first(job, signals))
        .await
    else {
        return;
    };
    run.made = Some(made.clone());
    if upload_failed.is_some() {
        run.steps.push(StepMetric {
            step: Step::Upload.as_str(),
            success: false,
            duration: Duration::ZERO,
        });
    }
    if let Some(options) = verify {
        // Each database is held to its own meta.json's tables, plus the
        // explicit entries naming it (`db:schema.table`) or every database.
        let opts = options.for_database(&job.conn);
        let verified = fresh::verify_made(&opts, job.s3.as_ref(), &made, signals);
        if run.step(Step::Verify, verified).await.is_none() {
            return;
        }
    }
    let Some((anomaly, deleted)) = run
        .step(Step::Retention, super::after_backup(job, &made))
        .await
    else {
        return;
    };
    run.anomaly = anomaly;
    run.deleted = deleted;
    if let Some(err) = upload_failed {
        run.error = Some((Step::Upload, err));
    }
}
