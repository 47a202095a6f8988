//! `pgbak cron`, and the reporting part of it that is parsed alone when the
//! rest does not parse.

use std::path::PathBuf;

use clap::{Args, Parser};

use super::{AlertFormat, DecryptArgs, DumpArgs, ExpectArgs, HeartbeatKind};
use crate::settings::{parse_bool, vars};

#[derive(Debug, Args)]
#[command(after_help = "\
Steps, in order: read the settings (a bad value exits 2, and is still logged, alerted \
and put in the metrics), open the log file (LOG_DIR/backup-<UTC ts>.log), take the lock \
of this backup group (BACKUP_DIR/.pgbak-<db>_<mode>.<server>.lock; --lock-wait to wait for it) \
and ping the heartbeat's /start, back up (and upload when S3_BUCKET is set), verify (with --verify or \
VERIFY_ON_BACKUP=true; a failed upload does not skip it), retention (local: after the \
backup and verify succeeded; on S3: only after the upload did too), prune old logs, \
then the heartbeat (success, or /fail in the healthchecks convention) and the metrics \
file always. Any failure posts an alert to ALERT_WEBHOOK_URL; a run skipped because the \
lock was held posts one with status `skipped`. The exit code is 0 only when every step succeeded, 2 for a configuration \
error, 75 when another run of the same group holds the lock.")]
pub struct CronArgs {
    /// Verify the new backup before retention.
    #[arg(
        long,
        env = vars::VERIFY_ON_BACKUP,
        value_parser = parse_bool,
        action = clap::ArgAction::SetTrue
    )]
    pub verify: bool,
    /// Do not verify, even when VERIFY_ON_BACKUP=true (or --verify) says to.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub dump: DumpArgs,
    /// Read settings from this file first (systemd EnvironmentFile= syntax: KEY=value lines,
    /// no shell quoting needed); variables already in the environment win.
    #[arg(long, env = vars::PGBAK_ENV_FILE, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Check every setting (and print the warnings a run would), then exit: 0 when valid, 2 when not.
    #[arg(long)]
    pub check_config: bool,
    /// Directory for the backups (and the run locks).
    #[arg(
        long,
        env = vars::BACKUP_DIR,
        default_value = "/var/backups/enterprise-agents",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Keep the newest N run logs (backup-*.log) in LOG_DIR; 0 keeps all.
    #[arg(long, env = vars::LOG_KEEP, default_value_t = 30, value_name = "N")]
    pub log_keep: u32,
    /// When another run of the same database and mode holds the lock, wait this long
    /// for it (e.g. 30m, 2h) before giving up with exit 75; 0 gives up at once.
    #[arg(
        long,
        env = vars::PGBAK_LOCK_WAIT,
        default_value = "0s",
        value_parser = humantime::parse_duration,
        value_name = "DURATION"
    )]
    pub lock_wait: std::time::Duration,
    /// Verify by restoring into this server instead of the source server (its URL; the password may be in it).
    #[arg(
        long,
        env = vars::PGBAK_VERIFY_TARGET_URL,
        value_name = "URL",
        hide_env_values = true
    )]
    pub verify_target_url: Option<String>,
    /// Verify by restoring into a throwaway local cluster (initdb + postgres from the chosen bin dir).
    #[arg(long, conflicts_with = "verify_target_url")]
    pub verify_ephemeral: bool,
    /// The tables verify expects besides each backup's own (see `pgbak verify --help`).
    #[command(flatten)]
    pub expect: ExpectArgs,
    #[command(flatten)]
    pub report: CronReportArgs,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    /// After a successful run, read every retained backup of the run's databases back from the
    /// authoritative store and check its sha256 (`verify --checksum-only`): never, daily (when
    /// the store's newest checksum proof is older than 23h) or weekly (older than 7d less 1h).
    #[arg(
        long,
        env = vars::PGBAK_VERIFY_CHECKSUMS,
        value_enum,
        default_value = "never",
        value_name = "WHEN"
    )]
    pub verify_checksums: crate::settings::reprove::Cadence,
    /// After a successful run, restore (verify) the N retained full backups of the run's
    /// databases proven longest ago (`verify --sample N`); 0 = none.
    #[arg(long, env = vars::PGBAK_VERIFY_SAMPLE, default_value_t = 0, value_name = "N")]
    pub verify_sample: u32,
}

/// Where `pgbak cron` reports a run: the log directory, the alert webhook,
/// the heartbeat and the metrics file. Kept apart so that a run whose other
/// settings do not parse can still be reported (see [`CronReportOnly`]).
#[derive(Debug, Clone, Args)]
pub struct CronReportArgs {
    /// Directory for the per-run log files (created 0700).
    #[arg(
        long,
        env = vars::LOG_DIR,
        default_value = "/var/log/pg-backup",
        value_name = "DIR"
    )]
    pub log_dir: PathBuf,
    /// POST an alert here when the run fails (the URL is treated as a secret).
    /// With ALERT_WEBHOOK_FORMAT=pagerduty the default is PagerDuty's Events API v2 endpoint.
    #[arg(
        long,
        env = vars::ALERT_WEBHOOK_URL,
        value_name = "URL",
        hide_env_values = true
    )]
    pub alert_webhook_url: Option<String>,
    /// Body format of the alert (case does not matter).
    #[arg(
        long,
        env = vars::ALERT_WEBHOOK_FORMAT,
        value_enum,
        ignore_case = true,
        default_value_t = AlertFormat::Generic
    )]
    pub alert_webhook_format: AlertFormat,
    /// `service` field of the alert.
    #[arg(
        long,
        env = vars::ALERT_SERVICE,
        default_value = "enterprise-agent-platform",
        value_name = "NAME"
    )]
    pub alert_service: String,
    /// Routing (integration) key for ALERT_WEBHOOK_FORMAT=pagerduty.
    #[arg(
        long,
        env = vars::PAGERDUTY_ROUTING_KEY,
        value_name = "KEY",
        hide_env_values = true
    )]
    pub pagerduty_routing_key: Option<String>,
    /// Dead man's switch pinged by every run (the URL is treated as a secret): see --heartbeat-kind.
    #[arg(
        long,
        env = vars::HEARTBEAT_URL,
        value_name = "URL",
        hide_env_values = true
    )]
    pub heartbeat_url: Option<String>,
    /// plain: one GET after a fully successful run; healthchecks: /start when the run begins,
    /// the URL with the run's summary on success, /fail with the error on failure; auto:
    /// healthchecks for hc-ping.com URLs, else plain.
    #[arg(long, env = vars::HEARTBEAT_KIND, value_enum, default_value_t = HeartbeatKind::Auto)]
    pub heartbeat_kind: HeartbeatKind,
    /// Write Prometheus metrics here (node_exporter textfile collector, e.g. /var/lib/node_exporter/pgbak.prom).
    #[arg(long, env = vars::METRICS_FILE, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// Only the reporting settings, read from the environment: how `pgbak cron`
/// still logs, alerts and writes metrics when the rest of its command line
/// or environment does not parse.
#[derive(Debug, Parser)]
#[command(name = "pgbak")]
pub struct CronReportOnly {
    #[command(flatten)]
    pub report: CronReportArgs,
}
