//! What a backup runs with, resolved once at dispatch: `pgbak backup`'s
//! [`BackupSettings`], and the [`BackupPlan`] it shares with `pgbak cron`
//! (one database, or every database with `--all-databases`), built by one
//! function for both. The two differ only in who is watching ([`Runner`]):
//! an operator gets libpq's defaults; an unattended run must name its
//! database. Booleans are read alike for both (clap, [`super::parse_bool`]):
//! a variable that is not a boolean is exit 2, whoever runs. Every bad value
//! is exit 2 here, before anything is touched.

use std::path::PathBuf;

use anyhow::Result;

use super::commands::{s3_if, GlobalSettings, Output};
use super::{groups, Env};
use crate::cli::{BackupArgs, DumpArgs};
use crate::encryption::Recipients;
use crate::error::usage;
use crate::mode::Mode;
use crate::pg::url::{ConnSettings, Host};
use crate::retention::Policy;
use crate::storage::object_lock::LockPolicy;
use crate::storage::s3::S3Settings;
use crate::storage::validate_label;

/// Everything one backup needs.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub conn: ConnSettings,
    pub output_dir: PathBuf,
    pub mode: Mode,
    pub label: Option<String>,
    pub policy: Policy,
    pub compress: Option<String>,
    pub pg_bin_dir: Option<PathBuf>,
    /// Where the backup is uploaded; None: it is not (no bucket, or `--no-s3`).
    pub s3: Option<S3Settings>,
    /// Longest wait for a table lock (pg_dump and pgbak's catalog reads).
    pub lock_wait_timeout: std::time::Duration,
    /// On a standby, pause WAL replay while dumping.
    pub pause_replay: bool,
    /// S3 Object Lock to set on what is uploaded (only with `s3`).
    pub lock: Option<LockPolicy>,
    /// The anomaly threshold in percent; None when the check is off.
    pub anomaly: Option<u32>,
    /// The `--all-databases` run this backup belongs to (recorded in meta.json).
    pub cluster_run: Option<String>,
    /// Leave role passwords out of a globals backup.
    pub no_role_passwords: bool,
    /// Encrypt to these (age); None writes a plaintext `.dump`.
    pub recipients: Option<Recipients>,
    /// The server's readable name, recorded in meta.json beside its system identifier.
    pub server_name: String,
    /// Sign meta.json with this key (`--signing-key-file`); None: unsigned.
    pub signing_key: Option<std::sync::Arc<crate::signing::SigningKey>>,
}

/// Who runs the backup, which decides where the connection may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `pgbak backup`: the connection falls back to libpq's defaults.
    Operator,
    /// `pgbak cron`: a database must be named (an environment file that did
    /// not load must not turn into a backup of the wrong database).
    Unattended,
}

impl Runner {
    fn connection(self, env: &Env) -> Result<ConnSettings> {
        match self {
            Runner::Operator => ConnSettings::resolve(&env.lookup()),
            Runner::Unattended => super::explicit_connection_in(env),
        }
    }
}

/// The backups a run takes: `job`'s database, or with `--all-databases`
/// every database of the server (the job then names the one to list them
/// from) and the globals.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub job: BackupJob,
    /// `--all-databases` (or `PGBAK_ALL_DATABASES`, unless `--no-all-databases`):
    /// the databases left out.
    pub all_databases: Option<Vec<glob::Pattern>>,
}

impl BackupPlan {
    /// The plan the shared dump flags describe, written to `output_dir`.
    pub fn resolve(
        global: &GlobalSettings,
        args: &DumpArgs,
        output_dir: PathBuf,
        runner: Runner,
    ) -> Result<BackupPlan> {
        Self::resolve_in(global, args, output_dir, runner, super::env())
    }

