//! `pgbak list`: the backups in the local directory and (with `--s3`) under
//! the S3 prefix, newest first, described by their meta.json files.
//!
//! Steps: list the directory; with `--s3`, list the prefix and read the
//! meta.json of every backup that has none locally; merge by file stem, each
//! backup with its newest verdict (beside it in either place, or meta.json's
//! field); plan
//! retention under the current rules (a dry run of `prune`) to show which
//! rule keeps each backup, its pin and its Object Lock; print a table (or
//! JSON on stdout). `--runs` lists the `--all-databases` runs instead ([`runs`]).

mod runs;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::meta::Meta;
use crate::mode::Mode;
use crate::retention::apply::{self, Fate};
use crate::settings::commands::{ListSettings, Output};
use crate::storage::{verdict, Address, BackupName, Destination, Store, Stores};
use crate::ui;

/// One backup as `list` reports it (also the `--json` shape).
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The file stem: `<db>_<mode>[_<label>]_<timestamp>`.
    pub name: String,
    pub database: String,
    /// The server it comes from (meta.json's `server.name`); null for
    /// backups made before pgbak recorded it.
    pub server: Option<String>,
    pub mode: Mode,
    pub label: Option<String>,
    pub created_at: String,
    pub age_seconds: i64,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub alembic_revision: Option<String>,
    /// The last `pgbak verify` result (its verdict beside the backup, or
    /// meta.json's field); null when never verified.
    pub verified: Option<bool>,
    /// The dump is age-encrypted (`.dump.age`).
    pub encrypted: bool,
    /// Pinned by the anomaly check: no retention rule deletes it until `pgbak unpin`.
    pub pinned: Option<crate::meta::Pin>,
    /// S3 Object Lock retain-until of the dump object, while it holds.
    pub locked_until: Option<String>,
    /// What retention under the current rules (BACKUP_KEEP...) would do: `keep` or `delete`.
    pub retention: Option<&'static str>,
    /// The rules and invariants that keep it (or why it would go).
    pub kept_by: Vec<String>,
    /// The `backup --all-databases` run (its id) this backup belongs to; its globals and
    /// databases are listed together, globals first.
    pub cluster_run: Option<String>,
    /// That run's completeness from its record (`complete`, `incomplete`,
    /// `unfinished`); null without a record (`list --runs` says why).
    pub run_status: Option<&'static str>,
    /// `local`, `s3` or `both`: where the dump is.
    #[serde(rename = "where")]
    pub location: &'static str,
    /// The destinations that hold it whole (dump and meta.json), by name, in
    /// their order: `local`, `s3`, then the `--to` ones.
    pub destinations: Vec<String>,
    /// Dump and meta.json both present (locally or on S3).
    pub complete: bool,
    pub local: Option<LocalFiles>,
    pub s3: Option<RemoteObjects>,
    /// Why its meta.json could not be read (e.g. written in a newer format by a
    /// newer pgbak); absent when it was read or there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LocalFiles {
    pub dump: Option<String>,
    pub meta: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RemoteObjects {
    pub bucket: String,
    pub dump_key: Option<String>,
    pub meta_key: Option<String>,
    pub storage_class: Option<String>,
}

/// What is known of one backup while merging the two listings.
#[derive(Default)]
struct Found {
    name: Option<BackupName>,
    meta: Option<Meta>,
    size: Option<u64>,
    local: Option<(bool, bool, LocalFiles)>,
    s3: Option<(bool, bool, RemoteObjects)>,
    locked_until: Option<String>,
    /// The newest verdict found beside the backup (either place).
    verdict: Option<crate::meta::Verification>,
    /// The error reading its meta.json, and whether it is a newer format (exit 2).
    unreadable: Option<(String, bool)>,
    /// The destinations that hold it whole, by name.
    held: Vec<String>,
}

impl Found {
    /// Keeps a meta.json read error: warned, shown in the entry, and a newer
    /// format than this pgbak reads makes the listing exit 2.
    fn note_unreadable(&mut self, err: &anyhow::Error) {
        let text = crate::error::one_line(err);
        ui::warn(&text);
        let newer = crate::meta::is_newer_format(err);
        self.unreadable = Some((text, newer));
    }

