//! Retention applied to one [`Store`]: list, read meta.json (verified?
//! pinned?), plan with [`super::plan`], ask the store which doomed objects
//! are still under Object Lock, then delete (unless a dry run). The same
//! code serves a directory and an S3 prefix, `backup`, `cron` and `prune`.

use std::collections::BTreeSet;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{plan, Candidate, Decision, Policy};
use crate::storage::{BackupName, Listed, Store, Stores};
use crate::ui;

/// What one store told about backups that matters to another store: a
/// backup verified or pinned here is treated so there too (a verdict or a
/// pin may have reached only one of them: a run whose upload failed, an
/// older pgbak that recorded verify results only in the local meta.json).
#[derive(Debug, Clone, Default)]
pub struct Marks {
    pub verified: BTreeSet<String>,
    pub pinned: BTreeSet<String>,
}

/// One backup's fate (also the `--json` shape of `prune`).
#[derive(Debug, Clone, Serialize)]
pub struct Fate {
    /// The file stem.
    pub name: String,
    /// `local` or `s3`.
    #[serde(rename = "where")]
    pub store: &'static str,
    /// The destination's name (`prune`: `local`, `s3`, each `--to` one's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The dump's path or `s3://` URI.
    pub location: String,
    /// `keep` or `delete` (what happened, or would in a dry run).
    pub action: &'static str,
    /// The rules and invariants that keep it, or why it goes.
    pub reasons: Vec<String>,
}

/// The result of one pass over one store.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcomes: Vec<Fate>,
    /// Locations actually deleted.
    pub deleted: Vec<String>,
    pub marks: Marks,
}

/// Which backups a pass decides.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub policy: &'a Policy,
    /// The backup just made: only its group is decided, and it is kept.
    pub just_made: Option<&'a BackupName>,
    /// The real database of the group (meta.json's `database`): a backup whose
    /// meta.json names another database is not decided, whatever its file name
    /// (names older versions wrote were lossy: `a b` and `a-b` shared one).
    pub database: Option<&'a str>,
    /// Plan only, delete nothing.
    pub dry_run: bool,
    /// `local` or `s3`, for the outcomes.
    pub store: &'static str,
}

impl<'a> Scope<'a> {
    /// Every group of the directory (no backup just made, any database), as
    /// `prune` and `list` decide them.
    pub fn every_group(policy: &'a Policy, dry_run: bool) -> Scope<'a> {
        Scope {
            policy,
            just_made: None,
            database: None,
            dry_run,
            store: "local",
        }
    }
}

/// Runs retention over `store`. Marks from another store (`known`) count as
/// if found here. A dump without meta.json is kept and named in one warning.
pub async fn apply(
    store: &Store,
    scope: &Scope<'_>,
    known: &Marks,
    now: DateTime<Utc>,
) -> Result<Applied> {
    let listed: Vec<Listed> = store
        .list_backups()
        .await?
        .into_iter()
        .filter(|b| scope.just_made.is_none_or(|j| j.group() == b.name.group()))
        .collect();
    let mut marks = Marks::default();
    let mut candidates = Vec::with_capacity(listed.len());
    let mut from_runs = false;
    for b in &listed {
        let Some((c, in_run)) = candidate(store, scope, known, b).await else {
            continue;
        };
        from_runs |= in_run;
        if c.verified {
            marks.verified.insert(c.name.stem());
        }
        if c.pinned {
            marks.pinned.insert(c.name.stem());
        }
        candidates.push(c);
    }
    if from_runs {
        protect_newest_runs(store, &mut candidates).await?;
    }
    let decisions = plan_around_locks(store, scope, &mut candidates, now).await?;
    let mut applied = Applied {
        marks,
        ..Applied::default()
    };
    for d in decisions {
        let location = store.dump_location(&d.name);
        if !d.keep && !scope.dry_run {
            if let Some(backup) = listed.iter().find(|b| b.name == d.name) {
                // A stop signal or --timeout ends retention before the next deletion.
                crate::signals::check()?;
                ui::info(&format!("retention: deleting {location} ({})", d.reason()));
                store.remove_backup(backup).await?;
                applied.deleted.push(location.clone());
            }
        } else if d.reasons.iter().any(|r| r.starts_with("locked until")) && !scope.dry_run {
            ui::info(&format!("retention: keeping {location}: {}", d.reason()));
        }
        applied.outcomes.push(Fate {
            name: d.name.stem(),
            store: scope.store,
            destination: None,
            location,
            action: if d.keep { "keep" } else { "delete" },
            reasons: d.reasons,
        });
    }
    Ok(applied)
}

/// What `store` knows of verified and pinned backups in `scope`. Quiet: the
/// pass that decides names what it cannot read.
pub async fn marks(store: &Store, scope: &Scope<'_>) -> Result<Marks> {
    let mut marks = Marks::default();
    for b in store.list_backups().await? {
        let in_scope = scope.just_made.is_none_or(|j| j.group() == b.name.group());
        if !(b.has_dump && b.has_meta && in_scope) {
            continue;
        }
        let Ok(Some(meta)) = store.load_judged(&b).await else {
            continue;
        };
        if scope
            .database
            .is_some_and(|database| meta.database != database)
        {
            continue;
        }
        if meta.verification.as_ref().is_some_and(|v| v.passed) {
            marks.verified.insert(b.name.stem());
        }
        if meta.pinned.is_some() {
            marks.pinned.insert(b.name.stem());
        }
    }
    Ok(marks)
}

/// The S3 side of [`both`]: the prefix, and whether this pass may change it
/// (false: read for its verdicts and pins only, as after a failed upload).
pub struct Remote<'a> {
    pub store: &'a Store,
    pub apply: bool,
}

