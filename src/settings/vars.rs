//! Every environment variable pgbak reads, by name, in one list. The clap
//! attributes in [`crate::cli`] and the resolvers in [`crate::settings`] use
//! these constants, so a name is spelled once and `grep` finds every reader.
//! README.md ("Configuration") documents what each one means to an operator.

// The connection (libpq's own names; DATABASE_URL wins over the PG* ones).
/// postgresql://user:password@host:port/database (also postgres://, postgresql+asyncpg://, ...).
pub const DATABASE_URL: &str = "DATABASE_URL";
pub const PGHOST: &str = "PGHOST";
pub const PGPORT: &str = "PGPORT";
pub const PGUSER: &str = "PGUSER";
pub const PGPASSWORD: &str = "PGPASSWORD";
pub const PGDATABASE: &str = "PGDATABASE";
pub const PGSSLMODE: &str = "PGSSLMODE";
pub const PGPASSFILE: &str = "PGPASSFILE";

// Where things are on this machine.
/// Searched for the client tools (after --pg-bin-dir) and for alembic.
pub const PATH: &str = "PATH";
/// `~/.pgpass` and `~/.postgresql/root.crt` live here.
pub const HOME: &str = "HOME";
/// libpq's fallback user name when PGUSER is unset, then LOGNAME.
pub const USER: &str = "USER";
pub const LOGNAME: &str = "LOGNAME";
/// Where `verify --ephemeral` puts its throwaway cluster (default /tmp).
pub const TMPDIR: &str = "TMPDIR";

// Every command.
pub const PGBAK_PG_BIN_DIR: &str = "PGBAK_PG_BIN_DIR";
pub const PGBAK_TIMEOUT: &str = "PGBAK_TIMEOUT";
pub const PGBAK_LOCK_WAIT_TIMEOUT: &str = "PGBAK_LOCK_WAIT_TIMEOUT";
/// The backup directory of backup, verify, restore, cron, list, check, prune and unpin.
pub const BACKUP_DIR: &str = "BACKUP_DIR";

// backup and cron.
pub const PGBAK_COMPRESS: &str = "PGBAK_COMPRESS";
pub const PGBAK_PAUSE_REPLAY: &str = "PGBAK_PAUSE_REPLAY";
/// The server's readable name in meta.json (default: host:port of the connection).
pub const PGBAK_SERVER_NAME: &str = "PGBAK_SERVER_NAME";
/// `true` acts as --all-databases.
pub const PGBAK_ALL_DATABASES: &str = "PGBAK_ALL_DATABASES";
pub const PGBAK_EXCLUDE_DATABASES: &str = "PGBAK_EXCLUDE_DATABASES";
/// `true` acts as --no-role-passwords.
pub const PGBAK_NO_ROLE_PASSWORDS: &str = "PGBAK_NO_ROLE_PASSWORDS";
/// How old an abandoned multipart upload must be before a backup aborts it.
pub const PGBAK_S3_STALE_UPLOAD_AGE: &str = "PGBAK_S3_STALE_UPLOAD_AGE";
pub const BACKUP_ANOMALY_THRESHOLD: &str = "BACKUP_ANOMALY_THRESHOLD";

// Retention (backup, cron, prune, list).
pub const BACKUP_KEEP: &str = "BACKUP_KEEP";
pub const BACKUP_KEEP_HOURLY: &str = "BACKUP_KEEP_HOURLY";
pub const BACKUP_KEEP_DAILY: &str = "BACKUP_KEEP_DAILY";
pub const BACKUP_KEEP_WEEKLY: &str = "BACKUP_KEEP_WEEKLY";
pub const BACKUP_KEEP_MONTHLY: &str = "BACKUP_KEEP_MONTHLY";
pub const BACKUP_KEEP_YEARLY: &str = "BACKUP_KEEP_YEARLY";
pub const BACKUP_KEEP_WITHIN: &str = "BACKUP_KEEP_WITHIN";

// Encryption.
pub const PGBAK_AGE_RECIPIENTS: &str = "PGBAK_AGE_RECIPIENTS";
pub const PGBAK_AGE_RECIPIENTS_FILE: &str = "PGBAK_AGE_RECIPIENTS_FILE";
pub const PGBAK_AGE_IDENTITY_FILE: &str = "PGBAK_AGE_IDENTITY_FILE";
pub const PGBAK_SCRATCH_DIR: &str = "PGBAK_SCRATCH_DIR";
/// `true`: verify and restore refuse a plaintext dump (backup and cron refuse to run without recipients).
pub const PGBAK_REQUIRE_ENCRYPTION: &str = "PGBAK_REQUIRE_ENCRYPTION";

// Signatures.
/// The backup host's ed25519 signing key (OpenSSH format): backup and cron sign meta.json with it.
pub const PGBAK_SIGNING_KEY_FILE: &str = "PGBAK_SIGNING_KEY_FILE";
/// A file of trusted public keys: verify and restore accept only backups signed by one of them.
pub const PGBAK_TRUSTED_KEYS: &str = "PGBAK_TRUSTED_KEYS";

// verify (and cron --verify).
pub const PGBAK_VERIFY_TARGET_URL: &str = "PGBAK_VERIFY_TARGET_URL";
/// As root, the unprivileged system user `verify --ephemeral` runs its throwaway server as
/// (default `pgbak`; never root or postgres).
pub const PGBAK_EPHEMERAL_USER: &str = "PGBAK_EPHEMERAL_USER";
/// `true` acts as `cron --verify`.
pub const VERIFY_ON_BACKUP: &str = "VERIFY_ON_BACKUP";
/// Tables the restored copy must hold besides meta.json's (`[DB:]SCHEMA.TABLE`, comma-separated).
pub const PGBAK_EXPECT_TABLES: &str = "PGBAK_EXPECT_TABLES";
/// A file of such tables, one per line.
pub const PGBAK_EXPECT_TABLES_FILE: &str = "PGBAK_EXPECT_TABLES_FILE";

