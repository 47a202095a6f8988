//! docs/reference/alerts.md: the webhook bodies `pgbak cron` sends, made by
//! `alert::body` from one sample failure, the messages of every step and
//! outcome, and a check that the page documents every key of the generic and
//! PagerDuty bodies.

use std::time::Duration;

use chrono::TimeZone;
use pgbak::alert::{self, Failure, RunEnd, Step};

use super::{assert_documented, documented_keys, json_block, key_paths};

const ROUTING_KEY: &str = "<PAGERDUTY_ROUTING_KEY>";

fn failure(step: Step, outcome: RunEnd) -> Failure {
    Failure {
        service: "enterprise-agent-platform".into(),
        host: "db-host-01".into(),
        database: "enterprise_agents".into(),
        step,
        outcome,
        mode: "full".into(),
        duration: Duration::from_secs(12),
        log: Some("/var/log/pg-backup/backup-20261125T020000.log".into()),
        error: "cannot connect to PostgreSQL at db-host-01:5432 (database \"enterprise_agents\", user \"app\"): is the server running and accepting connections there?".into(),
        at: chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 2, 0, 12)
            .single()
            .expect("a valid time"),
    }
}

fn backup_failed() -> Failure {
    failure(Step::Backup, RunEnd::Failed)
}

pub fn generic() -> String {
    json_block(&alert::generic(&backup_failed()))
}

pub fn generic_skipped() -> String {
    let mut skipped = failure(Step::Setup, RunEnd::Skipped);
    skipped.duration = Duration::ZERO;
    skipped.error = "the lock .pgbak-enterprise_agents_full.db-eu-1.lock is held by pid 1234, started 2026-11-25T02:00:00Z".into();
    json_block(&alert::generic(&skipped))
}

pub fn slack() -> String {
    json_block(&alert::slack(&backup_failed()))
}

pub fn pagerduty_trigger() -> String {
    json_block(&alert::pagerduty(&backup_failed(), ROUTING_KEY))
}

pub fn pagerduty_resolve() -> String {
    json_block(&alert::pagerduty_resolve(
        ROUTING_KEY,
        "db-host-01",
        "enterprise_agents",
        "full",
    ))
}

/// Every (step, outcome) a run can end in, with when it happens.
const CASES: &[(Step, RunEnd, &str)] = &[
    (Step::Config, RunEnd::Failed, "a setting is invalid (exit 2): nothing was attempted"),
    (Step::Setup, RunEnd::Failed, "the log file or the backup directory could not be created"),
    (Step::Backup, RunEnd::Failed, "the dump failed"),
    (Step::Upload, RunEnd::Failed, "the upload failed; the local backup is complete"),
    (Step::Verify, RunEnd::Failed, "the new backup failed a verify check"),
    (Step::Verify, RunEnd::CouldNotRun, "verify's target server was unreachable: no verdict, nothing recorded"),
    (Step::Retention, RunEnd::Failed, "retention failed"),
    (Step::Backup, RunEnd::Interrupted, "SIGINT/SIGTERM (`systemctl stop`, a reboot) during the backup"),
    (Step::Verify, RunEnd::Interrupted, "SIGINT/SIGTERM during verify"),
    (Step::Anomaly, RunEnd::Failed, "the new backup shrank below the anomaly threshold; the previous one is pinned (the run exits 0)"),
    (Step::Setup, RunEnd::Skipped, "the lock of the group was held (exit 75)"),
];

pub fn messages() -> String {
    let mut out = String::from("| `message` | `status` | step | when |\n|---|---|---|---|\n");
    for (step, outcome, when) in CASES {
        let mut sample = failure(*step, *outcome);
        sample.host = "<host>".into();
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {when} |\n",
            sample.message(),
            sample.status(),
            step.as_str()
        ));
    }
    out
}

fn page() -> String {
    crate::read(&crate::root().join("docs/reference/alerts.md"))
}

#[test]
fn every_key_of_the_generic_body_is_documented() {
    let mut keys = key_paths(&alert::generic(&backup_failed()), &[]);
    keys.extend(key_paths(
        &alert::generic(&failure(Step::Setup, RunEnd::Skipped)),
        &[],
    ));
    keys.sort();
    keys.dedup();
    assert_documented("generic", &keys, &documented_keys(&page(), "Generic"));
}

#[test]
fn every_key_of_the_pagerduty_bodies_is_documented() {
    let mut keys = key_paths(&alert::pagerduty(&backup_failed(), ROUTING_KEY), &[]);
    keys.extend(key_paths(
        &alert::pagerduty_resolve(ROUTING_KEY, "h", "d", "full"),
        &[],
    ));
    keys.sort();
    keys.dedup();
    assert_documented("pagerduty", &keys, &documented_keys(&page(), "PagerDuty"));
}

#[test]
fn the_slack_bodys_top_level_keys_are_documented() {
    let body = alert::slack(&backup_failed());
    let keys: Vec<String> = body
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert_documented("slack", &keys, &documented_keys(&page(), "Slack"));
}