    /// `backup` as `store` (the destination named `destination`) lists it:
    /// its name, its holder when it is whole there, its meta.json unless
    /// one was read already, its size.
    async fn seen(&mut self, store: &Store, backup: &crate::storage::Listed, destination: &str) {
        let name = &backup.name;
        self.name.get_or_insert_with(|| name.clone());
        if backup.has_dump && backup.has_meta {
            self.held.push(destination.to_owned());
        }
        if backup.has_meta && self.meta.is_none() {
            match store.load_meta(name).await {
                Ok(meta) => self.meta = meta,
                Err(err) => self.note_unreadable(&err),
            }
        }
        if backup.has_dump && self.size.is_none() {
            self.size = Some(backup.size);
        }
    }
}

pub async fn run(settings: ListSettings, stores: &Stores) -> Result<ExitCode> {
    if settings.runs {
        return runs::list(&settings, stores).await;
    }
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let now = Utc::now();
    if let Some(local) = &stores.local {
        list_in(local, crate::storage::LOCAL, now, &mut found).await?;
    }

    let (local, remote) = apply::over_stores(stores, &settings.policy, true, now).await?;
    let mut plans: BTreeMap<String, Fate> = local
        .into_iter()
        .flat_map(|a| a.outcomes)
        .map(|o| (o.name.clone(), o))
        .collect();

    if let (Some(bucket), Some(remote)) = (&stores.bucket, remote) {
        for o in remote.outcomes {
            // Kept by either copy's rules: show why; else the S3 verdict.
            match plans.get(&o.name) {
                Some(l) if l.action == "keep" => {}
                _ => {
                    plans.insert(o.name.clone(), o);
                }
            }
        }
        list_in(bucket, crate::storage::BUCKET, now, &mut found).await?;
    }
    for destination in stores.added() {
        if let Err(err) = held_at(destination, &mut found).await {
            ui::warn(&format!(
                "cannot list destination {}: {}",
                destination.name,
                crate::error::one_line(&err)
            ));
        }
    }

    let newer = found
        .values()
        .filter(|f| f.unreadable.as_ref().is_some_and(|(_, newer)| *newer))
        .count();
    let mut entries = entries(found, plans, now);
    let fan_out = !stores.added().is_empty();
    let statuses = runs::statuses(stores).await?;
    for e in &mut entries {
        e.run_status = e
            .cluster_run
            .as_ref()
            .and_then(|r| statuses.get(r))
            .copied();
    }
    if settings.output == Output::Json {
        ui::stdout_line(&serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        ui::info(&format!(
            "no backups in {}{}",
            settings.backup_dir.display(),
            if stores.bucket.is_some() {
                " or under the S3 prefix"
            } else {
                ""
            }
        ));
    } else {
        for line in table(&entries, fan_out) {
            ui::stdout_line(&line);
        }
    }
    if newer > 0 {
        // Listed, but never misread: say so in the exit code too.
        ui::error(&format!(
            "{newer} backup(s) have a meta.json in a newer format than this pgbak {} reads: upgrade pgbak",
            env!("CARGO_PKG_VERSION")
        ));
        return Ok(ExitCode::from(crate::error::USAGE));
    }
    Ok(ExitCode::SUCCESS)
}

/// The backups of one store, merged into `found` by file stem: the
/// directory is listed first, so a bucket's meta.json is fetched only for
/// backups without a local copy (a local meta.json is the same document,
/// plus verify's result); each backup's newest verdict; the Object Lock of
/// each dump when the store has it.
async fn list_in(
    store: &Store,
    destination: &str,
    now: DateTime<Utc>,
    found: &mut BTreeMap<String, Found>,
) -> Result<()> {
    let can_lock = store.can_lock().await?;
    for backup in store.list_backups().await? {
        let name = &backup.name;
        let entry = found.entry(name.stem()).or_default();
        entry.seen(store, &backup, destination).await;
        if backup.has_verdict {
            match store.load_verdict(name).await {
                Ok(v) => entry.verdict = verdict::newest(entry.verdict.take(), v),
                Err(err) => ui::warn(&crate::error::one_line(&err)),
            }
        }
        if can_lock && backup.has_dump {
            entry.locked_until = store
                .locked_until(name)
                .await?
                .filter(|u| *u > now)
                .map(|u| u.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
        let (dump, meta) = (
            store.address(&name.dump_file()),
            store.address(&name.meta_file()),
        );
        match (dump, meta) {
            (Address::Object { bucket, key }, Address::Object { key: meta_key, .. }) => {
                entry.s3 = Some((
                    backup.has_dump,
                    backup.has_meta,
                    RemoteObjects {
                        bucket,
                        dump_key: backup.has_dump.then_some(key),
                        meta_key: backup.has_meta.then_some(meta_key),
                        storage_class: backup.storage_class.clone(),
                    },
                ))
            }
            (dump, meta) => {
                entry.local = Some((
                    backup.has_dump,
                    backup.has_meta,
                    LocalFiles {
                        dump: backup.has_dump.then(|| dump.to_string()),
                        meta: backup.has_meta.then(|| meta.to_string()),
                    },
                ))
            }
        }
    }
    Ok(())
}

/// The backups a `--to` destination holds, merged into `found`: each one
/// whole there names it among its holders; one known nowhere else is
/// listed from this destination's meta.json.
async fn held_at(destination: &Destination, found: &mut BTreeMap<String, Found>) -> Result<()> {
    let store = &destination.store;
    for backup in store.list_backups().await? {
        let entry = found.entry(backup.name.stem()).or_default();
        entry.seen(store, &backup, &destination.name).await;
    }
    Ok(())
}

/// The entries, newest first; an `--all-databases` run's backups together,
/// at the time the run started, its globals first.
fn entries(
    found: BTreeMap<String, Found>,
    mut plans: BTreeMap<String, Fate>,
    now: DateTime<Utc>,
) -> Vec<Entry> {
    let mut entries: Vec<(chrono::NaiveDateTime, Entry)> = found
        .into_iter()
        .filter_map(|(stem, f)| {
            let plan = plans.remove(&stem);
            entry(stem, f, plan, now)
        })
        .collect();
    entries.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cluster_run.cmp(&b.1.cluster_run))
            .then((a.1.mode != Mode::Globals).cmp(&(b.1.mode != Mode::Globals)))
            .then(a.1.name.cmp(&b.1.name))
    });
    entries.into_iter().map(|(_, e)| e).collect()
}

