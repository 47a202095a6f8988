//! `pgbak cron`: the unattended run for crontab and systemd timers.
//!
//! The steps, in order:
//! 1. the reporting settings (resolved at dispatch, as all of them are:
//!    [`crate::settings::cron`]): alert webhook and heartbeat, each usable
//!    when the other is not;
//! 2. open `LOG_DIR/backup-<UTC ts>.log` (0600) and tee every line into it;
//! 3. every other setting: its error is a configuration failure (exit 2)
//!    that is still logged, alerted, pinged and put in the metrics;
//!    `--check-config` stops here without any of that;
//! 4. stop the children an earlier, killed pgbak left behind ([`crate::children`]);
//! 5. take the lock of this backup group (database, mode, label), waiting up
//!    to `--lock-wait`; a run that finds it held is *skipped* (exit 75),
//!    which is alerted and counted too; then the heartbeat's `/start`;
//! 6. back up (and upload, when S3 is configured): [`backup::dump_local_first`];
//! 7. the steps after the dump every backup takes ([`backup::after`]):
//!    verify the new backup, with `--verify` or `VERIFY_ON_BACKUP=true`, even
//!    when the upload failed (the local backup is complete); with
//!    `--all-databases`, 6-8 run for each database of the run
//!    ([`crate::commands::backup::each`]);
//! 8. the anomaly check (pins the previous backup when the new one shrank:
//!    a `warning` alert, not a failure), then retention, when 6 (locally) and
//!    7 succeeded; on S3 only when the upload did too;
//! 9. after a successful run, with `PGBAK_VERIFY_CHECKSUMS` / `PGBAK_VERIFY_SAMPLE`:
//!    the retained backups re-proven ([`reproving`]), as the `verify` step;
//! 10. prune old run logs (`LOG_KEEP`), then [`report`]: the heartbeat (success
//!     with a summary, or `/fail` with the error), a PagerDuty resolve on
//!     success, the metrics file always, the alert on failure. None of these
//!     changes the exit code: 0 only when 6-8 succeeded.

mod config;
mod logs;
mod report;
mod reproving;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::alert::{self, Step};
use crate::commands::backup::after::{after_dump, After};
use crate::commands::backup::{self, Made};
use crate::commands::verify::fresh::VerifyCouldNotRun;
use crate::error::{self, usage};
use crate::metrics::StepMetric;
use crate::settings::cron::{CronConfig, CronSettings, Reporter};
use crate::signals::Signals;
use crate::storage::Stores;
use crate::ui;

pub use report::unparsed;

/// What the run did so far, for the alert and the metrics.
pub(crate) struct CronRun {
    started: DateTime<Utc>,
    clock: Instant,
    log: Option<PathBuf>,
    steps: Vec<StepMetric>,
    made: Option<Made>,
    /// The anomaly check's findings: the run succeeds, the alert says `warning`.
    anomaly: Option<crate::anomaly::Findings>,
    /// `--all-databases`: each database's run (its anomaly warning, its metrics).
    databases: Vec<crate::commands::backup::each::DatabaseRun>,
    /// The run's destinations by name, once its settings are read (metrics).
    destinations: Vec<String>,
}

/// The step that failed and why.
pub(crate) struct Failed {
    step: Step,
    error: anyhow::Error,
}

pub async fn run(settings: CronSettings, stores: &Stores) -> Result<ExitCode> {
    let mut run = CronRun::new();
    let CronSettings {
        reporter,
        reporting,
        check_config,
        log_keep: keep,
        lock_wait,
        config,
        ..
    } = settings;
    if check_config {
        // Nothing runs: a bad setting is printed (exit 2), never alerted or counted.
        reporting?;
        return config::check_config(config);
    }
    if let Err(error) = reporting {
        return Ok(failed(&reporter, run, Step::Config, error, 0).await);
    }
    let mut signals = Signals::new()?;
    match logs::open(&reporter.log_dir, run.started) {
        Ok(path) => run.log = Some(path),
        Err(error) => return Ok(failed(&reporter, run, Step::Setup, error, keep).await),
    }
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            let error = usage(error::one_line(&error));
            return Ok(failed(&reporter, run, Step::Config, error, keep).await);
        }
    };
    let job = &config.plan.job;
    let backup_dir = &job.output_dir;
    run.destinations = stores
        .destinations()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    config::storage_class_warning(job, false);
    crate::children::stop_leftovers().await;
    crate::archive::fetch_dir::sweep();
    // A re-proving sample read from the bucket downloads into PGBAK_SCRATCH_DIR, as verify's does.
    let scratch = config
        .reprove
        .as_ref()
        .and_then(|r| r.verify.scratch_dir.as_deref());
    crate::archive::fetch_dir::use_scratch(scratch);
    ui::info(&format!(
        "pgbak cron {} starting (pid {}): {} into {}, keep {}, verify {}, log {}",
        crate::version::LINE,
        std::process::id(),
        config::what_is_backed_up(&config),
        backup_dir.display(),
        job.policy,
        if config.verify.is_some() { "on" } else { "off" },
        run.log
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    ));
    let lock = match backup::group_lock(&config.plan, lock_wait, &mut signals).await {
        Ok(lock) => lock,
        Err(err) if error::exit_code(&err) == error::LOCKED => {
            return Ok(report::skipped(&reporter, &run, &err).await);
        }
        Err(error) => return Ok(failed(&reporter, run, Step::Setup, error, keep).await),
    };
    report::started(&reporter).await;
    let mut outcome = steps(&config, stores, &mut run, &mut signals).await;
    if outcome.is_ok() {
        outcome = reproving::after_success(&config, stores, &mut run, &mut signals).await;
    }
    let code = report::finish(&reporter, run, outcome, keep).await;
    drop(lock);
    Ok(code)
}

