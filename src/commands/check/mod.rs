//! `pgbak check`: is every database's newest backup, and its newest *verified*
//! backup, fresh enough? It reads a backup directory and/or an S3 prefix, never
//! a database, so it runs on any machine that can read them (a monitoring host,
//! a Kubernetes CronJob) and answers for a whole fleet.
//!
//! Steps: list the directory and (with `--s3`) the prefix, one paginated
//! listing; keep the selected groups (database, mode, label, server: the
//! server is in the file name, backups without it form an unknown server's
//! group); read the
//! meta.json files each group needs, newest first and only as far back as the
//! verdict needs, many groups at once with a bound ([`read_groups`]), and,
//! when the bucket has Object Lock, the newest dump's retain-until; judge
//! each group with the pure [`assess`] (with a directory and `--s3`: is the
//! newest backup in the bucket too?); print a table or JSON; write the
//! Prometheus textfile; exit 1 if any group failed. Pins and locks are
//! reported, never a failure.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::Semaphore;

use crate::heartbeat::Ping;
use crate::meta::Meta;
use crate::mode::Mode;
use crate::settings::check::CheckSettings;
use crate::settings::choices::AuditFormat;
use crate::settings::commands::{GlobalSettings, Output};
use crate::storage::verdict as verdicts;
use crate::storage::{BackupName, Group, Store, Stores};
use crate::ui;

mod audit;
mod destinations;
mod output;
mod proofs;
mod runs;
pub mod unproven;
pub mod verdict;

use output::{table, write_prometheus};
pub use verdict::{assess, needs_meta, supersede, GroupReport, Limits, Seen, TREND};

/// The `--json` document.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    ok: bool,
    checked_at: String,
    max_age_seconds: Option<u64>,
    max_verified_age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_rto_seconds: Option<u64>,
    max_unproven_age_seconds: Option<u64>,
    groups: &'a [GroupReport],
    /// One line per server whose newest `--all-databases` run is incomplete.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    runs: &'a [String],
}

/// One backup found by the listings, before its meta.json is read.
#[derive(Debug, Clone)]
struct Listed {
    name: BackupName,
    complete: bool,
    /// The dump's size in the listing (local file or S3 object).
    size: u64,
    local_meta: bool,
    s3_meta: bool,
    /// The dump's name as the bucket lists it, when it is there (its Object
    /// Lock is asked for).
    s3_dump: Option<BackupName>,
    /// The directory holds a verdict beside it (`<stem>.verify.json`).
    local_verdict: bool,
    /// The bucket holds a verdict beside it.
    s3_verdict: bool,
}

pub async fn run(
    global: &GlobalSettings,
    settings: CheckSettings,
    stores: &Stores,
) -> Result<ExitCode> {
    if settings.check_config {
        return check_config(&settings);
    }
    let redactor = &global.redactor;
    let heartbeat = settings.heartbeat.as_ref();
    if let Some(h) = heartbeat {
        h.send(Ping::Start, "", redactor).await;
    }
    let outcome = check(&settings, stores).await;
    if let Some(h) = heartbeat {
        match &outcome {
            Ok(o) if o.ok => h.send(Ping::Success, &o.summary.join("\n"), redactor).await,
            Ok(o) => h.send(Ping::Fail, &o.summary.join("\n"), redactor).await,
            Err(err) => {
                let line = format!("check failed: {}", crate::error::one_line(err));
                h.send(Ping::Fail, &line, redactor).await;
            }
        }
    }
    Ok(if outcome?.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::FAILED)
    })
}

/// `--check-config`: the settings a check needs resolved (at dispatch),
/// nothing listed, read or pinged.
fn check_config(settings: &CheckSettings) -> Result<ExitCode> {
    let s3 = settings.s3.as_ref().map_or_else(
        || "off".to_owned(),
        |s3| format!("s3://{}/{}", s3.bucket, s3.prefix),
    );
    let limit = |d: Option<std::time::Duration>| {
        humantime::format_duration(d.unwrap_or_default()).to_string()
    };
    ui::info(&format!(
        "configuration OK: {} backups in {}, S3 {s3}, max age {}, max verified age {}",
        settings.mode.as_str(),
        settings.backup_dir.display(),
        limit(settings.limits.max_age),
        limit(settings.limits.max_verified_age),
    ));
    Ok(ExitCode::SUCCESS)
}

