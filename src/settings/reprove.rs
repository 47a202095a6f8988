//! Re-proving retained backups, resolved at dispatch: `pgbak verify
//! --checksum-only` / `--sample N`, and cron's `PGBAK_VERIFY_CHECKSUMS` /
//! `PGBAK_VERIFY_SAMPLE`. Where (the authoritative store: the bucket when S3
//! is configured, else the directory), which databases, how many at once.

use std::time::Duration;

use anyhow::Result;

use crate::cli::{BackupSourceArgs, ReproveArgs};
use crate::storage::s3::S3Settings;
use crate::storage::{safe_database_name, Place};

/// Where re-proving looks, and what it does there.
#[derive(Debug, Clone)]
pub struct Reproving {
    /// The authoritative store.
    pub place: Place,
    pub work: Reprove,
}

/// What re-proving does.
#[derive(Debug, Clone)]
pub struct Reprove {
    /// Read every retained backup back and check its checksum.
    pub checksums: bool,
    /// Restore this many retained full backups, those proven longest ago.
    pub sample: u32,
    /// Backups read at once.
    pub parallel: usize,
    /// Only these databases (as file names spell them); empty: every database.
    pub databases: Vec<String>,
}

impl Reproving {
    /// `verify --checksum-only` / `--sample N`; None for a verify of one backup.
    pub fn resolve(args: &ReproveArgs, source: &BackupSourceArgs) -> Result<Option<Reproving>> {
        let sample = args.sample.unwrap_or(0);
        if !args.checksum_only && sample == 0 {
            return Ok(None);
        }
        let place = if source.from_s3 || source.s3.bucket.as_deref().is_some_and(|b| !b.is_empty())
        {
            Place::S3(Box::new(S3Settings::from_args(&source.s3, None)?))
        } else {
            Place::Dir(source.backup_dir.path.clone())
        };
        Ok(Some(Reproving {
            place,
            work: Reprove {
                checksums: args.checksum_only,
                sample,
                parallel: usize::from(args.parallel).max(1),
                databases: args
                    .databases
                    .iter()
                    .map(|d| safe_database_name(d))
                    .collect(),
            },
        }))
    }
}

/// Backups cron reads back at once.
pub const CRON_PARALLEL: usize = 4;

/// How often cron reads every retained backup back (`PGBAK_VERIFY_CHECKSUMS`).
/// A cron run keeps no state of its own: a run does it when the newest
/// checksum proof in the store (of the run's databases) is older than the
/// cadence's span, less an hour of slack for a schedule that drifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cadence {
    Never,
    /// The newest proof is older than 23 hours.
    Daily,
    /// The newest proof is older than 7 days less an hour.
    Weekly,
}

impl Cadence {
    /// The age past which the store's newest proof calls for another pass; None: never.
    pub fn span(self) -> Option<Duration> {
        const HOUR: u64 = 3600;
        match self {
            Cadence::Never => None,
            Cadence::Daily => Some(Duration::from_secs(23 * HOUR)),
            Cadence::Weekly => Some(Duration::from_secs(7 * 24 * HOUR - HOUR)),
        }
    }
}
