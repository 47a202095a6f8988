//! The command line: every subcommand, flag and environment variable, with the
//! `///` lines that become `--help`. Values are resolved in [`crate::settings`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the job failed (dump, upload, a verify check, restore)
  2    bad usage or configuration; nothing was attempted
  75   another pgbak run holds the lock
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM

Connection: DATABASE_URL (postgresql://, postgres://, postgresql+asyncpg://, ...)
or the libpq variables PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE.";

/// Backups of PostgreSQL (+ pgvector) that are proven to restore.
#[derive(Debug, Parser)]
#[command(name = "pgbak", version, about, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding pg_dump/pg_restore (must be at least the server's major version).
    #[arg(long, global = true, env = "PGBAK_PG_BIN_DIR", value_name = "DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// More detail, including the child commands run (never with passwords).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Stop the whole run after this long (e.g. 2h, 90m): children stopped, temporary files
    /// and databases removed, nothing half-written, exit 1. Off by default.
    #[arg(long, global = true, env = "PGBAK_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Longest wait for a table lock (pg_dump --lock-wait-timeout and pgbak's own catalog
    /// queries): a session holding ACCESS EXCLUSIVE fails the backup after this, naming it.
    #[arg(
        long,
        global = true,
        env = "PGBAK_LOCK_WAIT_TIMEOUT",
        default_value = "10m",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub lock_wait_timeout: Duration,
}

/// `90s`, `10m`, `1h30m`, `2h` (humantime), or plain seconds; never zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d.is_zero() => Err("must be more than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (expected e.g. 90s, 10m, 2h)")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump the database (pg_dump custom format) with a checksummed meta.json; upload to S3 when configured.
    Backup(BackupArgs),
    /// Restore a backup into the database of DATABASE_URL / PG*.
    Restore(RestoreArgs),
    /// Prove a backup restores: checksum, restore into a temporary database, compare rows, tables, extensions.
    Verify(VerifyArgs),
    /// Unattended run for crontab/systemd: backup, optional verify, retention, log file, alerts.
    Cron(Box<CronArgs>),
    /// List backups on disk and in S3, newest first.
    List(ListArgs),
    /// Is every database's newest backup, and newest verified backup, fresh? No database connection needed.
    Check(CheckArgs),
    /// Create an age identity (private key file, 0600) for encrypted backups; prints its public key.
    Keygen(KeygenArgs),
    /// Apply the retention rules without making a backup (--dry-run shows what would go).
    Prune(PruneArgs),
    /// Remove the pin the anomaly check put on a backup, so retention may delete it again.
    Unpin(UnpinArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `pgbak man > /usr/local/share/man/man1/pgbak.1`.
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Schema and data.
    Full,
    /// DDL only.
    Schema,
    /// Rows only.
    Data,
    /// Roles, memberships, role settings and tablespaces (`pg_dumpall --globals-only`):
    /// written by `--all-databases` and `--globals`, never asked for with `--mode`.
    #[value(skip)]
    Globals,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Schema => "schema",
            Mode::Data => "data",
            Mode::Globals => "globals",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "full" => Some(Mode::Full),
            "schema" => Some(Mode::Schema),
            "data" => Some(Mode::Data),
            "globals" => Some(Mode::Globals),
            _ => None,
        }
    }
}

