//! `pgbak unpin NAME`: removes the pin the anomaly check put on a backup's
//! meta.json (locally, and under the S3 prefix with `--s3`), so retention may
//! delete it again. Pinning is automatic; unpinning is an operator's decision.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{GlobalArgs, UnpinArgs};
use crate::error::usage;
use crate::storage::local::LocalStore;
use crate::storage::s3::{self, S3Settings};
use crate::storage::{is_plain_file_name, BackupName, BackupStore};
use crate::ui;

pub async fn run(_global: &GlobalArgs, args: UnpinArgs) -> Result<ExitCode> {
    let name = parse_name(&args.name)?;
    let mut found = unpin(&LocalStore::new(&args.backup_dir), &name).await?;
    if args.s3 {
        let store = s3::connect(S3Settings::from_args(&args.s3_args, None)?).await?;
        found |= unpin(&store, &name).await?;
    }
    if !found {
        bail!(
            "no meta.json for {} in {}{}",
            name.stem(),
            args.backup_dir.display(),
            if args.s3 {
                " or under the S3 prefix"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME`, `NAME.dump` or `NAME.meta.json`, as `list` prints it.
fn parse_name(text: &str) -> Result<BackupName> {
    let stem = text
        .strip_suffix(".dump")
        .or_else(|| text.strip_suffix(".meta.json"))
        .unwrap_or(text);
    let file = format!("{stem}.dump");
    match BackupName::parse(&file) {
        Some(name) if is_plain_file_name(&file) => Ok(name),
        _ => Err(usage(format!(
            "{text:?} is not a backup name like enterprise_agents_full_20261125T020000"
        ))),
    }
}

/// Whether the store has the backup's meta.json (pinned or not).
async fn unpin(store: &impl BackupStore, name: &BackupName) -> Result<bool> {
    let Some(mut meta) = store.load_meta(name).await? else {
        return Ok(false);
    };
    match meta.pinned.take() {
        Some(pin) => {
            store.store_meta(name, &meta).await?;
            ui::info(&format!(
                "unpinned {} in {} (pinned {}: {})",
                name.stem(),
                store.describe(),
                pin.pinned_at,
                pin.reason
            ));
        }
        None => ui::info(&format!(
            "{} is not pinned in {}",
            name.stem(),
            store.describe()
        )),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_accepted_in_the_forms_list_prints() {
        for text in [
            "db_full_20261125T020000",
            "db_full_20261125T020000.dump",
            "db_full_20261125T020000.meta.json",
        ] {
            assert_eq!(parse_name(text).unwrap().stem(), "db_full_20261125T020000");
        }
        for bad in ["", "../x_full_20261125T020000", "nonsense"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }
}
