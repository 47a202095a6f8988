//! `pgbak list --runs`: the `--all-databases` runs in the directory, (with
//! `--s3`) under the prefix and at each `--to` destination, from their
//! records, newest first: which
//! server, complete or not and why (a failed or killed run, a backup of it
//! gone since), the databases it meant to back up.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::runs::{self, RunRecord, Status};
use crate::settings::commands::{ListSettings, Output};
use crate::storage::{Store, Stores};
use crate::ui;

/// One run as `list --runs` reports it (also the `--json` shape).
#[derive(Debug, Serialize)]
pub struct RunEntry {
    pub run_id: String,
    pub server: crate::meta::ServerIdentity,
    /// `complete`, `incomplete` or `unfinished` (killed, or still running).
    pub status: &'static str,
    /// Why it is not complete.
    pub problems: Vec<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub databases: Vec<String>,
    /// `local`, `s3` or `both`: where its record is.
    #[serde(rename = "where")]
    pub location: &'static str,
}

pub async fn list(settings: &ListSettings, stores: &Stores) -> Result<ExitCode> {
    let entries = read(stores).await?;
    if settings.output == Output::Json {
        ui::stdout_line(&serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        ui::info("no --all-databases run records found");
    } else {
        for line in table(&entries) {
            ui::stdout_line(&line);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each recorded run's status by run id, for the RUN column of `list`.
pub async fn statuses(stores: &Stores) -> Result<BTreeMap<String, &'static str>> {
    Ok(read(stores)
        .await?
        .into_iter()
        .map(|e| (e.run_id, e.status))
        .collect())
}

/// The runs of the directory, (with `--s3`) the bucket and each `--to`
/// destination, newest first. A `--to` destination that cannot be read is
/// warned about and left out (`check` fails it by name).
async fn read(stores: &Stores) -> Result<Vec<RunEntry>> {
    let mut found: BTreeMap<String, (RunRecord, bool, bool)> = BTreeMap::new();
    let mut present = BTreeSet::new();
    for (store, records) in runs::records_everywhere(stores).await? {
        let in_bucket = store.is_bucket();
        present.extend(dumps(store).await?);
        for r in records {
            found
                .entry(r.file_name())
                .and_modify(|e| {
                    e.1 |= !in_bucket;
                    e.2 |= in_bucket;
                })
                .or_insert((r, !in_bucket, in_bucket));
        }
    }
    let mut entries: Vec<RunEntry> = found
        .into_values()
        .map(|(r, l, s)| entry(r, l, s, &present))
        .collect();
    entries.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    Ok(entries)
}

/// The complete backups' dump file names in a store.
async fn dumps(store: &Store) -> Result<BTreeSet<String>> {
    Ok(store
        .list_backups()
        .await?
        .into_iter()
        .filter(|b| b.has_dump && b.has_meta)
        .map(|b| b.name.dump_file())
        .collect())
}

fn entry(record: RunRecord, local: bool, s3: bool, present: &BTreeSet<String>) -> RunEntry {
    let mut problems = match record.status() {
        Status::Complete => Vec::new(),
        Status::Unfinished => vec!["never finished (killed, or still running)".to_owned()],
        Status::Incomplete(why) => why,
    };
    for file in record.files() {
        if !present.contains(file) {
            problems.push(format!("{file} is gone"));
        }
    }
    RunEntry {
        status: match record.status() {
            Status::Unfinished => "unfinished",
            _ if problems.is_empty() => "complete",
            _ => "incomplete",
        },
        run_id: record.run_id,
        server: record.server,
        problems,
        started_at: record.started_at,
        finished_at: record.finished_at,
        databases: record.databases,
        location: match (local, s3) {
            (true, true) => "both",
            (false, true) => "s3",
            _ => "local",
        },
    }
}

fn table(entries: &[RunEntry]) -> Vec<String> {
    let header = ["RUN", "SERVER", "STATUS", "DATABASES", "WHERE"];
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.run_id.clone(),
                format!(
                    "{} ({})",
                    e.server.name,
                    e.server
                        .system_identifier
                        .as_deref()
                        .unwrap_or("unknown id")
                ),
                if e.problems.is_empty() {
                    e.status.to_owned()
                } else {
                    format!("{}: {}", e.status, e.problems.join("; "))
                },
                e.databases.join(", "),
                e.location.to_owned(),
            ]
        })
        .collect();
    ui::columns(header, &rows)
}