/// Where backups go on S3 or MinIO. A bucket turns uploading on.
#[derive(Debug, Clone, Default, Args)]
pub struct S3Args {
    /// Bucket to upload to (and read from); unset means no S3.
    #[arg(long = "s3-bucket", env = "S3_BUCKET", value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// Key prefix, e.g. `enterprise-agents/postgres/`.
    #[arg(long = "s3-prefix", env = "S3_PREFIX", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Endpoint for MinIO and other S3-compatible stores (switches to path-style addressing).
    #[arg(long = "s3-endpoint-url", env = "S3_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Region (else AWS_REGION / AWS_DEFAULT_REGION / profile; us-east-1 for custom endpoints).
    #[arg(long = "s3-region", env = "S3_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Storage class of uploaded objects (STANDARD_IA bills 30 days minimum and per-GB retrieval).
    #[arg(
        long,
        env = "S3_STORAGE_CLASS",
        default_value = "STANDARD_IA",
        value_name = "CLASS"
    )]
    pub storage_class: String,
    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long = "s3-sse", env = "S3_SSE", value_name = "ALGO")]
    pub sse: Option<String>,
    /// KMS key for `aws:kms` server-side encryption.
    #[arg(
        long = "s3-sse-kms-key-id",
        env = "S3_SSE_KMS_KEY_ID",
        value_name = "KEY"
    )]
    pub sse_kms_key_id: Option<String>,
    /// Multipart part size in MiB (default: 8, doubled every --s3-max-parts/10 parts so a
    /// multi-terabyte dump still fits; at least 5).
    #[arg(
        long = "s3-part-size-mib",
        env = "S3_PART_SIZE_MIB",
        value_name = "MIB"
    )]
    pub part_size_mib: Option<u64>,
    /// Most parts the store allows in one upload (AWS: 10000).
    #[arg(
        long = "s3-max-parts",
        env = "S3_MAX_PARTS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub max_parts: u32,
    /// Parts uploaded at once; part buffers use (this + 1) x part size of memory (32 MiB by default).
    #[arg(
        long = "s3-concurrency",
        env = "S3_CONCURRENCY",
        default_value_t = 3,
        value_name = "N"
    )]
    pub concurrency: usize,
}

/// Client-side encryption of new backups with age.
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptArgs {
    /// Encrypt the backup to this age (age1...) or SSH (ssh-ed25519/ssh-rsa) public key;
    /// repeatable (any one matching private key decrypts). Env: comma-separated.
    #[arg(
        long = "encrypt-to",
        env = "PGBAK_AGE_RECIPIENTS",
        value_delimiter = ',',
        value_name = "RECIPIENT"
    )]
    pub recipients: Vec<String>,
    /// File of recipients, one per line (`#` comments), added to --encrypt-to.
    #[arg(
        long = "encrypt-to-file",
        env = "PGBAK_AGE_RECIPIENTS_FILE",
        value_name = "FILE"
    )]
    pub recipients_file: Option<PathBuf>,
}

