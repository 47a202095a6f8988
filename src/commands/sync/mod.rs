//! `pgbak sync`: makes every destination hold every backup another one
//! holds and its own retention keeps (backfill after an outage, a new
//! destination added to an existing history; issue 27).
//!
//! Steps:
//! 1. list every destination (one that cannot be read is named, left out,
//!    and fails the run: exit 1);
//! 2. the verdicts and pins every destination records, so each
//!    destination's retention sees them all ([`plan`]);
//! 3. per destination, what it lacks and would keep, each from the first
//!    destination (in order) that holds it; `--dry-run` prints that and stops;
//! 4. group by group, under the group's run lock in the backup directory
//!    (the lock `backup`, `cron` and their retention take: a sync never
//!    copies into a group whose retention is running on this host), each
//!    copy: the dump (on the server between prefixes of one S3 endpoint,
//!    else streamed with every byte's SHA-256 checked against meta.json),
//!    the verdict, meta.json last, then the destination's Object Lock;
//! 5. the `--all-databases` run records a destination lacks, once it holds
//!    every backup the run wrote.
//!
//! Exit 0: every destination in sync; 1: a copy failed or a destination
//! could not be read; 75: nothing failed, but a group was skipped because
//! its lock was held.

mod plan;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use chrono::Utc;

use crate::archive::fetch_dir;
use crate::error::{exit_code, is_interruption, one_line, FAILED, LOCKED};
use crate::lock::{lock_file_name, RunLock};
use crate::retention::apply::{self, Marks, Scope};
use crate::settings::sync::SyncSettings;
use crate::storage::object_lock::LockPolicy;
use crate::storage::{BackupName, Destination, Listing, Stores};
use crate::ui;
use plan::Copy;

