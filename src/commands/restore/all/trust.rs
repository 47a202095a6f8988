//! Whether the chosen run can be believed, before anything is touched: every
//! meta.json holds only what PostgreSQL could have recorded (its values become
//! SQL run as a superuser) and names the database its file name says; in an
//! encrypted run every backup says it is encrypted; with trusted keys, every
//! meta.json is signed by one of them for its own file. Each is checked again
//! as it is read; checking all of them first means one bad backup cannot leave
//! the server half rebuilt.

use anyhow::Result;

use super::plan::ChosenRun;
use crate::archive;
use crate::error::usage;
use crate::mode::Mode;
use crate::signing::TrustedKeys;
use crate::ui;

/// Refuses (exit 2, naming the backup and why) a run that is not sound or,
/// with `keys`, not signed; without keys, says once that the bucket is trusted.
pub async fn refuse_untrusted(
    run: &ChosenRun,
    encrypted: bool,
    keys: Option<&TrustedKeys>,
) -> Result<()> {
    refuse_unsound(run, encrypted)?;
    match keys {
        Some(keys) => refuse_unsigned(run, keys).await,
        None => {
            ui::warn(
                "no trusted keys configured (--trusted-keys / PGBAK_TRUSTED_KEYS): this restore \
                 trusts whoever can write to the bucket; unsigned backups are accepted",
            );
            Ok(())
        }
    }
}

/// Every meta.json of the run holds only what PostgreSQL could have recorded,
/// and each names the database its file name says; in an encrypted run, each
/// backup says it is encrypted too (a plaintext one in place of an encrypted
/// one is refused again, on its bytes, when it is read).
fn refuse_unsound(run: &ChosenRun, encrypted: bool) -> Result<()> {
    for member in std::iter::once(&run.globals).chain(&run.databases) {
        let meta = &member.meta;
        if encrypted && meta.encryption.is_none() {
            return Err(usage(format!(
                "not restoring run {}: {} is not encrypted, but other backups of its run are: \
                 refusing a plaintext backup in an encrypted run (replaced in the bucket?); \
                 nothing was changed",
                run.id, member.source
            )));
        }
        let named = crate::storage::BackupName::parse(
            member.source.rsplit('/').next().unwrap_or(&member.source),
        )
        .map(|n| n.database);
        let fits = |name: &String| {
            *name == crate::storage::safe_database_name(&meta.database)
                || *name == crate::storage::legacy_safe_database_name(&meta.database)
        };
        let verdict = crate::pg::meta_values::check_meta(meta).and_then(|()| {
            if meta.mode == Mode::Globals || named.as_ref().is_some_and(fits) {
                Ok(())
            } else {
                Err(format!(
                    "meta.json's database {:?} is not the database its file name is of",
                    meta.database
                ))
            }
        });
        if let Err(why) = verdict {
            return Err(usage(format!(
                "not restoring run {}: {}: {why}; nothing was changed",
                run.id, member.source
            )));
        }
    }
    Ok(())
}

/// With trusted keys, every meta.json of the run must be signed by one of
/// them for its own file.
async fn refuse_unsigned(run: &ChosenRun, keys: &TrustedKeys) -> Result<()> {
    for member in std::iter::once(&run.globals).chain(&run.databases) {
        let file = member.source.rsplit('/').next().unwrap_or(&member.source);
        let text = member
            .store
            .load_meta_text(&member.name)
            .await?
            .map(|(_, text)| text);
        archive::signed_for(keys, text.as_deref(), file).map_err(|why| {
            usage(format!(
                "not restoring run {}: {}: {why}; nothing was changed",
                run.id, member.source
            ))
        })?;
    }
    ui::info(&format!(
        "run {}: every backup is signed by a trusted key ({})",
        run.id,
        keys.source.display()
    ));
    Ok(())
}
