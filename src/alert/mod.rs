//! Telling someone when an unattended run fails: what failed ([`Failure`]:
//! the step, how the run ended, the message and detail), where alerts go
//! ([`check_config`]); the webhook bodies per format (generic, Slack,
//! PagerDuty Events API v2) as pure functions in [`body`], scrubbed by the
//! run's redactor ([`payload`] takes it); the HTTP sender
//! with bounded retries, shared by the alert and the heartbeat, in [`send`].
//!
//! The generic body is the scripts' seven fields (service, event, status,
//! host, message, detail, timestamp) plus `text`, which is what a Slack
//! incoming webhook needs; the other two formats are what Slack and PagerDuty
//! document as required.

pub mod body;
pub mod send;

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub use self::body::{generic, pagerduty, pagerduty_resolve, payload, slack};
pub use self::send::{client, get, post_json, post_text, ATTEMPT_TIMEOUT, TOTAL_TIMEOUT};
use crate::settings::choices::AlertFormat;
use crate::ui::Redactor;

/// The `event` field: what the scripts sent.
pub const EVENT: &str = "pg-backup";
/// Where PagerDuty Events API v2 events go when ALERT_WEBHOOK_URL is not set.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The step of a cron run that failed; named in the alert's message and detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A setting (flag, environment variable, environment file) is invalid: nothing was attempted.
    Config,
    /// Before the backup: the log file could not be opened, the lock could not be taken.
    Setup,
    Backup,
    Upload,
    Verify,
    Retention,
    /// Not a failure: the backup shrank suspiciously and the previous one was
    /// pinned; sent with status `warning`.
    Anomaly,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Config => "config",
            Step::Setup => "setup",
            Step::Backup => "backup",
            Step::Upload => "upload",
            Step::Verify => "verify",
            Step::Retention => "retention",
            Step::Anomaly => "anomaly",
        }
    }

    /// The alert's `status`: `warning` for an anomaly, else `failure`.
    pub fn status(self) -> &'static str {
        match self {
            Step::Anomaly => "warning",
            _ => "failure",
        }
    }

    /// The alert's `message` for a step that failed, in the scripts' wording where they had one.
    pub fn message(self, host: &str) -> String {
        match self {
            Step::Config => format!("PostgreSQL backup configuration error on {host}"),
            Step::Setup | Step::Backup => format!("PostgreSQL backup failed on {host}"),
            Step::Upload => format!("PostgreSQL backup upload failed on {host}"),
            Step::Verify => format!("PostgreSQL backup verification failed on {host}"),
            Step::Retention => format!("PostgreSQL backup retention failed on {host}"),
            Step::Anomaly => format!(
                "PostgreSQL backup anomaly on {host}: the new backup shrank, the previous one is pinned"
            ),
        }
    }
}

/// How the run ended at `step`: the alert says which, so an operator woken by
/// it knows whether the backup is bad, the run was stopped, or it never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The step failed (for verify: the backup failed a check).
    Failed,
    /// SIGINT or SIGTERM (a `systemctl stop`, a reboot) stopped the run during the step.
    Interrupted,
    /// Verify could not run (its target server was unreachable): no verdict on the backup.
    CouldNotRun,
    /// Another run of the same group held the lock: this run did nothing.
    Skipped,
}

impl RunEnd {
    /// The `status` field. Interrupted and could-not-run runs are failures
    /// too (no good backup was proven tonight); receivers filter on `failure`.
    pub fn status(self) -> &'static str {
        match self {
            RunEnd::Skipped => "skipped",
            _ => "failure",
        }
    }
}

/// What went wrong, with everything the receivers are told.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub service: String,
    pub host: String,
    /// The database of the run (part of PagerDuty's dedup key).
    pub database: String,
    pub step: Step,
    pub outcome: RunEnd,
    /// `full`, `schema` or `data`.
    pub mode: String,
    pub duration: Duration,
    /// The run's log file; None when it could not be opened.
    pub log: Option<String>,
    /// The error on one line ([`payload`] scrubs it of the run's secrets).
    pub error: String,
    pub at: DateTime<Utc>,
}

impl Failure {
    /// The `status` field: `warning` for an anomaly, `skipped` for a skipped run, else `failure`.
    pub fn status(&self) -> &'static str {
        match self.step {
            Step::Anomaly => Step::Anomaly.status(),
            _ => self.outcome.status(),
        }
    }

    pub fn message(&self) -> String {
        let host = &self.host;
        let during = match self.step {
            Step::Verify => "backup verification",
            Step::Upload => "backup upload",
            Step::Retention => "backup retention",
            Step::Config | Step::Setup | Step::Backup | Step::Anomaly => "backup",
        };
        match self.outcome {
            RunEnd::Failed => self.step.message(host),
            RunEnd::Interrupted => {
                format!("PostgreSQL {during} interrupted on {host}")
            }
            RunEnd::CouldNotRun => {
                format!("PostgreSQL {during} could not run on {host}")
            }
            RunEnd::Skipped => format!(
                "PostgreSQL backup skipped on {host}: another run of the same backup holds the lock"
            ),
        }
    }

    /// `Mode: full | Duration: 12s | Log: /var/log/pg-backup/backup-...log | Step: backup | Error: ...`
    pub fn detail(&self) -> String {
        format!(
            "Mode: {} | Duration: {}s | Log: {} | Step: {} | Error: {}",
            self.mode,
            self.duration.as_secs(),
            self.log.as_deref().unwrap_or("(none)"),
            self.step.as_str(),
            self.error
        )
    }

    /// The same failure with its free text (the error) scrubbed by `redactor`.
    pub fn redacted(&self, redactor: &Redactor) -> Failure {
        Failure {
            error: redactor.scrub(&self.error),
            ..self.clone()
        }
    }

    pub fn timestamp(&self) -> String {
        self.at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// The scripts' seven fields, in their order.
    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.insert("service".into(), json!(self.service));
        map.insert("event".into(), json!(EVENT));
        map.insert("status".into(), json!(self.status()));
        map.insert("host".into(), json!(self.host));
        map.insert("message".into(), json!(self.message()));
        map.insert("detail".into(), json!(self.detail()));
        map.insert("timestamp".into(), json!(self.timestamp()));
        map
    }
}

