//! One path after every dump: `pgbak backup`, `pgbak cron` and every
//! database (and the globals) of `--all-databases` run the same steps, in
//! the same order, under the same rules once a backup is complete locally:
//!
//! ```text
//! Dumped { made, upload_failed } ──► upload failed? ─ yes ─► step `upload` failed; the rest still runs
//!                                         │
//!                                         ▼
//!                              verify (cron --verify) ── fails ─► stop: no anomaly check, no retention
//!                                         │
//!                                         ▼
//!             anomaly check (authoritative store) ─► retention (directory; bucket only if uploaded)
//!                                         │
//!                                         ▼
//!               outcome: the first step that failed, else the upload's failure, else success
//! ```
//!
//! - After a failed upload: the anomaly check yes (against the bucket, which
//!   is read even so), local retention yes, the bucket's retention read-only
//!   (its verdicts and pins count; nothing there is deleted).
//! - After a failed verify: no anomaly check and no retention: a backup that
//!   does not restore never rotates a good one out.
//! - A pin that could not be written stops retention.
//! - A globals backup is not verified (nothing to restore on its own) and has
//!   no rows to compare: retention only.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{apply_retention, Dumped, Made};
use crate::alert::Step;
use crate::anomaly::Findings;
use crate::commands::verify::{fresh, VerifyOptions};
use crate::error;
use crate::metrics::StepMetric;
use crate::mode::Mode;
use crate::settings::backup::BackupJob;
use crate::signals::Signals;
use crate::storage::Stores;
use crate::ui;

/// What the steps after a dump are given.
pub struct After<'a> {
    pub job: &'a BackupJob,
    pub stores: &'a Stores,
    /// Verify the backup (cron's `--verify`), with these options; their
    /// connection is replaced by `job`'s.
    pub verify: Option<&'a VerifyOptions>,
}

impl<'a> After<'a> {
    pub fn new(
        job: &'a BackupJob,
        stores: &'a Stores,
        verify: Option<&'a VerifyOptions>,
    ) -> After<'a> {
        After {
            job,
            stores,
            verify,
        }
    }
}

/// What the steps after a dump did.
pub struct AfterDump {
    /// The anomaly check pinned the previous backup: a warning, not a failure.
    pub anomaly: Option<Findings>,
    pub deleted: Vec<String>,
    /// The run's failure: the first step after the dump that failed, else
    /// the upload's failure (step `upload`); None when everything succeeded.
    pub error: Option<(Step, anyhow::Error)>,
}

/// Runs `work` as `step`, timed into `steps` (the metrics of the run).
pub async fn timed<T>(
    steps: &mut Vec<StepMetric>,
    step: Step,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let clock = Instant::now();
    let result = work.await;
    steps.push(StepMetric {
        step: step.as_str(),
        success: result.is_ok(),
        duration: clock.elapsed(),
    });
    result
}

/// The steps after `dumped` completed locally, under the rules of this
/// module; every step is timed into `steps`.
pub async fn after_dump(
    after: &After<'_>,
    dumped: Dumped,
    signals: &mut Signals,
    steps: &mut Vec<StepMetric>,
) -> AfterDump {
    let Dumped {
        made,
        upload_failed,
    } = dumped;
    let mut done = AfterDump {
        anomaly: None,
        deleted: Vec::new(),
        error: None,
    };
    let globals = made.name.mode == Mode::Globals;
    if let Some(err) = &upload_failed {
        steps.push(StepMetric {
            step: Step::Upload.as_str(),
            success: false,
            duration: Duration::ZERO,
        });
        let rest = match (after.verify, globals) {
            (Some(_), false) => "verifying and pruning the local backups anyway",
            _ => "pruning the local backups anyway",
        };
        ui::error(&format!("{}; {rest}", error::one_line(err)));
    }
    if let (Some(options), false) = (after.verify, globals) {
        let opts = options.for_database(&after.job.conn);
        let verified = fresh::verify_made(&opts, after.stores, &made, signals);
        if let Err(mut err) = timed(steps, Step::Verify, verified).await {
            if let Some(upload) = &upload_failed {
                err = err.context(format!("(also: {})", error::one_line(upload)));
            }
            done.error = Some((Step::Verify, err));
            return done;
        }
    }
    let checked = timed(steps, Step::Retention, anomaly_and_retention(after, &made)).await;
    match checked {
        Ok((anomaly, deleted)) => {
            done.anomaly = anomaly;
            done.deleted = deleted;
        }
        Err(err) => {
            done.error = Some((Step::Retention, err));
            return done;
        }
    }
    done.error = upload_failed.map(|err| (Step::Upload, err));
    done
}

/// The anomaly check (not for a globals backup), then retention; a
/// SIGINT/SIGTERM (or `--timeout`) stops them at once, even inside a
/// request to a store that hangs.
async fn anomaly_and_retention(
    after: &After<'_>,
    made: &Made,
) -> Result<(Option<Findings>, Vec<String>)> {
    crate::signals::unless_stopped(async {
        let anomaly = match made.name.mode {
            Mode::Globals => None,
            _ => {
                crate::anomaly::check_and_pin(
                    after.stores,
                    &made.name,
                    &made.meta,
                    after.job.anomaly,
                )
                .await?
            }
        };
        let deleted = apply_retention(after.job, after.stores, made).await?;
        Ok((anomaly, deleted))
    })
    .await
}
