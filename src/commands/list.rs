//! `pgbak list`: the backups in the local directory and (with `--s3`) under
//! the S3 prefix, newest first, described by their meta.json files.
//!
//! Steps: list the directory; with `--s3`, list the prefix and read the
//! meta.json of every backup that has none locally; merge by file stem; print
//! a table (or JSON on stdout).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::cli::{GlobalArgs, ListArgs};
use crate::meta::Meta;
use crate::storage::local::LocalStore;
use crate::storage::s3::{self, S3Settings};
use crate::storage::BackupName;
use crate::ui;

/// One backup as `list` reports it (also the `--json` shape).
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The file stem: `<db>_<mode>[_<label>]_<timestamp>`.
    pub name: String,
    pub database: String,
    pub mode: String,
    pub label: Option<String>,
    pub created_at: String,
    pub age_seconds: i64,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub alembic_revision: Option<String>,
    /// The last `pgbak verify` result recorded in meta.json; null when never verified.
    pub verified: Option<bool>,
    /// The `backup --all-databases` run (its id) this backup belongs to; its globals and
    /// databases are listed together, globals first.
    pub cluster_run: Option<String>,
    /// `local`, `s3` or `both`: where the dump is.
    #[serde(rename = "where")]
    pub location: &'static str,
    /// Dump and meta.json both present (locally or on S3).
    pub complete: bool,
    pub local: Option<LocalFiles>,
    pub s3: Option<RemoteObjects>,
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
}

pub async fn run(_global: &GlobalArgs, args: ListArgs) -> Result<ExitCode> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();

    for backup in LocalStore::new(&args.backup_dir).list()? {
        let entry = found.entry(backup.name.stem()).or_default();
        entry.name = Some(backup.name.clone());
        if backup.has_meta {
            match Meta::read(&backup.meta) {
                Ok(meta) => entry.meta = Some(meta),
                Err(err) => ui::warn(&crate::error::one_line(&err)),
            }
        }
        if backup.has_dump {
            entry.size = Some(backup.size);
        }
        entry.local = Some((
            backup.has_dump,
            backup.has_meta,
            LocalFiles {
                dump: backup.has_dump.then(|| backup.dump.display().to_string()),
                meta: backup.has_meta.then(|| backup.meta.display().to_string()),
            },
        ));
    }

    if args.s3 {
        let store = s3::connect(S3Settings::from_args(&args.s3_args, None)?).await?;
        for backup in store.list().await? {
            let entry = found.entry(backup.name.stem()).or_default();
            entry.name = Some(backup.name.clone());
            // A local meta.json is the same document (plus verify's result): no need to fetch.
            if backup.has_meta && entry.meta.is_none() {
                match store.read_meta(&backup.meta_key).await {
                    Ok(meta) => entry.meta = meta,
                    Err(err) => ui::warn(&crate::error::one_line(&err)),
                }
            }
            if backup.has_dump && entry.size.is_none() {
                entry.size = Some(backup.size);
            }
            entry.s3 = Some((
                backup.has_dump,
                backup.has_meta,
                RemoteObjects {
                    bucket: store.bucket().to_owned(),
                    dump_key: backup.has_dump.then(|| backup.dump_key.clone()),
                    meta_key: backup.has_meta.then(|| backup.meta_key.clone()),
                    storage_class: backup.storage_class.clone(),
                },
            ));
        }
    }

    let now = Utc::now();
    let mut entries: Vec<(chrono::NaiveDateTime, Entry)> = found
        .into_iter()
        .filter_map(|(stem, f)| {
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
            let meta = f.meta.as_ref();
            let entry = Entry {
                name: stem,
                database: meta.map_or(name.database.clone(), |m| m.database.clone()),
                mode: name.mode.as_str().to_owned(),
                label: name.label.clone(),
                created_at: name.time().to_rfc3339_opts(SecondsFormat::Secs, true),
                age_seconds: (now - name.time()).num_seconds(),
                size_bytes: meta.map(|m| m.size_bytes).or(f.size),
                sha256: meta.map(|m| m.sha256.clone()),
                alembic_revision: meta.and_then(|m| m.alembic_revision.clone()),
                verified: meta.and_then(|m| m.verification.as_ref().map(|v| v.passed)),
                cluster_run: meta.and_then(|m| m.cluster_run.clone()),
                location,
                complete,
                local: f.local.map(|(_, _, files)| files),
                s3: f.s3.map(|(_, _, objects)| objects),
            };
            // A run's backups sort together, at the time the run started.
            let at = entry
                .cluster_run
                .as_deref()
                .and_then(|r| chrono::NaiveDateTime::parse_from_str(r, "%Y%m%dT%H%M%S").ok())
                .unwrap_or(name.timestamp);
            Some((at, entry))
        })
        .collect();
    entries.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cluster_run.cmp(&b.1.cluster_run))
            .then((a.1.mode != "globals").cmp(&(b.1.mode != "globals")))
            .then(a.1.name.cmp(&b.1.name))
    });
    let entries: Vec<Entry> = entries.into_iter().map(|(_, e)| e).collect();

    if args.json {
        ui::stdout_line(&serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        ui::info(&format!(
            "no backups in {}{}",
            args.backup_dir.display(),
            if args.s3 {
                " or under the S3 prefix"
            } else {
                ""
            }
        ));
    } else {
        for line in table(&entries) {
            ui::stdout_line(&line);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The table, header first, columns padded to their widest cell.
pub fn table(entries: &[Entry]) -> Vec<String> {
    let header = [
        "NAME", "MODE", "LABEL", "SIZE", "AGE", "ALEMBIC", "VERIFIED", "RUN", "WHERE",
    ];
    let rows: Vec<[String; 9]> = entries
        .iter()
        .map(|e| {
            [
                if e.complete {
                    e.name.clone()
                } else {
                    format!("{} (incomplete)", e.name)
                },
                e.mode.clone(),
                e.label.clone().unwrap_or_else(|| "-".into()),
                e.size_bytes.map_or("-".into(), ui::bytes),
                age(e.age_seconds),
                e.alembic_revision.clone().unwrap_or_else(|| "-".into()),
                match e.verified {
                    Some(true) => "yes".into(),
                    Some(false) => "FAILED".into(),
                    None => "-".into(),
                },
                e.cluster_run.clone().unwrap_or_else(|| "-".into()),
                e.location.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let format_row = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut lines = vec![format_row(&header.map(str::to_owned))];
    lines.extend(rows.iter().map(|r| format_row(r)));
    lines
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