/// A run that ended before its steps: reported like any failure.
async fn failed(
    reporter: &Reporter,
    run: CronRun,
    step: Step,
    error: anyhow::Error,
    log_keep: u32,
) -> ExitCode {
    report::finish(reporter, run, Err(Failed { step, error }), log_keep).await
}

impl CronRun {
    pub(crate) fn new() -> CronRun {
        CronRun {
            started: Utc::now(),
            clock: Instant::now(),
            log: None,
            steps: Vec::new(),
            made: None,
            anomaly: None,
            databases: Vec::new(),
            destinations: Vec::new(),
        }
    }

    /// Runs one step, timing it for the metrics; its error is tagged with the step.
    async fn step<T>(
        &mut self,
        step: Step,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T, Failed> {
        let clock = Instant::now();
        let result = work.await;
        self.steps.push(StepMetric {
            step: step.as_str(),
            success: result.is_ok(),
            duration: clock.elapsed(),
        });
        result.map_err(|error| Failed { step, error })
    }
}

/// Steps 6-8: the backup, then the steps after the dump, under the rules
/// written once in [`backup::after`] (a failed upload does not stop the
/// verify and local retention of the complete local backup; a failed verify
/// stops retention).
async fn steps(
    config: &CronConfig,
    stores: &Stores,
    run: &mut CronRun,
    signals: &mut Signals,
) -> Result<(), Failed> {
    let job = &config.plan.job;
    let verify = config.verify.as_ref();
    if let Some(excludes) = &config.plan.all_databases {
        // Every database and the globals, each database at parity with a
        // one-database run: verified (with --verify), anomaly-checked, pruned.
        let outcome = run
            .step(Step::Backup, async {
                backup::check_object_lock(job, stores).await?;
                let run = backup::all::backup_run(job, stores, excludes, signals, verify);
                run.await
            })
            .await?;
        let result = outcome.result();
        let only_uploads_failed = outcome.only_uploads_failed();
        run.databases = outcome.runs;
        let Err(error) = result else {
            return Ok(());
        };
        if only_uploads_failed {
            // Every local backup is complete; only uploads failed: alerted as such.
            run.steps.push(StepMetric {
                step: Step::Upload.as_str(),
                success: false,
                duration: std::time::Duration::ZERO,
            });
            return Err(Failed {
                step: Step::Upload,
                error,
            });
        }
        if let Some(step) = run.steps.last_mut() {
            step.success = false;
        }
        return Err(Failed {
            step: Step::Backup,
            error,
        });
    }
    let dumped = run
        .step(Step::Backup, async {
            backup::check_object_lock(job, stores).await?;
            backup::dump_local_first(job, stores, signals).await
        })
        .await?;
    run.made = Some(dumped.made.clone());
    let after = After::new(job, stores, verify);
    let done = after_dump(&after, dumped, signals, &mut run.steps).await;
    run.anomaly = done.anomaly;
    if !done.deleted.is_empty() {
        ui::info(&format!("retention removed {} file(s)", done.deleted.len()));
    }
    match done.error {
        Some((step, error)) => Err(Failed { step, error }),
        None => Ok(()),
    }
}

/// How the run ended in `failed`, for the alert's wording.
fn outcome_of(failed: &Failed) -> alert::RunEnd {
    let code = error::exit_code(&failed.error);
    if code == error::SIGINT || code == error::SIGTERM {
        alert::RunEnd::Interrupted
    } else if failed
        .error
        .chain()
        .any(|cause| cause.is::<VerifyCouldNotRun>())
    {
        alert::RunEnd::CouldNotRun
    } else {
        alert::RunEnd::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn outcomes_tell_interruptions_and_verify_that_could_not_run_apart() {
        let cases = [
            (anyhow!("pg_dump failed"), alert::RunEnd::Failed),
            (
                error::interrupted(crate::signals::Signal::Terminate).context("verifying"),
                alert::RunEnd::Interrupted,
            ),
            (
                anyhow::Error::new(VerifyCouldNotRun("connection refused".into())),
                alert::RunEnd::CouldNotRun,
            ),
        ];
        for (error, want) in cases {
            let failed = Failed {
                step: Step::Verify,
                error,
            };
            assert_eq!(outcome_of(&failed), want);
        }
    }
}
