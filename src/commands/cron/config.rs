//! What a `pgbak cron` run is told, resolved and checked before any work:
//! where it reports (alert webhook, heartbeat) and everything else it needs
//! ([`Config`]); `--check-config` stops after this. The secrets among the
//! settings were gathered at dispatch (`settings::secrets`), so no line can
//! print them.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Reporter;
use crate::alert;
use crate::cli::{CronArgs, CronReportArgs};
use crate::commands::backup::{self, BackupJob};
use crate::commands::verify::Target;
use crate::error::{self, usage};
use crate::heartbeat::Heartbeat;
use crate::metrics;
use crate::settings::commands::GlobalSettings;
use crate::storage::s3::{self, S3Settings};
use crate::ui::Redactor;
use crate::{settings, ui};

/// Everything else the run needs, resolved and checked before any work.
pub(super) struct Config {
    pub job: BackupJob,
    pub verify: bool,
    pub verify_target: Target,
    /// `--all-databases` (or PGBAK_ALL_DATABASES=true): the databases to leave out.
    pub all_databases: Option<Vec<glob::Pattern>>,
    /// How verify reads an encrypted backup (the age identity, the scratch directory).
    pub decrypt: crate::cli::DecryptArgs,
}

/// Step 1: where the run reports, each channel on its own: a bad heartbeat
/// URL is still alerted, a bad alert setting still pings `/fail`. The error
/// (exit 2) is the run's first failure; what parsed reports it.
/// `redactor` scrubs what the alert and the heartbeat send.
pub(super) fn reporter(
    report: &CronReportArgs,
    group: metrics::Group,
    redactor: Redactor,
) -> (Reporter, Result<()>) {
    let alert = alert::check_config(
        report.alert_webhook_url.as_deref(),
        report.alert_webhook_format,
        report.pagerduty_routing_key.as_deref(),
    );
    let heartbeat = report
        .heartbeat_url
        .as_deref()
        .map(|url| Heartbeat::new(url, report.heartbeat_kind).context("HEARTBEAT_URL"))
        .transpose();
    let errors: Vec<String> = [alert.as_ref().err(), heartbeat.as_ref().err()]
        .into_iter()
        .flatten()
        .map(error::one_line)
        .collect();
    let reporter = Reporter {
        alert: alert.ok().flatten(),
        heartbeat: heartbeat.ok().flatten(),
        report: report.clone(),
        group,
        redactor,
    };
    let checked = if errors.is_empty() {
        Ok(())
    } else {
        Err(usage(errors.join("; ")))
    };
    (reporter, checked)
}

/// Step 3: every setting the run needs, each error naming its variable.
pub(super) fn resolve(global: &GlobalSettings, args: &CronArgs) -> Result<Config> {
    if let Some(err) = settings::env_file_error() {
        anyhow::bail!("{err}");
    }
    let conn = settings::explicit_connection()?;
    let policy = settings::groups::retention_policy(&args.retention)?;
    let verify = args.verify || settings::env_bool("VERIFY_ON_BACKUP")?.unwrap_or(false);
    let verify_target = match &args.verify_target_url {
        Some(url) => {
            Target::Url(settings::connection_from_url(url).context("PGBAK_VERIFY_TARGET_URL")?)
        }
        None if args.verify_ephemeral => Target::Ephemeral,
        None => Target::SourceServer,
    };
    let upload = !args.no_s3 && args.s3.bucket.as_deref().is_some_and(|b| !b.is_empty());
    if upload {
        S3Settings::from_args(&args.s3, None)?;
    }
    check_encryption(args.encrypt.clone(), &args.decrypt, verify)?;
    let recipients = crate::encryption::Recipients::resolve(
        &args.encrypt.recipients,
        args.encrypt.recipients_file.as_deref(),
    )?;
    let all_databases =
        args.all_databases || settings::env_bool("PGBAK_ALL_DATABASES")?.unwrap_or(false);
    let all_databases = if all_databases {
        Some(crate::commands::cluster::exclude_patterns(
            &args.exclude_databases,
        )?)
    } else {
        None
    };
    Ok(Config {
        job: BackupJob {
            conn,
            output_dir: args.backup_dir.clone(),
            mode: args.mode,
            label: None,
            policy,
            lock: backup::object_lock_for(&args.s3, args.no_s3, &args.object_lock)?,
            anomaly: settings::groups::anomaly_threshold(&args.anomaly)?,
            compress: args.compress.clone(),
            pg_bin_dir: global.pg_bin_dir.clone(),
            s3: args.s3.clone(),
            upload,
            lock_wait_timeout: global.lock_wait_timeout,
            pause_replay: args.pause_replay,
            cluster_run: None,
            no_role_passwords: settings::env_bool("PGBAK_NO_ROLE_PASSWORDS")?.unwrap_or(false),
            recipients,
        },
        verify,
        verify_target,
        all_databases,
        decrypt: args.decrypt.clone(),
    })
}

