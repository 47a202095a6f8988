//! `pgbak cron`: the unattended run for crontab and systemd timers.
//!
//! The steps, in order:
//! 1. the alert settings (an error here can only be printed and counted);
//! 2. open `LOG_DIR/backup-<UTC ts>.log` (0600) and tee every line into it;
//! 3. every other setting: an error is a configuration failure (exit 2) that
//!    is still logged, alerted and put in the metrics;
//! 4. take the lock of this backup group (database, mode, label), waiting up
//!    to `--lock-wait`; a run that finds it held is *skipped* (exit 75),
//!    which is alerted and counted too;
//! 5. back up (and upload, when S3 is configured): [`backup::dump_local_first`];
//! 6. verify the new backup, with `--verify` or `VERIFY_ON_BACKUP=true`, even
//!    when the upload failed (the local backup is complete);
//! 7. the anomaly check (pins the previous backup when the new one shrank:
//!    a `warning` alert, not a failure), then retention, when 5 (locally) and
//!    6 succeeded; on S3 only when the upload did too;
//! 8. prune old run logs (`LOG_KEEP`), then [`report`]: the heartbeat (and a
//!    PagerDuty resolve) on success, the metrics file always, the alert on
//!    failure. None of these changes the exit code: 0 only when 5-7 succeeded.

mod argv;
mod logs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::alert::{self, Step};
use crate::cli::{CronArgs, CronReportArgs, S3Args};
use crate::commands::backup::{self, BackupJob, Made};
use crate::commands::verify::{self, Status, Target, VerifyOptions};
use crate::error::{self, usage};
use crate::lock::{self, RunLock};
use crate::metrics::{self, StepMetric};
use crate::mode::Mode;
use crate::settings::commands::GlobalSettings;
use crate::signals::Signals;
use crate::storage::s3::{self, S3Settings};
use crate::{settings, ui};

pub use argv::{env_file_flag, is_cron};
pub use report::unparsed;

/// The run's identity and where it is reported, known before anything can fail.
pub(crate) struct Reporter {
    alert: Option<alert::AlertTarget>,
    report: CronReportArgs,
    group: metrics::Group,
}

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

/// Everything else the run needs, resolved and checked before any work.
struct Config {
    job: BackupJob,
    verify: bool,
    verify_target: Target,
    /// `--all-databases` (or PGBAK_ALL_DATABASES=true): the databases to leave out.
    all_databases: Option<Vec<glob::Pattern>>,
    /// How verify reads an encrypted backup (the age identity, the scratch directory).
    decrypt: crate::cli::DecryptArgs,
}

pub async fn run(global: &GlobalSettings, args: CronArgs) -> Result<ExitCode> {
    let mut run = Run {
        started: Utc::now(),
        clock: Instant::now(),
        log: None,
        steps: Vec::new(),
        made: None,
        anomaly: None,
    };
    register_secrets(&args.report, args.verify_target_url.as_deref());
    let group = group_of(
        args.mode,
        args.all_databases || settings::env_flag("PGBAK_ALL_DATABASES"),
    );
    let alert = match alert_settings(&args.report) {
        Ok(alert) => alert,
        Err(error) => {
            let reporter = Reporter {
                alert: None,
                report: args.report.clone(),
                group,
            };
            let failed = Failed {
                step: Step::Config,
                error,
            };
            return Ok(report::finish(&reporter, run, Err(failed), 0).await);
        }
    };
    let reporter = Reporter {
        alert,
        report: args.report.clone(),
        group,
    };
    if args.check_config {
        return check_config(global, &args);
    }
    let mut signals = Signals::new()?;
    match logs::open(&args.report.log_dir, run.started) {
        Ok(path) => run.log = Some(path),
        Err(error) => {
            let failed = Failed {
                step: Step::Setup,
                error,
            };
            return Ok(report::finish(&reporter, run, Err(failed), args.log_keep).await);
        }
    }
    let config = match resolve(global, &args) {
        Ok(config) => config,
        Err(error) => {
            let failed = Failed {
                step: Step::Config,
                error: usage(error::one_line(&error)),
            };
            return Ok(report::finish(&reporter, run, Err(failed), args.log_keep).await);
        }
    };
    if config.job.upload {
        storage_class_warning(&args, config.job.policy.last, false);
    }
    ui::info(&format!(
        "pgbak cron {} starting (pid {}): {} backup of {} into {}, keep {}, verify {}, log {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        args.mode.as_str(),
        config.job.conn.dbname,
        args.backup_dir.display(),
        config.job.policy,
        if config.verify { "on" } else { "off" },
        run.log
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    ));
    let lock_database = match config.all_databases {
        Some(_) => ALL_DATABASES,
        None => config.job.conn.dbname.as_str(),
    };
    let lock_name = lock::lock_file_name(lock_database, args.mode, None);
    let lock =
        match RunLock::acquire_waiting(&args.backup_dir, &lock_name, args.lock_wait, &mut signals)
            .await
        {
            Ok(lock) => lock,
            Err(err) if error::exit_code(&err) == error::LOCKED => {
                return Ok(report::skipped(&reporter, &run, &err).await);
            }
            Err(error) => {
                let failed = Failed {
                    step: Step::Setup,
                    error,
                };
                return Ok(report::finish(&reporter, run, Err(failed), args.log_keep).await);
            }
        };
    let outcome = steps(global, &config, &mut run, &mut signals).await;
    let code = report::finish(&reporter, run, outcome, args.log_keep).await;
    drop(lock);
    Ok(code)
}