/// One backup's entry and the time it sorts at; None for a file that is
/// not a backup's.
fn entry(
    stem: String,
    f: Found,
    plan: Option<Fate>,
    now: DateTime<Utc>,
) -> Option<(chrono::NaiveDateTime, Entry)> {
    let name = f.name?;
    let local_dump = f.local.as_ref().is_some_and(|(d, _, _)| *d);
    let s3_dump = f.s3.as_ref().is_some_and(|(d, _, _)| *d);
    let complete = f.local.as_ref().is_some_and(|(d, m, _)| *d && *m)
        || f.s3.as_ref().is_some_and(|(d, m, _)| *d && *m);
    let location = match (local_dump, s3_dump) {
        (true, true) => "both",
        (false, true) => "s3",
        (true, false) => "local",
        // Only a meta.json somewhere: say where it is.
        (false, false) if f.local.is_none() => "s3",
        (false, false) => "local",
    };
    let complete = complete || !f.held.is_empty();
    let meta = f.meta.as_ref();
    let verification = verdict::newest(meta.and_then(|m| m.verification.clone()), f.verdict);
    let entry = Entry {
        name: stem,
        database: meta.map_or(name.database.clone(), |m| m.database.clone()),
        server: meta.and_then(|m| m.server.as_ref().map(|s| s.name.clone())),
        mode: name.mode,
        label: name.label.clone(),
        created_at: name.time().to_rfc3339_opts(SecondsFormat::Secs, true),
        age_seconds: (now - name.time()).num_seconds(),
        size_bytes: meta.map(|m| m.size_bytes).or(f.size),
        sha256: meta.map(|m| m.sha256.clone()),
        alembic_revision: meta.and_then(|m| m.alembic_revision.clone()),
        verified: verification.map(|v| v.passed),
        encrypted: name.encrypted || meta.is_some_and(|m| m.encryption.is_some()),
        pinned: meta.and_then(|m| m.pinned.clone()),
        locked_until: f.locked_until,
        retention: plan.as_ref().map(|o| o.action),
        kept_by: plan.map(|o| o.reasons).unwrap_or_default(),
        cluster_run: meta.and_then(|m| m.cluster_run.clone()),
        run_status: None,
        location,
        destinations: f.held,
        complete,
        local: f.local.map(|(_, _, files)| files),
        s3: f.s3.map(|(_, _, objects)| objects),
        unreadable: f.unreadable.map(|(text, _)| text),
    };
    // A run's backups sort together, at the time the run started.
    let at = entry
        .cluster_run
        .as_deref()
        .and_then(|r| chrono::NaiveDateTime::parse_from_str(r, "%Y%m%dT%H%M%S").ok())
        .unwrap_or(name.timestamp);
    Some((at, entry))
}

