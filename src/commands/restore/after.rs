//! What restore checks after pg_restore: every table's rows against meta.json
//! (a table on stdout), the alembic revision, and `alembic stamp head` when asked;
//! what a failed restore says.

use anyhow::Result;

use super::{Checked, Plan};
use crate::meta::Meta;
use crate::pg::client::{self, quote_ident};
use crate::pg::selection::Resolved;
use crate::pg::url::ConnSettings;
use crate::settings::restore::RestoreOptions;
use crate::signals::Signals;
use crate::ui;

/// Step 6: row counts and the alembic revision against meta.json (a
/// selective restore need not include alembic_version). False on a mismatch
/// of the rows; the revision only warns.
pub(super) async fn check_restored(
    target: &tokio_postgres::Client,
    meta: &Meta,
    selection: Option<&Resolved>,
    database: &str,
) -> Result<bool> {
    let rows_match = compare_rows(target, meta, selection, database).await?;
    if selection.is_some() {
        return Ok(rows_match);
    }
    let have = client::alembic_revision(target).await.ok().flatten();
    if have == meta.alembic_revision {
        ui::info(&format!(
            "alembic revision {} matches the backup",
            have.as_deref().unwrap_or("(none)")
        ));
    } else {
        ui::warn(&format!(
            "alembic revision is {} but the backup's meta.json says {}: if the application \
             is newer than this backup, run `alembic upgrade head`",
            have.as_deref().unwrap_or("(none)"),
            meta.alembic_revision.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(rows_match)
}

/// Prints every table's rows, backup vs restored, on stdout, each row
/// naming its database (a whole-server restore prints one table per
/// database). With --table or --schema only the selected tables are
/// compared. True when all match.
pub(super) async fn compare_rows(
    client: &tokio_postgres::Client,
    meta: &Meta,
    selection: Option<&Resolved>,
    database: &str,
) -> Result<bool> {
    let selected = |schema: &str, name: &str| selection.is_none_or(|s| s.contains(schema, name));
    let wanted: Vec<_> = meta
        .tables
        .iter()
        .filter(|t| t.rows.is_some() && selected(&t.schema, &t.name))
        .collect();
    if wanted.is_empty() {
        ui::info("row counts: nothing to compare (the backup records none for the selection)");
        return Ok(true);
    }
    let width = wanted
        .iter()
        .map(|t| t.schema.len() + t.name.len() + 1)
        .max()
        .unwrap_or(5)
        .max(5);
    let db_width = database.chars().count().max(8);
    ui::stdout_line(&format!(
        "{:<db_width$}  {:<width$}  {:>12}  {:>12}  result",
        "database", "table", "backup", "restored"
    ));
    let names: Vec<(String, String)> = wanted
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect();
    let counted = client::counts(client, &names).await?;
    let mut all_match = true;
    for (table, have) in wanted.into_iter().zip(counted) {
        let want = table.rows.unwrap_or_default();
        let (shown, ok) = match have {
            client::Count::Rows(n) => (n.to_string(), n == want),
            client::Count::Missing => ("missing".to_owned(), false),
            client::Count::NotATable(kind) => (format!("{kind}, not read"), false),
        };
        all_match &= ok;
        ui::stdout_line(&format!(
            "{:<db_width$}  {:<width$}  {:>12}  {:>12}  {}",
            database,
            format!("{}.{}", table.schema, table.name),
            want,
            shown,
            if ok { "ok" } else { "MISMATCH" }
        ));
    }
    if all_match {
        ui::info(&format!(
            "row counts of {database} match the backup's meta.json"
        ));
    } else {
        ui::error(&format!(
            "row counts of {database} differ from the backup's meta.json (see the table on stdout)"
        ));
    }
    Ok(all_match)
}

/// `alembic stamp head`, when alembic is on PATH (as the scripts did: without it,
/// a warning). False when it ran and failed.
pub(super) async fn alembic_stamp() -> bool {
    let Some(alembic) = crate::settings::find_on_path("alembic") else {
        ui::warn("--alembic-stamp: alembic is not on PATH; the revision was not stamped");
        return true;
    };
    let mut cmd = crate::children::command(&alembic);
    // Its connection, as the application's env.py reads it, and its Python.
    cmd.envs(
        crate::settings::env()
            .vars_os()
            .filter(|(name, _)| name.to_str().is_some_and(crate::children::for_alembic)),
    );
    cmd.args(["stamp", "head"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match crate::pg::tools::run(cmd, "alembic stamp head").await {
        Ok(out) if out.success() => {
            ui::info(&format!("ran {} stamp head", alembic.display()));
            true
        }
        Ok(out) => {
            ui::error(&out.failure("alembic stamp head").to_string());
            false
        }
        Err(err) => {
            ui::error(&crate::error::one_line(&err));
            false
        }
    }
}

/// Step 6: the rows (and alembic revision) of the restored copy `into`
/// against meta.json; the table names `database`. True when they match.
pub(super) async fn check_copy(
    opts: &RestoreOptions,
    into: &ConnSettings,
    backup: &Checked,
    plan: &Plan,
    database: &str,
    signals: &mut Signals,
) -> Result<bool> {
    let Some(meta) = backup.meta() else {
        return Ok(true);
    };
    let target = signals.guard(client::connect(into)).await?;
    // Counting waits for table locks like any reader: bounded the same way,
    // and stopped by a signal, its query cancelled on the server (a backend
    // waiting for a lock does not notice that its client is gone).
    let check = async {
        client::set_lock_timeout(&target, opts.lock_wait_timeout).await?;
        match &plan.table {
            Some(table) => super::table::verdict(&target, meta, table, plan.server_major).await,
            None => check_restored(&target, meta, plan.selection.as_ref(), database).await,
        }
    };
    crate::pg::cancel::guarded(signals, &target, into, check).await
}

/// The failure's last lines; with a staging copy, where it is.
pub(super) fn report_failure(
    conn: &ConnSettings,
    into: &ConnSettings,
    backup: &Checked,
    staged: bool,
) {
    if staged {
        ui::error(&format!(
            "the failed restore is left in database {} for inspection; {} was not touched \
             (the next restore of it removes the copy)",
            quote_ident(&into.dbname),
            quote_ident(&conn.dbname)
        ));
    }
    ui::error(&format!(
        "restore of {} into {} FAILED (see above)",
        backup.located.dump.display(),
        quote_ident(&conn.dbname)
    ));
}
