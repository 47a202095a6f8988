//! What a `pgbak cron` run does with its settings (resolved at dispatch,
//! [`crate::settings::cron`], its secrets hidden from every line since
//! then) before any work: the storage-class warning; `--check-config`,
//! which stops there.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::error::{self, usage};
use crate::settings::backup::BackupJob;
use crate::settings::cron::CronConfig;
use crate::storage::s3;
use crate::ui;

/// The STANDARD_IA minimum-duration warning of an uploading `job`, once: at
/// `--check-config` (`always`), and at the first run with these settings,
/// remembered in BACKUP_DIR, not every night.
pub(super) fn storage_class_warning(job: &BackupJob, always: bool) {
    let Some(warning) = job
        .s3
        .as_ref()
        .and_then(|s3| s3::keep_warning(job.policy.last, &s3.storage_class))
    else {
        return;
    };
    let backup_dir: &Path = &job.output_dir;
    let marker = backup_dir.join(".pgbak-storage-class-warned");
    let seen = std::fs::read_to_string(&marker).is_ok_and(|text| text.trim() == warning);
    if always || !seen {
        ui::warn(&warning);
    }
    if !seen && crate::storage::fsio::ensure_dir(backup_dir).is_ok() {
        if let Err(err) = std::fs::write(&marker, format!("{warning}\n")) {
            ui::debug(&format!(
                "remembering the warning in {}: {err}",
                marker.display()
            ));
        }
    }
}

/// `--check-config`: every setting checked, the warnings printed, nothing run.
pub(super) fn check_config(config: Result<CronConfig>) -> Result<ExitCode> {
    let config = config.map_err(|e| usage(error::one_line(&e)))?;
    let job = &config.plan.job;
    storage_class_warning(job, true);
    ui::info(&format!(
        "configuration OK: {} backup of {} ({}) into {}, keep {}, verify {}, upload {}",
        job.mode.as_str(),
        job.conn.dbname,
        job.conn.endpoint(),
        job.output_dir.display(),
        job.policy,
        if config.verify { "on" } else { "off" },
        if job.s3.is_some() { "on" } else { "off" },
    ));
    Ok(ExitCode::SUCCESS)
}
