//! `pgbak check`.

use std::path::PathBuf;

use clap::Args;

use super::{parse_limit, BackupDirArgs, HeartbeatKind, Mode, S3Args};
use crate::settings::vars;

#[derive(Debug, Args)]
#[command(after_help = "\
Groups are (database, mode, label); by default the unlabelled `full` groups are checked. \
A group fails when it has no complete backup, its newest backup is older than --max-age, \
its newest passed verification is older than --max-verified-age (or there is none), or the \
last verify of any of its backups failed. A limit of 0 turns that check off. The check also \
fails when a server's newest `--all-databases` run is incomplete: a backup of it failed, or it \
never finished within --max-run-duration (killed).

Exit codes: 0 every group within limits; 1 a group is not (one line per group says why), \
no backup was found, or the store could not be read; 2 bad usage.")]
pub struct CheckArgs {
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Also read the backups under the S3 prefix (one paginated listing).
    #[arg(long)]
    pub s3: bool,
    /// Only this database (repeatable); one with no backup at all fails the check.
    #[arg(long = "database", value_name = "NAME")]
    pub databases: Vec<String>,
    /// Mode of the groups to check: full, schema, data, or globals (the roles of
    /// `--all-databases` runs; never verified, so only their age is checked). A weekly schema
    /// job wants its own check with a longer --max-age.
    #[arg(
        long,
        default_value = "full",
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::PossibleValuesParser::new(["full", "schema", "data", "globals"]),
            |m: String| Mode::parse(&m).unwrap_or(Mode::Full)
        )
    )]
    pub mode: Mode,
    /// Check the groups with this label instead of the unlabelled ones.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Newest backup of a group may be at most this old (26h, 90m, 2d; 0 = no limit).
    #[arg(
        long,
        env = vars::PGBAK_CHECK_MAX_AGE,
        default_value = "26h",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_age: std::time::Duration,
    /// Newest backup that passed `pgbak verify` may be at most this old (0 = not checked).
    #[arg(
        long,
        env = vars::PGBAK_CHECK_MAX_VERIFIED_AGE,
        default_value = "8d",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_verified_age: std::time::Duration,
    /// Every retained backup of a group must have been proven (a passing restore verify or
    /// `verify --checksum-only` proof) within this span; a backup never proven counts from when
    /// it was made (0 = not checked). Reads every backup's verdict.
    #[arg(
        long,
        env = vars::PGBAK_CHECK_MAX_UNPROVEN_AGE,
        default_value = "0",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_unproven_age: std::time::Duration,
    /// An `--all-databases` run with no end record this long after its start counts as killed
    /// (the newest run of a server must be complete, or the check fails).
    #[arg(
        long,
        env = vars::PGBAK_CHECK_MAX_RUN_DURATION,
        default_value = "12h",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_run_duration: std::time::Duration,
    /// The newest passed verify's restore of a group may have taken at most this long (the RTO
    /// it measured; 0 = not checked): a group whose restore took longer, or whose restore time
    /// was never measured, fails.
    #[arg(
        long,
        env = vars::PGBAK_CHECK_MAX_RTO,
        default_value = "0",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_rto: std::time::Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print an audit report instead of the table, per server and database: the last
    /// successful restore test and its restore time, the retained backups (how many, oldest,
    /// newest), pins and locks. The exit code is still the check's.
    #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "json")]
    pub report: Option<crate::settings::choices::AuditFormat>,
    /// Write node_exporter textfile metrics here (atomically, mode 0644), e.g.
    /// /var/lib/node_exporter/textfile_collector/pgbak_check.prom.
    #[arg(long, env = vars::PGBAK_CHECK_PROMETHEUS_FILE, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Ping this URL on every check (dead man's switch): see --heartbeat-kind.
    #[arg(
        long,
        env = vars::PGBAK_CHECK_HEARTBEAT_URL,
        value_name = "URL",
        hide_env_values = true
    )]
    pub heartbeat_url: Option<String>,
    /// plain: GET on success only; healthchecks: /start, success with the report, /fail with
    /// the failing groups; auto: healthchecks for hc-ping.com, else plain.
    #[arg(long, env = vars::HEARTBEAT_KIND, value_enum, default_value_t = HeartbeatKind::Auto)]
    pub heartbeat_kind: HeartbeatKind,
    /// meta.json files read from S3 at once.
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub read_concurrency: u16,
    /// Check the settings (limits, S3, heartbeat URL), then exit without reading any
    /// backup: 0 when valid, 2 when not.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub s3_args: S3Args,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}