/// Reading encrypted (`.dump.age`) backups.
#[derive(Debug, Clone, Default, Args)]
pub struct DecryptArgs {
    /// age identity file (from age-keygen / pgbak keygen) or unencrypted OpenSSH private key
    /// that decrypts .dump.age backups: a path, never the key itself.
    #[arg(long, env = "PGBAK_AGE_IDENTITY_FILE", value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// Where an encrypted backup is decrypted for a parallel (--jobs > 1) restore, as an
    /// unnamed 0600 file gone when pgbak exits. Default: /dev/shm when it has room, else one
    /// streamed job.
    #[arg(long, env = "PGBAK_SCRATCH_DIR", value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity here (created 0600, never overwritten); default: stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// What to dump.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Directory for the .dump and .meta.json files (created 0700 if missing).
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub anomaly: AnomalyArgs,
    /// Do not upload, even when S3_BUCKET is set.
    #[arg(long)]
    pub no_s3: bool,
    /// Suffix for the file name, e.g. `pre-migration` ([A-Za-z0-9.-]+); kept apart by retention.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// pg_dump --compress spec (e.g. zstd:3, gzip:6, lz4, none). Default: zstd:1 when pg_dump has it, else gzip:4.
    #[arg(long, env = "PGBAK_COMPRESS", value_name = "SPEC")]
    pub compress: Option<String>,
    /// Print a JSON summary (the meta.json contents plus paths) on stdout.
    #[arg(long)]
    pub json: bool,
    /// On a hot standby: pause WAL replay while dumping, so the standby never cancels the dump
    /// (recovery conflict); resumed on every exit, and by the next run after a SIGKILL.
    #[arg(long, env = "PGBAK_PAUSE_REPLAY", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub pause_replay: bool,
    /// Every connectable non-template database of the server, each in its own backup, plus
    /// one globals backup (roles, memberships, tablespaces); also PGBAK_ALL_DATABASES=true.
    /// DATABASE_URL names the database to connect to for the list (e.g. postgres).
    #[arg(long)]
    pub all_databases: bool,
    /// With --all-databases: skip databases matching this glob (repeatable; the environment
    /// variable takes a comma-separated list).
    #[arg(
        long = "exclude-database",
        env = "PGBAK_EXCLUDE_DATABASES",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub exclude_databases: Vec<String>,
    /// Also back up the globals (pg_dumpall --globals-only) beside this database's backup.
    #[arg(long)]
    pub globals: bool,
    /// Leave role passwords out of the globals backup (roles then restore without passwords);
    /// also PGBAK_NO_ROLE_PASSWORDS=true.
    #[arg(long)]
    pub no_role_passwords: bool,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub object_lock: ObjectLockArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The .dump to verify, or s3://bucket/key.dump (reading STANDARD_IA objects costs retrieval fees).
    /// Default: the newest complete --mode backup of the database in DATABASE_URL / PGDATABASE in
    /// --backup-dir, skipping (and naming) backups whose last verification failed.
    #[arg(value_name = "BACKUP_FILE")]
    pub backup: Option<String>,
    /// Without BACKUP_FILE: verify the newest backup of this mode.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Without BACKUP_FILE: also pick a backup whose last verification failed.
    #[arg(long)]
    pub include_failed: bool,
    /// Directory to pick the newest backup from.
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Verify the newest complete backup of the database under the S3 prefix.
    #[arg(long, conflicts_with = "backup")]
    pub from_s3: bool,
    /// Leave the temporary database (or cluster) in place and print how to remove it.
    #[arg(long)]
    pub no_cleanup: bool,
    /// Parallel pg_restore jobs.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: u32,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Expected table (SCHEMA.TABLE), repeatable; replaces the 13 application tables.
    #[arg(long = "expect-table", value_name = "SCHEMA.TABLE")]
    pub expect_tables: Vec<String>,
    /// File with one expected SCHEMA.TABLE per line; replaces the 13 application tables.
    #[arg(long, value_name = "FILE")]
    pub expect_tables_file: Option<PathBuf>,
    /// Restore into this server instead of the source server (its URL; the password may be in it).
    #[arg(
        long,
        env = "PGBAK_VERIFY_TARGET_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub target_url: Option<String>,
    /// Restore into a throwaway local cluster (initdb + postgres from the chosen bin dir), removed afterwards.
    #[arg(long, conflicts_with = "target_url")]
    pub ephemeral: bool,
    /// maintenance_work_mem for the restore (HNSW index builds are the slow part).
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub maintenance_work_mem: String,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
--alembic-stamp is off by default: `alembic stamp head` marks the restored schema as \
the newest migration without running any, which hides a backup taken before the latest \
migrations. Compare the revision pgbak prints and run `alembic upgrade head` instead, \
unless you know the schema is current.")]
pub struct RestoreArgs {
    /// The .dump to restore, or s3://bucket/key.dump (reading STANDARD_IA objects costs retrieval fees).
    /// Default: the newest complete full backup of the target database in --backup-dir, skipping
    /// (and naming) backups whose last verification failed.
    #[arg(value_name = "BACKUP_FILE")]
    pub backup: Option<String>,
    /// Without BACKUP_FILE: also pick a backup whose last verification failed.
    #[arg(long)]
    pub include_failed: bool,
    /// Restore a backup of another database (meta.json's `database` differs from the target's).
    #[arg(long)]
    pub allow_other_database: bool,
    /// Directory to pick the newest full backup from.
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Restore the newest complete full backup of the target database under the S3 prefix.
    #[arg(long, conflicts_with = "backup")]
    pub from_s3: bool,
    /// Terminate sessions, drop and recreate the target database first, with the owner,
    /// encoding/locale, settings and privileges the backup recorded.
    #[arg(long)]
    pub create_db: bool,
    /// Restore without owners and privileges (every object owned by the restoring user),
    /// for a target that lacks the backup's roles.
    #[arg(long)]
    pub no_owner: bool,
    /// Rebuild a whole server: the globals of the newest --all-databases run, then every
    /// database of that run (each dropped and created again). DATABASE_URL names the
    /// server (its database is only used to connect).
    #[arg(long, conflicts_with_all = ["backup", "tables", "schemas"])]
    pub all_databases: bool,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long)]
    pub no_confirm: bool,
    /// Parallel pg_restore jobs.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: u32,
    /// Restore only this table: SCHEMA.TABLE, or a name found in one schema (repeatable). Checked
    /// against the archive first: a selection matching nothing is exit 2 and touches nothing.
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<String>,
    /// Restore only this schema (repeatable; checked against the archive first).
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Run `alembic stamp head` afterwards (see below for why this is off by default).
    #[arg(long)]
    pub alembic_stamp: bool,
    /// maintenance_work_mem for the restore (HNSW index builds are the slow part).
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub maintenance_work_mem: String,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
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

