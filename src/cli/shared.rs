//! Argument groups several commands flatten in: the backup directory, S3,
//! encryption, retention, Object Lock and the anomaly check.

use std::path::{Path, PathBuf};

use clap::Args;

use super::LockMode;
use crate::settings::parse_bool;
use crate::settings::{defaults, vars};
use crate::storage::s3::{SseAlgorithm, StorageClass};

/// The local backup directory of the commands that read or change the backup
/// set (verify, restore, list, check, prune, unpin): one flag, one variable,
/// one default. It derefs to the path it holds.
#[derive(Debug, Clone, Args)]
pub struct BackupDirArgs {
    /// The local backup directory (where `pgbak backup --output-dir` writes).
    #[arg(
        id = "backup_dir",
        long = "backup-dir",
        env = vars::BACKUP_DIR,
        default_value = defaults::BACKUP_DIR,
        value_name = "DIR"
    )]
    pub path: PathBuf,
}

impl std::ops::Deref for BackupDirArgs {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

/// Where backups go on S3 or MinIO. A bucket turns uploading on.
#[derive(Debug, Clone, Default, Args)]
pub struct S3Args {
    /// Bucket to upload to (and read from); unset means no S3.
    #[arg(long = "s3-bucket", env = vars::S3_BUCKET, value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// Key prefix, e.g. `enterprise-agents/postgres/`.
    #[arg(long = "s3-prefix", env = vars::S3_PREFIX, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Endpoint for MinIO and other S3-compatible stores (switches to path-style addressing).
    #[arg(long = "s3-endpoint-url", env = vars::S3_ENDPOINT_URL, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Region (else AWS_REGION / AWS_DEFAULT_REGION / profile; us-east-1 for custom endpoints).
    #[arg(long = "s3-region", env = vars::S3_REGION, value_name = "REGION")]
    pub region: Option<String>,
    /// Storage class of uploaded objects (STANDARD_IA bills 30 days minimum and per-GB retrieval).
    #[arg(
        long,
        env = vars::S3_STORAGE_CLASS,
        default_value_t = StorageClass::default(),
        value_name = "CLASS"
    )]
    pub storage_class: StorageClass,
    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long = "s3-sse", env = vars::S3_SSE, value_name = "ALGO")]
    pub sse: Option<SseAlgorithm>,
    /// KMS key for `aws:kms` server-side encryption.
    #[arg(
        long = "s3-sse-kms-key-id",
        env = vars::S3_SSE_KMS_KEY_ID,
        value_name = "KEY"
    )]
    pub sse_kms_key_id: Option<String>,
    /// First multipart part size in MiB (default: 8, doubled every --s3-max-parts/10 parts
    /// up to --s3-max-part-size-mib, so a multi-terabyte dump still fits; at least 5).
    #[arg(
        long = "s3-part-size-mib",
        env = vars::S3_PART_SIZE_MIB,
        value_name = "MIB"
    )]
    pub part_size_mib: Option<u64>,
    /// Largest multipart part in MiB (default: 5120, S3's limit): stops the doubling, so part
    /// buffers stay under (--s3-concurrency + 1) x this; a dump needing more parts fails.
    #[arg(
        long = "s3-max-part-size-mib",
        env = vars::S3_MAX_PART_SIZE_MIB,
        value_name = "MIB"
    )]
    pub max_part_size_mib: Option<u64>,
    /// Most parts the store allows in one upload (AWS: 10000).
    #[arg(
        long = "s3-max-parts",
        env = vars::S3_MAX_PARTS,
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub max_parts: u32,
    /// Parts uploaded at once; part buffers use (this + 1) x part size of memory (32 MiB by default).
    #[arg(
        long = "s3-concurrency",
        env = vars::S3_CONCURRENCY,
        default_value_t = 3,
        value_name = "N"
    )]
    pub concurrency: usize,
    /// Ranges downloaded at once when restore or verify reads a backup from S3 (1: one
    /// GetObject); memory holds this x the range size (16 MiB by default).
    #[arg(
        long = "s3-download-concurrency",
        env = vars::S3_DOWNLOAD_CONCURRENCY,
        default_value_t = 4,
        value_name = "N"
    )]
    pub download_concurrency: usize,
}

/// More destinations for each backup (issue 27): written in the same pass,
/// after the local directory and the `S3_*` bucket.
#[derive(Debug, Clone, Default, Args)]
pub struct ToArgs {
    /// Also write each backup here, in the same pass: s3://BUCKET/PREFIX?profile=P&keep-daily=N&…
    /// or file:///PATH (see docs/three-two-one.md); repeatable. The variable takes several,
    /// separated by whitespace. Never a secret in the URL: name an AWS profile.
    #[arg(long = "to", env = vars::PGBAK_TO, value_name = "URL")]
    pub to: Vec<String>,
}

