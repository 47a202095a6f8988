//! `pgbak unpin NAME`: removes the pin the anomaly check put on a backup's
//! meta.json at every destination that holds it (the directory, the `S3_*`
//! prefix with `--s3`, each `--to` destination), so retention may delete it
//! again. Pinning is automatic; unpinning is an operator's decision.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::settings::commands::UnpinSettings;
use crate::storage::{BackupName, Destination, Stores};
use crate::ui;

/// Steps: at each destination, in order, remove the pin (saying what it did
/// there); a destination that cannot be read or written is named and the
/// others go on, and the command then fails (exit 1) so the operator knows
/// the pin may still keep it there. No destination holding the backup: an error.
pub async fn run(settings: UnpinSettings, stores: &Stores) -> Result<ExitCode> {
    let name = &settings.name;
    let mut found = false;
    let mut failed = Vec::new();
    for destination in stores.destinations() {
        match unpin(destination, name).await {
            Ok(held) => found |= held,
            Err(err) => {
                crate::signals::check()?;
                ui::warn(&format!(
                    "destination {}: {}",
                    destination.name,
                    crate::error::one_line(&err)
                ));
                failed.push(destination.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not unpin {} at {}: its pin may still keep it there",
            name.stem(),
            failed.join(", ")
        );
    }
    if !found {
        let places: Vec<String> = stores
            .destinations()
            .iter()
            .map(|d| d.store.describe())
            .collect();
        bail!(
            "no meta.json for {} in {}",
            name.stem(),
            if places.is_empty() {
                settings.backup_dir.display().to_string()
            } else {
                places.join(" or ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the destination has the backup's meta.json (pinned or not).
async fn unpin(destination: &Destination, name: &BackupName) -> Result<bool> {
    let (store, at) = (&destination.store, &destination.name);
    let Some(mut meta) = store.load_meta(name).await? else {
        ui::info(&format!(
            "{at}: {} is not in {}",
            name.stem(),
            store.describe()
        ));
        return Ok(false);
    };
    match meta.pinned.take() {
        Some(pin) => {
            store.store_meta(name, &meta).await?;
            ui::info(&format!(
                "{at}: unpinned {} in {} (pinned {}: {})",
                name.stem(),
                store.describe(),
                pin.pinned_at,
                pin.reason
            ));
        }
        None => ui::info(&format!(
            "{at}: {} is not pinned in {}",
            name.stem(),
            store.describe()
        )),
    }
    Ok(true)
}
