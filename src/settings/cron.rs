//! `pgbak cron`'s settings, resolved once at dispatch. Unlike the other
//! commands', resolving them never fails as a whole: an unattended run must
//! still report a bad setting (log, alert, heartbeat, metrics), so the parts
//! are resolved apart, in the order the run needs them:
//! - where it reports ([`Reporter`]), each channel on its own: a bad
//!   heartbeat URL is still alerted, a bad alert setting still pings `/fail`;
//! - everything else ([`CronConfig`]): the backup plan (through the same
//!   [`BackupPlan::resolve`] as `pgbak backup`, as a [`Runner::Unattended`]),
//!   and the verify of each backup it makes (the same [`VerifyOptions`] as
//!   `pgbak verify`'s, with its defaults); its error is the run's
//!   configuration failure, reported once the run log is open.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::backup::{BackupPlan, Runner};
use super::commands::GlobalSettings;
use super::expect::ExpectedTables;
pub use super::refusal::describe_refusal;
use super::verify::{Target, VerifyOptions};
use super::{vars, Env};
use crate::alert::{self, AlertTarget};
use crate::cli::{CronArgs, CronReportArgs, CronReportOnly};
use crate::encryption::{Identities, Recipients};
use crate::error::{self, usage};
use crate::heartbeat::Heartbeat;
use crate::metrics;
use crate::mode::Mode;
use crate::pg::url::ConnSettings;
use crate::ui::Redactor;

/// The database label (and lock group) of an `--all-databases` run.
pub const ALL_DATABASES: &str = "(all databases)";

/// `pgbak cron`.
pub struct CronSettings {
    /// Where the run reports.
    pub reporter: Reporter,
    /// The reporting settings' own problems (exit 2), reported through what parsed.
    pub reporting: Result<()>,
    /// `--check-config`: check, print the warnings, run nothing.
    pub check_config: bool,
    /// Run logs kept in the log directory; 0 keeps all.
    pub log_keep: u32,
    /// How long to wait for another run of the group to finish.
    pub lock_wait: Duration,
    /// Everything else; an error here is the run's configuration failure.
    pub config: Result<CronConfig>,
}

/// What the run does, resolved and checked before any work.
pub struct CronConfig {
    pub plan: BackupPlan,
    /// With `--verify` (or `VERIFY_ON_BACKUP=true`, unless `--no-verify`):
    /// how each new backup is verified. With `--all-databases` each database's
    /// verify takes its own connection ([`VerifyOptions::for_database`]).
    pub verify: Option<VerifyOptions>,
    /// `PGBAK_VERIFY_CHECKSUMS` / `PGBAK_VERIFY_SAMPLE`: re-proving the
    /// retained backups after a successful run.
    pub reprove: Option<CronReprove>,
}

/// What cron re-proves after a successful run, and how a sample is verified.
#[derive(Debug, Clone)]
pub struct CronReprove {
    pub checksums: super::reprove::Cadence,
    pub sample: u32,
    /// Only these databases (the run's; empty with `--all-databases`: every one).
    pub databases: Vec<String>,
    pub verify: VerifyOptions,
}

/// Where a run reports: the log directory, the alert webhook, the heartbeat,
/// the metrics file, and the group the run is counted under.
pub struct Reporter {
    pub log_dir: PathBuf,
    pub alert: Option<AlertTarget>,
    pub heartbeat: Option<Heartbeat>,
    /// The alert's `service` field.
    pub alert_service: String,
    pub metrics_file: Option<PathBuf>,
    pub group: metrics::GroupLabels,
    /// The run's secrets ([`super::secrets`]), scrubbed from the alert and
    /// heartbeat bodies.
    pub redactor: Redactor,
}

impl CronSettings {
    pub fn resolve(global: &GlobalSettings, args: CronArgs) -> CronSettings {
        Self::resolve_in(global, args, super::env())
    }

