//! `pgbak cron`: the unattended run for crontab and systemd timers.
//!
//! The steps, in order:
//! 1. take the run lock in BACKUP_DIR (a second run exits 75 at once);
//! 2. open `LOG_DIR/backup-<UTC ts>.log` (0600) and tee every line into it;
//! 3. back up (and upload, when S3 is configured): [`backup::dump`];
//! 4. verify the new backup, with `--verify` or `VERIFY_ON_BACKUP=true`;
//! 5. the anomaly check (pins the previous backup when the new one shrank:
//!    a `warning` alert, not a failure), then retention, only when 3 and 4
//!    succeeded: [`backup::apply_retention`];
//! 6. prune old run logs (`LOG_KEEP`);
//! 7. the heartbeat on success, the metrics file always, the alert webhook on
//!    failure. None of these changes the exit code: 0 only when 1-5 succeeded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::alert::{self, Failure, Step};
use crate::cli::{CronArgs, GlobalArgs};
use crate::commands::backup::{self, BackupJob, Made};
use crate::commands::verify::{self, Status, Target, VerifyOptions};
use crate::error::{self, usage};
use crate::lock::RunLock;
use crate::metrics::{self, RunMetrics, StepMetric};
use crate::pg::url::{process_env, ConnSettings};
use crate::retention::Policy;
use crate::signals::Signals;
use crate::storage::fsio;
use crate::storage::s3::{self, S3Settings, UploadFailed};
use crate::{settings, ui};

const LOG_PREFIX: &str = "backup-";
const LOG_SUFFIX: &str = ".log";
const LOG_TIMESTAMP: &str = "%Y%m%dT%H%M%S";

pub async fn run(global: &GlobalArgs, args: CronArgs) -> Result<ExitCode> {
    let started = Utc::now();
    let clock = Instant::now();
    // Webhook URLs carry tokens: register them before anything can print them.
    for secret in [
        &args.alert_webhook_url,
        &args.heartbeat_url,
        &args.pagerduty_routing_key,
    ]
    .into_iter()
    .flatten()
    {
        register_url_secret(secret);
    }
    alert::check_config(
        args.alert_webhook_url.as_deref(),
        args.alert_webhook_format,
        args.pagerduty_routing_key.as_deref(),
    )
    .map_err(|e| usage(error::one_line(&e)))?;
    if let Some(url) = &args.heartbeat_url {
        alert::check_url(url)
            .context("HEARTBEAT_URL")
            .map_err(|e| usage(error::one_line(&e)))?;
    }
    Policy::from_args(&args.retention)?;
    let verify = args.verify || settings::env_flag("VERIFY_ON_BACKUP");
    check_encryption(args.encrypt.clone(), &args.decrypt, verify)?;
    let mut signals = Signals::new()?;

    let mut run = Run {
        started,
        clock,
        log: None,
        steps: Vec::new(),
        made: None,
        database: String::new(),
        anomaly: None,
    };
    // A held lock is not a failure of this run: exit 75 before writing anything.
    let lock = match RunLock::acquire(&args.backup_dir) {
        Ok(lock) => lock,
        Err(err) if error::exit_code(&err) == error::LOCKED => return Err(err),
        Err(err) => {
            let outcome = Err(Failed {
                step: Step::Setup,
                error: err,
            });
            return Ok(finish(&args, run, outcome).await);
        }
    };
    let outcome = steps(global, &args, verify, &mut run, &mut signals).await;
    let code = finish(&args, run, outcome).await;
    drop(lock);
    Ok(code)
}

/// What the run did so far, for the alert and the metrics.
struct Run {
    started: DateTime<Utc>,
    clock: Instant,
    log: Option<PathBuf>,
    steps: Vec<StepMetric>,
    made: Option<Made>,
    database: String,
    /// The anomaly check's findings: the run succeeds, the alert says `warning`.
    anomaly: Option<crate::anomaly::Findings>,
}

/// The step that failed and why.
struct Failed {
    step: Step,
    error: anyhow::Error,
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
        let step = match &result {
            Err(err) if step == Step::Backup => failed_step(err),
            _ => step,
        };
        self.steps.push(StepMetric {
            step: step.as_str(),
            success: result.is_ok(),
            duration: clock.elapsed(),
        });
        result.map_err(|error| Failed { step, error })
    }
}

