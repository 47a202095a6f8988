//! `pgbak prune`: the retention rules applied to a directory and/or an S3
//! prefix without making a backup; `--dry-run` shows each backup with
//! keep/delete and the rules that keep it.
//!
//! Steps: resolve the rules; apply them to the S3 prefix with `--s3`, and
//! to the local directory (unless `--no-local`): each store honours the
//! verdicts and pins the other records ([`apply::both`]); groups are
//! (server, database, mode, label), the database as meta.json names it;
//! print the decisions.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;

use crate::retention::apply::{self, Fate};
use crate::settings::commands::{Output, PruneSettings};
use crate::storage::Stores;
use crate::ui;

pub async fn run(settings: PruneSettings, stores: &Stores) -> Result<ExitCode> {
    let dry_run = settings.dry_run;
    ui::info(&format!(
        "prune{}: rules {}",
        if dry_run { " (dry run)" } else { "" },
        settings.policy
    ));
    let now = Utc::now();
    let (local, remote) = apply::over_stores(stores, &settings.policy, dry_run, now).await?;
    let outcomes: Vec<Fate> = local
        .into_iter()
        .chain(remote)
        .flat_map(|a| a.outcomes)
        .collect();

    match settings.output {
        Output::Json => ui::stdout_line(&serde_json::to_string_pretty(&outcomes)?),
        Output::Table => {
            for line in table(&outcomes) {
                ui::stdout_line(&line);
            }
        }
    }
    let deleted = outcomes.iter().filter(|o| o.action == "delete").count();
    ui::info(&format!(
        "{} kept, {deleted} {}",
        outcomes.len() - deleted,
        if dry_run {
            "would be deleted"
        } else {
            "deleted"
        }
    ));
    Ok(ExitCode::SUCCESS)
}

/// One line per backup: `keep`/`delete`, where, name, reasons.
fn table(outcomes: &[Fate]) -> Vec<String> {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(4);
    let mut lines = vec![format!(
        "{:<6}  {:<5}  {:<width$}  WHY",
        "ACTION", "WHERE", "NAME"
    )];
    for o in outcomes {
        lines.push(format!(
            "{:<6}  {:<5}  {:<width$}  {}",
            o.action,
            o.store,
            o.name,
            o.reasons.join(", ")
        ));
    }
    lines
}