/// Where and how alerts are sent, checked before the run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTarget {
    pub url: String,
    pub format: AlertFormat,
    pub routing_key: Option<String>,
}

/// The alert target the settings describe, or None when alerting is off. A
/// configuration the alert cannot be sent with is an error. PagerDuty with a
/// routing key but no URL sends to the Events API v2 endpoint.
pub fn check_config(
    url: Option<&str>,
    format: AlertFormat,
    routing_key: Option<&str>,
) -> Result<Option<AlertTarget>> {
    let routing_key = routing_key
        .filter(|k| !k.trim().is_empty())
        .map(str::to_owned);
    let url = match (url, format) {
        (Some(url), _) => url,
        (None, AlertFormat::Pagerduty) if routing_key.is_some() => PAGERDUTY_EVENTS_URL,
        (None, _) => return Ok(None),
    };
    check_url(url).context("ALERT_WEBHOOK_URL")?;
    if format == AlertFormat::Pagerduty && routing_key.is_none() {
        return Err(anyhow!(
            "ALERT_WEBHOOK_FORMAT=pagerduty needs PAGERDUTY_ROUTING_KEY (the integration key of an Events API v2 service)"
        ));
    }
    Ok(Some(AlertTarget {
        url: url.to_owned(),
        format,
        routing_key,
    }))
}

/// An http(s) URL reqwest can send to. The URL itself is never printed: it may carry a token.
pub fn check_url(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| anyhow!("not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(anyhow!("only http:// and https:// URLs are supported"));
    }
    Ok(())
}

/// A failed nightly backup, for the tests of the bodies and the messages.
#[cfg(test)]
pub(crate) fn sample_failure(step: Step) -> Failure {
    use chrono::TimeZone;
    Failure {
        service: "enterprise-agent-platform".into(),
        host: "db-host-01".into(),
        database: "enterprise_agents".into(),
        step,
        outcome: RunEnd::Failed,
        mode: "full".into(),
        duration: Duration::from_millis(12_400),
        log: Some("/var/log/pg-backup/backup-20240315T020000.log".into()),
        error: "connecting to 127.0.0.1:5432: connection refused".into(),
        at: Utc.with_ymd_and_hms(2024, 3, 15, 2, 0, 12).unwrap(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(step: Step) -> Failure {
        sample_failure(step)
    }

    #[test]
    fn message_names_the_failed_step() {
        let cases = [
            (Step::Setup, "PostgreSQL backup failed on db-host-01"),
            (Step::Backup, "PostgreSQL backup failed on db-host-01"),
            (
                Step::Upload,
                "PostgreSQL backup upload failed on db-host-01",
            ),
            (
                Step::Verify,
                "PostgreSQL backup verification failed on db-host-01",
            ),
            (
                Step::Retention,
                "PostgreSQL backup retention failed on db-host-01",
            ),
        ];
        for (step, want) in cases {
            assert_eq!(step.message("db-host-01"), want);
            assert!(failure(step)
                .detail()
                .contains(&format!("| Step: {} |", step.as_str())));
        }
    }

    #[test]
    fn pagerduty_without_routing_key_is_refused() {
        let none = Redactor::none();
        assert!(payload(AlertFormat::Pagerduty, &failure(Step::Backup), None, &none).is_err());
        assert!(payload(
            AlertFormat::Pagerduty,
            &failure(Step::Backup),
            Some(" "),
            &none
        )
        .is_err());
        assert!(check_config(
            Some("https://events.pagerduty.com/v2/enqueue"),
            AlertFormat::Pagerduty,
            None
        )
        .is_err());
        assert_eq!(
            check_config(None, AlertFormat::Pagerduty, None).unwrap(),
            None
        );
    }

    #[test]
    fn pagerduty_without_url_uses_the_events_v2_endpoint() {
        let target = check_config(None, AlertFormat::Pagerduty, Some("KEY"))
            .unwrap()
            .expect("alerting is on");
        assert_eq!(target.url, PAGERDUTY_EVENTS_URL);
        assert_eq!(target.routing_key.as_deref(), Some("KEY"));
        assert_eq!(
            check_config(None, AlertFormat::Generic, Some("KEY")).unwrap(),
            None
        );
    }

    #[test]
    fn config_refuses_bad_urls_without_printing_them() {
        let cases = [
            ("https://hooks.slack.com/services/T0/B0/SECRETTOKEN", true),
            ("http://127.0.0.1:9/hook", true),
            ("ftp://example.com/SECRETTOKEN", false),
            ("not a url SECRETTOKEN", false),
        ];
        for (url, ok) in cases {
            let result = check_config(Some(url), AlertFormat::Generic, None);
            assert_eq!(result.is_ok(), ok, "{url}");
            if let Err(e) = result {
                assert!(!format!("{e:#}").contains("SECRETTOKEN"), "{e:#}");
            }
        }
    }
}