    /// [`CronSettings::resolve`] with the environment given.
    pub fn resolve_in(global: &GlobalSettings, args: CronArgs, env: &Env) -> CronSettings {
        let all_databases = super::backup::all_databases(&args.dump);
        let mut group = group_in(env, args.dump.mode, all_databases);
        group.server = server_in(env, args.dump.server_name.as_deref());
        let redactor = global.redactor.clone();
        let (reporter, reporting) = Reporter::resolve(&args.report, group, redactor);
        CronSettings {
            reporter,
            reporting,
            check_config: args.check_config,
            log_keep: args.log_keep,
            lock_wait: args.lock_wait,
            config: CronConfig::resolve(global, &args, env),
        }
    }
}

impl Reporter {
    /// Each channel on its own; the error (exit 2) is the run's first
    /// failure, which what parsed reports. `redactor`: the run's secrets.
    pub fn resolve(
        report: &CronReportArgs,
        group: metrics::GroupLabels,
        redactor: Redactor,
    ) -> (Reporter, Result<()>) {
        let transport = super::transport::warn_if_cleartext;
        if let Some(url) = &report.alert_webhook_url {
            transport("ALERT_WEBHOOK_URL", url, "the alert and the URL's token");
        }
        if let Some(url) = &report.heartbeat_url {
            transport("HEARTBEAT_URL", url, "the ping and the URL's token");
        }
        let alert = alert::check_config(
            report.alert_webhook_url.as_deref(),
            report.alert_webhook_format,
            report.pagerduty_routing_key.as_deref(),
        );
        let heartbeat = report
            .heartbeat_url
            .as_deref()
            .map(|url| Heartbeat::new(url, report.heartbeat_kind).context("HEARTBEAT_URL"))
            .transpose();
        let errors: Vec<String> = [alert.as_ref().err(), heartbeat.as_ref().err()]
            .into_iter()
            .flatten()
            .map(error::one_line)
            .collect();
        let reporter = Reporter {
            log_dir: report.log_dir.clone(),
            alert: alert.ok().flatten(),
            heartbeat: heartbeat.ok().flatten(),
            alert_service: report.alert_service.clone(),
            metrics_file: report.metrics_file.clone(),
            group,
            redactor,
        };
        let checked = if errors.is_empty() {
            Ok(())
        } else {
            Err(usage(errors.join("; ")))
        };
        (reporter, checked)
    }
}

impl CronConfig {
    /// Every setting the run needs, each error naming its variable.
    fn resolve(global: &GlobalSettings, args: &CronArgs, env: &Env) -> Result<CronConfig> {
        if let Some(err) = super::env_file_error() {
            anyhow::bail!("{err}");
        }
        let dir = args.backup_dir.clone();
        let plan = BackupPlan::resolve_in(global, &args.dump, dir, Runner::Unattended, env)?;
        let verify = args.verify && !args.no_verify;
        let verify_target = match &args.verify_target_url {
            Some(url) => {
                let conn = ConnSettings::from_url(url, &env.lookup());
                Target::Url(conn.context("PGBAK_VERIFY_TARGET_URL")?)
            }
            None if args.verify_ephemeral => Target::Ephemeral,
            None => Target::SourceServer,
        };
        let expected_tables = ExpectedTables::resolve(&args.expect)?;
        // --all-databases never verifies (it says so), so it needs no private key:
        // a job that only backs up should not hold one.
        if verify && plan.all_databases.is_none() {
            let identity_file = args.decrypt.identity_file.as_deref();
            check_identity(plan.job.recipients.as_ref(), identity_file)?;
        }
        if args.decrypt.require_encryption {
            super::backup::refuse_plaintext(plan.job.recipients.as_ref())?;
        }
        let mut decrypt = super::restore::decrypt(&args.decrypt)?;
        // A run that encrypts verifies nothing but encrypted backups.
        decrypt.require_encryption |= plan.job.recipients.is_some();
        let options = {
            let job = &plan.job;
            let (conn, bin_dir) = (job.conn.clone(), job.pg_bin_dir.clone());
            VerifyOptions {
                expected_tables,
                ..VerifyOptions::resolve(conn, bin_dir, verify_target, decrypt, env)
            }
        };
        let reprove = (args.verify_checksums != super::reprove::Cadence::Never
            || args.verify_sample > 0)
            .then(|| CronReprove {
                checksums: args.verify_checksums,
                sample: args.verify_sample,
                databases: match plan.all_databases {
                    Some(_) => Vec::new(),
                    None => vec![crate::storage::safe_database_name(&plan.job.conn.dbname)],
                },
                verify: options.clone(),
            });
        let verify = verify.then_some(options);
        Ok(CronConfig {
            plan,
            verify,
            reprove,
        })
    }
}

