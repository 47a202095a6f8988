//! Whose objects a restore makes: owners and privileges are restored when
//! every role the backup depends on exists on the target; otherwise the
//! missing ones are named (and `--no-owner` is the explicit way out).

use std::collections::BTreeSet;

use anyhow::{bail, Result};

use crate::meta::Meta;
use crate::pg::url::ConnSettings;
use crate::ui;

/// Whether pg_restore restores owners and privileges: yes when every role the
/// backup depends on exists on the target; an error naming the missing ones
/// otherwise; no with `--no-owner`, and for backups whose meta.json predates
/// role recording (restored as before, with a warning).
pub(super) fn owners_wanted(
    no_owner: bool,
    meta: Option<&Meta>,
    roles: &BTreeSet<String>,
    conn: &ConnSettings,
) -> Result<bool> {
    if no_owner {
        return Ok(false);
    }
    let Some(needed) = meta.and_then(|m| m.roles.as_ref()) else {
        ui::warn(
            "the backup does not record the roles it needs (no meta.json, or one written by an \
             older pgbak): restoring without owners and privileges, as with --no-owner",
        );
        return Ok(false);
    };
    let missing = missing_roles(needed, roles);
    if !missing.is_empty() {
        bail!(
            "not restoring: the backup's owners and grants need the role(s) {} that do not exist on {}; \
             restore the roles first (pgbak restore --all-databases, or psql -f the globals backup) \
             or pass --no-owner to restore without owners and privileges",
            missing.join(", "),
            conn.endpoint()
        );
    }
    Ok(true)
}

/// The roles of `needed` that `existing` lacks, in order.
pub fn missing_roles(needed: &[String], existing: &BTreeSet<String>) -> Vec<String> {
    needed
        .iter()
        .filter(|r| !existing.contains(*r))
        .cloned()
        .collect()
}