/// The table, header first, columns padded to their widest cell. With
/// `--to` destinations (`fan_out`), WHERE names the destinations that
/// hold each backup whole.
pub fn table(entries: &[Entry], fan_out: bool) -> Vec<String> {
    let header = [
        "NAME",
        "SERVER",
        "MODE",
        "LABEL",
        "SIZE",
        "AGE",
        "ALEMBIC",
        "VERIFIED",
        "ENC",
        "RUN",
        "RETENTION",
        "WHERE",
    ];
    let rows: Vec<[String; 12]> = entries
        .iter()
        .map(|e| {
            [
                match (e.complete, &e.unreadable) {
                    (_, Some(_)) => format!("{} (unreadable meta.json)", e.name),
                    (true, None) => e.name.clone(),
                    (false, None) => format!("{} (incomplete)", e.name),
                },
                e.server.clone().unwrap_or_else(|| "?".into()),
                e.mode.to_string(),
                e.label.clone().unwrap_or_else(|| "-".into()),
                e.size_bytes.map_or("-".into(), ui::bytes),
                age(e.age_seconds),
                e.alembic_revision.clone().unwrap_or_else(|| "-".into()),
                match e.verified {
                    Some(true) => "yes".into(),
                    Some(false) => "FAILED".into(),
                    None => "-".into(),
                },
                if e.encrypted { "age" } else { "-" }.to_owned(),
                match (&e.cluster_run, e.run_status) {
                    (Some(run), Some(status)) if status != "complete" => {
                        format!("{run} ({status})")
                    }
                    (Some(run), _) => run.clone(),
                    (None, _) => "-".into(),
                },
                retention_cell(e),
                match fan_out {
                    true if e.destinations.is_empty() => "-".to_owned(),
                    true => e.destinations.join(","),
                    false => e.location.to_owned(),
                },
            ]
        })
        .collect();
    crate::ui::columns(header, &rows)
}

/// `keep (daily 2026-11-25, weekly 2026-W48)`, `PINNED`, `locked until ...`.
fn retention_cell(e: &Entry) -> String {
    let mut cell = match e.retention {
        Some("delete") => format!("would delete ({})", e.kept_by.join(", ")),
        Some(_) => format!("keep ({})", e.kept_by.join(", ")),
        None => "-".into(),
    };
    if e.pinned.is_some() && !e.kept_by.iter().any(|r| r == "pinned") {
        cell.push_str(" PINNED");
    }
    if let Some(until) = &e.locked_until {
        if !e.kept_by.iter().any(|r| r.starts_with("locked until")) {
            cell.push_str(&format!(" locked until {until}"));
        }
    }
    cell
}

/// `45s`, `12m`, `5h`, `3d`: the largest whole unit.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(45), "45s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(5 * 3600), "5h");
        assert_eq!(age(3 * 86_400), "3d");
    }
}
