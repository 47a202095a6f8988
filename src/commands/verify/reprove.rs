//! `pgbak verify --checksum-only` and `--sample N`: re-proving the retained
//! backups of a store over time, not only on the night each was made.
//!
//! 1. list the authoritative store (the bucket when S3 is configured) and
//!    keep the complete backups of the selected databases;
//! 2. `--checksum-only`: read each back where it is stored, a few at once
//!    ([`crate::archive::proof`]: SHA-256, and for `.dump.age` the
//!    decryption with the identity, to nowhere). A pass records a checksum
//!    proof beside the backup's restore verdict (never replacing it); a
//!    mismatch records a failed verdict (`checksum`), so selection,
//!    retention's "newest verified" and restore pass over it;
//! 3. `--sample N`: the N full backups proven longest ago by a restore
//!    (never restored first, then the oldest restore verdict; [`pick`])
//!    are verified as `pgbak verify` verifies one, their verdicts recorded.
//!
//! Exit 1 names every backup that failed or could not be read.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::archive::{self, proof, Wanted};
use crate::encryption::Identities;
use crate::error::{as_finding, one_line};
use crate::meta::{Meta, Verification};
use crate::mode::Mode;
use crate::settings::commands::Output;
use crate::settings::reprove::Reprove;
use crate::settings::verify::VerifyOptions;
use crate::signals::Signals;
use crate::storage::verdict::ChecksumProof;
use crate::storage::{Listed, Store};
use crate::ui;

/// One backup read back.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub file: String,
    /// `passed`, `failed` (recorded as a failed verdict) or `error` (could not be read: nothing recorded).
    pub status: &'static str,
    pub detail: String,
}

/// One backup of the sample, restored.
#[derive(Debug, Clone, Serialize)]
pub struct Sampled {
    pub file: String,
    /// Why it was picked: never restored, or when its last restore was.
    pub reason: String,
    pub passed: bool,
}

/// What a re-proving run found (also the `--json` shape).
#[derive(Debug, Default, Serialize)]
pub struct Reproved {
    pub checked: Vec<Checked>,
    pub sampled: Vec<Sampled>,
}

impl Reproved {
    /// The backups that failed or could not be read, by file.
    pub fn failures(&self) -> Vec<String> {
        let checked = self.checked.iter().filter(|c| c.status != "passed");
        let sampled = self.sampled.iter().filter(|s| !s.passed);
        checked
            .map(|c| c.file.clone())
            .chain(sampled.map(|s| s.file.clone()))
            .collect()
    }
}

/// `pgbak verify --checksum-only` / `--sample N`.
pub async fn run(
    reproving: &Reprove,
    opts: &VerifyOptions,
    output: Output,
    store: &Store,
) -> Result<ExitCode> {
    let mut signals = Signals::new()?;
    let reproved = reprove(reproving, opts, store, &mut signals).await?;
    if output == Output::Json {
        ui::stdout_line(&serde_json::to_string_pretty(&reproved).context("encoding the report")?);
    }
    Ok(if reproved.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::FAILED)
    })
}

/// Steps 1-3; `Err` is an interruption or a store that cannot be listed.
pub async fn reprove(
    reproving: &Reprove,
    opts: &VerifyOptions,
    store: &Store,
    signals: &mut Signals,
) -> Result<Reproved> {
    let backups = retained(reproving, store).await?;
    let mut reproved = Reproved::default();
    if reproving.checksums {
        let identities = match &opts.identity_file {
            Some(path) => Some(Arc::new(Identities::load(path)?)),
            None => None,
        };
        let checking = check_all(store, &backups, identities, reproving.parallel);
        reproved.checked = signals.guard(checking).await?;
        summarize_checks(&reproved.checked, store);
    }
    if reproving.sample > 0 {
        reproved.sampled = sample(reproving.sample, opts, store, &backups, signals).await?;
    }
    let failures = reproved.failures();
    if !failures.is_empty() {
        ui::error(&format!(
            "re-proving FAILED for {} backup(s): {}",
            failures.len(),
            failures.join(", ")
        ));
    }
    Ok(reproved)
}

