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
        "configuration OK: {} of {} into {}, keep {}, verify {}, upload {}",
        what_is_backed_up(&config),
        job.conn.endpoint(),
        job.output_dir.display(),
        job.policy,
        if config.verify.is_some() { "on" } else { "off" },
        if job.s3.is_some() { "on" } else { "off" },
    ));
    if let Some(verify) = &config.verify {
        ui::info(&format!(
            "verify expects {}",
            verify.expected_tables.describe(database_of(&config))
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// "full backup of app", or, for `--all-databases`, every database of the
/// server and its globals (and what is left out).
pub(super) fn what_is_backed_up(config: &CronConfig) -> String {
    let job = &config.plan.job;
    match &config.plan.all_databases {
        None => format!("{} backup of {}", job.mode.as_str(), job.conn.dbname),
        Some(excludes) if excludes.is_empty() => {
            "full backups of every database and the globals (--all-databases)".to_owned()
        }
        Some(excludes) => {
            let names: Vec<&str> = excludes.iter().map(glob::Pattern::as_str).collect();
            format!(
                "full backups of every database but {} and the globals (--all-databases)",
                names.join(", ")
            )
        }
    }
}

/// The one database of the run; None for `--all-databases`.
pub(super) fn database_of(config: &CronConfig) -> Option<&str> {
    match config.plan.all_databases {
        None => Some(&config.plan.job.conn.dbname),
        Some(_) => None,
    }
}