/// What a check found: its verdict and the lines that say why (for the heartbeat).
struct CheckSummary {
    ok: bool,
    summary: Vec<String>,
}

async fn check(settings: &CheckSettings, stores: &Stores) -> Result<CheckSummary> {
    let limits = settings.limits;
    let groups = list_groups(settings, stores).await?;

    // 3. The meta.json files each group needs (and the newest dump's Object
    // Lock, when the bucket has it), then the verdicts.
    let started = std::time::Instant::now();
    let offsite = stores.bucket.is_some();
    let proofs = settings.max_unproven_age.is_some();
    let reading = Reading::of(settings, stores, offsite, proofs).await;
    let read = read_groups(groups, stores, reading).await?;
    ui::debug(&format!(
        "read {} meta.json file(s) in {:.2}s",
        read.iter().map(|r| r.reads).sum::<usize>(),
        started.elapsed().as_secs_f64()
    ));
    let now = Utc::now();
    let mut reports: Vec<GroupReport> = read
        .iter()
        .map(|r| assess(&r.group, &r.seen, r.backups, r.incomplete, limits, now))
        .collect();
    if let Some(limit) = settings.max_unproven_age {
        for (report, read) in reports.iter_mut().zip(&read) {
            proofs::judge(report, &read.proofs, limit, now);
        }
    }
    verdict::supersede(&mut reports);
    let mut at_destinations = destinations::check(settings, stores, &reports).await?;
    reports.append(&mut at_destinations);
    // Runs are a server's whole: judged with the unlabelled full and globals groups.
    let run_problems =
        if matches!(settings.mode, Mode::Full | Mode::Globals) && settings.label.is_none() {
            runs::problems(&runs::read(stores).await?, now, settings.max_run_duration)
        } else {
            Vec::new()
        };
    report(settings, &reports, &run_problems, now)
}

/// Step 4: the textfile, the table or JSON, one line per failing group.
fn report(
    settings: &CheckSettings,
    reports: &[GroupReport],
    run_problems: &[String],
    now: DateTime<Utc>,
) -> Result<CheckSummary> {
    let ok = !reports.is_empty() && reports.iter().all(|r| r.ok) && run_problems.is_empty();
    let limits = settings.limits;
    if let Some(path) = &settings.prometheus {
        write_prometheus(path, reports, now)?;
    }
    if settings.output == Output::Json {
        let report = JsonReport {
            ok,
            checked_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            max_age_seconds: limits.max_age.map(|d| d.as_secs()),
            max_verified_age_seconds: limits.max_verified_age.map(|d| d.as_secs()),
            max_rto_seconds: limits.max_rto.map(|d| d.as_secs()),
            max_unproven_age_seconds: settings.max_unproven_age.map(|d| d.as_secs()),
            groups: reports,
            runs: run_problems,
        };
        ui::stdout_line(&serde_json::to_string_pretty(&report)?);
    }
    let where_ = if settings.s3.is_some() {
        format!("{} or under the S3 prefix", settings.backup_dir.display())
    } else {
        settings.backup_dir.display().to_string()
    };
    match settings.report {
        Some(format) => {
            let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
            let audit = audit::audit(reports, at, where_.clone());
            ui::stdout_line(
                match format {
                    AuditFormat::Markdown => audit::markdown(&audit),
                    AuditFormat::Json => serde_json::to_string_pretty(&audit)?,
                }
                .trim_end(),
            );
        }
        None if settings.output != Output::Json && !reports.is_empty() => {
            for line in table(reports) {
                ui::stdout_line(&line);
            }
        }
        None => {}
    }
    if reports.is_empty() {
        let line = format!(
            "check failed: no {} backups found in {where_}",
            settings.mode.as_str()
        );
        ui::error(&line);
        return Ok(CheckSummary {
            ok: false,
            summary: vec![line],
        });
    }
    for r in reports.iter().filter(|r| !r.pinned.is_empty()) {
        let names: Vec<&str> = r.pinned.iter().map(|p| p.name.as_str()).collect();
        ui::warn(&format!(
            "{}: pinned by the anomaly check, kept until `pgbak unpin`: {}",
            group_title(r),
            names.join(", ")
        ));
    }
    let failed: Vec<&GroupReport> = reports.iter().filter(|r| !r.ok).collect();
    let mut summary: Vec<String> = failed
        .iter()
        .map(|r| format!("{}: {}", group_title(r), r.problems.join("; ")))
        .collect();
    summary.extend(run_problems.iter().cloned());
    for line in &summary {
        ui::error(line);
    }
    let last = if !run_problems.is_empty() && failed.is_empty() {
        let line = format!(
            "check failed: {} server(s) whose newest --all-databases run is incomplete",
            run_problems.len()
        );
        ui::error(&line);
        line
    } else if failed.is_empty() {
        let line = format!(
            "check passed: {} group(s) within limits ({where_})",
            reports.len()
        );
        ui::info(&line);
        line
    } else {
        let line = format!(
            "check failed: {} of {} group(s) not within limits",
            failed.len(),
            reports.len()
        );
        ui::error(&line);
        line
    };
    summary.push(last);
    summary.extend(table(reports));
    Ok(CheckSummary {
        ok: failed.is_empty() && run_problems.is_empty(),
        summary,
    })
}

