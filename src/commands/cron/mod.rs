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
//! 7. verify the new backup, with `--verify` or `VERIFY_ON_BACKUP=true`, even
//!    when the upload failed (the local backup is complete);
//! 8. the anomaly check (pins the previous backup when the new one shrank:
//!    a `warning` alert, not a failure), then retention, when 6 (locally) and
//!    7 succeeded; on S3 only when the upload did too;
//! 9. prune old run logs (`LOG_KEEP`), then [`report`]: the heartbeat (success
//!    with a summary, or `/fail` with the error), a PagerDuty resolve on
//!    success, the metrics file always, the alert on failure. None of these
//!    changes the exit code: 0 only when 6-8 succeeded.

mod argv;
mod config;
mod logs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::alert::{self, Step};
use crate::commands::backup::{self, Made};
use crate::commands::verify::{self, Status, VerifyOptions};
use crate::error::{self, usage};
use crate::lock::{self, RunLock};
use crate::metrics::StepMetric;
use crate::settings::backup::BackupJob;
use crate::settings::cron::{CronConfig, CronSettings, Reporter, ALL_DATABASES};
use crate::signals::Signals;
use crate::storage::s3::{self, S3Settings};
use crate::ui;

pub use argv::{env_file_flag, is_cron};
pub use report::unparsed;

/// What the run did so far, for the alert and the metrics.
pub(crate) struct Run {
    started: DateTime<Utc>,
    clock: Instant,
    log: Option<PathBuf>,
    steps: Vec<StepMetric>,
    made: Option<Made>,
    /// The anomaly check's findings: the run succeeds, the alert says `warning`.
    anomaly: Option<crate::anomaly::Findings>,
}

/// The step that failed and why.
pub(crate) struct Failed {
    step: Step,
    error: anyhow::Error,
}

/// Verify could not run (no server to restore into): no verdict on the backup.
#[derive(Debug)]
struct VerifyCouldNotRun(String);

impl std::fmt::Display for VerifyCouldNotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verify could not run: {}", self.0)
    }
}

impl std::error::Error for VerifyCouldNotRun {}

pub async fn run(settings: CronSettings) -> Result<ExitCode> {
    let mut run = Run::new();
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
    let (mode, backup_dir) = (job.mode, &job.output_dir);
    config::storage_class_warning(job, false);
    crate::children::stop_leftovers().await;
    ui::info(&format!(
        "pgbak cron {} starting (pid {}): {} backup of {} into {}, keep {}, verify {}, log {}",
        crate::version::LINE,
        std::process::id(),
        mode.as_str(),
        job.conn.dbname,
        backup_dir.display(),
        job.policy,
        if config.verify { "on" } else { "off" },
        run.log
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    ));
    let lock_database = match config.plan.all_databases {
        Some(_) => ALL_DATABASES,
        None => job.conn.dbname.as_str(),
    };
    let lock_name = lock::lock_file_name(lock_database, mode, None);
    let lock = match RunLock::acquire_waiting(backup_dir, &lock_name, lock_wait, &mut signals).await
    {
        Ok(lock) => lock,
        Err(err) if error::exit_code(&err) == error::LOCKED => {
            return Ok(report::skipped(&reporter, &run, &err).await);
        }
        Err(error) => return Ok(failed(&reporter, run, Step::Setup, error, keep).await),
    };
    report::started(&reporter).await;
    let outcome = steps(&config, &mut run, &mut signals).await;
    let code = report::finish(&reporter, run, outcome, keep).await;
    drop(lock);
    Ok(code)
}

/// A run that ended before its steps: reported like any failure.
async fn failed(
    reporter: &Reporter,
    run: Run,
    step: Step,
    error: anyhow::Error,
    log_keep: u32,
) -> ExitCode {
    report::finish(reporter, run, Err(Failed { step, error }), log_keep).await
}

