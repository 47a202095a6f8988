//! The closed sets of values an operator picks from: what a flag or variable
//! may say, as types (clap parses them; the code matches on them).

use clap::ValueEnum;

/// Which receiver the alert webhook speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertFormat {
    /// The scripts' seven-field JSON plus `text` (so Slack incoming webhooks accept it too).
    Generic,
    /// A Slack incoming-webhook message (text + blocks).
    Slack,
    /// A PagerDuty Events API v2 trigger (needs PAGERDUTY_ROUTING_KEY).
    Pagerduty,
}

/// The convention a heartbeat URL speaks (see [`crate::heartbeat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeartbeatKind {
    /// healthchecks for hc-ping.com URLs, plain otherwise.
    Auto,
    /// One GET after a successful run (Uptime Kuma push, Cronitor, ...).
    Plain,
    /// healthchecks.io: /start, success with a summary, /fail with the error.
    Healthchecks,
}

/// `pgbak check --report`: the audit report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// A Markdown page (a table per server).
    Markdown,
    /// The same as one JSON document.
    Json,
}

/// S3 Object Lock mode: governance can be lifted by a user with
/// s3:BypassGovernanceRetention; compliance by nobody, not even the root account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockMode {
    Governance,
    Compliance,
}