/// Whether the bucket has Object Lock, so the newest dumps' retain-until is
/// worth asking for. Read-only credentials may not be allowed to ask: then
/// the LOCKED UNTIL column stays empty rather than the check failing.
async fn object_lock_readable(store: &Store) -> bool {
    match store.can_lock().await {
        Ok(enabled) => enabled,
        Err(err) => {
            ui::debug(&format!(
                "not reporting Object Lock: {}",
                crate::error::one_line(&err)
            ));
            false
        }
    }
}

/// Steps 1-2: the directory and (with `--s3`) the bucket listed once each,
/// merged by file stem (a backup may be in both places), the selected groups
/// with their backups newest first, plus an empty group for each `--database`
/// that has none.
async fn list_groups(
    settings: &CheckSettings,
    stores: &Stores,
) -> Result<BTreeMap<Group, Vec<Listed>>> {
    let wanted = &settings.databases;
    let selected = |name: &BackupName| {
        name.mode == settings.mode
            && name.label == settings.label
            && (wanted.is_empty() || wanted.contains(&name.database))
    };

    // 1. The listings, merged by file stem (a backup may be in both places).
    let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
    for store in stores.local.iter().chain(&stores.bucket) {
        let in_bucket = store.is_bucket();
        let started = std::time::Instant::now();
        let found = store.list_backups().await?;
        ui::debug(&format!(
            "listed {} backup(s) in {} in {:.2}s",
            found.len(),
            store.describe(),
            started.elapsed().as_secs_f64()
        ));
        for b in found {
            if !selected(&b.name) {
                continue;
            }
            let entry = listed.entry(b.name.stem()).or_insert_with(|| Listed {
                name: b.name.clone(),
                complete: false,
                size: b.size,
                local_meta: false,
                s3_meta: false,
                s3_dump: None,
                local_verdict: false,
                s3_verdict: false,
            });
            entry.complete |= b.has_dump && b.has_meta;
            if b.has_dump && entry.size == 0 {
                entry.size = b.size;
            }
            if in_bucket {
                entry.s3_verdict |= b.has_verdict;
                entry.s3_meta |= b.has_meta;
                if b.has_dump {
                    entry.s3_dump = Some(b.name.clone());
                }
            } else {
                entry.local_verdict |= b.has_verdict;
                entry.local_meta |= b.has_meta;
            }
        }
    }

    // 2. Groups, newest backup first.
    let mut groups: BTreeMap<Group, Vec<Listed>> = BTreeMap::new();
    for l in listed.into_values() {
        groups.entry(l.name.group()).or_default().push(l);
    }
    for backups in groups.values_mut() {
        backups.sort_by_key(|b| std::cmp::Reverse(b.name.timestamp));
    }
    for database in wanted {
        if groups.keys().any(|g| g.database == *database) {
            continue;
        }
        let group = Group {
            database: database.clone(),
            mode: settings.mode.as_str(),
            label: settings.label.clone(),
            server: None,
        };
        groups.entry(group).or_default();
    }

    Ok(groups)
}

