//! Every environment variable pgbak reads, by name, in one registry. The clap
//! attributes in [`crate::cli`] and the resolvers in [`crate::settings`] use
//! the constants, so a name is spelled once and `grep` finds every reader;
//! [`ALL`] says, for each one, which commands read it, its default and what
//! it means: docs/reference/environment.md is generated from it
//! (`UPDATE_DOCS=1 cargo test --test docs`).

/// One environment variable: what the reference page says about it.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// The section of the reference it is listed under.
    pub group: &'static str,
    /// The commands that read it (`all`: every command).
    pub commands: &'static [&'static str],
    /// Its default in words; empty when unset means "off" or "none".
    pub default: &'static str,
    /// What it means to an operator (Markdown, links relative to docs/reference/).
    pub meaning: &'static str,
}

/// Declares each variable as a `pub const NAME: &str = "NAME"` (the names the
/// rest of the code uses) and lists them all, in order, in [`ALL`].
macro_rules! registry {
    ($( $group:literal {
        $( $name:ident [$($command:literal),*] default $default:literal : $meaning:literal ; )*
    } )*) => {
        $($(
            #[doc = $meaning]
            pub const $name: &str = stringify!($name);
        )*)*
        /// Every variable above, in the order of the reference page.
        pub const ALL: &[Var] = &[$($(Var {
            name: $name,
            group: $group,
            commands: &[$($command),*],
            default: $default,
            meaning: $meaning,
        },)*)*];
    };
}

