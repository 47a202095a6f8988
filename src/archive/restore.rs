//! Restoring a checked backup with pg_restore: the step verify and restore
//! share, once. Which extensions the restored database needs (meta.json's,
//! else the archive's) and whether the server offers them; the archive made
//! readable for `--jobs` (decrypted into an unnamed scratch file, or streamed
//! to one job); pg_restore run and judged. The result is typed
//! ([`Restored`]): verify reports it as its `restore succeeded` check,
//! restore as its lines and exit code, each in its own words (and each
//! names its own way out when the server lacks an extension).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Backup;
use crate::encryption::decrypt::Plain;
use crate::pg::client::MissingExtensions;
use crate::pg::restore::{self as pg_restore, Listing, PgRestoreVerdict, RestoreJob};
use crate::signals::Signals;

impl Backup {
    /// The extensions of the source, which the restored database needs:
    /// meta.json's, else those the archive creates.
    pub fn wanted_extensions(&self, listing: &Listing) -> BTreeSet<String> {
        match self.meta() {
            Some(meta) => meta.extensions.keys().cloned().collect(),
            None => listing.extensions.iter().cloned().collect(),
        }
    }

    /// The archive as pg_restore reads it with up to `jobs` jobs: the file,
    /// or for an encrypted backup its decryption (an unnamed 0600 scratch
    /// file for `jobs` > 1 when there is room, else a stream to one job).
    /// Returns the jobs it allows. A decryption that fails is exit 1. A dump
    /// streamed from the bucket (`archive/stream.rs`) is read as it downloads.
    pub async fn readable(&self, jobs: u32, signals: &mut Signals) -> Result<(Plain, u32)> {
        if let Some(streamed) = &self.located.stream {
            // Only ever chosen for one job (pg_restore's workers would seek).
            return Ok((self.streamed(streamed).await?, 1));
        }
        signals.guard(self.source.for_restore(jobs)).await
    }
}

/// What one pg_restore did, judged.
#[derive(Debug)]
pub struct Restored {
    /// pg_restore's stderr, sorted: warnings, errors, objects not created.
    pub verdict: PgRestoreVerdict,
    /// How long pg_restore ran (decryption on the way included).
    pub duration: Duration,
    /// pg_restore's failure on one line (its first errors); None when it succeeded.
    pub failure: Option<String>,
    /// The extension pg_restore could not create because the server lacks it.
    pub missing: Option<MissingExtensions>,
}

impl Restored {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// Runs pg_restore as `job` says, reading `plain` ([`Backup::readable`]),
/// and judges it (`server_major`: the target's, for the install hint). Err:
/// a signal stopped it (pg_restore and its sessions ended) or it could not
/// start; a restore that ran and failed is [`Restored::failure`].
pub async fn restore(
    plain: Plain,
    job: &RestoreJob<'_>,
    server_major: u32,
    signals: &mut Signals,
) -> Result<Restored> {
    let clock = Instant::now();
    let verdict = plain.restore(job, signals).await?;
    let duration = clock.elapsed();
    Ok(judged(verdict, duration, server_major))
}

/// The failure and the missing extension of a pg_restore `verdict`.
fn judged(verdict: PgRestoreVerdict, duration: Duration, server_major: u32) -> Restored {
    let failure =
        (!verdict.succeeded()).then(|| crate::error::one_line(&pg_restore::failure(&verdict)));
    let missing = verdict.missing_extension().map(|name| MissingExtensions {
        names: vec![name],
        server_major,
    });
    Restored {
        verdict,
        duration,
        failure,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_restore_says_why_and_which_extension_is_missing() {
        let ok = judged(PgRestoreVerdict::default(), Duration::ZERO, 16);
        assert!(ok.succeeded() && ok.missing.is_none());
        let verdict = PgRestoreVerdict {
            errors: vec![
                "could not execute query: ERROR:  extension \"vector\" is not available".into(),
            ],
            ..PgRestoreVerdict::default()
        };
        let failed = judged(verdict, Duration::ZERO, 17);
        let failure = failed.failure.clone().expect("failed");
        assert!(
            failure.starts_with("pg_restore reported 1 error(s): "),
            "{failure}"
        );
        let missing = failed.missing.expect("vector is missing");
        assert_eq!(missing.names, ["vector"]);
        assert!(missing.install_hint().contains("postgresql-17-pgvector"));
    }
}