/// `enterprise_agents (full)`, `enterprise_agents (full, pre-migration) on db-eu-1:5432`.
fn group_title(r: &GroupReport) -> String {
    let mut server = r
        .server
        .as_ref()
        .map_or_else(String::new, |s| format!(" on {s}"));
    if let Some(destination) = &r.destination {
        server.push_str(&format!(" at destination {destination}"));
    }
    match &r.label {
        Some(label) => format!("{} ({}, {label}){server}", r.database, r.mode),
        None => format!("{} ({}){server}", r.database, r.mode),
    }
}

/// What was read of one group.
struct ReadGroup {
    group: Group,
    seen: Vec<Seen>,
    backups: usize,
    incomplete: usize,
    reads: usize,
    /// With `--max-unproven-age`: every complete backup's proofs.
    proofs: Vec<unproven::Proofs>,
}

/// How the groups are read.
#[derive(Clone, Copy)]
struct Reading {
    /// Reads in flight at most.
    concurrency: usize,
    window_start: Option<DateTime<Utc>>,
    /// Ask the newest dump's Object Lock.
    lock: bool,
    /// Ask whether the newest backup is in the bucket.
    offsite: bool,
    /// Read every complete backup's verdicts (`--max-unproven-age`).
    proofs: bool,
}

impl Reading {
    /// How `settings` reads `stores`' groups: meta.json within the verified
    /// window, and the newest dump's Object Lock when the bucket can tell it.
    async fn of(settings: &CheckSettings, stores: &Stores, offsite: bool, proofs: bool) -> Reading {
        let window_start = settings
            .limits
            .max_verified_age
            .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            .map(|d| Utc::now() - d);
        let lock = match &stores.bucket {
            Some(bucket) => object_lock_readable(bucket).await,
            None => false,
        };
        Reading {
            concurrency: settings.read_concurrency,
            window_start,
            lock,
            offsite,
            proofs,
        }
    }
}

