//! The alert webhook bodies, one pure function per format: the scripts'
//! generic JSON (plus `text`, which a Slack incoming webhook needs), a Slack
//! Block Kit message, a PagerDuty Events API v2 trigger and resolve; each
//! within the limits its receiver enforces.

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::{Failure, RunEnd, Step, EVENT};
use crate::settings::choices::AlertFormat;
use crate::ui::Redactor;

/// PagerDuty rejects summaries longer than this.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Slack rejects section texts longer than 3000 characters.
const SLACK_TEXT_MAX: usize = 2900;

/// The body to POST for `format`, the failure's text scrubbed by `redactor`
/// (the routing key, a secret in any other text, stays where PagerDuty reads
/// it). PagerDuty needs a routing key; without one this is an error (callers
/// check it before the run, see [`super::check_config`]).
pub fn payload(
    format: AlertFormat,
    failure: &Failure,
    routing_key: Option<&str>,
    redactor: &Redactor,
) -> Result<Value> {
    let failure = &failure.redacted(redactor);
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
        RunEnd::Failed if failure.step == Step::Anomaly => (failure.message(), "warning"),
        RunEnd::Failed => (
            format!(
                "{}: {} step failed",
                failure.message(),
                failure.step.as_str()
            ),
            "error",
        ),
        RunEnd::Skipped => (failure.message(), "warning"),
        RunEnd::Interrupted | RunEnd::CouldNotRun => (
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
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::sample_failure as failure;

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
        let redactor = Redactor::new(["R0UT1NGKEY", "127.0.0.1:5432"]);
        let body = payload(
            AlertFormat::Pagerduty,
            &failure(Step::Upload),
            Some("R0UT1NGKEY"),
            &Redactor::none(),
        )
        .unwrap();
        assert_eq!(body["routing_key"], "R0UT1NGKEY");
        let scrubbed = payload(
            AlertFormat::Pagerduty,
            &failure(Step::Upload),
            Some("R0UT1NGKEY"),
            &redactor,
        )
        .unwrap();
        assert_eq!(scrubbed["routing_key"], "R0UT1NGKEY");
        assert_eq!(
            scrubbed["payload"]["custom_details"]["error"],
            "connecting to ***: connection refused"
        );
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
    fn messages_say_what_happened() {
        let cases = [
            (Step::Verify, RunEnd::Failed, "PostgreSQL backup verification failed on db-host-01", "failure"),
            (Step::Verify, RunEnd::Interrupted, "PostgreSQL backup verification interrupted on db-host-01", "failure"),
            (Step::Verify, RunEnd::CouldNotRun, "PostgreSQL backup verification could not run on db-host-01", "failure"),
            (Step::Backup, RunEnd::Interrupted, "PostgreSQL backup interrupted on db-host-01", "failure"),
            (Step::Config, RunEnd::Failed, "PostgreSQL backup configuration error on db-host-01", "failure"),
            (Step::Setup, RunEnd::Skipped, "PostgreSQL backup skipped on db-host-01: another run of the same backup holds the lock", "skipped"),
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
    fn truncate_cuts_on_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééé", 2), "é…");
    }
}