/// Retention rules, shared by `backup`, `cron` and `prune`. A backup is kept
/// when any rule keeps it; see the README's retention section.
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    /// Keep the newest N backups of each group (database, mode, label); 0 keeps all.
    /// Default 7 when no other --keep-* rule is set.
    #[arg(
        long = "keep-last",
        visible_alias = "keep",
        env = "BACKUP_KEEP",
        value_name = "N"
    )]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours (UTC) that have one.
    #[arg(long, env = "BACKUP_KEEP_HOURLY", value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days (UTC) that have one.
    #[arg(long, env = "BACKUP_KEEP_DAILY", value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, env = "BACKUP_KEEP_WEEKLY", value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, env = "BACKUP_KEEP_MONTHLY", value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, env = "BACKUP_KEEP_YEARLY", value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup within this span of the group's newest backup (not of
    /// the clock): 14d, 36h, 2w, 6m (months), 1y, 1y6m.
    #[arg(long, env = "BACKUP_KEEP_WITHIN", value_name = "DURATION")]
    pub keep_within: Option<String>,
}

/// S3 Object Lock mode: governance can be lifted by a user with
/// s3:BypassGovernanceRetention; compliance by nobody, not even the root account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockMode {
    Governance,
    Compliance,
}

/// S3 Object Lock on what `backup` and `cron` upload.
#[derive(Debug, Clone, Default, Args)]
pub struct ObjectLockArgs {
    /// Lock each uploaded dump and meta.json for N days (the bucket must have Object Lock enabled).
    #[arg(
        long = "s3-object-lock-days",
        env = "S3_OBJECT_LOCK_DAYS",
        value_name = "N"
    )]
    pub object_lock_days: Option<u32>,
    /// Object Lock mode (default governance).
    #[arg(
        long = "s3-object-lock-mode",
        env = "S3_OBJECT_LOCK_MODE",
        value_enum,
        value_name = "MODE"
    )]
    pub object_lock_mode: Option<LockMode>,
}