// cron.
/// The environment file `pgbak cron` reads first (as --env-file).
pub const PGBAK_ENV_FILE: &str = "PGBAK_ENV_FILE";
pub const PGBAK_LOCK_WAIT: &str = "PGBAK_LOCK_WAIT";
pub const LOG_DIR: &str = "LOG_DIR";
pub const LOG_KEEP: &str = "LOG_KEEP";
pub const ALERT_WEBHOOK_URL: &str = "ALERT_WEBHOOK_URL";
pub const ALERT_WEBHOOK_FORMAT: &str = "ALERT_WEBHOOK_FORMAT";
pub const ALERT_SERVICE: &str = "ALERT_SERVICE";
pub const PAGERDUTY_ROUTING_KEY: &str = "PAGERDUTY_ROUTING_KEY";
pub const HEARTBEAT_URL: &str = "HEARTBEAT_URL";
pub const HEARTBEAT_KIND: &str = "HEARTBEAT_KIND";
pub const METRICS_FILE: &str = "METRICS_FILE";

// check.
pub const PGBAK_CHECK_MAX_AGE: &str = "PGBAK_CHECK_MAX_AGE";
pub const PGBAK_CHECK_MAX_VERIFIED_AGE: &str = "PGBAK_CHECK_MAX_VERIFIED_AGE";
pub const PGBAK_CHECK_PROMETHEUS_FILE: &str = "PGBAK_CHECK_PROMETHEUS_FILE";
pub const PGBAK_CHECK_HEARTBEAT_URL: &str = "PGBAK_CHECK_HEARTBEAT_URL";
/// `pgbak check --max-run-duration`: an `--all-databases` run without an end
/// record after this long counts as killed.
pub const PGBAK_CHECK_MAX_RUN_DURATION: &str = "PGBAK_CHECK_MAX_RUN_DURATION";

// S3 (the AWS SDK also reads its own AWS_* variables).
pub const S3_BUCKET: &str = "S3_BUCKET";
pub const S3_PREFIX: &str = "S3_PREFIX";
pub const S3_ENDPOINT_URL: &str = "S3_ENDPOINT_URL";
pub const S3_REGION: &str = "S3_REGION";
pub const S3_STORAGE_CLASS: &str = "S3_STORAGE_CLASS";
pub const S3_SSE: &str = "S3_SSE";
pub const S3_SSE_KMS_KEY_ID: &str = "S3_SSE_KMS_KEY_ID";
pub const S3_PART_SIZE_MIB: &str = "S3_PART_SIZE_MIB";
pub const S3_MAX_PART_SIZE_MIB: &str = "S3_MAX_PART_SIZE_MIB";
pub const S3_MAX_PARTS: &str = "S3_MAX_PARTS";
pub const S3_CONCURRENCY: &str = "S3_CONCURRENCY";
pub const S3_OBJECT_LOCK_DAYS: &str = "S3_OBJECT_LOCK_DAYS";
pub const S3_OBJECT_LOCK_MODE: &str = "S3_OBJECT_LOCK_MODE";
/// Test and tuning knobs of the multipart upload (bytes).
pub const PGBAK_S3_PART_SIZE: &str = "PGBAK_S3_PART_SIZE";
pub const PGBAK_S3_MIN_PART_SIZE: &str = "PGBAK_S3_MIN_PART_SIZE";
pub const PGBAK_S3_MAX_PART_SIZE: &str = "PGBAK_S3_MAX_PART_SIZE";
/// A part upload that moves no byte and gets no answer for this long has stalled.
pub const PGBAK_S3_STALL_TIMEOUT: &str = "PGBAK_S3_STALL_TIMEOUT";
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
// The AWS SDK's own names, read from this run's environment (environment
// file and `*_FILE` included) and handed to the SDK (`settings::aws`).
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const AWS_PROFILE: &str = "AWS_PROFILE";
/// `when_required`: for stores that reject the SDK's checksum headers.
pub const AWS_REQUEST_CHECKSUM_CALCULATION: &str = "AWS_REQUEST_CHECKSUM_CALCULATION";
pub const AWS_RESPONSE_CHECKSUM_VALIDATION: &str = "AWS_RESPONSE_CHECKSUM_VALIDATION";

/// Variables that carry secrets; each may instead be read from the file named
/// by `<NAME>_FILE` (systemd credentials, Docker/Kubernetes secrets), so the
/// secret is in neither argv nor the unit's environment.
pub const SECRET_VARS: &[&str] = &[
    DATABASE_URL,
    PGPASSWORD,
    PGBAK_VERIFY_TARGET_URL,
    ALERT_WEBHOOK_URL,
    PAGERDUTY_ROUTING_KEY,
    HEARTBEAT_URL,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
];

#[cfg(test)]
mod tests {
    /// Every name above is in README.md, so an operator can look it up.
    #[test]
    fn every_variable_is_documented_in_the_readme() {
        let readme = include_str!("../../README.md");
        let names: Vec<&str> = include_str!("vars.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub const "))
            .filter_map(|rest| rest.split('"').nth(1))
            .collect();
        assert!(names.len() > 50, "{names:?}");
        let missing: Vec<&&str> = names.iter().filter(|n| !readme.contains(**n)).collect();
        assert!(missing.is_empty(), "not in README.md: {missing:?}");
    }
}
