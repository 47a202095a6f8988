//! A whole server at once: `backup --all-databases` and `restore --all-databases`.
//!
//! Backup: list the connectable non-template databases (new ones are picked up
//! by the next run, nothing to configure), drop those matching
//! `--exclude-database`, take the globals (roles, memberships, tablespaces),
//! then dump every database as a single backup would, each with its own file,
//! meta.json and retention group. All of them record the run's id
//! (`cluster_run` in meta.json). One database failing does not stop the
//! others; the exit code and the error name the ones that failed.
//!
//! Restore: the newest globals backup and the databases of its run (locally
//! or under the S3 prefix); the globals first (roles that exist are left as
//! they are and reported), then every database dropped, created again with
//! its recorded properties and restored with owners and privileges.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use serde_json::json;

use super::backup::{self, apply_retention};
use super::restore::restore_into;
use crate::archive::{self, MetaState, Wanted};
use crate::cli::RestoreArgs;
use crate::error::{exit_code, one_line, usage, FAILED, SIGINT, SIGTERM};
use crate::meta::Meta;
use crate::mode::Mode;
use crate::pg::client;
use crate::pg::url::ConnSettings;
use crate::settings::backup::BackupJob;
use crate::settings::commands::{GlobalSettings, Output};
use crate::signals::Signals;
use crate::storage::local::LocalStore;
use crate::storage::s3::{self, S3Settings};
use crate::storage::select::Selector;
use crate::ui;

fn is_interruption(err: &anyhow::Error) -> bool {
    matches!(exit_code(err), SIGINT | SIGTERM)
}

/// Splits the server's databases into (dumped, excluded).
pub fn choose(all: &[String], excludes: &[glob::Pattern]) -> (Vec<String>, Vec<String>) {
    all.iter()
        .cloned()
        .partition(|db| !excludes.iter().any(|p| p.matches(db)))
}

/// `backup --all-databases`: `job` names the database the list is read from.
pub async fn backup_all(
    job: &BackupJob,
    excludes: &[glob::Pattern],
    print: Output,
) -> Result<ExitCode> {
    backup::check_object_lock(job).await?;
    let mut signals = Signals::new()?;
    let outcome = backup_run(job, excludes, &mut signals).await?;
    if print == Output::Json {
        ui::stdout_line(&serde_json::to_string_pretty(&outcome.summary())?);
    }
    outcome.result().map(|()| ExitCode::SUCCESS)
}

/// What one `--all-databases` run did.
pub struct RunOutcome {
    pub run_id: String,
    pub globals: Option<backup::Made>,
    pub databases: Vec<backup::Made>,
    pub excluded: Vec<String>,
    /// (database or `(globals)`, why), in run order.
    pub failed: Vec<(String, String)>,
    pub deleted: Vec<String>,
}