/// Steps 2-5; the first failure ends them.
async fn steps(
    global: &GlobalArgs,
    args: &CronArgs,
    verify: bool,
    run: &mut Run,
    signals: &mut Signals,
) -> Result<(), Failed> {
    let log = open_log(&args.log_dir, run.started).map_err(|error| Failed {
        step: Step::Setup,
        error,
    })?;
    run.log = Some(log.clone());
    let policy = Policy::from_args(&args.retention)
        .map(|p| p.to_string())
        .unwrap_or_default();
    ui::info(&format!(
        "pgbak cron {} starting (pid {}): {} backup into {}, keep {}, verify {}, log {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        args.mode.as_str(),
        args.backup_dir.display(),
        policy,
        if verify { "on" } else { "off" },
        log.display()
    ));

    if args.all_databases || settings::env_flag("PGBAK_ALL_DATABASES") {
        // Every database and the globals, each with its retention; verify is
        // per backup and not run here (`pgbak verify` names one backup).
        run.database = "(all databases)".to_owned();
        return run
            .step(Step::Backup, async {
                let job = backup_job(global, args)?;
                backup::check_object_lock(&job).await?;
                let excludes = super::cluster::exclude_patterns(&args.exclude_databases)?;
                if verify {
                    ui::warn("verify is not run for --all-databases; verify single backups with `pgbak verify FILE`");
                }
                super::cluster::backup_run(&job, &excludes, signals)
                    .await?
                    .result()
            })
            .await;
    }
    let mut database = String::new();
    let backed_up = run
        .step(Step::Backup, async {
            let job = backup_job(global, args)?;
            database.clone_from(&job.conn.dbname);
            backup::check_object_lock(&job).await?;
            let made = backup::dump(&job, signals).await?;
            Ok((job, made))
        })
        .await;
    run.database = database;
    // A failed upload fails the run, but a complete local backup still gets
    // verified (when asked) and local retention; the failure is returned last.
    let mut upload_failed = None;
    let (job, made) = match backed_up {
        Ok(pair) => pair,
        Err(failed) => match backup::complete_despite_upload(&failed.error) {
            Some(made) => {
                let job = backup_job(global, args).map_err(|error| Failed {
                    step: Step::Setup,
                    error,
                })?;
                upload_failed = Some(failed);
                (job, made)
            }
            None => return Err(failed),
        },
    };
    run.made = Some(made.clone());
    if verify {
        run.step(
            Step::Verify,
            verify_step(global, args, &job, &made, signals),
        )
        .await?;
    }
    // The anomaly check first: a pin that could not be written stops retention.
    let (anomaly, deleted) = run
        .step(Step::Retention, async {
            let anomaly = crate::anomaly::check_and_pin(&job, &made, job.anomaly).await?;
            let deleted = backup::apply_retention(&job, &made).await?;
            Ok((anomaly, deleted))
        })
        .await?;
    run.anomaly = anomaly;
    if !deleted.is_empty() {
        ui::info(&format!("retention removed {} file(s)", deleted.len()));
    }
    upload_failed.map_or(Ok(()), Err)
}

