//! How a `pgbak cron` run is reported, whichever way it ends: the summary
//! line, the alert webhook (failure, skipped), the heartbeat and PagerDuty
//! resolve (success), and the metrics file (always). None of these changes
//! the exit code.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;

use super::{logs, outcome_of};
use super::{CronRun, Failed};
use crate::alert::{self, Failure, RunEnd, Step};
use crate::error::{self, usage};
use crate::heartbeat::Ping;
use crate::metrics::{self, RunMetrics, Update};
use crate::settings::choices::AlertFormat;
use crate::settings::command_line::mode_arg;
use crate::settings::cron::{describe_refusal, reporting_only, Reporter};
use crate::ui::{self, Verbosity};
use crate::{settings, signals};

/// The end of a run that got as far as `outcome`: summary, alert or
/// heartbeat, metrics; the exit code.
pub(super) async fn finish(
    reporter: &Reporter,
    run: CronRun,
    outcome: Result<(), Failed>,
    log_keep: u32,
) -> ExitCode {
    // Stopped by a signal: no further deletions, old logs included.
    if let Some(log) = run.log.as_ref().filter(|_| signals::pending().is_none()) {
        logs::prune(&reporter.log_dir, log, log_keep);
    }
    let duration = run.clock.elapsed();
    let code = match &outcome {
        Ok(()) => {
            ui::info(&format!(
                "pgbak cron finished: every step succeeded in {}s",
                duration.as_secs()
            ));
            0
        }
        Err(failed) => {
            ui::error(&failure_line(failed, duration));
            error::exit_code(&failed.error)
        }
    };
    let code = match signals::unless_interrupted(report(reporter, &run, &outcome, duration)).await {
        Ok(()) => code,
        Err(sig) => {
            ui::error(&format!(
                "interrupted by {} while reporting the run; its alert or heartbeat may not \
                 have been sent",
                sig.name()
            ));
            sig.exit_code()
        }
    };
    write_metrics(
        reporter,
        &Update::Finished(RunMetrics {
            group: reporter.group.clone(),
            started: run.started,
            duration,
            success: outcome.is_ok(),
            exit_code: code,
            backup_size: run.made.as_ref().map(|m| m.meta.size_bytes),
            restore_seconds: restore_seconds(run.made.as_ref()),
            steps: run.steps.clone(),
            // (`--all-databases`: each database's series say it.)
            destinations: match run.databases.is_empty() {
                true => destinations(&run.destinations, run.made.as_ref()),
                false => Vec::new(),
            },
        }),
    );
    // `--all-databases`: each database's own series, as if it had run alone.
    for db in &run.databases {
        let mut group = reporter.group.clone();
        group.database = db.database.clone();
        let exit_code = db.error.as_ref().map_or(0, |(_, e)| error::exit_code(e));
        write_metrics(
            reporter,
            &Update::Finished(RunMetrics {
                group,
                started: db.started,
                duration: db.duration,
                success: db.error.is_none(),
                exit_code,
                backup_size: db.made.as_ref().map(|m| m.meta.size_bytes),
                restore_seconds: restore_seconds(db.made.as_ref()),
                steps: db.steps.clone(),
                destinations: destinations(&run.destinations, db.made.as_ref()),
            }),
        );
    }
    ExitCode::from(code)
}

/// Each of the run's destinations (`all`), and whether `made` reached it.
fn destinations(
    all: &[String],
    made: Option<&crate::commands::backup::Made>,
) -> Vec<metrics::DestinationMetric> {
    match made {
        Some(made) => metrics::destinations_of_run(all, &made.held, made.meta.size_bytes),
        None => metrics::destinations_of_run(all, &[], 0),
    }
}

/// pg_restore's time in this run's verify of `made`: its verdict beside it
/// (only this run can have verified a backup it just made).
fn restore_seconds(made: Option<&crate::commands::backup::Made>) -> Option<f64> {
    let made = made?;
    let verdict = crate::storage::verdict::read_local(made.dump.parent()?, &made.name).ok()??;
    verdict
        .timing
        .filter(|_| verdict.passed)
        .map(|t| t.restore_seconds)
}