impl RunOutcome {
    /// The `--json` summary.
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "cluster_run": self.run_id,
            "globals": self.globals.as_ref().map(|g| json!({
                "dump": g.dump, "meta_path": g.meta_path, "meta": g.meta,
            })),
            "databases": self.databases.iter().map(|m| json!({
                "database": m.meta.database, "dump": m.dump, "meta_path": m.meta_path, "meta": m.meta,
            })).collect::<Vec<_>>(),
            "excluded": self.excluded,
            "failed": self.failed.iter().map(|(db, why)| json!({"database": db, "error": why})).collect::<Vec<_>>(),
            "deleted": self.deleted,
        })
    }

    /// Ok when every backup of the run succeeded, else an error naming the failed ones.
    pub fn result(&self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        bail!(
            "{} of {} backups of run {} failed: {}",
            self.failed.len(),
            self.databases.len() + usize::from(self.globals.is_some()) + self.failed.len(),
            self.run_id,
            self.failed
                .iter()
                .map(|(db, why)| format!("{db} ({why})"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// The run: the globals, then every chosen database, each with its retention.
/// Only an interruption stops it early.
pub async fn backup_run(
    base: &BackupJob,
    excludes: &[glob::Pattern],
    signals: &mut Signals,
) -> Result<RunOutcome> {
    let mut job = base.clone();
    let run_id = Utc::now().format("%Y%m%dT%H%M%S").to_string();
    job.cluster_run = Some(run_id.clone());
    let admin = signals.guard(client::connect(&job.conn)).await?;
    let rows = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .context("listing the server's databases")?;
    drop(admin);
    let all: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let (databases, excluded) = choose(&all, excludes);
    ui::info(&format!(
        "backing up {} database(s) of {} and the globals (run {run_id}){}",
        databases.len(),
        job.conn.endpoint(),
        if excluded.is_empty() {
            String::new()
        } else {
            format!("; excluded: {}", excluded.join(", "))
        }
    ));
    let mut outcome = RunOutcome {
        run_id,
        globals: None,
        databases: Vec::new(),
        excluded,
        failed: Vec::new(),
        deleted: Vec::new(),
    };
    match backup_one(&job, signals, Some(databases.clone())).await {
        Ok((made, gone)) => {
            outcome.deleted.extend(gone);
            outcome.globals = Some(made);
        }
        Err(err) if is_interruption(&err) => return Err(err),
        Err(err) => {
            ui::error(&format!("globals: {}", one_line(&err)));
            outcome
                .failed
                .push(("(globals)".to_owned(), one_line(&err)));
        }
    }
    for db in &databases {
        let mut one = job.clone();
        one.conn = job.conn.with_dbname(db);
        match backup_one(&one, signals, None).await {
            Ok((made, gone)) => {
                outcome.deleted.extend(gone);
                outcome.databases.push(made);
            }
            Err(err) if is_interruption(&err) => return Err(err),
            Err(err) => {
                ui::error(&format!("database {db:?}: {}", one_line(&err)));
                outcome.failed.push((db.clone(), one_line(&err)));
            }
        }
    }
    if outcome.failed.is_empty() {
        ui::info(&format!(
            "run {} complete: the globals and {} database(s)",
            outcome.run_id,
            outcome.databases.len()
        ));
    }
    Ok(outcome)
}

/// One backup of the run (the globals when `globals` is Some) and its retention.
async fn backup_one(
    job: &BackupJob,
    signals: &mut Signals,
    globals: Option<Vec<String>>,
) -> Result<(backup::Made, Vec<String>)> {
    let made = match globals {
        Some(databases) => super::globals::backup(job, signals, databases).await?,
        None => {
            let made = backup::dump(job, signals).await?;
            backup::check_anomaly(job, &made).await?;
            made
        }
    };
    let deleted = apply_retention(job, &made).await?;
    Ok((made, deleted))
}

/// One backup of the chosen run: a local path or an `s3://` URI, and its meta.json.
struct Member {
    source: String,
    meta: Meta,
}

/// The newest globals backup and the databases of its run.
struct Run {
    id: String,
    globals: Member,
    databases: Vec<Member>,
}

/// Picks the run: the newest complete globals backup that belongs to an
/// `--all-databases` run, and every complete full backup with the same run id.
async fn find_run(args: &RestoreArgs) -> Result<Run> {
    let mut members: Vec<(Mode, chrono::NaiveDateTime, Member)> = Vec::new();
    if args.from_s3 {
        let store = s3::connect(S3Settings::from_args(&args.s3, None)?).await?;
        for b in store.list().await? {
            if !b.is_complete() || !matches!(b.name.mode, Mode::Full | Mode::Globals) {
                continue;
            }
            if let Some(meta) = store.read_meta(&b.meta_key).await? {
                if meta.cluster_run.is_some() {
                    let source = store.uri(&b.dump_key);
                    members.push((b.name.mode, b.name.timestamp, Member { source, meta }));
                }
            }
        }
    } else {
        for b in LocalStore::new(&args.backup_dir).list()? {
            if !b.is_complete() || !matches!(b.name.mode, Mode::Full | Mode::Globals) {
                continue;
            }
            if let Ok(meta) = Meta::read(&b.meta) {
                if meta.cluster_run.is_some() {
                    let source = b.dump.display().to_string();
                    members.push((b.name.mode, b.name.timestamp, Member { source, meta }));
                }
            }
        }
    }
    let where_ = if args.from_s3 {
        "under the S3 prefix".to_owned()
    } else {
        format!("in {}", args.backup_dir.display())
    };
    let newest = members
        .iter()
        .enumerate()
        .filter(|(_, (mode, _, _))| *mode == Mode::Globals)
        .max_by_key(|(_, (_, ts, _))| *ts)
        .map(|(i, _)| i)
        .ok_or_else(|| {
            usage(format!(
                "no complete globals backup of a `pgbak backup --all-databases` run {where_}"
            ))
        })?;
    let (_, _, globals) = members.swap_remove(newest);
    let id = globals.meta.cluster_run.clone().unwrap_or_default();
    let mut databases: Vec<Member> = Vec::new();
    members.sort_by_key(|(_, ts, _)| *ts);
    for (mode, _, member) in members {
        if mode == Mode::Full && member.meta.cluster_run.as_deref() == Some(id.as_str()) {
            databases.retain(|m| m.meta.database != member.meta.database);
            databases.push(member);
        }
    }
    Ok(Run {
        id,
        globals,
        databases,
    })
}

pub async fn restore_all(global: &GlobalSettings, args: RestoreArgs) -> Result<ExitCode> {
    if !args.no_confirm && !std::io::stdin().is_terminal() {
        return Err(usage(
            "refusing to restore: stdin is not a terminal, so nobody can confirm; \
             pass --no-confirm to restore without asking",
        ));
    }
    let conn = crate::settings::connection()?;
    let run = find_run(&args).await?;
    let expected = run
        .globals
        .meta
        .globals
        .as_ref()
        .map(|g| g.databases.clone())
        .unwrap_or_default();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|db| !run.databases.iter().any(|m| &m.meta.database == *db))
        .collect();
    ui::info(&format!(
        "restoring run {}: the globals ({}) and {} database(s): {}",
        run.id,
        run.globals.source,
        run.databases.len(),
        run.databases
            .iter()
            .map(|m| m.meta.database.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !args.no_confirm {
        confirm(&conn, &run).await?;
    }
    let mut signals = Signals::new()?;

    // The globals first: the databases' owners and grants need the roles.
    let applied = restore_globals(&args, &conn, &run.globals, &mut signals).await?;
    let mut failed: Vec<String> = missing
        .iter()
        .map(|db| format!("{db} (the run has no complete backup of it)"))
        .collect();
    failed.extend(applied.failed.iter().map(|f| format!("globals: {f}")));

    for member in &run.databases {
        let db = &member.meta.database;
        let mut one = args.clone();
        one.all_databases = false;
        one.backup = Some(member.source.clone());
        one.from_s3 = false;
        one.create_db = true;
        one.no_confirm = true;
        ui::info(&format!("restoring database {db:?} from {}", member.source));
        match restore_into(global, &one, &conn.with_dbname(db)).await {
            Ok(true) => {}
            Ok(false) => failed.push(format!("{db} (see above)")),
            Err(err) if is_interruption(&err) => return Err(err),
            Err(err) => {
                ui::error(&format!("database {db:?}: {}", one_line(&err)));
                failed.push(format!("{db} ({})", one_line(&err)));
            }
        }
    }
    if !applied.existing_roles.is_empty() {
        ui::info(&format!(
            "roles that already existed and were left as they are: {}",
            applied.existing_roles.join(", ")
        ));
    }
    if !failed.is_empty() {
        ui::error(&format!(
            "restore of run {} FAILED for: {}",
            run.id,
            failed.join("; ")
        ));
        return Ok(ExitCode::from(FAILED));
    }
    ui::info(&format!(
        "restore of run {} complete: {} role(s) created, {} database(s) restored on {}",
        run.id,
        applied.created_roles.len(),
        run.databases.len(),
        conn.endpoint()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Checks and applies the globals backup; returns what it did.
async fn restore_globals(
    args: &RestoreArgs,
    conn: &ConnSettings,
    member: &Member,
    signals: &mut Signals,
) -> Result<crate::pg::globals::Applied> {
    let located = archive::locate(&Wanted {
        backup: Some(&member.source),
        backup_dir: &args.backup_dir,
        from_s3: false,
        s3: &args.s3,
        // A file is named: nothing is selected.
        select: &Selector {
            database: conn.dbname.clone(),
            mode: Mode::Globals,
            include_failed: true,
        },
    })
    .await?;
    let MetaState::Read(meta) = archive::read_meta(&located) else {
        bail!(
            "the globals backup {} has no readable meta.json",
            member.source
        );
    };
    // An encrypted globals file needs a fitting identity (exit 2 otherwise).
    let source = crate::encryption::decrypt::Source::open(
        &located.dump,
        Some(&meta),
        args.decrypt.identity_file.as_deref(),
        None,
    )?;
    if let Err(detail) = signals
        .guard(archive::check_checksum(&located.dump, &meta))
        .await?
    {
        bail!("not restoring the globals {}: {detail}", member.source);
    }
    // Small: decrypted in memory, never onto disk.
    let sql = String::from_utf8(source.read_all()?)
        .with_context(|| format!("reading {}: not UTF-8 text", located.dump.display()))?;
    if let Some(note) = meta.globals.as_ref().and_then(|g| g.note.as_deref()) {
        ui::warn(&format!("the globals backup says: {note}"));
    }
    let admin = signals.guard(client::connect(conn)).await?;
    let applied = crate::pg::globals::apply(&admin, &sql)
        .await
        .map_err(|e| anyhow!("restoring the globals: {}", one_line(&e)))?;
    ui::info(&format!(
        "globals: {} role(s) created ({}), {} already existed and were left as they are ({})",
        applied.created_roles.len(),
        applied.created_roles.join(", "),
        applied.existing_roles.len(),
        applied.existing_roles.join(", ")
    ));
    for failure in &applied.failed {
        ui::warn(&format!("globals: not restored: {failure}"));
    }
    Ok(applied)
}

async fn confirm(conn: &ConnSettings, run: &Run) -> Result<()> {
    let host = conn.host.to_string();
    eprint!(
        "\nAbout to rebuild the server {} from run {}:\n  roles and tablespaces from {}\n  \
         every database below is DROPPED (its sessions terminated) and created again:\n    {}\n\
         Type the host name ({host}) to continue: ",
        conn.endpoint(),
        run.id,
        run.globals.source,
        run.databases
            .iter()
            .map(|m| m.meta.database.as_str())
            .collect::<Vec<_>>()
            .join("\n    ")
    );
    let mut line = String::new();
    tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line).map(|_| line))
        .await
        .context("reading the confirmation stopped unexpectedly")?
        .context("reading the confirmation")
        .and_then(|answer| {
            if answer.trim_end_matches(['\n', '\r']) == host {
                Ok(())
            } else {
                Err(usage(
                    "the name typed does not match the host name: nothing was restored",
                ))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_databases_match_globs() {
        let all: Vec<String> = ["app", "app_test", "postgres", "scratch-1", "weird \"db\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let excludes = crate::settings::backup::exclude_patterns(&[
            "*_test".into(),
            "scratch-?".into(),
            " ".into(),
        ])
        .unwrap();
        let (kept, excluded) = choose(&all, &excludes);
        assert_eq!(kept, vec!["app", "postgres", "weird \"db\""]);
        assert_eq!(excluded, vec!["app_test", "scratch-1"]);
    }
}
