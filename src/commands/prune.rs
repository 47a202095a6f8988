//! `pgbak prune`: the retention rules applied to a directory, an S3 prefix
//! and each `--to` destination without making a backup; `--dry-run` shows
//! each backup with keep/delete and the rules that keep it.
//!
//! Steps: resolve the rules; apply them to the S3 prefix with `--s3`, and
//! to the local directory (unless `--no-local`): each store honours the
//! verdicts and pins the other records ([`apply::both`]); then at each
//! `--to` destination its own rules (its URL's over the global ones) on its
//! own listing, as `backup` does there; groups are (server, database, mode,
//! label), the database as meta.json names it; print the decisions.

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::retention::apply::{self, Fate, Scope};
use crate::retention::Policy;
use crate::settings::commands::{Output, PruneSettings};
use crate::storage::{Stores, BUCKET, LOCAL};
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
    let named = |applied: Option<apply::Applied>, name: &str| {
        let mut fates = applied.map(|a| a.outcomes).unwrap_or_default();
        for fate in &mut fates {
            fate.destination = Some(name.to_owned());
        }
        fates
    };
    let mut outcomes: Vec<Fate> = named(local, LOCAL);
    outcomes.extend(named(remote, BUCKET));
    let (added, failed) = at_destinations(stores, &settings.policy, dry_run, now).await?;
    outcomes.extend(added);

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
    match failed {
        Some(err) => Err(err),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Retention at each `--to` destination with its own rules, each on its own
/// listing (every invariant holds there as `backup` keeps it). One that
/// fails is named in a warning and the others go on; the first failure
/// comes back beside the decisions (the command then exits 1).
async fn at_destinations(
    stores: &Stores,
    policy: &Policy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<(Vec<Fate>, Option<anyhow::Error>)> {
    let mut outcomes = Vec::new();
    let mut failed = None;
    for destination in stores.added() {
        let store = &destination.store;
        let rules = destination.overrides.retention(policy);
        if destination.overrides.retention.is_some() {
            ui::info(&format!("{}: rules {rules}", destination.name));
        }
        let scope = Scope {
            store: if store.is_bucket() { "s3" } else { "local" },
            ..Scope::every_group(rules, dry_run)
        };
        match apply::both(Some(store), None, &scope, now).await {
            Ok((applied, _)) => {
                for mut fate in applied.into_iter().flat_map(|a| a.outcomes) {
                    fate.destination = Some(destination.name.clone());
                    outcomes.push(fate);
                }
            }
            Err(err) => {
                crate::signals::check()?;
                let err = err.context(format!("retention at destination {}", destination.name));
                ui::warn(&crate::error::one_line(&err));
                failed.get_or_insert(err);
            }
        }
    }
    Ok((outcomes, failed))
}

/// One line per backup: `keep`/`delete`, where (the destination), name, reasons.
fn table(outcomes: &[Fate]) -> Vec<String> {
    let place = |o: &Fate| o.destination.clone().unwrap_or_else(|| o.store.to_owned());
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(4);
    let at = outcomes
        .iter()
        .map(|o| place(o).len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut lines = vec![format!(
        "{:<6}  {:<at$}  {:<width$}  WHY",
        "ACTION", "WHERE", "NAME"
    )];
    for o in outcomes {
        lines.push(format!(
            "{:<6}  {:<at$}  {:<width$}  {}",
            o.action,
            place(o),
            o.name,
            o.reasons.join(", ")
        ));
    }
    lines
}