registry! {
    "The connection" {
        DATABASE_URL ["backup", "cron", "verify", "restore"] default "" :
            "The connection URL, in any form people paste: `postgresql://`, `postgres://`, \
             `postgresql+asyncpg://`, `postgresql+psycopg://`; wins over the `PG*` variables \
             (see [Connecting](../connecting.md)).";
        PGHOST ["backup", "cron", "verify", "restore"] default "the local socket, else `localhost`" :
            "libpq's host (or socket directory), used when `DATABASE_URL` is unset.";
        PGPORT ["backup", "cron", "verify", "restore"] default "`5432`" :
            "libpq's port, used when `DATABASE_URL` is unset.";
        PGUSER ["backup", "cron", "verify", "restore"] default "`USER`, then `LOGNAME`" :
            "libpq's user, used when `DATABASE_URL` is unset.";
        PGPASSWORD ["backup", "cron", "verify", "restore"] default "`~/.pgpass`" :
            "The password, used when `DATABASE_URL` has none. Reaches the client tools only \
             through their environment, never their command line.";
        PGDATABASE ["backup", "cron", "verify", "restore"] default "the user name" :
            "libpq's database, used when `DATABASE_URL` is unset (`pgbak cron` needs \
             `DATABASE_URL` or `PGHOST`/`PGDATABASE`: it never falls back to libpq's defaults).";
        PGSSLMODE ["backup", "cron", "verify", "restore"] default "`prefer`" :
            "`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`, as libpq reads \
             them, for pgbak's own connection too.";
        PGPASSFILE ["backup", "cron", "verify", "restore"] default "`~/.pgpass`" :
            "The password file, as libpq reads it.";
    }
    "Where things are on this machine" {
        PATH ["backup", "cron", "verify", "restore"] default "" :
            "Searched for pg_dump/pg_restore (after `--pg-bin-dir`, before the usual install \
             directories) and for `alembic`.";
        HOME ["backup", "cron", "verify", "restore"] default "" :
            "`~/.pgpass` and `~/.postgresql/root.crt` live here, as for libpq.";
        USER ["backup", "cron", "verify", "restore"] default "" :
            "libpq's fallback user name when `PGUSER` is unset.";
        LOGNAME ["backup", "cron", "verify", "restore"] default "" :
            "The fallback user name when `USER` is unset too.";
        TMPDIR ["verify", "restore", "cron"] default "`/tmp`" :
            "Where `verify --ephemeral` puts its throwaway cluster (as root, the cluster's user, \
             `PGBAK_EPHEMERAL_USER`, must be able to enter it) and where S3 downloads go \
             (`pgbak-fetch-*`, 0700).";
    }
    "Every command" {
        PGBAK_PG_BIN_DIR ["backup", "cron", "verify", "restore"] default "discovery" :
            "The directory of pg_dump/pg_restore (and `initdb`/`postgres` for `--ephemeral`); \
             when set, only it is searched.";
        PGBAK_TIMEOUT ["all"] default "off" :
            "Stop the whole run after this long (`90s`, `45m`, `2h`): children stopped, nothing \
             half-written, exit 1.";
        PGBAK_LOCK_WAIT_TIMEOUT ["backup", "cron", "restore"] default "`10m`" :
            "The longest wait for a table lock, for pg_dump and pgbak's own queries (backup, \
             cron), and for any statement of a restore (pg_restore's, pgbak's row counts) on a \
             lock another session holds; then the run fails naming the table and the session \
             that holds it (`--lock-wait-timeout`).";
        BACKUP_DIR ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "`./backups`; for cron `/var/backups/enterprise-agents`" :
            "The backup directory (created 0700); for cron also its lock files.";
    }
    "backup and cron" {
        PGBAK_COMPRESS ["backup", "cron"] default "`zstd:1`, else `gzip:4`" :
            "pg_dump's `--compress` spec (`zstd:3`, `gzip:6`, `lz4`, `none`); recorded in meta.json.";
        PGBAK_PAUSE_REPLAY ["backup", "cron"] default "off" :
            "`true`: on a hot standby, pause WAL replay while dumping (see \
             [Hot standbys](../operating/standbys.md)).";
        PGBAK_SERVER_NAME ["backup", "cron"] default "the connection's `host:port`" :
            "The server's readable name in meta.json and in metrics labels (see \
             [servers](../concepts/servers.md)).";
        PGBAK_ALL_DATABASES ["backup", "cron"] default "off" :
            "`true`: every database of the server plus the globals, as `--all-databases`.";
        PGBAK_EXCLUDE_DATABASES ["backup", "cron"] default "" :
            "With `PGBAK_ALL_DATABASES`: comma-separated globs of databases to skip.";
        PGBAK_NO_ROLE_PASSWORDS ["backup", "cron"] default "off" :
            "`true`: leave role passwords out of the globals backup.";
        PGBAK_S3_STALE_UPLOAD_AGE ["backup", "cron"] default "`24h`" :
            "An open multipart upload of the group without a live marker is aborted once older \
             than this (`0` allowed).";
        BACKUP_ANOMALY_THRESHOLD ["backup", "cron"] default "`50`" :
            "Pin the previous backup when the new one's rows or size fall below this percentage \
             of it (`0` turns it off; see [Anomaly pin](../retention.md#anomaly-pin)).";
    }
    "Retention" {
        BACKUP_KEEP ["backup", "cron", "prune", "list", "sync"] default "`7` when no other rule is set" :
            "Keep the N newest backups of each group (`--keep-last`, alias `--keep`); `0` keeps all.";
        BACKUP_KEEP_HOURLY ["backup", "cron", "prune", "list", "sync"] default "" :
            "Keep the newest backup of each of the N newest hours that have one.";
        BACKUP_KEEP_DAILY ["backup", "cron", "prune", "list", "sync"] default "" :
            "The same per day (UTC).";
        BACKUP_KEEP_WEEKLY ["backup", "cron", "prune", "list", "sync"] default "" :
            "The same per ISO week (Monday to Sunday, UTC).";
        BACKUP_KEEP_MONTHLY ["backup", "cron", "prune", "list", "sync"] default "" :
            "The same per calendar month.";
        BACKUP_KEEP_YEARLY ["backup", "cron", "prune", "list", "sync"] default "" :
            "The same per calendar year.";
        BACKUP_KEEP_WITHIN ["backup", "cron", "prune", "list", "sync"] default "" :
            "Keep every backup within this span of the group's newest backup (`36h`, `14d`, \
             `2w`, `6m`, `1y6m`; see [Retention](../retention.md)).";
    }
    "Encryption" {
        PGBAK_AGE_RECIPIENTS ["backup", "cron"] default "" :
            "Encrypt new backups with age to these public keys (`age1...`, `ssh-ed25519 ...`), \
             separated by commas or newlines (see [Encryption](../encryption.md)).";
        PGBAK_AGE_RECIPIENTS_FILE ["backup", "cron"] default "" :
            "A file of recipients, one per line, `#` comments; added to the above.";
        PGBAK_AGE_IDENTITY_FILE ["verify", "restore", "cron"] default "" :
            "The private key file that decrypts `.dump.age` backups (an age identity or an \
             unencrypted OpenSSH key).";
        PGBAK_SCRATCH_DIR ["verify", "restore", "cron"] default "`/dev/shm`" :
            "Where an encrypted backup is decrypted (into an unnamed 0600 file) for a parallel restore, \
             and where a backup read from S3 is downloaded (default there: `$TMPDIR`).";
        PGBAK_REQUIRE_ENCRYPTION ["backup", "cron", "verify", "restore"] default "off" :
            "`true`: backup and cron refuse to run without recipients, verify and restore refuse \
             a plaintext dump (see [No downgrade](../encryption.md#no-downgrade-to-plaintext)).";
    }
    "Signatures" {
        PGBAK_SIGNING_KEY_FILE ["backup", "cron"] default "" :
            "The backup host's ed25519 key (OpenSSH format) that signs each backup's meta.json \
             (see [Signed backups](../encryption.md#signed-backups)).";
        PGBAK_TRUSTED_KEYS ["verify", "restore", "cron"] default "" :
            "A file of public keys: only backups signed by one of them are verified or restored.";
    }
    "verify" {
        PGBAK_VERIFY_TARGET_URL ["verify", "cron"] default "the source server" :
            "Restore verify's copy on this server instead of the source (a secret: it may hold a \
             password).";
        PGBAK_VERIFY_CHECKSUMS ["cron"] default "`never`" :
            "`daily` or `weekly`: after a successful run, read every retained backup of the \
             run's databases back and check its sha256 (`verify --checksum-only`) when the \
             store's newest checksum proof is older than 23 hours (daily) or 7 days less an hour \
             (weekly).";
        PGBAK_VERIFY_SAMPLE ["cron"] default "`0`" :
            "After a successful run, restore (verify) the N retained full backups of the run's \
             databases proven longest ago (`verify --sample N`).";
        PGBAK_EPHEMERAL_USER ["verify", "cron"] default "`pgbak`" :
            "As root, the unprivileged system user the `verify --ephemeral` (`cron \
             --verify-ephemeral`) throwaway server runs as; never root or `postgres` (see \
             [Security model](../security-model.md#the-host)). Missing, verify exits 2 naming \
             the `useradd` command that creates it.";
        VERIFY_ON_BACKUP ["cron"] default "off" :
            "`true` verifies every backup (as `cron --verify`); `true/false`, `1/0`, `yes/no`, \
             `on/off`, anything else is an error.";
        PGBAK_EXPECT_TABLES ["verify", "cron"] default "" :
            "Tables the restored copy must hold besides those meta.json recorded, comma-separated \
             `[DB:]SCHEMA.TABLE` (see [Expected tables](../commands/verify.md#expected-tables)).";
        PGBAK_EXPECT_TABLES_FILE ["verify", "cron"] default "" :
            "A file of such tables, one per line, `#` comments.";
    }
    "cron" {
        PGBAK_ENV_FILE ["cron", "backup", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "" :
            "Read settings from this file first (systemd `EnvironmentFile=` syntax; `--env-file`).";
        PGBAK_LOCK_WAIT ["cron"] default "`0s`" :
            "Wait this long for a running run of the same group before skipping with exit 75.";
        LOG_DIR ["cron"] default "`/var/log/pg-backup`" :
            "One log file per run, `backup-<UTC timestamp>.log` (0600; the directory 0700).";
        LOG_KEEP ["cron"] default "`30`" :
            "Run logs kept; `0` keeps all.";
        ALERT_WEBHOOK_URL ["cron"] default "unset (pagerduty: the Events API v2 endpoint)" :
            "POST an alert here when a run fails or is skipped (a secret; see \
             [Alerts](../operating/alerts.md)).";
        ALERT_WEBHOOK_FORMAT ["cron"] default "`generic`" :
            "`generic`, `slack` or `pagerduty` (any case).";
        ALERT_SERVICE ["cron"] default "`enterprise-agent-platform`" :
            "The alert's `service` field.";
        PAGERDUTY_ROUTING_KEY ["cron"] default "" :
            "Required with `ALERT_WEBHOOK_FORMAT=pagerduty` (a secret); with it no \
             `ALERT_WEBHOOK_URL` is needed.";
        HEARTBEAT_URL ["cron"] default "" :
            "Dead man's switch pinged by every run (a secret; see \
             [Heartbeats](../operating/alerts.md#heartbeats)).";
        HEARTBEAT_KIND ["cron", "check"] default "`auto`" :
            "`plain` (one GET after a success), `healthchecks` (`/start`, success with a summary, \
             `/fail` with the error), `auto` (`healthchecks` for `hc-ping.com` URLs, else `plain`).";
        METRICS_FILE ["cron", "verify"] default "" :
            "Prometheus textfile for node_exporter, rewritten after every run (see \
             [Metrics](../operating/metrics.md)); `pgbak verify` writes its measured restore \
             time there.";
    }
    "check" {
        PGBAK_CHECK_MAX_AGE ["check"] default "`26h`" :
            "A group whose newest backup is older fails (`0` turns the check off).";
        PGBAK_CHECK_MAX_VERIFIED_AGE ["check"] default "`8d`" :
            "A group without a passed verify within this span fails (`0` turns the check off).";
        PGBAK_CHECK_MAX_UNPROVEN_AGE ["check"] default "`0` (off)" :
            "A group with a retained backup not proven (a passing restore verify or checksum \
             proof) within this span fails; a backup never proven counts from when it was made.";
        PGBAK_CHECK_PROMETHEUS_FILE ["check"] default "" :
            "node_exporter textfile written by every check.";
        PGBAK_CHECK_HEARTBEAT_URL ["check"] default "" :
            "Ping a dead man's switch on every check (a secret).";
        PGBAK_CHECK_MAX_RUN_DURATION ["check"] default "`12h`" :
            "An `--all-databases` run without its end record after this long counts as killed.";
        PGBAK_CHECK_MAX_RTO ["check"] default "`0` (off)" :
            "A group whose newest passed verify's restore took longer, or was never measured, \
             fails (see [Restore drills](../drills.md)).";
    }
    "S3 and the AWS SDK" {
        S3_BUCKET ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin"] default "unset: no upload" :
            "The bucket to upload to and read from; setting it turns uploading on (see \
             [S3 / MinIO](../s3.md)).";
        S3_PREFIX ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin"] default "empty" :
            "Key prefix; a missing trailing `/` is added. Objects are `<prefix><file name>`.";
        S3_ENDPOINT_URL ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin"] default "AWS" :
            "MinIO or another S3-compatible store; switches to path-style addressing.";
        S3_REGION ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin"] default "`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile, `us-east-1`" :
            "The bucket's region.";
        S3_STORAGE_CLASS ["backup", "cron"] default "`STANDARD_IA`" :
            "Storage class of the uploaded objects (MinIO knows `STANDARD` and `REDUCED_REDUNDANCY`).";
        S3_SSE ["backup", "cron"] default "none" :
            "Server-side encryption: `AES256` or `aws:kms`.";
        S3_SSE_KMS_KEY_ID ["backup", "cron"] default "the bucket's default key" :
            "KMS key for `aws:kms`.";
        S3_PART_SIZE_MIB ["backup", "cron"] default "`8`" :
            "First part size in MiB (at least 5); parts double every 1,000.";
        S3_MAX_PART_SIZE_MIB ["backup", "cron"] default "`5120`" :
            "Largest part in MiB: stops the doubling and so bounds memory.";
        S3_MAX_PARTS ["backup", "cron"] default "`10000`" :
            "The store's part limit (lower it for stores with fewer).";
        S3_CONCURRENCY ["backup", "cron"] default "`3`" :
            "Parts uploaded at once.";
        S3_DOWNLOAD_CONCURRENCY ["verify", "restore", "cron"] default "`4`" :
            "Ranges of a backup downloaded at once from S3 (`1`: one GetObject); memory holds \
             this many ranges and the one being read.";
        PGBAK_S3_DOWNLOAD_PART_SIZE ["verify", "restore", "cron"] default "16 MiB" :
            "Bytes per downloaded range (for stores with other limits, and for tests).";
        S3_OBJECT_LOCK_DAYS ["backup", "cron", "sync"] default "" :
            "Lock the uploaded dump, meta.json and globals file for N days (see \
             [S3 Object Lock](../retention.md#s3-object-lock)).";
        S3_OBJECT_LOCK_MODE ["backup", "cron", "sync"] default "`governance`" :
            "`governance` or `compliance`.";
        PGBAK_TO ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "" :
            "More destinations for each backup, written in the same pass (`--to`): \
             whitespace-separated `s3://BUCKET/PREFIX?…` and `file:///PATH` URLs, each with its \
             own name, retention, Object Lock, storage class and SSE; credentials from its AWS \
             `profile`, never in the URL (see [3-2-1: several destinations](../three-two-one.md)).";
        PGBAK_S3_PART_SIZE ["backup", "cron"] default "" :
            "Bytes; wins over `S3_PART_SIZE_MIB` (for stores with other limits, and for tests).";
        PGBAK_S3_MIN_PART_SIZE ["backup", "cron"] default "5 MiB" :
            "Bytes: the store's smallest part (lower on a store that allows it).";
        PGBAK_S3_MAX_PART_SIZE ["backup", "cron"] default "" :
            "Bytes; wins over `S3_MAX_PART_SIZE_MIB`.";
        PGBAK_S3_STALL_TIMEOUT ["backup", "cron", "verify", "restore"] default "`60s`" :
            "A part upload (or a download) that moves no byte and gets no answer for this long \
             has stalled.";
        AWS_REGION ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "" :
            "The region when `S3_REGION` is unset.";
        AWS_DEFAULT_REGION ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "" :
            "The region when `S3_REGION` and `AWS_REGION` are unset.";
        AWS_ACCESS_KEY_ID ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "the AWS credential chain" :
            "The access key; read from the environment file too and handed to the SDK.";
        AWS_SECRET_ACCESS_KEY ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "the AWS credential chain" :
            "The secret key (a secret: never printed).";
        AWS_SESSION_TOKEN ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "" :
            "A session token (a secret).";
        AWS_PROFILE ["backup", "cron", "verify", "restore", "list", "check", "prune", "unpin", "sync"] default "" :
            "A profile of `~/.aws/config` (SSO and `credential_process` included).";
        AWS_REQUEST_CHECKSUM_CALCULATION ["backup", "cron"] default "" :
            "`when_required` for stores that reject the SDK's checksum headers (the size is then \
             the integrity check).";
        AWS_RESPONSE_CHECKSUM_VALIDATION ["verify", "restore", "list", "check"] default "" :
            "`when_required`: the same for downloads.";
    }
}

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
    use super::ALL;

    /// Every variable is on the generated reference page, so an operator can look it up
    /// (tests/docs checks that the page is what `ALL` generates).
    #[test]
    fn every_variable_is_documented_in_the_reference() {
        let page = include_str!("../../docs/reference/environment.md");
        assert!(ALL.len() > 50, "{ALL:?}");
        let missing: Vec<&str> = ALL
            .iter()
            .map(|var| var.name)
            .filter(|name| !page.contains(&format!("`{name}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/reference/environment.md: {missing:?}"
        );
    }

    #[test]
    fn every_variable_says_who_reads_it_and_what_it_means() {
        for var in ALL {
            assert!(!var.commands.is_empty(), "{}: no command", var.name);
            assert!(
                var.meaning.ends_with('.'),
                "{}: {:?}",
                var.name,
                var.meaning
            );
        }
    }
}