/// The check that pins the previous backup when a new one shrinks suspiciously.
#[derive(Debug, Clone, Default, Args)]
pub struct AnomalyArgs {
    /// Pin the previous good backup of the group when the new one's total row
    /// count or dump size is below this percentage of it (default 50).
    #[arg(long, env = "BACKUP_ANOMALY_THRESHOLD", value_name = "PERCENT")]
    pub anomaly_threshold: Option<u32>,
    /// Do not compare the new backup with the previous one.
    #[arg(long)]
    pub no_anomaly_check: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Applies the retention rules to the backups in --backup-dir and, with --s3, under the S3 \
prefix, without making a backup. Never deleted whatever the rules say: the newest backup of \
a group, its newest verified backup, pinned backups, objects under S3 Object Lock, dumps \
without meta.json (reported).")]
pub struct PruneArgs {
    /// Local directory to prune.
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Also prune the backups under the S3 prefix.
    #[arg(long)]
    pub s3: bool,
    /// Only the S3 prefix, not the local directory.
    #[arg(long, requires = "s3")]
    pub no_local: bool,
    /// Print each backup with keep/delete and the rules that keep it; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the decisions as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub s3_args: S3Args,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The backup to unpin: its name (stem), .dump or .meta.json file name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Directory holding the backup.
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Unpin the copy under the S3 prefix too.
    #[arg(long)]
    pub s3: bool,
    #[command(flatten)]
    pub s3_args: S3Args,
}

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

#[derive(Debug, Args)]
#[command(after_help = "\
Steps, in order: read the settings (a bad value exits 2, and is still logged, alerted \
and put in the metrics), open the log file (LOG_DIR/backup-<UTC ts>.log), take the lock \
of this backup group (BACKUP_DIR/.pgbak-<db>_<mode>.lock; --lock-wait to wait for it) \
and ping the heartbeat's /start, back up (and upload when S3_BUCKET is set), verify (with --verify or \
VERIFY_ON_BACKUP=true; a failed upload does not skip it), retention (local: after the \
backup and verify succeeded; on S3: only after the upload did too), prune old logs, \
then the heartbeat (success, or /fail in the healthchecks convention) and the metrics \
file always. Any failure posts an alert to ALERT_WEBHOOK_URL; a run skipped because the \
lock was held posts one with status `skipped`. The exit code is 0 only when every step succeeded, 2 for a configuration \
error, 75 when another run of the same group holds the lock.")]
pub struct CronArgs {
    /// Verify the new backup before retention (also VERIFY_ON_BACKUP=true).
    #[arg(long)]
    pub verify: bool,
    /// What to dump.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Read settings from this file first (systemd EnvironmentFile= syntax: KEY=value lines,
    /// no shell quoting needed); variables already in the environment win.
    #[arg(long, env = "PGBAK_ENV_FILE", value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Check every setting (and print the warnings a run would), then exit: 0 when valid, 2 when not.
    #[arg(long)]
    pub check_config: bool,
    /// Directory for the backups (and the run locks).
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "/var/backups/enterprise-agents",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub anomaly: AnomalyArgs,
    /// Keep the newest N run logs (backup-*.log) in LOG_DIR; 0 keeps all.
    #[arg(long, env = "LOG_KEEP", default_value_t = 30, value_name = "N")]
    pub log_keep: u32,
    /// When another run of the same database and mode holds the lock, wait this long
    /// for it (e.g. 30m, 2h) before giving up with exit 75; 0 gives up at once.
    #[arg(
        long,
        env = "PGBAK_LOCK_WAIT",
        default_value = "0s",
        value_parser = humantime::parse_duration,
        value_name = "DURATION"
    )]
    pub lock_wait: std::time::Duration,
    /// pg_dump --compress spec (default: zstd:1 when pg_dump has it, else gzip:4).
    #[arg(long, env = "PGBAK_COMPRESS", value_name = "SPEC")]
    pub compress: Option<String>,
    /// Do not upload, even when S3_BUCKET is set.
    #[arg(long)]
    pub no_s3: bool,
    /// Verify by restoring into this server instead of the source server (its URL; the password may be in it).
    #[arg(
        long,
        env = "PGBAK_VERIFY_TARGET_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub verify_target_url: Option<String>,
    /// Verify by restoring into a throwaway local cluster (initdb + postgres from the chosen bin dir).
    #[arg(long, conflicts_with = "verify_target_url")]
    pub verify_ephemeral: bool,
    /// On a hot standby: pause WAL replay while dumping, so the standby never cancels the dump
    /// (recovery conflict); resumed on every exit, and by the next run after a SIGKILL.
    #[arg(long, env = "PGBAK_PAUSE_REPLAY", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub pause_replay: bool,
    /// Back up every database and the globals, as `backup --all-databases`; also
    /// PGBAK_ALL_DATABASES=true.
    #[arg(long)]
    pub all_databases: bool,
    /// With --all-databases: skip databases matching this glob (repeatable; the environment
    /// variable takes a comma-separated list).
    #[arg(
        long = "exclude-database",
        env = "PGBAK_EXCLUDE_DATABASES",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub exclude_databases: Vec<String>,
    #[command(flatten)]
    pub report: CronReportArgs,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub object_lock: ObjectLockArgs,
}

