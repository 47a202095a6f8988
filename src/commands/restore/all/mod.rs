//! `pgbak restore --all-databases`: rebuild a server from one
//! `backup --all-databases` run, re-runnable after any interruption.
//!
//! The steps, in order:
//! 1. the runs under the prefix (or in the directory) and the target's
//!    restore journal ([`crate::pg::journal`]): the run is the one named with
//!    `--run`, else the one the journal is in the middle of, else the newest
//!    complete one, of one server ([`crate::runs::choose`]);
//! 2. the preflight ([`plan`]): identity, every backup readable, the globals
//!    read and checked, client tools, the target's roles and databases;
//!    nothing is changed before it passes;
//! 3. the plan printed, the operator's confirmation;
//! 4. the journal written on the target; the roles ([`crate::pg::globals`]):
//!    roles that existed before pgbak touched the server are left as they are
//!    (unless `--reset-roles`), every other role gets every statement of the
//!    backup about it again; then every role is compared with the backup and
//!    each difference named;
//! 5. every database of the run not done yet, each through [`restore_into`]
//!    (a staging copy swapped in when complete), after waiting a bounded
//!    time for the target to accept connections;
//! 6. the journal removed when everything succeeded; else it stays, and the
//!    same command continues the run.

pub(crate) mod inventory;
pub(crate) mod plan;
mod trust;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{refuse_without_terminal, restore_into, target::maintenance_conn};
use crate::commands::each_database::Tally;
use crate::error::{one_line, usage};
use crate::meta::ServerIdentity;
use crate::pg::client;
use crate::pg::globals::{self, roles};
use crate::pg::journal::{self, Journal};
use crate::pg::url::ConnSettings;
use crate::runs::choose::{self, Choice, Wish};
use crate::settings::restore::{RestoreOptions, RunWanted};
use crate::signals::Signals;
use crate::storage::Destination;
use crate::ui;
use inventory::Inventory;
use plan::{ChosenRun, Preflight};

/// How long the rebuild waits for the target to accept connections again
/// (a restart, a failover) before it gives up on the rest.
const SERVER_WAIT: Duration = Duration::from_secs(120);