/// A run that verifies an encrypted backup needs an identity that fits one
/// of its recipients, else every night's verify would fail after the dump.
fn check_identity(recipients: Option<&Recipients>, file: Option<&std::path::Path>) -> Result<()> {
    let Some(recipients) = recipients else {
        return Ok(());
    };
    let Some(file) = file else {
        return Err(usage(
            "verifying encrypted backups needs their private key: set PGBAK_AGE_IDENTITY_FILE, \
             or verify on another host (pgbak verify --identity-file) and drop --verify / \
             VERIFY_ON_BACKUP here",
        ));
    };
    let identities = Identities::load(file)?;
    if !identities.fits_any(&recipients.texts()) {
        return Err(usage(format!(
            "PGBAK_AGE_IDENTITY_FILE {} holds the key of {} but backups are encrypted to {}: \
             verify could never decrypt them",
            file.display(),
            identities.publics.join(", "),
            recipients.texts().join(", ")
        )));
    }
    Ok(())
}

/// The group a run's metrics and lock belong to. The database comes from
/// the connection settings (parsed, not connected), so even a run that fails
/// before it starts is counted under its own database.
fn group_in(env: &Env, mode: Mode, all_databases: bool) -> metrics::GroupLabels {
    let database = if all_databases {
        ALL_DATABASES.to_owned()
    } else {
        super::explicit_connection_in(env)
            .map(|c| c.dbname)
            .unwrap_or_default()
    };
    metrics::GroupLabels {
        database,
        mode: mode.as_str().to_owned(),
        label: String::new(),
        server: server_in(env, None),
    }
}

/// The server label of a run's metrics: `--server-name` (`flag`), else
/// PGBAK_SERVER_NAME, else the connection's default name; empty when none
/// of them can be read (the run then fails on its configuration anyway).
fn server_in(env: &Env, flag: Option<&str>) -> String {
    let named = flag
        .map(str::to_owned)
        .or_else(|| env.get(vars::PGBAK_SERVER_NAME));
    super::explicit_connection_in(env)
        .ok()
        .and_then(|conn| super::backup::server_name(named.as_deref(), &conn).ok())
        .or(named)
        .unwrap_or_default()
}

/// The reporting settings alone, for a `pgbak cron` whose command line (or
/// environment) clap refused: `argv` is that command line, read without clap
/// for its `--mode` (`mode`) and `--all-databases`. The error is clap's
/// refusal of the reporting settings themselves, on one line. The reporter's
/// redactor holds the environment's secrets and the reporting settings'.
pub fn reporting_only(argv: &[OsString], mode: Mode) -> Result<(Reporter, Result<()>), String> {
    let report = super::parse::<CronReportOnly>(["pgbak"])
        .map_err(|err| describe_refusal(&[], &err))?
        .report;
    let env = super::env();
    // Only the run's label: a variable that is not a boolean (clap refused
    // the command line for it) labels the run as one database's.
    let given = |flag: &str| argv.iter().any(|a| a == flag);
    let all = !given("--no-all-databases")
        && (given("--all-databases")
            || env.bool(vars::PGBAK_ALL_DATABASES).ok().flatten() == Some(true));
    let redactor = super::secrets::report_redactor(Some(&report));
    Ok(Reporter::resolve(
        &report,
        group_in(env, mode, all),
        redactor,
    ))
}

#[cfg(test)]
mod tests;
