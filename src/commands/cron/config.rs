//! What a `pgbak cron` run does with its settings (resolved at dispatch,
//! [`crate::settings::cron`]) before any work: the secrets among them
//! registered first, so no line can print them; the storage-class warning;
//! `--check-config`, which stops there.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::error::{self, usage};
use crate::settings::backup::BackupJob;
use crate::settings::cron::{CronConfig, CronSecrets};
use crate::storage::s3;
use crate::{settings, ui};

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

/// Webhook URLs and keys carry tokens: registered before anything can print them.
pub(super) fn register_secrets(secrets: &CronSecrets) {
    for secret in [
        &secrets.alert_webhook_url,
        &secrets.heartbeat_url,
        &secrets.pagerduty_routing_key,
    ]
    .into_iter()
    .flatten()
    {
        register_url_secret(secret);
    }
    if let Some(url) = &secrets.verify_target_url {
        if let Ok(conn) = settings::connection_from_url(url) {
            if let Some(password) = &conn.password {
                ui::register_secret(password);
            }
        }
    }
}

/// Registers a URL (or key) as a secret, and its parts that may be printed on
/// their own: the password, the query, the path.
fn register_url_secret(value: &str) {
    ui::register_secret(value);
    let Ok(url) = url::Url::parse(value) else {
        return;
    };
    ui::register_secret(url.as_str());
    if let Some(password) = url.password() {
        ui::register_secret(password);
    }
    if let Some(query) = url.query() {
        ui::register_secret(query);
    }
    // Slack and other hooks put the token in the path.
    if url.path().len() > 8 {
        ui::register_secret(url.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_are_scrubbed() {
        register_url_secret("https://hooks.example.com/services/T000/B000/TOKENPART?key=QUERYKEY");
        let text = ui::scrub("POST https://hooks.example.com/services/T000/B000/TOKENPART?key=QUERYKEY failed; key=QUERYKEY");
        assert!(
            !text.contains("TOKENPART") && !text.contains("QUERYKEY"),
            "{text}"
        );
    }
}