/// The alert and heartbeat of a failure; the heartbeat, PagerDuty resolve
/// and anomaly warning of a success.
async fn report(
    reporter: &Reporter,
    run: &CronRun,
    outcome: &Result<(), Failed>,
    duration: std::time::Duration,
) {
    match outcome {
        Ok(()) => {
            if let Some(heartbeat) = &reporter.heartbeat {
                let summary = success_summary(reporter, run, duration);
                heartbeat
                    .send(Ping::Success, &summary, &reporter.redactor)
                    .await;
            }
            resolve_incident(reporter).await;
        }
        Err(failed) => {
            let one_line = error::one_line(&failed.error);
            let failure = failure(reporter, run, failed.step, outcome_of(failed), &one_line);
            send_alert(reporter, &failure).await;
            if let Some(heartbeat) = &reporter.heartbeat {
                let line = failure_line(failed, duration);
                heartbeat.send(Ping::Fail, &line, &reporter.redactor).await;
            }
        }
    }
    // An anomaly is a warning whatever else happened (a failed upload too).
    if let Some(findings) = &run.anomaly {
        let summary = findings.summary();
        let warning = failure(reporter, run, Step::Anomaly, RunEnd::Failed, &summary);
        send_alert(reporter, &warning).await;
    }
    for db in &run.databases {
        if let Some(findings) = &db.anomaly {
            let summary = format!("database {}: {}", db.database, findings.summary());
            let mut warning = failure(reporter, run, Step::Anomaly, RunEnd::Failed, &summary);
            warning.database = db.database.clone();
            send_alert(reporter, &warning).await;
        }
    }
}

/// The failed run's line: the log's last line and the failure ping's body.
fn failure_line(failed: &Failed, duration: std::time::Duration) -> String {
    format!(
        "pgbak cron failed at the {} step after {}s: {}",
        failed.step.as_str(),
        duration.as_secs(),
        error::one_line(&failed.error)
    )
}

/// The heartbeat's `/start` (healthchecks.io convention; nothing in plain
/// mode), once the run holds its lock: the run's duration starts here, and a
/// run that then hangs is noticed by the monitor's own timeout.
pub(super) async fn started(reporter: &Reporter) {
    if let Some(heartbeat) = &reporter.heartbeat {
        heartbeat.send(Ping::Start, "", &reporter.redactor).await;
    }
}

/// The success ping's body: what was backed up, how big, each step's time,
/// and the anomaly warning if there was one. Names and sizes only: no URL.
fn success_summary(reporter: &Reporter, run: &CronRun, duration: std::time::Duration) -> String {
    let group = &reporter.group;
    let mut lines = vec![format!(
        "pgbak cron: {} backup of {} succeeded in {}s on {}",
        group.mode,
        group.database,
        duration.as_secs(),
        settings::host_name()
    )];
    if let Some(made) = &run.made {
        let uploaded = made.meta.s3.as_ref().map_or(String::new(), |s3| {
            format!(", uploaded to s3://{}/{}", s3.bucket, s3.key)
        });
        lines.push(format!(
            "backup: {} ({}){uploaded}",
            made.meta.file,
            ui::bytes(made.meta.size_bytes)
        ));
    }
    let steps: Vec<String> = run
        .steps
        .iter()
        .map(|s| format!("{} {:.1}s", s.step, s.duration.as_secs_f64()))
        .collect();
    if !steps.is_empty() {
        lines.push(format!("steps: {}", steps.join(", ")));
    }
    if let Some(findings) = &run.anomaly {
        lines.push(format!("warning: anomaly, {}", findings.summary()));
    }
    for db in run.databases.iter().filter(|d| d.anomaly.is_some()) {
        if let Some(findings) = &db.anomaly {
            lines.push(format!(
                "warning: anomaly in {}, {}",
                db.database,
                findings.summary()
            ));
        }
    }
    lines.join("\n")
}

/// A run that found its group's lock held: one error line, an alert with
/// status `skipped`, the skip counted in the metrics; exit 75. No heartbeat:
/// the run holding the lock is the one being watched (it pinged `/start`).
pub(super) async fn skipped(reporter: &Reporter, run: &CronRun, err: &anyhow::Error) -> ExitCode {
    let one_line = error::one_line(err);
    ui::error(&format!("pgbak cron skipped: {one_line}"));
    let failure = failure(reporter, run, Step::Setup, RunEnd::Skipped, &one_line);
    let code = match signals::unless_interrupted(send_alert(reporter, &failure)).await {
        Ok(()) => error::LOCKED,
        Err(sig) => sig.exit_code(),
    };
    write_metrics(
        reporter,
        &Update::Skipped {
            group: reporter.group.clone(),
            at: run.started,
        },
    );
    ExitCode::from(code)
}