    /// [`BackupPlan::resolve`] with the environment given.
    pub fn resolve_in(
        global: &GlobalSettings,
        args: &DumpArgs,
        output_dir: PathBuf,
        runner: Runner,
        env: &Env,
    ) -> Result<BackupPlan> {
        let conn = runner.connection(env)?;
        let policy = groups::retention_policy(&args.retention)?;
        let all_databases = if all_databases(args) {
            if args.mode != Mode::Full {
                return Err(usage(
                    "--all-databases takes full backups only (a restore of the server needs them)",
                ));
            }
            Some(exclude_patterns(&args.exclude_databases)?)
        } else {
            None
        };
        let upload = !args.no_s3 && args.s3.bucket.as_deref().is_some_and(|b| !b.is_empty());
        // Bad S3 settings are a usage error before anything is dumped.
        let s3 = s3_if(upload, &args.s3)?;
        let recipients = Recipients::resolve(
            &args.encrypt.recipients,
            args.encrypt.recipients_file.as_deref(),
        )?;
        let signing_key = match &args.encrypt.signing_key_file {
            Some(path) => Some(std::sync::Arc::new(crate::signing::SigningKey::load(path)?)),
            None => None,
        };
        let lock = object_lock(args)?;
        let server_name = server_name(args.server_name.as_deref(), &conn)?;
        let job = BackupJob {
            server_name,
            lock,
            anomaly: groups::anomaly_threshold(&args.anomaly)?,
            conn,
            output_dir,
            mode: args.mode,
            label: None,
            policy,
            compress: args.compress.clone(),
            pg_bin_dir: global.pg_bin_dir.clone(),
            s3,
            lock_wait_timeout: global.lock_wait_timeout,
            pause_replay: args.pause_replay && !args.no_pause_replay,
            cluster_run: None,
            no_role_passwords: args.no_role_passwords,
            recipients,
            signing_key,
        };
        Ok(BackupPlan { job, all_databases })
    }
}

/// `pgbak backup`.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub plan: BackupPlan,
    /// `--globals`: the globals too, beside this database's backup.
    pub globals: bool,
    pub output: Output,
}

impl BackupSettings {
    pub fn resolve(global: &GlobalSettings, args: BackupArgs) -> Result<BackupSettings> {
        Self::resolve_in(global, args, super::env())
    }

    /// [`BackupSettings::resolve`] with the environment given.
    pub fn resolve_in(
        global: &GlobalSettings,
        args: BackupArgs,
        env: &Env,
    ) -> Result<BackupSettings> {
        if let Some(label) = &args.label {
            validate_label(label).map_err(usage)?;
        }
        let mut plan =
            BackupPlan::resolve_in(global, &args.dump, args.output_dir, Runner::Operator, env)?;
        if args.require_encryption {
            refuse_plaintext(plan.job.recipients.as_ref())?;
        }
        plan.job.label = args.label;
        Ok(BackupSettings {
            plan,
            globals: args.globals,
            output: Output::from_flag(args.json),
        })
    }
}

/// Whether a run backs up every database: `--all-databases` (or
/// `PGBAK_ALL_DATABASES=true`), unless `--no-all-databases` says not this time.
pub(super) fn all_databases(args: &DumpArgs) -> bool {
    args.all_databases && !args.no_all_databases
}

/// `--require-encryption` (or `PGBAK_REQUIRE_ENCRYPTION`) without a
/// recipient: the run would write plaintext, so it is refused (exit 2).
pub(super) fn refuse_plaintext(recipients: Option<&Recipients>) -> Result<()> {
    if recipients.is_none() {
        return Err(usage(
            "encryption is required (--require-encryption / PGBAK_REQUIRE_ENCRYPTION) but no \
             recipient is given: set --encrypt-to / PGBAK_AGE_RECIPIENTS",
        ));
    }
    Ok(())
}

/// The Object Lock settings of a run; asking for a lock without a bucket is
/// a usage error (with `--no-s3` the lock is moot and ignored).
fn object_lock(args: &DumpArgs) -> Result<Option<LockPolicy>> {
    let lock = groups::object_lock(&args.object_lock)?;
    if args.no_s3 {
        return Ok(None);
    }
    if lock.is_some() && args.s3.bucket.as_deref().is_none_or(str::is_empty) {
        return Err(usage(
            "--s3-object-lock-days needs an S3 bucket (S3_BUCKET or --s3-bucket)",
        ));
    }
    Ok(lock)
}

/// `--server-name`, or the connection's `host:port` (the machine's name
/// instead of a unix socket's directory). A name goes into logs, alerts and
/// metrics labels, so it is printable ASCII without quotes or spaces.
pub(crate) fn server_name(given: Option<&str>, conn: &ConnSettings) -> Result<String> {
    let name = match given.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => match &conn.host {
            Host::Socket(_) => format!("{}:{}", super::host_name(), conn.port),
            Host::Tcp(_) => conn.endpoint(),
        },
    };
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'' | '`');
    if name.len() > 128 || !name.chars().all(allowed) {
        return Err(usage(format!(
            "invalid --server-name {name:?}: use at most 128 printable ASCII characters \
             without spaces, quotes or backslashes"
        )));
    }
    Ok(name)
}

/// `--exclude-database` globs, checked before anything runs.
pub fn exclude_patterns(patterns: &[String]) -> Result<Vec<glob::Pattern>> {
    patterns
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            glob::Pattern::new(p.trim())
                .map_err(|e| usage(format!("invalid --exclude-database pattern {p:?}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests;