/// Step 1: the complete backups of the selected databases, oldest first.
async fn retained(reproving: &Reprove, store: &Store) -> Result<Vec<Listed>> {
    let listed = store
        .list_backups()
        .await
        .with_context(|| format!("listing {}", store.describe()))?;
    let wanted = |b: &Listed| {
        reproving.databases.is_empty() || reproving.databases.contains(&b.name.database)
    };
    let backups: Vec<Listed> = listed
        .into_iter()
        .filter(|b| b.has_dump && b.has_meta && wanted(b))
        .collect();
    ui::info(&format!(
        "{} retained backup(s) in {}",
        backups.len(),
        store.describe()
    ));
    Ok(backups)
}

/// Step 2 for every backup, `parallel` at once, in the listing's order.
async fn check_all(
    store: &Store,
    backups: &[Listed],
    identities: Option<Arc<Identities>>,
    parallel: usize,
) -> Result<Vec<Checked>> {
    let mut running = tokio::task::JoinSet::new();
    let mut done: Vec<(usize, Checked)> = Vec::new();
    for (i, backup) in backups.iter().enumerate() {
        if running.len() >= parallel {
            if let Some(joined) = running.join_next().await {
                done.push(joined.context("a checksum task stopped unexpectedly")?);
            }
        }
        let (store, backup, ids) = (store.clone(), backup.clone(), identities.clone());
        running.spawn(async move { (i, check_one(&store, &backup, ids).await) });
    }
    while let Some(joined) = running.join_next().await {
        done.push(joined.context("a checksum task stopped unexpectedly")?);
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, c)| c).collect())
}

/// Reads one backup back and records what it found.
async fn check_one(store: &Store, backup: &Listed, ids: Option<Arc<Identities>>) -> Checked {
    let file = backup.name.dump_file();
    let meta = match store.load_meta(&backup.name).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return errored(file, "its meta.json is gone".into()),
        Err(err) => return errored(file, one_line(&err)),
    };
    let proven = proof::prove(store, &file, &meta, ids).await;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, detail) = match &proven {
        Ok(p) => (
            "passed",
            format!(
                "{} read back, sha256 matches meta.json{}",
                ui::bytes(p.bytes),
                if p.decrypted {
                    "; decrypts to the recorded plaintext"
                } else if meta.encryption.is_some() {
                    "; decryption not checked (no identity file)"
                } else {
                    ""
                }
            ),
        ),
        Err(err) => match as_finding(err) {
            Some(why) => ("failed", why.to_owned()),
            None => return errored(file, one_line(err)),
        },
    };
    let passed = status == "passed";
    if let Err(err) = record(store, backup, &meta, passed, &now).await {
        ui::warn(&format!(
            "could not record the checksum proof of {file}: {}",
            one_line(&err)
        ));
    }
    if passed {
        ui::info(&format!("checksum PASS {file}: {detail}"));
    } else {
        ui::error(&format!("checksum FAIL {file}: {detail}"));
    }
    Checked {
        file,
        status,
        detail,
    }
}

fn errored(file: String, why: String) -> Checked {
    ui::error(&format!("checksum not checked: {file}: {why}"));
    Checked {
        file,
        status: "error",
        detail: why,
    }
}

/// The proof beside the backup; a failure also as a failed verdict (in a
/// directory also in its meta.json, as verify records one).
async fn record(
    store: &Store,
    backup: &Listed,
    meta: &Meta,
    passed: bool,
    now: &str,
) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let proof = ChecksumProof {
        checked_at: now.to_owned(),
        passed,
        pgbak_version: version.clone(),
    };
    store.store_checksum_proof(&backup.name, &proof).await?;
    if !passed {
        let failed = Verification {
            verified_at: now.to_owned(),
            passed: false,
            pgbak_version: version,
            timing: None,
            failed_checks: vec![super::CheckId::Checksum.name().to_owned()],
        };
        store
            .record_verdict(&backup.name.dump_file(), meta, &failed)
            .await?;
    }
    Ok(())
}