impl Run {
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

/// Steps 5-7; the first failure ends them, but a failed upload does not stop
/// the verify and local retention of the complete local backup.
async fn steps(
    global: &GlobalSettings,
    config: &Config,
    run: &mut Run,
    signals: &mut Signals,
) -> Result<(), Failed> {
    let job = &config.job;
    if let Some(excludes) = &config.all_databases {
        // Every database and the globals, each with its retention; verify is
        // per backup and not run here (`pgbak verify` names one backup).
        if config.verify {
            ui::warn("verify is not run for --all-databases; verify single backups with `pgbak verify FILE`");
        }
        return run
            .step(Step::Backup, async {
                backup::check_object_lock(job).await?;
                super::cluster::backup_run(job, excludes, signals)
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
            .step(Step::Verify, verify_step(global, config, &made, signals))
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
        upload: job.upload && upload_failed.is_none(),
        ..job.clone()
    };
    let (anomaly, deleted) = run
        .step(Step::Retention, async {
            let anomaly = crate::anomaly::check_and_pin(&local_only, &made, job.anomaly).await?;
            let deleted = backup::apply_retention(&local_only, &made).await?;
            Ok((anomaly, deleted))
        })
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

/// The database label (and lock group) of an `--all-databases` run.
const ALL_DATABASES: &str = "(all databases)";

/// The group this run's metrics and lock belong to. The database comes from
/// the connection settings (parsed, not connected), so even a run that fails
/// before it starts is counted under its own database.
fn group_of(mode: Mode, all_databases: bool) -> metrics::Group {
    let database = if all_databases {
        ALL_DATABASES.to_owned()
    } else {
        settings::explicit_connection()
            .map(|c| c.dbname)
            .unwrap_or_default()
    };
    metrics::Group {
        database,
        mode: mode.as_str().to_owned(),
        label: String::new(),
    }
}

/// Step 1: alerting's own settings. An error here cannot be alerted.
fn alert_settings(report: &CronReportArgs) -> Result<Option<alert::AlertTarget>> {
    let target = alert::check_config(
        report.alert_webhook_url.as_deref(),
        report.alert_webhook_format,
        report.pagerduty_routing_key.as_deref(),
    )
    .map_err(|e| usage(error::one_line(&e)))?;
    if let Some(url) = &report.heartbeat_url {
        alert::check_url(url)
            .context("HEARTBEAT_URL")
            .map_err(|e| usage(error::one_line(&e)))?;
    }
    Ok(target)
}

/// Step 3: every setting the run needs, each error naming its variable.
fn resolve(global: &GlobalSettings, args: &CronArgs) -> Result<Config> {
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
        Some(super::cluster::exclude_patterns(&args.exclude_databases)?)
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
fn storage_class_warning(args: &CronArgs, keep: u32, always: bool) {
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
fn check_config(global: &GlobalSettings, args: &CronArgs) -> Result<ExitCode> {
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

/// Step 6: restore the new backup into a temporary database (or the target
/// server, or a throwaway cluster) and run every check of `pgbak verify`.
async fn verify_step(
    global: &GlobalSettings,
    config: &Config,
    made: &Made,
    signals: &mut Signals,
) -> Result<()> {
    let mut opts = VerifyOptions::new(config.job.conn.clone(), global.pg_bin_dir.clone());
    opts.target = config.verify_target.clone();
    opts.identity_file = config.decrypt.identity_file.clone();
    opts.scratch_dir = config.decrypt.scratch_dir.clone();
    let report = verify::verify_backup(&opts, &made.dump, signals).await?;
    publish_verification(&config.job.s3, made).await;
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
async fn publish_verification(s3_args: &S3Args, made: &Made) {
    if made.meta.s3.is_none() {
        return;
    }
    let result = async {
        let store = s3::connect(S3Settings::from_args(s3_args, None)?).await?;
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

/// Webhook URLs and keys carry tokens: registered before anything can print them.
fn register_secrets(report: &CronReportArgs, verify_target_url: Option<&str>) {
    for secret in [
        &report.alert_webhook_url,
        &report.heartbeat_url,
        &report.pagerduty_routing_key,
    ]
    .into_iter()
    .flatten()
    {
        register_url_secret(secret);
    }
    if let Some(url) = verify_target_url {
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