/// Retention of `policy` over every group of a command's directory and bucket,
/// no backup just made: what `prune` does, and (`dry_run`) what `list` shows.
pub async fn over_stores(
    stores: &Stores,
    policy: &Policy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<(Option<Applied>, Option<Applied>)> {
    let scope = Scope::every_group(policy, dry_run);
    let remote = stores
        .bucket
        .as_ref()
        .map(|store| Remote { store, apply: true });
    both(stores.local.as_ref(), remote, &scope, now).await
}

/// Retention over the local directory and the S3 prefix, each pass knowing
/// what the other store records: the prefix is the authoritative store when
/// it is configured, so the local pass honours its verdicts and pins (a
/// pod's directory holds none), and the S3 pass honours verdicts and pins
/// only an older pgbak recorded locally. A prefix that may not be changed
/// and cannot be read is named in a warning: the local pass then goes on
/// with its own marks (every copy on S3 stays where it is).
pub async fn both(
    local: Option<&Store>,
    remote: Option<Remote<'_>>,
    scope: &Scope<'_>,
    now: DateTime<Utc>,
) -> Result<(Option<Applied>, Option<Applied>)> {
    let local_marks = match local {
        Some(store) => marks(store, scope).await?,
        None => Marks::default(),
    };
    let mut s3 = None;
    if let Some(remote) = remote {
        let s3_scope = Scope {
            store: "s3",
            dry_run: scope.dry_run || !remote.apply,
            ..*scope
        };
        match apply(remote.store, &s3_scope, &local_marks, now).await {
            Ok(applied) => s3 = Some(applied),
            Err(err) if !remote.apply => ui::warn(&format!(
                "cannot read the verdicts and pins under {}; local retention goes by the \
                 directory's own: {}",
                remote.store.describe(),
                crate::error::one_line(&err)
            )),
            Err(err) => return Err(err),
        }
    }
    let s3_marks = s3.as_ref().map(|a| a.marks.clone()).unwrap_or_default();
    let local_applied = match local {
        Some(store) => {
            let local_scope = Scope {
                store: "local",
                ..*scope
            };
            Some(apply(store, &local_scope, &s3_marks, now).await?)
        }
        None => None,
    };
    Ok((local_applied, s3))
}

/// Marks the backups of the newest complete run of each server (from the
/// run records and the listing of the whole store), which retention keeps.
async fn protect_newest_runs(store: &Store, candidates: &mut [Candidate]) -> Result<()> {
    let records = crate::runs::records(store).await?;
    if records.is_empty() {
        return Ok(());
    }
    let present: BTreeSet<String> = store
        .list_backups()
        .await?
        .into_iter()
        .filter(|b| b.has_dump && b.has_meta)
        .map(|b| b.name.dump_file())
        .collect();
    let protected = crate::runs::newest_complete_runs(&records, &present);
    for c in candidates {
        c.newest_complete_run = protected.get(&c.name.stem()).cloned();
    }
    Ok(())
}

/// One listed backup as retention sees it, from its meta.json (verified?
/// pinned?) and the marks of another store, and whether it belongs to an
/// `--all-databases` run; None when its meta.json names another database
/// than the scope's.
async fn candidate(
    store: &Store,
    scope: &Scope<'_>,
    known: &Marks,
    b: &Listed,
) -> Option<(Candidate, bool)> {
    let mut in_run = false;
    let stem = b.name.stem();
    let mut c = Candidate {
        has_dump: b.has_dump,
        has_meta: b.has_meta,
        ..Candidate::plain(b.name.clone())
    };
    let loaded = if b.has_meta {
        Some(store.load_judged(b).await)
    } else {
        None
    };
    if let Some(Ok(Some(meta))) = &loaded {
        if scope
            .database
            .is_some_and(|database| meta.database != database)
        {
            return None;
        }
        c.group.database = meta.database.clone();
    }
    if b.has_dump && b.has_meta {
        match loaded.unwrap_or(Ok(None)) {
            Ok(Some(meta)) => {
                c.verified = meta.verification.as_ref().is_some_and(|v| v.passed);
                c.pinned = meta.pinned.is_some();
                in_run = meta.cluster_run.is_some();
            }
            Ok(None) => c.has_meta = false,
            Err(err) => {
                // Unreadable: it might say "pinned"; keep it like a meta-less dump.
                ui::warn(&format!(
                    "retention keeps {}: {}",
                    store.dump_location(&b.name),
                    crate::error::one_line(&err)
                ));
                c.has_meta = false;
            }
        }
    }
    c.verified |= known.verified.contains(&stem);
    c.pinned |= known.pinned.contains(&stem);
    if b.has_dump && !b.has_meta {
        ui::warn(&format!(
            "{} has no meta.json: retention never deletes it; verify it or remove it by hand",
            store.dump_location(&b.name)
        ));
    }
    Some((c, in_run))
}

/// The plan, with the Object Lock of what it would delete taken into
/// account. Only backups the rules would delete are asked for a lock: one
/// request each, none for the many that stay anyway.
async fn plan_around_locks(
    store: &Store,
    scope: &Scope<'_>,
    candidates: &mut [Candidate],
    now: DateTime<Utc>,
) -> Result<Vec<Decision>> {
    let first = plan(candidates, scope.policy, scope.just_made, now);
    let doomed: Vec<_> = first.iter().filter(|d| !d.keep).collect();
    let can_lock = !doomed.is_empty() && store.can_lock().await?;
    for decision in doomed.into_iter().filter(|_| can_lock) {
        let until = store.locked_until(&decision.name).await?;
        if let Some(c) = candidates.iter_mut().find(|c| c.name == decision.name) {
            c.locked_until = until;
        }
    }
    Ok(plan(candidates, scope.policy, scope.just_made, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Pin, Verification};
    use crate::mode::Mode;
    use crate::storage::memory::MemoryStore;
    use chrono::TimeZone;

    fn name(day: u32) -> BackupName {
        BackupName::new(
            "db",
            Mode::Full,
            None,
            Utc.with_ymd_and_hms(2026, 11, day, 2, 0, 0).unwrap(),
        )
    }

    fn meta(verified: bool, pinned: bool) -> crate::meta::Meta {
        let mut m = crate::meta::tests::sample();
        m.verification = verified.then(|| Verification {
            verified_at: "2026-11-25T03:00:00Z".into(),
            passed: true,
            pgbak_version: "0.1.0".into(),
            failed_checks: Vec::new(),
            timing: None,
        });
        m.pinned = pinned.then(|| Pin {
            pinned_at: "2026-11-25T03:00:00Z".into(),
            reason: "test".into(),
        });
        m
    }

    fn run(store: &Store, policy: &Policy, dry_run: bool, known: &Marks) -> Applied {
        let scope = Scope::every_group(policy, dry_run);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(apply(store, &scope, known, Utc::now()))
            .unwrap()
    }

    #[test]
    fn reads_verified_and_pinned_from_meta_and_deletes_the_rest() {
        let (memory, store) = MemoryStore::store();
        memory.add(name(1), true, Some(meta(false, true)));
        memory.add(name(2), true, Some(meta(true, false)));
        memory.add(name(3), true, Some(meta(false, false)));
        memory.add(name(4), true, None);
        memory.add(name(5), false, Some(meta(false, false)));
        memory.add(name(6), true, Some(meta(false, false)));
        let dry = run(&store, &Policy::last(1), true, &Marks::default());
        assert!(dry.deleted.is_empty());
        assert_eq!(memory.stems().len(), 6, "a dry run deletes nothing");
        let applied = run(&store, &Policy::last(1), false, &Marks::default());
        assert_eq!(applied.deleted.len(), 2, "{:?}", applied.outcomes);
        assert_eq!(
            memory.stems(),
            [name(1), name(2), name(4), name(6)].map(|n| n.stem())
        );
        assert_eq!(applied.marks.verified.len(), 1);
        assert_eq!(applied.marks.pinned.len(), 1);
    }

    #[test]
    fn marks_from_another_store_protect_here_and_locks_are_planned_around() {
        let (memory, store) = MemoryStore::store();
        for day in 1..=4 {
            memory.add(name(day), true, Some(meta(false, false)));
        }
        memory
            .entries()
            .get_mut(&name(1).stem())
            .unwrap()
            .locked_until = Some(Utc::now() + chrono::Duration::days(3));
        let known = Marks {
            verified: [name(2).stem()].into(),
            pinned: BTreeSet::new(),
        };
        let applied = run(&store, &Policy::last(1), false, &known);
        assert_eq!(
            applied.deleted,
            vec![format!("mem:{}", name(3).dump_file())]
        );
        let locked = applied
            .outcomes
            .iter()
            .find(|o| o.name == name(1).stem())
            .unwrap();
        assert_eq!(locked.action, "keep");
        assert!(locked.reasons[0].starts_with("locked until"), "{locked:?}");
    }
}
