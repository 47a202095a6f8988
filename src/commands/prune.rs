//! `pgbak prune`: the retention rules applied to a directory and/or an S3
//! prefix without making a backup; `--dry-run` shows each backup with
//! keep/delete and the rules that keep it.
//!
//! Steps: resolve the rules; apply them to the local directory (unless
//! `--no-local`), then to the S3 prefix with `--s3` (a backup verified or
//! pinned locally counts as such there too); print the decisions.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;

use crate::retention::apply::{self, Marks, Outcome, Scope};
use crate::settings::commands::{Output, PruneSettings};
use crate::storage::local::LocalStore;
use crate::storage::s3;
use crate::ui;

pub async fn run(settings: PruneSettings) -> Result<ExitCode> {
    let dry_run = settings.dry_run;
    ui::info(&format!(
        "prune{}: rules {}",
        if dry_run { " (dry run)" } else { "" },
        settings.policy
    ));
    let now = Utc::now();
    let mut scope = Scope {
        policy: &settings.policy,
        just_made: None,
        database: None,
        dry_run,
        store: "local",
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut marks = Marks::default();
    if let Some(dir) = &settings.local {
        let local = LocalStore::new(dir);
        let applied = apply::apply(&local, &scope, &Marks::default(), now).await?;
        outcomes.extend(applied.outcomes);
        marks = applied.marks;
    }
    if let Some(s3_settings) = settings.s3.clone() {
        let store = s3::connect(s3_settings).await?;
        scope.store = "s3";
        let applied = apply::apply(&store, &scope, &marks, now).await?;
        outcomes.extend(applied.outcomes);
    }

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
fn table(outcomes: &[Outcome]) -> Vec<String> {
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