/// Whether a checksum pass is due: the newest checksum proof among the
/// backups of `databases` (empty: every one) in `store` is older than
/// `span`, or there is none. A cron run keeps no state: the store is it.
pub async fn checksums_due(
    store: &Store,
    databases: &[String],
    span: std::time::Duration,
) -> Result<bool> {
    let listed = store.list_backups().await?;
    let mut newest: Option<DateTime<Utc>> = None;
    for backup in listed.iter().filter(|b| b.has_verdict) {
        if !databases.is_empty() && !databases.contains(&backup.name.database) {
            continue;
        }
        if let Ok(Some(doc)) = store.load_verdict_file(&backup.name).await {
            newest = newest.max(doc.checksum.and_then(|c| c.at()));
        }
    }
    let span = chrono::TimeDelta::from_std(span).unwrap_or(chrono::TimeDelta::MAX);
    let due = newest.is_none_or(|at| Utc::now() - at > span);
    ui::info(&format!(
        "checksums {}: the newest checksum proof in {} is {}",
        if due { "due" } else { "not due" },
        store.describe(),
        newest.map_or("none".to_owned(), |at| at
            .to_rfc3339_opts(SecondsFormat::Secs, true))
    ));
    Ok(due)
}

fn summarize_checks(checked: &[Checked], store: &Store) {
    let passed = checked.iter().filter(|c| c.status == "passed").count();
    ui::info(&format!(
        "checksums: {passed} of {} backup(s) in {} read back and matched",
        checked.len(),
        store.describe()
    ));
}

/// A candidate of the sample: its file, its time, and its last restore verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub file: String,
    pub at: DateTime<Utc>,
    /// When a restore verify last passed; None: never.
    pub restored: Option<DateTime<Utc>>,
}

/// The `n` candidates proven longest ago: never restored first (oldest
/// backup first among them), then by their last passing restore, oldest
/// first (pure).
pub fn pick(mut candidates: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    candidates.sort_by_key(|c| (c.restored.is_some(), c.restored, c.at));
    candidates.truncate(n);
    candidates
}

/// Step 3: the candidates (full backups not known bad), picked, each verified.
async fn sample(
    n: u32,
    opts: &VerifyOptions,
    store: &Store,
    backups: &[Listed],
    signals: &mut Signals,
) -> Result<Vec<Sampled>> {
    let mut candidates = Vec::new();
    for backup in backups.iter().filter(|b| b.name.mode == Mode::Full) {
        let Some(meta) = store.load_judged(backup).await? else {
            continue;
        };
        let verdict = meta.verification.as_ref();
        if verdict.is_some_and(|v| !v.passed) {
            continue; // known bad: selection passes over it already
        }
        candidates.push(Candidate {
            file: backup.name.dump_file(),
            at: backup.name.time(),
            restored: verdict.and_then(|v| {
                DateTime::parse_from_rfc3339(&v.verified_at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }),
        });
    }
    let picked = pick(candidates, n as usize);
    let mut sampled = Vec::new();
    for candidate in picked {
        let reason = match candidate.restored {
            None => "never restored".to_owned(),
            Some(at) => format!(
                "last restored {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        };
        ui::info(&format!(
            "sample: restoring {} ({reason}: proven longest ago)",
            candidate.file
        ));
        let located = archive::locate(&Wanted::Stored(candidate.file.clone()), store).await?;
        let report = super::verify_located(opts, located, signals).await?;
        sampled.push(Sampled {
            file: candidate.file,
            reason,
            passed: report.passed,
        });
    }
    Ok(sampled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 2, 0, 0).unwrap()
    }

    fn candidate(file: &str, day: u32, restored: Option<u32>) -> Candidate {
        Candidate {
            file: file.into(),
            at: at(day),
            restored: restored.map(at),
        }
    }

    #[test]
    fn the_sample_is_the_backups_proven_longest_ago() {
        let all = vec![
            candidate("a", 1, Some(20)),
            candidate("b", 2, Some(3)),
            candidate("c", 3, None),
            candidate("d", 4, Some(10)),
            candidate("e", 5, None),
        ];
        let names = |n| {
            pick(all.clone(), n)
                .into_iter()
                .map(|c| c.file)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(1), ["c"], "never restored, the oldest of those");
        assert_eq!(names(2), ["c", "e"]);
        assert_eq!(names(3), ["c", "e", "b"], "then the oldest restore");
        assert_eq!(names(9), ["c", "e", "b", "d", "a"]);
        assert!(pick(all.clone(), 0).is_empty());
    }
}
