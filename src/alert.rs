//! Telling someone when an unattended run fails: the alert webhook bodies
//! (generic, Slack, PagerDuty Events API v2) as pure functions, and an HTTP
//! sender with bounded retries shared by the alert and the heartbeat.
//!
//! The generic body is the scripts' seven fields (service, event, status,
//! host, message, detail, timestamp) plus `text`, which is what a Slack
//! incoming webhook needs; the other two formats are what Slack and PagerDuty
//! document as required.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::settings::choices::AlertFormat;

/// The `event` field: what the scripts sent.
pub const EVENT: &str = "pg-backup";
/// Where PagerDuty Events API v2 events go when ALERT_WEBHOOK_URL is not set.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// One attempt may take this long (connecting included).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// All attempts and the waits between them together: a receiver that hangs
/// cannot hold the run longer than this.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// PagerDuty rejects summaries longer than this.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Slack rejects section texts longer than 3000 characters.
const SLACK_TEXT_MAX: usize = 2900;

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
pub enum Outcome {
    /// The step failed (for verify: the backup failed a check).
    Failed,
    /// SIGINT or SIGTERM (a `systemctl stop`, a reboot) stopped the run during the step.
    Interrupted,
    /// Verify could not run (its target server was unreachable): no verdict on the backup.
    CouldNotRun,
    /// Another run of the same group held the lock: this run did nothing.
    Skipped,
}