/// Where `pgbak cron` reports a run: the log directory, the alert webhook,
/// the heartbeat and the metrics file. Kept apart so that a run whose other
/// settings do not parse can still be reported (see [`CronReportOnly`]).
#[derive(Debug, Clone, Args)]
pub struct CronReportArgs {
    /// Directory for the per-run log files (created 0700).
    #[arg(
        long,
        env = "LOG_DIR",
        default_value = "/var/log/pg-backup",
        value_name = "DIR"
    )]
    pub log_dir: PathBuf,
    /// POST an alert here when the run fails (the URL is treated as a secret).
    /// With ALERT_WEBHOOK_FORMAT=pagerduty the default is PagerDuty's Events API v2 endpoint.
    #[arg(
        long,
        env = "ALERT_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub alert_webhook_url: Option<String>,
    /// Body format of the alert (case does not matter).
    #[arg(
        long,
        env = "ALERT_WEBHOOK_FORMAT",
        value_enum,
        ignore_case = true,
        default_value_t = AlertFormat::Generic
    )]
    pub alert_webhook_format: AlertFormat,
    /// `service` field of the alert.
    #[arg(
        long,
        env = "ALERT_SERVICE",
        default_value = "enterprise-agent-platform",
        value_name = "NAME"
    )]
    pub alert_service: String,
    /// Routing (integration) key for ALERT_WEBHOOK_FORMAT=pagerduty.
    #[arg(
        long,
        env = "PAGERDUTY_ROUTING_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub pagerduty_routing_key: Option<String>,
    /// Dead man's switch pinged by every run (the URL is treated as a secret): see --heartbeat-kind.
    #[arg(
        long,
        env = "HEARTBEAT_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub heartbeat_url: Option<String>,
    /// plain: one GET after a fully successful run; healthchecks: /start when the run begins,
    /// the URL with the run's summary on success, /fail with the error on failure; auto:
    /// healthchecks for hc-ping.com URLs, else plain.
    #[arg(long, env = "HEARTBEAT_KIND", value_enum, default_value_t = HeartbeatKind::Auto)]
    pub heartbeat_kind: HeartbeatKind,
    /// Write Prometheus metrics here (node_exporter textfile collector, e.g. /var/lib/node_exporter/pgbak.prom).
    #[arg(long, env = "METRICS_FILE", value_name = "FILE")]
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

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Local directory to list.
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Include the backups under the S3 prefix.
    #[arg(long)]
    pub s3: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The rules whose verdict the RETENTION column shows.
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub s3_args: S3Args,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Groups are (database, mode, label); by default the unlabelled `full` groups are checked. \
A group fails when it has no complete backup, its newest backup is older than --max-age, \
its newest passed verification is older than --max-verified-age (or there is none), or the \
last verify of any of its backups failed. A limit of 0 turns that check off.

Exit codes: 0 every group within limits; 1 a group is not (one line per group says why), \
no backup was found, or the store could not be read; 2 bad usage.")]
pub struct CheckArgs {
    /// Local directory to read (a missing directory holds no backups).
    #[arg(
        long,
        env = "BACKUP_DIR",
        default_value = "./backups",
        value_name = "DIR"
    )]
    pub backup_dir: PathBuf,
    /// Also read the backups under the S3 prefix (one paginated listing).
    #[arg(long)]
    pub s3: bool,
    /// Only this database (repeatable); one with no backup at all fails the check.
    #[arg(long = "database", value_name = "NAME")]
    pub databases: Vec<String>,
    /// Mode of the groups to check (a weekly schema job wants its own check with a longer --max-age).
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Check the groups with this label instead of the unlabelled ones.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Newest backup of a group may be at most this old (26h, 90m, 2d; 0 = no limit).
    #[arg(
        long,
        env = "PGBAK_CHECK_MAX_AGE",
        default_value = "26h",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_age: std::time::Duration,
    /// Newest backup that passed `pgbak verify` may be at most this old (0 = not checked).
    #[arg(
        long,
        env = "PGBAK_CHECK_MAX_VERIFIED_AGE",
        default_value = "8d",
        value_name = "DURATION",
        value_parser = parse_limit
    )]
    pub max_verified_age: std::time::Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write node_exporter textfile metrics here (atomically, mode 0644), e.g.
    /// /var/lib/node_exporter/textfile_collector/pgbak_check.prom.
    #[arg(long, env = "PGBAK_CHECK_PROMETHEUS_FILE", value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Ping this URL on every check (dead man's switch): see --heartbeat-kind.
    #[arg(
        long,
        env = "PGBAK_CHECK_HEARTBEAT_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub heartbeat_url: Option<String>,
    /// plain: GET on success only; healthchecks: /start, success with the report, /fail with
    /// the failing groups; auto: healthchecks for hc-ping.com, else plain.
    #[arg(long, env = "HEARTBEAT_KIND", value_enum, default_value_t = HeartbeatKind::Auto)]
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
}