/// Reads, for every group at once (at most `concurrency` reads in flight), the
/// meta.json files [`needs_meta`] asks for, newest first: a group verified
/// nightly costs [`verdict::ROWS_READ`] reads however long its history.
async fn read_groups(
    groups: BTreeMap<Group, Vec<Listed>>,
    stores: &Stores,
    reading: Reading,
) -> Result<Vec<ReadGroup>> {
    let Reading {
        concurrency,
        window_start,
        lock,
        offsite,
        proofs,
    } = reading;
    let stores = Arc::new(stores.clone());
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (group, backups)) in groups.into_iter().enumerate() {
        let stores = stores.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let mut read = ReadGroup {
                group,
                seen: Vec::new(),
                backups: 0,
                incomplete: backups.iter().filter(|b| !b.complete).count(),
                reads: 0,
                proofs: Vec::new(),
            };
            let mut reading = true;
            for b in backups.iter().filter(|b| b.complete) {
                reading = reading && needs_meta(&read.seen, b.name.time(), window_start);
                if !reading {
                    read.backups += 1;
                    read.seen.push(Seen::from_listing(&b.name, b.size));
                    continue;
                }
                let _permit = permits.acquire().await.context("reading meta.json")?;
                read.reads += 1;
                match read_meta(b, &stores).await {
                    Ok(Some(meta)) => {
                        read.backups += 1;
                        read.seen.push(Seen::from_meta(&b.name, &meta));
                    }
                    Ok(None) => read.incomplete += 1,
                    // A newer format than this pgbak reads: exit 2, never a guess at freshness.
                    Err(err) if crate::meta::is_newer_format(&err) => return Err(err),
                    Err(err) => {
                        ui::warn(&crate::error::one_line(&err));
                        read.incomplete += 1;
                    }
                }
            }
            if proofs {
                for b in backups.iter().filter(|b| b.complete) {
                    let _permit = permits.acquire().await.context("reading verdicts")?;
                    let seen = read.seen.iter().find(|s| s.name == b.name.stem());
                    read.proofs.push(proofs::read(b, &stores, seen).await);
                }
            }
            // With a directory and a bucket: did the newest backup reach the bucket?
            if let (true, Some(seen)) = (offsite, read.seen.first_mut()) {
                let newest = backups.iter().find(|b| b.name.stem() == seen.name);
                seen.offsite = newest.map(|b| b.s3_dump.is_some());
            }
            // The newest backup's lock: is tonight's copy protected?
            let newest = read.seen.first_mut();
            if let (true, Some(bucket), Some(seen)) = (lock, &stores.bucket, newest) {
                let dump = backups.iter().find(|b| b.name.stem() == seen.name);
                if let Some(name) = dump.and_then(|b| b.s3_dump.as_ref()) {
                    let _permit = permits.acquire().await.context("reading Object Lock")?;
                    match bucket.locked_until(name).await {
                        Ok(until) => seen.locked_until = until,
                        Err(err) => ui::warn(&crate::error::one_line(&err)),
                    }
                }
            }
            anyhow::Ok((index, read))
        });
    }
    let mut out: Vec<Option<ReadGroup>> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, read) = joined.context("reading meta.json files")??;
        if out.len() <= index {
            out.resize_with(index + 1, || None);
        }
        out[index] = Some(read);
    }
    Ok(out.into_iter().flatten().collect())
}

/// A backup's meta.json as the verdict needs it: the bucket's copy when
/// there is one (the authoritative store), else the directory's; pins from
/// either, and the newest verdict of all that are recorded (verdicts beside
/// the backup in either place, meta.json's legacy field).
async fn read_meta(b: &Listed, stores: &Stores) -> Result<Option<Meta>> {
    let local = match (&stores.local, b.local_meta) {
        (Some(store), true) => match store.load_meta(&b.name).await {
            Ok(meta) => meta,
            // A newer format in either copy is exit 2, never a guess at freshness.
            Err(err) if !b.s3_meta || crate::meta::is_newer_format(&err) => return Err(err),
            Err(err) => {
                ui::warn(&crate::error::one_line(&err));
                None
            }
        },
        _ => None,
    };
    let remote = match (&stores.bucket, b.s3_meta) {
        (Some(store), true) => match store.load_meta(&b.name).await {
            Ok(meta) => meta,
            Err(err) if local.is_none() || crate::meta::is_newer_format(&err) => return Err(err),
            Err(err) => {
                ui::warn(&crate::error::one_line(&err));
                None
            }
        },
        _ => None,
    };
    let mut meta = match (remote, local) {
        (Some(mut remote), Some(local)) => {
            remote.pinned = remote.pinned.or(local.pinned);
            remote.verification = verdicts::newest(remote.verification, local.verification);
            remote
        }
        (Some(meta), None) | (None, Some(meta)) => meta,
        (None, None) => return Ok(None),
    };
    let mut found = Vec::new();
    if let (true, Some(store)) = (b.local_verdict, &stores.local) {
        found.push(store.load_verdict(&b.name).await);
    }
    if let (true, Some(store)) = (b.s3_verdict, &stores.bucket) {
        found.push(store.load_verdict(&b.name).await);
    }
    for result in found {
        match result {
            Ok(v) => meta.verification = verdicts::newest(meta.verification.take(), v),
            Err(err) => ui::warn(&crate::error::one_line(&err)),
        }
    }
    Ok(Some(meta))
}