pub async fn run(settings: SyncSettings, stores: &Stores) -> Result<ExitCode> {
    let dests = stores.destinations();
    let dry = if settings.dry_run { " (dry run)" } else { "" };
    ui::info(&format!(
        "sync{dry}: {}",
        dests
            .iter()
            .map(|d| format!("{} ({})", d.name, d.store.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut failed: Vec<String> = Vec::new();

    // 1: what each destination holds.
    let mut listings: Vec<Option<Listing>> = Vec::new();
    for d in dests {
        match d.store.list().await {
            Ok(listing) => listings.push(Some(listing)),
            Err(err) if is_interruption(&err) => return Err(err),
            Err(err) => {
                let line = format!("{}: cannot be read: {}", d.name, one_line(&err));
                ui::error(&line);
                failed.push(line);
                listings.push(None);
            }
        }
    }

    // 2-3: the verdicts and pins of all, and what each destination is owed.
    let marks = all_marks(dests, &listings, &settings).await;
    let policies: Vec<_> = dests
        .iter()
        .map(|d| d.overrides.retention(&settings.policy))
        .collect();
    let held: Vec<Option<&[_]>> = listings
        .iter()
        .map(|l| l.as_ref().map(|l| l.backups.as_slice()))
        .collect();
    let owed = plan::copies(&held, &policies, &marks, Utc::now());
    for (d, o) in dests.iter().zip(&owed) {
        if !o.not_kept.is_empty() {
            ui::info(&format!(
                "{}: not copying {} (its retention, {}, would delete them)",
                d.name,
                o.not_kept.join(", "),
                d.overrides.retention(&settings.policy)
            ));
        }
    }
    let copies: Vec<&Copy> = owed.iter().flat_map(|o| &o.copies).collect();
    if settings.dry_run {
        for c in &copies {
            ui::stdout_line(&format!(
                "would copy {} from {} to {}",
                c.name.dump_file(),
                dests[c.from].name,
                dests[c.to].name
            ));
        }
        ui::info(&format!(
            "{} to copy; nothing copied (dry run)",
            copies.len()
        ));
        return Ok(exit(&failed, false));
    }

    // 4: the copies, group by group under its lock.
    let (done, locked) = copy_all(dests, &copies, &settings, &mut failed).await?;

    // 5: the run records of the runs whose backups are all there now.
    copy_runs(dests, &listings, &done, &mut failed).await?;
    ui::info(&format!(
        "sync: {} copied, {} failed{}",
        done.len(),
        failed.len(),
        if locked {
            ", groups skipped (lock held)"
        } else {
            ""
        }
    ));
    Ok(exit(&failed, locked))
}

fn exit(failed: &[String], locked: bool) -> ExitCode {
    if !failed.is_empty() {
        ExitCode::from(FAILED)
    } else if locked {
        ExitCode::from(LOCKED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The verdicts and pins of every destination that could be read (one
/// whose marks cannot be read is named: its retention decides without them).
async fn all_marks(
    dests: &[Destination],
    listings: &[Option<Listing>],
    settings: &SyncSettings,
) -> Marks {
    let mut marks = Marks::default();
    for (d, listing) in dests.iter().zip(listings) {
        if listing.is_none() {
            continue;
        }
        let scope = Scope {
            policy: &settings.policy,
            just_made: None,
            database: None,
            dry_run: true,
            store: "sync",
        };
        match apply::marks(&d.store, &scope).await {
            Ok(found) => {
                marks.verified.extend(found.verified);
                marks.pinned.extend(found.pinned);
            }
            Err(err) => ui::warn(&format!(
                "{}: its verdicts and pins cannot be read: {}",
                d.name,
                one_line(&err)
            )),
        }
    }
    marks
}

/// Every copy, group by group, each group under its run lock (a group
/// whose lock is held is skipped and named). Returns the copies made and
/// whether a group was skipped; failures are added to `failed`.
async fn copy_all<'a>(
    dests: &[Destination],
    copies: &[&'a Copy],
    settings: &SyncSettings,
    failed: &mut Vec<String>,
) -> Result<(Vec<&'a Copy>, bool)> {
    let mut groups: BTreeMap<_, Vec<&Copy>> = BTreeMap::new();
    for c in copies {
        groups.entry(c.name.group()).or_default().push(c);
    }
    let mut done = Vec::new();
    let mut locked = false;
    for (group, copies) in groups {
        // The lock backup and cron take: named by the server's name, which meta.json records.
        let first = copies[0];
        let server = match dests[first.from].store.load_meta(&first.name).await {
            Ok(Some(meta)) => meta.server.map(|s| s.name).unwrap_or_default(),
            _ => String::new(),
        };
        let lock_name = lock_file_name(
            &server,
            &group.database,
            first.name.mode,
            group.label.as_deref(),
        );
        let _lock = match RunLock::acquire(&settings.lock_dir, &lock_name) {
            Ok(lock) => lock,
            Err(err) if exit_code(&err) == LOCKED => {
                ui::warn(&format!(
                    "not copying the backups of {}: {} (run sync again once it is done)",
                    copies[0].name.stem(),
                    one_line(&err)
                ));
                locked = true;
                continue;
            }
            Err(err) => return Err(err),
        };
        for c in copies {
            let (from, to) = (&dests[c.from], &dests[c.to]);
            match copy_one(from, to, &c.name, settings.object_lock).await {
                Ok(how) => {
                    ui::info(&format!(
                        "copied {} from {} to {} ({how})",
                        c.name.dump_file(),
                        from.name,
                        to.name
                    ));
                    done.push(c);
                }
                Err(err) if is_interruption(&err) => return Err(err),
                Err(err) => {
                    let line = format!(
                        "copying {} from {} to {} failed: {}",
                        c.name.dump_file(),
                        from.name,
                        to.name,
                        one_line(&err)
                    );
                    ui::error(&line);
                    failed.push(line);
                }
            }
        }
    }
    Ok((done, locked))
}

/// One backup from `from` to `to`: the dump, its verdict, meta.json last
/// (until then `to` holds no backup of that name, only a dump its debris
/// cleanup removes), then `to`'s Object Lock. Returns how the dump went.
async fn copy_one(
    from: &Destination,
    to: &Destination,
    name: &BackupName,
    lock: Option<LockPolicy>,
) -> Result<&'static str> {
    let file = name.dump_file();
    let (meta, text) = from
        .store
        .load_meta_text(name)
        .await?
        .ok_or_else(|| anyhow!("{} has no meta.json", from.store.address(&name.meta_file())))?;
    let how = if to
        .store
        .copy_on_server(&from.store, &file, meta.size_bytes)
        .await?
    {
        "on the server"
    } else {
        // A bucket's copy is downloaded (and checked) into a private temp dir first.
        let fetched = from
            .store
            .fetch(&file, fetch_dir::create, &|_| Ok(()))
            .await?;
        to.store
            .put_dump_from(name, &fetched.dump, &meta.sha256, meta.size_bytes)
            .await?;
        "streamed, sha256 checked"
    };
    if let Some(verdict) = from.store.get(&name.verdict_file(), "a verdict").await? {
        to.store.put(&name.verdict_file(), verdict).await?;
    }
    let size = text.len() as u64;
    to.store.put(&name.meta_file(), text.into_bytes()).await?;
    to.store.check_size(&name.meta_file(), size).await?;
    if let Some(policy) = to.overrides.object_lock(lock) {
        to.store.lock_backup(&policy, name).await?;
    }
    Ok(how)
}

/// The run records a destination lacks, copied from the first destination
/// that holds each once the destination holds every backup the run wrote
/// (held before, or copied now): `check` and a rebuild there then see the
/// run as it was. Runs that never ended are left to their writer.
async fn copy_runs(
    dests: &[Destination],
    listings: &[Option<Listing>],
    done: &[&Copy],
    failed: &mut Vec<String>,
) -> Result<()> {
    for (to, (d, listing)) in dests.iter().zip(listings).enumerate() {
        let Some(listing) = listing else { continue };
        let holds = |file: &str| {
            listing
                .backups
                .iter()
                .any(|b| b.has_dump && b.has_meta && b.name.dump_file() == file)
                || done
                    .iter()
                    .any(|c| c.to == to && c.name.dump_file() == file)
        };
        let mut wanted: BTreeMap<&String, usize> = BTreeMap::new();
        for (from, other) in listings.iter().enumerate() {
            for run in other.iter().flat_map(|l| &l.runs) {
                if from != to && !listing.runs.contains(run) {
                    wanted.entry(run).or_insert(from);
                }
            }
        }
        for (run, from) in wanted {
            let source = &dests[from];
            let copied = async {
                let Some(record) = source.store.load_run(run).await? else {
                    return Ok(false);
                };
                if record.finished_at.is_none() || !record.files().iter().all(|f| holds(f)) {
                    return Ok(false);
                }
                d.store.store_run(&record).await?;
                Ok::<_, anyhow::Error>(true)
            };
            match copied.await {
                Ok(true) => ui::info(&format!(
                    "copied the run record {run} from {} to {}",
                    source.name, d.name
                )),
                Ok(false) => {}
                Err(err) if is_interruption(&err) => return Err(err),
                Err(err) => {
                    let line = format!(
                        "copying the run record {run} to {} failed: {}",
                        d.name,
                        one_line(&err)
                    );
                    ui::error(&line);
                    failed.push(line);
                }
            }
        }
    }
    Ok(())
}