/// A `pgbak cron` whose command line or environment clap refused: the error
/// names the environment variable the bad value came from, and, when the
/// reporting settings themselves parse, is logged, alerted and counted; exit 2.
pub async fn unparsed(argv: &[OsString], err: clap::Error) -> Result<ExitCode> {
    let message = describe_refusal(argv, &err);
    let resolved = reporting_only(argv, mode_arg(argv));
    // The output hides the environment's secrets (and the reporting
    // settings', when they parsed) from the first line on.
    let redactor = match &resolved {
        Ok((reporter, _)) => reporter.redactor.clone(),
        Err(_) => settings::secrets::report_redactor(None),
    };
    ui::init(Verbosity::Normal, redactor)?;
    if argv.iter().any(|a| a == "--check-config") {
        // Nothing was to run: the operator at the terminal gets the error, nobody is paged.
        return Err(usage(message));
    }
    let (reporter, reporting) = match resolved {
        Ok(resolved) => resolved,
        Err(why) => {
            return Err(usage(format!("{message} (not alerted or logged: {why})")));
        }
    };
    let mut run = CronRun::new();
    let message = match reporting {
        Ok(()) => message,
        Err(err) => format!("{message}; {}", error::one_line(&err)),
    };
    if let Ok(path) = logs::open(&reporter.log_dir, run.started) {
        run.log = Some(path);
    }
    let failed = Failed {
        step: Step::Config,
        error: usage(message),
    };
    Ok(finish(&reporter, run, Err(failed), 0).await)
}

fn failure(
    reporter: &Reporter,
    run: &CronRun,
    step: Step,
    outcome: RunEnd,
    error: &str,
) -> Failure {
    Failure {
        service: reporter.alert_service.clone(),
        host: settings::host_name(),
        database: reporter.group.database.clone(),
        step,
        outcome,
        mode: reporter.group.mode.clone(),
        duration: run.clock.elapsed(),
        log: run.log.as_ref().map(|p| p.display().to_string()),
        error: error.to_owned(),
        at: Utc::now(),
    }
}

async fn send_alert(reporter: &Reporter, failure: &Failure) {
    let Some(target) = &reporter.alert else {
        return;
    };
    let sent = async {
        let body = alert::payload(
            target.format,
            failure,
            target.routing_key.as_deref(),
            &reporter.redactor,
        )?;
        let client = alert::client()?;
        alert::post_json(&client, &target.url, &body).await
    };
    match sent.await {
        Ok(attempts) => ui::info(&format!(
            "alert sent ({} format, {attempts} attempt(s))",
            format_name(target.format)
        )),
        Err(err) => ui::error(&format!(
            "sending the alert webhook failed: {}",
            error::one_line(&err)
        )),
    }
}

/// PagerDuty: a success resolves the incident an earlier failure of this
/// host, database and mode opened (a no-op at PagerDuty when none is open).
async fn resolve_incident(reporter: &Reporter) {
    let Some(target) = &reporter.alert else {
        return;
    };
    let (AlertFormat::Pagerduty, Some(key)) = (target.format, &target.routing_key) else {
        return;
    };
    let body = alert::pagerduty_resolve(
        key,
        &settings::host_name(),
        &reporter.group.database,
        &reporter.group.mode,
    );
    let sent = async {
        let client = alert::client()?;
        alert::post_json(&client, &target.url, &body).await
    };
    match sent.await {
        Ok(_) => ui::info("PagerDuty incident of this backup resolved (if one was open)"),
        Err(err) => ui::warn(&format!(
            "sending the PagerDuty resolve failed: {}",
            error::one_line(&err)
        )),
    }
}

fn format_name(format: AlertFormat) -> &'static str {
    match format {
        AlertFormat::Generic => "generic",
        AlertFormat::Slack => "slack",
        AlertFormat::Pagerduty => "pagerduty",
    }
}

fn write_metrics(reporter: &Reporter, update: &Update) {
    let Some(path) = &reporter.metrics_file else {
        return;
    };
    match metrics::write(path, update) {
        Ok(()) => ui::debug(&format!("metrics written to {}", path.display())),
        Err(err) => ui::warn(&format!(
            "writing the metrics file: {}",
            error::one_line(&err)
        )),
    }
}