/// The backup job the scripts' environment describes.
fn backup_job(global: &GlobalArgs, args: &CronArgs) -> Result<BackupJob> {
    let policy = Policy::from_args(&args.retention)?;
    let upload = !args.no_s3 && args.s3.bucket.as_deref().is_some_and(|b| !b.is_empty());
    if upload {
        S3Settings::from_args(&args.s3, None)?;
        if let Some(warning) = s3::keep_warning(policy.last, &args.s3.storage_class) {
            ui::warn(&warning);
        }
    }
    let recipients = crate::encryption::Recipients::resolve(
        &args.encrypt.recipients,
        args.encrypt.recipients_file.as_deref(),
    )?;
    Ok(BackupJob {
        recipients,
        conn: settings::connection()?,
        output_dir: args.backup_dir.clone(),
        mode: args.mode,
        label: None,
        policy,
        lock: backup::object_lock_for(&args.s3, args.no_s3, &args.object_lock)?,
        anomaly: crate::anomaly::threshold(&args.anomaly)?,
        compress: args.compress.clone(),
        pg_bin_dir: global.pg_bin_dir.clone(),
        s3: args.s3.clone(),
        upload,
        lock_wait_timeout: global.lock_wait_timeout,
        pause_replay: args.pause_replay,
        cluster_run: None,
        no_role_passwords: settings::env_flag("PGBAK_NO_ROLE_PASSWORDS"),
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

/// Step 4: restore the new backup into a temporary database (or the target
/// server, or a throwaway cluster) and run every check of `pgbak verify`.
async fn verify_step(
    global: &GlobalArgs,
    args: &CronArgs,
    job: &BackupJob,
    made: &Made,
    signals: &mut Signals,
) -> Result<()> {
    let mut opts = VerifyOptions::new(job.conn.clone(), global.pg_bin_dir.clone());
    if let Some(url) = &args.verify_target_url {
        opts.target = Target::Url(
            ConnSettings::from_url(url, &process_env).context("reading PGBAK_VERIFY_TARGET_URL")?,
        );
    } else if args.verify_ephemeral {
        opts.target = Target::Ephemeral;
    }
    opts.identity_file = args.decrypt.identity_file.clone();
    opts.scratch_dir = args.decrypt.scratch_dir.clone();
    let report = verify::verify_backup(&opts, &made.dump, signals).await?;
    publish_verification(args, made).await;
    if report.passed {
        return Ok(());
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    bail!(
        "verify of {} failed: {}",
        made.dump.display(),
        failed.join("; ")
    )
}

/// Copies the meta.json that verify just updated to the bucket, so `pgbak check
/// --s3` sees the result from anywhere (the local copy may be a pod's scratch
/// space). A failure is a warning: the result is still in the local meta.json.
async fn publish_verification(args: &CronArgs, made: &Made) {
    if made.meta.s3.is_none() {
        return;
    }
    let result = async {
        let store = s3::connect(S3Settings::from_args(&args.s3, None)?).await?;
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

/// An upload failure comes out of the backup step (the upload streams while
/// pg_dump runs), typed so it can be told apart.
fn failed_step(err: &anyhow::Error) -> Step {
    if err.chain().any(|cause| cause.is::<UploadFailed>()) {
        Step::Upload
    } else {
        Step::Backup
    }
}

/// Creates LOG_DIR (0700) and the run's log file (0600), and tees output into it.
fn open_log(dir: &Path, started: DateTime<Utc>) -> Result<PathBuf> {
    fsio::ensure_dir(dir)?;
    // One file per run: runs within the same second take the next free second.
    let mut at = started;
    for _ in 0..600 {
        let path = dir.join(log_name(at));
        match fsio::create_new(&path) {
            Ok(file) => {
                ui::tee_to(file);
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                at += chrono::Duration::seconds(1);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("creating the log file {}", path.display()))
            }
        }
    }
    anyhow::bail!("no free log file name in {}", dir.display())
}

fn log_name(started: DateTime<Utc>) -> String {
    format!("{LOG_PREFIX}{}{LOG_SUFFIX}", started.format(LOG_TIMESTAMP))
}

/// Which run logs to delete: all but the newest `keep` (by the time in their
/// name), never `current`, never a file not named like a run log. 0 keeps all.
fn logs_to_prune(names: &[String], current: &str, keep: u32) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let mut logs: Vec<(NaiveDateTime, &String)> = names
        .iter()
        .filter_map(|name| {
            let stamp = name.strip_prefix(LOG_PREFIX)?.strip_suffix(LOG_SUFFIX)?;
            let at = NaiveDateTime::parse_from_str(stamp, LOG_TIMESTAMP).ok()?;
            Some((at, name))
        })
        .collect();
    logs.sort();
    logs.reverse();
    logs.into_iter()
        .skip(keep as usize)
        .map(|(_, name)| name)
        .filter(|name| *name != current)
        .cloned()
        .collect()
}

/// Step 6. Housekeeping: a failure here is a warning, not a failed run.
fn prune_logs(dir: &Path, current: &Path, keep: u32) {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(err) => {
            ui::warn(&format!(
                "listing {} to prune old logs: {err}",
                dir.display()
            ));
            return;
        }
    };
    let current = current
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for name in logs_to_prune(&names, &current, keep) {
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => ui::info(&format!("removed old log {}", path.display())),
            Err(err) => ui::warn(&format!("removing old log {}: {err}", path.display())),
        }
    }
}

/// Step 7 and the exit code.
async fn finish(args: &CronArgs, run: Run, outcome: Result<(), Failed>) -> ExitCode {
    if let Some(log) = &run.log {
        prune_logs(&args.log_dir, log, args.log_keep);
    }
    let duration = run.clock.elapsed();
    let code = match &outcome {
        Ok(()) => {
            ui::info(&format!(
                "pgbak cron finished: every step succeeded in {}s",
                duration.as_secs()
            ));
            if let Some(url) = &args.heartbeat_url {
                heartbeat(url).await;
            }
            if let (Some(url), Some(findings)) = (&args.alert_webhook_url, &run.anomaly) {
                let warning = Failure {
                    service: args.alert_service.clone(),
                    host: settings::host_name(),
                    step: Step::Anomaly,
                    mode: args.mode.as_str().to_owned(),
                    duration,
                    log: run.log.as_ref().map(|p| p.display().to_string()),
                    error: ui::scrub(&findings.summary()),
                    at: Utc::now(),
                };
                send_alert(args, url, &warning).await;
            }
            0
        }
        Err(failed) => {
            let one_line = error::one_line(&failed.error);
            ui::error(&format!(
                "pgbak cron failed at the {} step after {}s: {one_line}",
                failed.step.as_str(),
                duration.as_secs()
            ));
            if let Some(url) = &args.alert_webhook_url {
                let failure = Failure {
                    service: args.alert_service.clone(),
                    host: settings::host_name(),
                    step: failed.step,
                    mode: args.mode.as_str().to_owned(),
                    duration,
                    log: run.log.as_ref().map(|p| p.display().to_string()),
                    error: ui::scrub(&one_line),
                    at: Utc::now(),
                };
                send_alert(args, url, &failure).await;
            }
            error::exit_code(&failed.error)
        }
    };
    if let Some(path) = &args.metrics_file {
        let metrics = RunMetrics {
            database: run.database.clone(),
            mode: args.mode.as_str().to_owned(),
            started: run.started,
            duration,
            success: outcome.is_ok(),
            backup_size: run.made.as_ref().map(|m| m.meta.size_bytes),
            steps: run.steps.clone(),
            last_success: None,
        };
        match metrics::write(path, metrics) {
            Ok(()) => ui::debug(&format!("metrics written to {}", path.display())),
            Err(err) => ui::warn(&format!(
                "writing the metrics file: {}",
                error::one_line(&err)
            )),
        }
    }
    ExitCode::from(code)
}

async fn send_alert(args: &CronArgs, url: &str, failure: &Failure) {
    let sent = async {
        let body = alert::payload(
            args.alert_webhook_format,
            failure,
            args.pagerduty_routing_key.as_deref(),
        )?;
        let client = alert::client()?;
        alert::post_json(&client, url, &body).await
    };
    match sent.await {
        Ok(attempts) => ui::info(&format!(
            "alert sent ({} format, {attempts} attempt(s))",
            format_name(args)
        )),
        Err(err) => ui::error(&format!(
            "sending the alert webhook failed: {}",
            error::one_line(&err)
        )),
    }
}

fn format_name(args: &CronArgs) -> &'static str {
    match args.alert_webhook_format {
        crate::cli::AlertFormat::Generic => "generic",
        crate::cli::AlertFormat::Slack => "slack",
        crate::cli::AlertFormat::Pagerduty => "pagerduty",
    }
}

async fn heartbeat(url: &str) {
    let sent = async {
        let client = alert::client()?;
        alert::get(&client, url).await
    };
    match sent.await {
        Ok(attempts) => ui::info(&format!("heartbeat sent ({attempts} attempt(s))")),
        Err(err) => ui::warn(&format!("the heartbeat failed: {}", error::one_line(&err))),
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
    use chrono::TimeZone;

    #[test]
    fn log_name_is_the_scripts_pattern() {
        let at = Utc.with_ymd_and_hms(2024, 3, 15, 2, 0, 0).unwrap();
        assert_eq!(log_name(at), "backup-20240315T020000.log");
    }

    #[test]
    fn pruning_keeps_the_newest_and_ignores_other_files() {
        let names: Vec<String> = [
            "backup-20240101T020000.log",
            "backup-20240103T020000.log",
            "backup-20240102T020000.log",
            "backup-20240104T020000.log",
            "cron.log",
            "backup-garbage.log",
            "backup-20240101T020000.log.gz",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cases: [(u32, &str, &[&str]); 4] = [
            (
                2,
                "backup-20240104T020000.log",
                &["backup-20240102T020000.log", "backup-20240101T020000.log"],
            ),
            (4, "backup-20240104T020000.log", &[]),
            (0, "backup-20240104T020000.log", &[]),
            // The current log is never deleted, even when a clock step made it look old.
            (
                1,
                "backup-20240101T020000.log",
                &["backup-20240103T020000.log", "backup-20240102T020000.log"],
            ),
        ];
        for (keep, current, want) in cases {
            assert_eq!(logs_to_prune(&names, current, keep), want, "keep {keep}");
        }
    }

    #[test]
    fn upload_failures_are_told_from_dump_failures() {
        let cases = [
            (
                anyhow!("connection refused").context("connecting to 127.0.0.1:1"),
                Step::Backup,
            ),
            (
                anyhow::Error::new(UploadFailed {
                    message: "the local backup is complete, but uploading it failed".into(),
                    local_dump: None,
                })
                .context("backing up"),
                Step::Upload,
            ),
            (
                anyhow!("no such key").context("reading s3://b/k (upload)"),
                Step::Backup,
            ),
            (anyhow!("pg_dump failed (exit status: 1)"), Step::Backup),
        ];
        for (err, want) in cases {
            assert_eq!(failed_step(&err), want, "{err:#}");
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