impl Run {
    pub(crate) fn new() -> Run {
        Run {
            started: Utc::now(),
            clock: Instant::now(),
            log: None,
            steps: Vec::new(),
            made: None,
            anomaly: None,
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

/// Steps 6-8; the first failure ends them, but a failed upload does not stop
/// the verify and local retention of the complete local backup.
async fn steps(config: &CronConfig, run: &mut Run, signals: &mut Signals) -> Result<(), Failed> {
    let job = &config.plan.job;
    if let Some(excludes) = &config.plan.all_databases {
        // Every database and the globals, each with its retention; verify is
        // per backup and not run here (`pgbak verify` names one backup).
        if config.verify {
            ui::warn("verify is not run for --all-databases; verify single backups with `pgbak verify FILE`");
        }
        return run
            .step(Step::Backup, async {
                backup::check_object_lock(job).await?;
                super::backup::all::backup_run(job, excludes, signals)
                    .await?
                    .result()
            })
            .await;
    }
    let (made, upload_failed) = run
        .step(Step::Backup, async {
            backup::check_object_lock(job).await?;
            backup::dump_local_first(job, signals).await
        })
        .await?;
    run.made = Some(made.clone());
    if let Some(err) = &upload_failed {
        run.steps.push(StepMetric {
            step: Step::Upload.as_str(),
            success: false,
            duration: std::time::Duration::ZERO,
        });
        ui::error(&format!(
            "{}; verifying and pruning the local backups anyway",
            error::one_line(err)
        ));
    }
    if config.verify {
        let verified = run
            .step(Step::Verify, verify_step(config, &made, signals))
            .await;
        if let Err(mut failed) = verified {
            if let Some(upload) = &upload_failed {
                failed.error = failed
                    .error
                    .context(format!("(also: {})", error::one_line(upload)));
            }
            return Err(failed);
        }
    }
    // The anomaly check first: a pin that could not be written stops retention.
    // After a failed upload, retention stays local (the S3 copy is not good).
    let local_only = BackupJob {
        s3: job.s3.clone().filter(|_| upload_failed.is_none()),
        ..job.clone()
    };
    let (anomaly, deleted) = run
        .step(
            Step::Retention,
            crate::signals::unless_stopped(async {
                let anomaly = backup::check_anomaly(&local_only, &made).await?;
                let deleted = backup::apply_retention(&local_only, &made).await?;
                Ok((anomaly, deleted))
            }),
        )
        .await?;
    run.anomaly = anomaly;
    if !deleted.is_empty() {
        ui::info(&format!("retention removed {} file(s)", deleted.len()));
    }
    match upload_failed {
        Some(error) => Err(Failed {
            step: Step::Upload,
            error,
        }),
        None => Ok(()),
    }
}

/// Step 7: restore the new backup into a temporary database (or the target
/// server, or a throwaway cluster) and run every check of `pgbak verify`.
async fn verify_step(config: &CronConfig, made: &Made, signals: &mut Signals) -> Result<()> {
    let job = &config.plan.job;
    let mut opts = VerifyOptions::new(job.conn.clone(), job.pg_bin_dir.clone());
    opts.target = config.verify_target.clone();
    opts.identity_file = config.identity_file.clone();
    opts.scratch_dir = config.scratch_dir.clone();
    let report = verify::verify_backup(&opts, &made.dump, signals).await?;
    if let Some(settings) = &job.s3 {
        publish_verification(settings, made).await;
    }
    if report.passed {
        return Ok(());
    }
    if let Some(why) = report.could_not_run {
        return Err(VerifyCouldNotRun(why).into());
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    anyhow::bail!(
        "verify of {} failed: {}",
        made.dump.display(),
        failed.join("; ")
    )
}

/// Copies the meta.json that verify just updated to the bucket, so `pgbak check
/// --s3` sees the result from anywhere (the local copy may be a pod's scratch
/// space). A failure is a warning: the result is still in the local meta.json.
async fn publish_verification(settings: &S3Settings, made: &Made) {
    let Some(location) = &made.meta.s3 else {
        return;
    };
    let result = async {
        let store = s3::connect(settings.in_bucket(&location.bucket)).await?;
        let key = store.key_for(&made.name.meta_file());
        let meta = crate::meta::Meta::read(&made.meta_path)?;
        backup::upload_meta(&store, &key, &meta).await
    }
    .await;
    if let Err(err) = result {
        ui::warn(&format!(
            "the verify result is in {} but could not be copied to S3: {}",
            made.meta_path.display(),
            error::one_line(&err)
        ));
    }
}

/// How the run ended in `failed`, for the alert's wording.
fn outcome_of(failed: &Failed) -> alert::Outcome {
    let code = error::exit_code(&failed.error);
    if code == error::SIGINT || code == error::SIGTERM {
        alert::Outcome::Interrupted
    } else if failed
        .error
        .chain()
        .any(|cause| cause.is::<VerifyCouldNotRun>())
    {
        alert::Outcome::CouldNotRun
    } else {
        alert::Outcome::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn outcomes_tell_interruptions_and_verify_that_could_not_run_apart() {
        let cases = [
            (anyhow!("pg_dump failed"), alert::Outcome::Failed),
            (
                error::interrupted(crate::signals::Signal::Terminate).context("verifying"),
                alert::Outcome::Interrupted,
            ),
            (
                anyhow::Error::new(VerifyCouldNotRun("connection refused".into())),
                alert::Outcome::CouldNotRun,
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