/// A `check` limit: `26h`, `8d`, `90m`, `1w` (humantime's syntax), or `0` for "off".
pub fn parse_limit(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (examples: 26h, 90m, 8d, 1w)"))
}

#[derive(Debug, Args)]
#[command(after_help = "\
Install, for example:
  pgbak completions bash > /etc/bash_completion.d/pgbak
  pgbak completions zsh  > /usr/local/share/zsh/site-functions/_pgbak
  pgbak completions fish > ~/.config/fish/completions/pgbak.fish")]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Variables that carry secrets; each may instead be read from the file named
/// by `<NAME>_FILE` (systemd credentials, Docker/Kubernetes secrets), so the
/// secret is in neither argv nor the unit's environment.
pub const SECRET_VARS: &[&str] = &[
    "DATABASE_URL",
    "PGPASSWORD",
    "PGBAK_VERIFY_TARGET_URL",
    "ALERT_WEBHOOK_URL",
    "PAGERDUTY_ROUTING_KEY",
    "HEARTBEAT_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Sets each variable of [`SECRET_VARS`] that is unset from its `_FILE`
/// (trailing newlines dropped). A variable set directly wins over its file.
/// Call before parsing, while the process is still single-threaded.
pub fn load_secret_files() -> Result<(), String> {
    for name in SECRET_VARS {
        let file_var = format!("{name}_FILE");
        let Some(path) = std::env::var_os(&file_var).filter(|p| !p.is_empty()) else {
            continue;
        };
        if std::env::var_os(name).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{file_var}={}: cannot read it: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(format!(
                "{file_var}={}: the file is empty",
                std::path::Path::new(&path).display()
            ));
        }
        std::env::set_var(name, value);
    }
    Ok(())
}

/// Unsets every variable a flag reads whose value is empty, so `BACKUP_KEEP=`
/// (a blank line in an environment file) means the default, as
/// `${BACKUP_KEEP:-7}` did in the scripts, instead of a parse error.
/// Call before parsing, while the process is still single-threaded.
pub fn drop_empty_env() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, names: &mut Vec<std::ffi::OsString>) {
        names.extend(
            command
                .get_arguments()
                .filter_map(|a| a.get_env().map(Into::into)),
        );
        for sub in command.get_subcommands() {
            walk(sub, names);
        }
    }
    let mut names = Vec::new();
    walk(&Cli::command(), &mut names);
    for name in names {
        if std::env::var_os(&name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        for (text, want) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("10m", Some(600)),
            ("1h30m", Some(5400)),
            ("2h", Some(7200)),
            ("0", None),
            ("0s", None),
            ("ten minutes", None),
            ("", None),
        ] {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_secs()),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn check_limits_parse() {
        let cases = [
            ("26h", Some(26 * 3600)),
            ("8d", Some(8 * 86_400)),
            ("90m", Some(5400)),
            ("1w", Some(7 * 86_400)),
            ("1h 30m", Some(5400)),
            ("0", Some(0)),
            ("", None),
            ("26", None),
            ("-1h", None),
            ("soon", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_limit(text).ok().map(|d| d.as_secs()),
                want,
                "{text:?}"
            );
        }
    }
}