impl Outcome {
    /// The `status` field. Interrupted and could-not-run runs are failures
    /// too (no good backup was proven tonight); receivers filter on `failure`.
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
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
    pub outcome: Outcome,
    /// `full`, `schema` or `data`.
    pub mode: String,
    pub duration: Duration,
    /// The run's log file; None when it could not be opened.
    pub log: Option<String>,
    /// The error on one line, already scrubbed of secrets.
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
            Outcome::Failed => self.step.message(host),
            Outcome::Interrupted => {
                format!("PostgreSQL {during} interrupted on {host}")
            }
            Outcome::CouldNotRun => {
                format!("PostgreSQL {during} could not run on {host}")
            }
            Outcome::Skipped => format!(
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

/// The body to POST for `format`. PagerDuty needs a routing key; without one
/// this is an error (callers check it before the run, see [`check_config`]).
pub fn payload(format: AlertFormat, failure: &Failure, routing_key: Option<&str>) -> Result<Value> {
    match format {
        AlertFormat::Generic => Ok(generic(failure)),
        AlertFormat::Slack => Ok(slack(failure)),
        AlertFormat::Pagerduty => {
            let key = routing_key
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| {
                    anyhow!("ALERT_WEBHOOK_FORMAT=pagerduty needs PAGERDUTY_ROUTING_KEY")
                })?;
            Ok(pagerduty(failure, key))
        }
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

/// The scripts' JSON, plus `text` so Slack-compatible receivers accept it.
pub fn generic(failure: &Failure) -> Value {
    let mut map = failure.fields();
    map.insert("text".into(), json!(plain_text(failure)));
    Value::Object(map)
}

fn plain_text(failure: &Failure) -> String {
    format!(
        "[{}] {}: {}",
        failure.service,
        failure.message(),
        failure.detail()
    )
}

/// A Slack incoming-webhook message: `text` (the notification and fallback)
/// and Block Kit blocks with the same facts laid out.
pub fn slack(failure: &Failure) -> Value {
    let field =
        |name: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{name}:*\n{value}")});
    let error = truncate(&failure.error, SLACK_TEXT_MAX);
    json!({
        "text": truncate(&plain_text(failure), SLACK_TEXT_MAX),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(&format!(":rotating_light: {}", failure.message()), 150), "emoji": true}
            },
            {
                "type": "section",
                "fields": [
                    field("Service", &failure.service),
                    field("Host", &failure.host),
                    field("Failed step", failure.step.as_str()),
                    field("Database", &failure.database),
                    field("Mode", &failure.mode),
                    field("Duration", &format!("{}s", failure.duration.as_secs())),
                    field("Time (UTC)", &failure.timestamp()),
                ]
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*Error:*\n```{}```", error.replace("```", "'''"))}
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": format!("Log: `{}` | event {EVENT} | status {}", failure.log.as_deref().unwrap_or("(none)"), failure.status())}
                ]
            }
        ]
    })
}

/// A PagerDuty Events API v2 trigger. One open incident per host, database
/// and mode: nightly failures of the same backup are grouped instead of
/// paging again, the weekly schema job's incident is its own, and the next
/// success resolves it ([`pagerduty_resolve`]).
pub fn pagerduty(failure: &Failure, routing_key: &str) -> Value {
    let mut details = failure.fields();
    details.insert("step".into(), json!(failure.step.as_str()));
    details.insert("database".into(), json!(failure.database));
    details.insert("mode".into(), json!(failure.mode));
    details.insert("duration_seconds".into(), json!(failure.duration.as_secs()));
    details.insert("log".into(), json!(failure.log));
    details.insert("error".into(), json!(failure.error));
    let (summary, severity) = match failure.outcome {
        Outcome::Failed if failure.step == Step::Anomaly => (failure.message(), "warning"),
        Outcome::Failed => (
            format!(
                "{}: {} step failed",
                failure.message(),
                failure.step.as_str()
            ),
            "error",
        ),
        Outcome::Skipped => (failure.message(), "warning"),
        Outcome::Interrupted | Outcome::CouldNotRun => (
            format!("{} ({} step)", failure.message(), failure.step.as_str()),
            "error",
        ),
    };
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(&failure.host, &failure.database, &failure.mode),
        "client": "pgbak",
        "payload": {
            "summary": truncate(&summary, PAGERDUTY_SUMMARY_MAX),
            "source": failure.host,
            "severity": severity,
            "timestamp": failure.timestamp(),
            "component": "postgresql",
            "group": failure.service,
            "class": format!("{EVENT}/{}", failure.step.as_str()),
            "custom_details": Value::Object(details),
        }
    })
}

/// A PagerDuty Events API v2 resolve of the incident a failure of this
/// host, database and mode opened (a no-op at PagerDuty when none is open).
pub fn pagerduty_resolve(routing_key: &str, host: &str, database: &str, mode: &str) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(host, database, mode),
    })
}

/// One incident per host, database and mode.
fn dedup_key(host: &str, database: &str, mode: &str) -> String {
    truncate(&format!("{EVENT}/{host}/{database}/{mode}"), 255)
}

/// At most `max` characters, cut on a character boundary, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How a request went wrong, and whether another attempt may help.
#[derive(Debug)]
struct AttemptError {
    retry: bool,
    error: anyhow::Error,
}

/// A client for webhooks: per-attempt timeout, no URL in its errors.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT.min(Duration::from_secs(5)))
        .user_agent(concat!("pgbak/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// POSTs `body` as JSON, retrying (with backoff) on timeouts, connection
/// errors, 429 and 5xx; gives up after [`TOTAL_TIMEOUT`]. Returns the number
/// of attempts made.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Result<usize> {
    let bytes = serde_json::to_vec(body).context("encoding the webhook body")?;
    send(|| {
        client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes.clone())
    })
    .await
}

/// GETs `url` with the same retries and bound (heartbeats).
pub async fn get(client: &reqwest::Client, url: &str) -> Result<usize> {
    send(|| client.get(url)).await
}

/// POSTs `body` as plain text with the same retries and bound (heartbeats with a log).
pub async fn post_text(client: &reqwest::Client, url: &str, body: String) -> Result<usize> {
    send(|| {
        client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body.clone())
    })
    .await
}

async fn send(request: impl Fn() -> reqwest::RequestBuilder) -> Result<usize> {
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let attempt = || async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = request().send().await.map_err(|e| AttemptError {
            retry: e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
            error: anyhow::Error::new(e.without_url()),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text = truncate(text.trim(), 200);
        Err(AttemptError {
            retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            error: anyhow!("the receiver answered {status}: {text:?}"),
        })
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(4))
        .with_max_times(5)
        .with_jitter();
    let retried = attempt
        .retry(backoff)
        .when(|e: &AttemptError| e.retry)
        .notify(|e: &AttemptError, wait: Duration| {
            crate::ui::warn(&format!(
                "webhook attempt failed ({}); retrying in {:.1}s",
                crate::error::one_line(&e.error),
                wait.as_secs_f64()
            ));
        });
    let made = || attempts.load(std::sync::atomic::Ordering::Relaxed);
    match tokio::time::timeout(TOTAL_TIMEOUT, retried).await {
        Ok(Ok(())) => Ok(made()),
        Ok(Err(e)) => Err(e.error.context(format!("after {} attempt(s)", made()))),
        Err(_) => Err(anyhow!(
            "no answer within {}s ({} attempt(s))",
            TOTAL_TIMEOUT.as_secs(),
            made()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn failure(step: Step) -> Failure {
        Failure {
            service: "enterprise-agent-platform".into(),
            host: "db-host-01".into(),
            database: "enterprise_agents".into(),
            step,
            outcome: Outcome::Failed,
            mode: "full".into(),
            duration: Duration::from_millis(12_400),
            log: Some("/var/log/pg-backup/backup-20240315T020000.log".into()),
            error: "connecting to 127.0.0.1:5432: connection refused".into(),
            at: Utc.with_ymd_and_hms(2024, 3, 15, 2, 0, 12).unwrap(),
        }
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
    fn generic_is_the_scripts_seven_fields_plus_text() {
        let body = generic(&failure(Step::Backup));
        let obj = body.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "detail",
                "event",
                "host",
                "message",
                "service",
                "status",
                "text",
                "timestamp"
            ]
        );
        assert_eq!(body["service"], "enterprise-agent-platform");
        assert_eq!(body["event"], "pg-backup");
        assert_eq!(body["status"], "failure");
        assert_eq!(body["host"], "db-host-01");
        assert_eq!(body["message"], "PostgreSQL backup failed on db-host-01");
        assert_eq!(
            body["detail"],
            "Mode: full | Duration: 12s | Log: /var/log/pg-backup/backup-20240315T020000.log \
             | Step: backup | Error: connecting to 127.0.0.1:5432: connection refused"
        );
        assert_eq!(body["timestamp"], "2024-03-15T02:00:12Z");
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with(
            "[enterprise-agent-platform] PostgreSQL backup failed on db-host-01: Mode: full"
        ));
    }

    #[test]
    fn generic_without_log_says_none() {
        let mut f = failure(Step::Setup);
        f.log = None;
        assert!(generic(&f)["detail"]
            .as_str()
            .unwrap()
            .contains("Log: (none)"));
    }

    #[test]
    fn slack_has_text_and_valid_blocks() {
        let mut f = failure(Step::Verify);
        f.error = "x".repeat(5000);
        let body = slack(&f);
        assert!(body["text"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL backup verification failed on db-host-01"));
        assert!(body["text"].as_str().unwrap().chars().count() <= SLACK_TEXT_MAX);
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert!(fields.len() <= 10, "Slack allows 10 fields");
        assert!(fields.iter().any(|f| f["text"] == "*Failed step:*\nverify"));
        for block in blocks {
            for text in [&block["text"]["text"]] {
                if let Some(t) = text.as_str() {
                    assert!(t.chars().count() <= 3000, "Slack section text limit");
                }
            }
        }
        assert!(blocks[3]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("backup-20240315T020000.log"));
    }

    #[test]
    fn pagerduty_is_an_events_v2_trigger() {
        let body = payload(
            AlertFormat::Pagerduty,
            &failure(Step::Upload),
            Some("R0UT1NGKEY"),
        )
        .unwrap();
        assert_eq!(body["routing_key"], "R0UT1NGKEY");
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(
            body["dedup_key"],
            "pg-backup/db-host-01/enterprise_agents/full"
        );
        let p = &body["payload"];
        assert_eq!(
            p["summary"],
            "PostgreSQL backup upload failed on db-host-01: upload step failed"
        );
        assert_eq!(p["source"], "db-host-01");
        assert_eq!(p["severity"], "error");
        assert_eq!(p["timestamp"], "2024-03-15T02:00:12Z");
        let d = &p["custom_details"];
        for key in [
            "service",
            "event",
            "status",
            "host",
            "message",
            "detail",
            "timestamp",
        ] {
            assert!(d.get(key).is_some(), "custom_details.{key}");
        }
        assert_eq!(d["step"], "upload");
    }

    #[test]
    fn pagerduty_summary_is_cut_to_its_limit() {
        let mut f = failure(Step::Backup);
        f.host = "h".repeat(2000);
        let body = pagerduty(&f, "k");
        assert_eq!(
            body["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        assert!(body["dedup_key"].as_str().unwrap().chars().count() <= 255);
    }

    #[test]
    fn pagerduty_without_routing_key_is_refused() {
        assert!(payload(AlertFormat::Pagerduty, &failure(Step::Backup), None).is_err());
        assert!(payload(AlertFormat::Pagerduty, &failure(Step::Backup), Some(" ")).is_err());
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
    fn messages_say_what_happened() {
        let cases = [
            (Step::Verify, Outcome::Failed, "PostgreSQL backup verification failed on db-host-01", "failure"),
            (Step::Verify, Outcome::Interrupted, "PostgreSQL backup verification interrupted on db-host-01", "failure"),
            (Step::Verify, Outcome::CouldNotRun, "PostgreSQL backup verification could not run on db-host-01", "failure"),
            (Step::Backup, Outcome::Interrupted, "PostgreSQL backup interrupted on db-host-01", "failure"),
            (Step::Config, Outcome::Failed, "PostgreSQL backup configuration error on db-host-01", "failure"),
            (Step::Setup, Outcome::Skipped, "PostgreSQL backup skipped on db-host-01: another run of the same backup holds the lock", "skipped"),
        ];
        for (step, outcome, message, status) in cases {
            let mut f = failure(step);
            f.outcome = outcome;
            let body = generic(&f);
            assert_eq!(body["message"], message, "{step:?} {outcome:?}");
            assert_eq!(body["status"], status, "{step:?} {outcome:?}");
        }
    }

    #[test]
    fn pagerduty_resolve_closes_the_same_incident() {
        let trigger = pagerduty(&failure(Step::Backup), "K");
        let resolve = pagerduty_resolve("K", "db-host-01", "enterprise_agents", "full");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["routing_key"], "K");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        let other_mode = pagerduty_resolve("K", "db-host-01", "enterprise_agents", "schema");
        assert_ne!(other_mode["dedup_key"], trigger["dedup_key"]);
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

    #[test]
    fn truncate_cuts_on_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééé", 2), "é…");
    }
}