/// The whole run into the server of `conn`. Ok(false): something of it
/// failed (exit 1), named in the last line.
pub(super) async fn restore_all(
    conn: &ConnSettings,
    from: &[Destination],
    wanted: &RunWanted,
    opts: &RestoreOptions,
) -> Result<bool> {
    refuse_without_terminal(opts.confirm)?;
    let mut signals = Signals::new()?;

    // 1: the runs, the target's journal, the run.
    let (inventory, sources) = signals.guard(Inventory::read_across(from)).await?;
    let admin = signals.guard(connect_waiting(conn)).await?;
    let journal = journal::read(conn).await?;
    let wish = Wish {
        run: wanted.run.as_deref(),
        server: wanted.server.as_deref(),
        journal: journal
            .as_ref()
            .map(|j| (j.run_id.as_str(), j.server.as_ref())),
    };
    let choice = choose::choose(&inventory.views, &wish)
        .map_err(|refusal| usage(format!("not restoring: {refusal}")))?;
    let (run, server) = run_of(&inventory, &choice, sources)?;
    let left_out = left_out(&inventory, &run, server.as_ref());
    // One encrypted backup makes the run encrypted: a plaintext member is refused.
    let mut opts = opts.clone();
    opts.tuning.decrypt.run_encrypted = std::iter::once(&run.globals)
        .chain(&run.databases)
        .any(|m| m.meta.encryption.is_some());
    let opts = &opts;
    trust::refuse_untrusted(
        &run,
        opts.tuning.decrypt.run_encrypted,
        opts.tuning.decrypt.trusted_keys.as_deref(),
    )
    .await?;

    // 2-3: the preflight, the plan, the confirmation.
    let pre = plan::preflight(&admin, &run, opts, journal.as_ref(), &mut signals).await?;
    let server_text = choose::server_text(server.as_ref());
    for line in plan::describe(&plan::Shown {
        conn,
        run: &run,
        choice: &choice,
        server: &server_text,
        source: &inventory.place,
        pre: &pre,
        journal: journal.as_ref(),
        left_out: &left_out,
        reset_roles: wanted.reset_roles,
    }) {
        ui::info(&line);
    }
    if opts.confirm {
        confirm(conn, &run.id, &mut signals).await?;
    }

    // 4: the journal, then the roles.
    let entry = Journal {
        run_id: run.id.clone(),
        server: server.clone(),
        source: inventory.place.clone(),
        started_at: String::new(),
        pre_existing: pre.pre_existing.clone(),
        databases: Default::default(),
    };
    signals.guard(journal::begin(&admin, conn, &entry)).await?;
    drop(admin);
    let roles = restore_roles(conn, &pre, wanted.reset_roles, opts, &mut signals).await?;

    // 5: the databases.
    let done_before: BTreeSet<String> = journal
        .as_ref()
        .filter(|j| j.run_id == run.id)
        .map(|j| {
            j.databases
                .iter()
                .filter(|(_, s)| *s == "done")
                .map(|(d, _)| d.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut failed = roles.failed.clone();
    failed.extend(restore_databases(opts, conn, &run, &done_before, &mut signals).await?);

    // 6: the verdict.
    finish(conn, &run, &roles, &failed).await
}

/// The chosen run's backups and its server.
pub(crate) fn run_of(
    inventory: &Inventory,
    choice: &Choice,
    sources: Vec<Destination>,
) -> Result<(ChosenRun, Option<ServerIdentity>)> {
    let view = inventory
        .views
        .iter()
        .find(|v| v.id == choice.run)
        .context("the chosen run vanished from the inventory")?;
    let globals = inventory.globals.get(&choice.run).cloned().ok_or_else(|| {
        usage(format!(
            "not restoring run {}: its globals backup is not in {} (the roles cannot be restored); \
             choose another run with --run",
            choice.run, inventory.place
        ))
    })?;
    let mut databases: Vec<_> = inventory
        .databases
        .get(&choice.run)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    databases.sort_by(|a: &inventory::Member, b| a.meta.database.cmp(&b.meta.database));
    Ok((
        ChosenRun {
            id: choice.run.clone(),
            globals,
            databases,
            sources,
        },
        view.server.clone(),
    ))
}

/// The databases backed up in this place (by the same server) that the
/// run does not contain, each with its newest backup's time.
fn left_out(
    inventory: &Inventory,
    run: &ChosenRun,
    server: Option<&ServerIdentity>,
) -> Vec<String> {
    let in_run: BTreeSet<&str> = run
        .databases
        .iter()
        .map(|m| m.meta.database.as_str())
        .collect();
    inventory
        .backed_up
        .get(&server.cloned())
        .map(|dbs| {
            dbs.iter()
                .filter(|(db, _)| !in_run.contains(db.as_str()))
                .map(|(db, at)| format!("{db} (its newest backup here is from {at})"))
                .collect()
        })
        .unwrap_or_default()
}

/// What the roles step did.
#[derive(Debug, Default)]
struct RolesOutcome {
    created: usize,
    /// Roles (and other statements) not as in the backup: failures.
    failed: Vec<String>,
    /// Roles that existed before, differ, and were left as they are.
    left: Vec<String>,
}

/// Replays the globals, then compares every role with the backup.
async fn restore_roles(
    conn: &ConnSettings,
    pre: &Preflight,
    reset: bool,
    opts: &RestoreOptions,
    signals: &mut Signals,
) -> Result<RolesOutcome> {
    let client = signals.guard(connect_waiting(conn)).await?;
    let replay = globals::Replay {
        globals: &pre.globals,
        pre_existing: &pre.pre_existing,
        reset,
        lock_wait_timeout: opts.lock_wait_timeout,
    };
    let applied = globals::apply(&client, conn, &replay, signals).await?;
    ui::info(&format!(
        "globals: {} role(s) created{}",
        applied.created_roles.len(),
        if applied.created_roles.is_empty() {
            String::new()
        } else {
            format!(" ({})", applied.created_roles.join(", "))
        }
    ));
    let mut outcome = RolesOutcome {
        created: applied.created_roles.len(),
        ..RolesOutcome::default()
    };
    for failure in &applied.failed {
        ui::warn(&format!("globals: not restored: {failure}"));
        outcome.failed.push(format!("globals: {failure}"));
    }
    if let Some(me) = &applied.own_password_kept {
        ui::warn(&format!(
            "--reset-roles: the password of {me}, the role pgbak is connected as, was left as it \
             is (changing it would cut the rebuild off); set it after the rebuild if it must be \
             the backup's"
        ));
    }
    let have = signals.guard(roles::read(&client, &pre.globals)).await?;
    for (role, mut d) in roles::compare(&pre.globals, &have, pre.passwords, None) {
        if applied.own_password_kept.as_ref() == Some(&role) {
            d.differs.retain(|what| !what.contains("password"));
        }
        let kept = !reset && pre.pre_existing.contains(&role);
        if !d.differs.is_empty() {
            let line = format!("role {role}: {}", d.differs.join("; "));
            if kept {
                ui::warn(&format!(
                    "{line} (it existed before this restore and was left as it is; \
                     --reset-roles makes it as in the backup)"
                ));
                outcome.left.push(line);
            } else {
                ui::error(&format!("{line}: not as in the backup"));
                outcome.failed.push(line);
            }
        }
        if !d.extra.is_empty() {
            ui::info(&format!(
                "role {role} has more than the backup (left as it is): {}",
                d.extra.join("; ")
            ));
        }
    }
    if outcome.failed.is_empty() {
        ui::info(&format!(
            "every role of the backup is as in the backup{}",
            if outcome.left.is_empty() {
                String::new()
            } else {
                format!(" except {} that existed before", outcome.left.len())
            }
        ));
    }
    Ok(outcome)
}

/// Every database of the run not done before, each dropped and created
/// again, without asking again; returns the ones that failed and why. An
/// interruption stops it and says which are done, interrupted, untouched.
async fn restore_databases(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    run: &ChosenRun,
    done_before: &BTreeSet<String>,
    signals: &mut Signals,
) -> Result<Vec<String>> {
    let mut one = opts.clone();
    one.create_db = true;
    one.confirm = false;
    let mut tally = Tally::default();
    let mut done: Vec<&str> = Vec::new();
    for (i, member) in run.databases.iter().enumerate() {
        let db = &member.meta.database;
        if done_before.contains(db) {
            ui::info(&format!(
                "database {db:?}: restored by this run already, skipped"
            ));
            done.push(db);
            continue;
        }
        let restored = async {
            signals.guard(connect_waiting(conn)).await?;
            if let Err(err) = journal::mark(conn, db, "started").await {
                ui::warn(&one_line(&err));
            }
            ui::info(&format!("restoring database {db:?} from {}", member.source));
            let one_db = conn.with_dbname(db);
            restore_into(&one, &member.wanted(), &run.sources, &one_db).await
        };
        let state = match restored.await {
            Ok(true) => "done",
            Ok(false) => {
                tally.failed(db, "see above");
                "failed"
            }
            Err(err) => match tally.take(db, &format!("database {db:?}"), err) {
                Ok(_) => "failed",
                Err(interrupted) => {
                    let untouched: Vec<&str> = run.databases[i + 1..]
                        .iter()
                        .map(|m| m.meta.database.as_str())
                        .collect();
                    ui::error(&format!(
                        "stopped: done: {}; interrupted: {db} (its unfinished copy removed, the \
                         database as it was before); untouched: {}. Run the same command again \
                         to continue run {}",
                        list_or_none(&done),
                        list_or_none(&untouched),
                        run.id
                    ));
                    return Err(interrupted);
                }
            },
        };
        if state == "done" {
            done.push(db);
        }
        if let Err(err) = journal::mark(conn, db, state).await {
            ui::warn(&one_line(&err));
        }
    }
    Ok(tally
        .failed
        .into_iter()
        .map(|(db, why)| format!("{db} ({why})"))
        .collect())
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The last line; the journal removed when the whole run is restored.
async fn finish(
    conn: &ConnSettings,
    run: &ChosenRun,
    roles: &RolesOutcome,
    failed: &[String],
) -> Result<bool> {
    if !failed.is_empty() {
        ui::error(&format!(
            "restore of run {} FAILED for: {}. The target's restore journal keeps the run: \
             the same command continues it",
            run.id,
            failed.join("; ")
        ));
        return Ok(false);
    }
    let admin = connect_waiting(&maintenance_conn(conn, true)).await?;
    journal::remove(&admin).await?;
    ui::info(&format!(
        "restore of run {} complete: {} role(s) created, {} database(s) restored on {}{}",
        run.id,
        roles.created,
        run.databases.len(),
        conn.endpoint(),
        if roles.left.is_empty() {
            String::new()
        } else {
            format!(
                "; roles that existed before and differ from the backup, left as they are: {}",
                roles.left.join("; ")
            )
        }
    ));
    Ok(true)
}

/// A session on the target, waiting up to [`SERVER_WAIT`] for a server that
/// does not accept connections (restarting, starting up); a refusal such as
/// a wrong password fails at once.
async fn connect_waiting(conn: &ConnSettings) -> Result<tokio_postgres::Client> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        match client::connect(conn).await {
            Ok(client) => return Ok(client),
            Err(err) => {
                let text = one_line(&err);
                let lasting = [
                    "authentication",
                    "does not exist",
                    "permission denied",
                    "password",
                ]
                .iter()
                .any(|w| text.contains(w));
                if lasting || started.elapsed() >= SERVER_WAIT {
                    return Err(err);
                }
                if !said {
                    ui::warn(&format!(
                        "the target does not accept connections; waiting up to {}s: {text}",
                        SERVER_WAIT.as_secs()
                    ));
                    said = true;
                }
                crate::signals::check()?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The operator types the host name: the whole server is rebuilt.
async fn confirm(conn: &ConnSettings, run: &str, signals: &mut Signals) -> Result<()> {
    let host = conn.host.to_string();
    let about = format!(
        "\nAbout to rebuild the server {} from run {run} as planned above.\n",
        conn.endpoint()
    );
    super::confirm::typed(&about, "host name", &host, signals).await
}