/// Encryption settings checked before any work (exit 2): the recipients parse,
/// and a run that verifies an encrypted backup has an identity that fits one
/// of them (else every night's verify would fail after the dump).
fn check_encryption(
    encrypt: crate::cli::EncryptArgs,
    decrypt: &crate::cli::DecryptArgs,
    verify: bool,
) -> Result<()> {
    let Some(recipients) = crate::encryption::Recipients::resolve(
        &encrypt.recipients,
        encrypt.recipients_file.as_deref(),
    )?
    else {
        return Ok(());
    };
    if !verify {
        return Ok(());
    }
    let Some(file) = &decrypt.identity_file else {
        return Err(usage(
            "verifying encrypted backups needs their private key: set PGBAK_AGE_IDENTITY_FILE,              or verify on another host (pgbak verify --identity-file) and drop --verify /              VERIFY_ON_BACKUP here",
        ));
    };
    let identities = crate::encryption::Identities::load(file)?;
    if !identities.fits_any(&recipients.texts()) {
        return Err(usage(format!(
            "PGBAK_AGE_IDENTITY_FILE {} holds the key of {} but backups are encrypted to {}:              verify could never decrypt them",
            file.display(),
            identities.publics.join(", "),
            recipients.texts().join(", ")
        )));
    }
    Ok(())
}

/// The STANDARD_IA minimum-duration warning, once: at `--check-config`
/// (`always`), and at the first run with these settings, remembered in
/// BACKUP_DIR, not every night.
pub(super) fn storage_class_warning(args: &CronArgs, keep: u32, always: bool) {
    let Some(warning) = s3::keep_warning(keep, &args.s3.storage_class) else {
        return;
    };
    let marker = args.backup_dir.join(".pgbak-storage-class-warned");
    let seen = std::fs::read_to_string(&marker).is_ok_and(|text| text.trim() == warning);
    if always || !seen {
        ui::warn(&warning);
    }
    if !seen && crate::storage::fsio::ensure_dir(&args.backup_dir).is_ok() {
        if let Err(err) = std::fs::write(&marker, format!("{warning}\n")) {
            ui::debug(&format!(
                "remembering the warning in {}: {err}",
                marker.display()
            ));
        }
    }
}

/// `--check-config`: every setting checked, the warnings printed, nothing run.
pub(super) fn check_config(global: &GlobalSettings, args: &CronArgs) -> Result<ExitCode> {
    let config = resolve(global, args).map_err(|e| usage(error::one_line(&e)))?;
    if config.job.upload {
        storage_class_warning(args, config.job.policy.last, true);
    }
    ui::info(&format!(
        "configuration OK: {} backup of {} ({}) into {}, keep {}, verify {}, upload {}",
        args.mode.as_str(),
        config.job.conn.dbname,
        config.job.conn.endpoint(),
        args.backup_dir.display(),
        config.job.policy,
        if config.verify { "on" } else { "off" },
        if config.job.upload { "on" } else { "off" },
    ));
    Ok(ExitCode::SUCCESS)
}