/// Client-side encryption of new backups with age.
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptArgs {
    /// Encrypt the backup to this age (age1...) or SSH (ssh-ed25519/ssh-rsa) public key, as it
    /// is (an SSH key's comment may hold commas); repeatable (any one matching private key
    /// decrypts). The variable takes several, separated by commas or newlines.
    #[arg(
        long = "encrypt-to",
        env = vars::PGBAK_AGE_RECIPIENTS,
        value_name = "RECIPIENT"
    )]
    pub recipients: Vec<String>,
    /// File of recipients, one per line (`#` comments), added to --encrypt-to.
    #[arg(
        long = "encrypt-to-file",
        env = vars::PGBAK_AGE_RECIPIENTS_FILE,
        value_name = "FILE"
    )]
    pub recipients_file: Option<PathBuf>,
    /// Sign each backup's meta.json with this ed25519 key (OpenSSH format, from
    /// `pgbak keygen --sign`): a path, never the key itself. Readers trust it with --trusted-keys.
    #[arg(long, env = vars::PGBAK_SIGNING_KEY_FILE, value_name = "FILE")]
    pub signing_key_file: Option<PathBuf>,
}

/// `--env-file`: the settings of `pgbak cron`'s environment file, for the
/// commands an operator runs by hand beside it (read at startup, before the
/// command line is parsed: see `settings::startup`).
#[derive(Debug, Clone, Default, Args)]
pub struct EnvFileArgs {
    /// Read settings from this file first, as `pgbak cron --env-file` does (systemd
    /// EnvironmentFile= syntax); variables already in the environment win.
    #[arg(long = "env-file", env = vars::PGBAK_ENV_FILE, value_name = "PATH")]
    pub path: Option<PathBuf>,
}

/// Where the client tools are: for the commands that run pg_dump or pg_restore
/// (list, check, prune and unpin connect nowhere and do not show it).
#[derive(Debug, Clone, Default, Args)]
pub struct ToolsArgs {
    /// Directory holding pg_dump/pg_restore (must be at least the server's major version).
    #[arg(long, env = vars::PGBAK_PG_BIN_DIR, value_name = "DIR")]
    pub pg_bin_dir: Option<PathBuf>,
}

/// Reading encrypted (`.dump.age`) backups.
#[derive(Debug, Clone, Default, Args)]
pub struct DecryptArgs {
    /// age identity file (from age-keygen / pgbak keygen) or unencrypted OpenSSH private key
    /// that decrypts .dump.age backups: a path, never the key itself.
    #[arg(long, env = vars::PGBAK_AGE_IDENTITY_FILE, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// Where an encrypted backup is decrypted for a parallel (--jobs > 1) restore, as an
    /// unnamed 0600 file gone when pgbak exits (default: /dev/shm when it has room, else one
    /// streamed job), and where a backup read from S3 is downloaded (default: TMPDIR).
    #[arg(long, env = vars::PGBAK_SCRATCH_DIR, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Refuse a backup that is not age-encrypted (an --identity-file implies it).
    #[arg(
        long,
        env = vars::PGBAK_REQUIRE_ENCRYPTION,
        value_parser = parse_bool,
        action = clap::ArgAction::SetTrue
    )]
    pub require_encryption: bool,
    /// File of OpenSSH ed25519 public keys (`.pub` or allowed_signers lines): only backups whose
    /// meta.json is signed by one of them are verified or restored.
    #[arg(long, env = vars::PGBAK_TRUSTED_KEYS, value_name = "FILE")]
    pub trusted_keys: Option<PathBuf>,
}

/// Retention rules, shared by `backup`, `cron` and `prune`. A backup is kept
/// when any rule keeps it; see docs/retention.md.
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    /// Keep the newest N backups of each group (database, mode, label); 0 keeps all.
    /// Default 7 when no other --keep-* rule is set.
    #[arg(
        long = "keep-last",
        visible_alias = "keep",
        env = vars::BACKUP_KEEP,
        value_name = "N"
    )]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours (UTC) that have one.
    #[arg(long, env = vars::BACKUP_KEEP_HOURLY, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days (UTC) that have one.
    #[arg(long, env = vars::BACKUP_KEEP_DAILY, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, env = vars::BACKUP_KEEP_WEEKLY, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, env = vars::BACKUP_KEEP_MONTHLY, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, env = vars::BACKUP_KEEP_YEARLY, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup within this span of the group's newest backup (not of
    /// the clock): 14d, 36h, 2w, 6m (months), 1y, 1y6m.
    #[arg(long, env = vars::BACKUP_KEEP_WITHIN, value_name = "DURATION")]
    pub keep_within: Option<String>,
}

/// S3 Object Lock on what `backup` and `cron` upload.
#[derive(Debug, Clone, Default, Args)]
pub struct ObjectLockArgs {
    /// Lock each uploaded dump and meta.json for N days (the bucket must have Object Lock enabled).
    #[arg(
        long = "s3-object-lock-days",
        env = vars::S3_OBJECT_LOCK_DAYS,
        value_name = "N"
    )]
    pub object_lock_days: Option<u32>,
    /// Object Lock mode (default governance).
    #[arg(
        long = "s3-object-lock-mode",
        env = vars::S3_OBJECT_LOCK_MODE,
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
    #[arg(long, env = vars::BACKUP_ANOMALY_THRESHOLD, value_name = "PERCENT")]
    pub anomaly_threshold: Option<u32>,
    /// Do not compare the new backup with the previous one.
    #[arg(long)]
    pub no_anomaly_check: bool,
}
