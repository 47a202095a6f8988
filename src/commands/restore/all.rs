//! `pgbak restore --all-databases`: the newest globals backup and the
//! databases of its run (locally or under the S3 prefix); the globals first
//! (roles that exist are left as they are and reported), then every database
//! dropped, created again with its recorded properties and restored with
//! owners and privileges, each through [`restore_into`]. One database failing
//! does not stop the others; the exit code and the last line name them.

use anyhow::{anyhow, bail, Context, Result};
use chrono::NaiveDateTime;

use super::{refuse_without_terminal, restore_into};
use crate::archive::{self, Backup, Decrypt, MetaState, Place, Wanted};
use crate::error::{is_interruption, one_line, usage};
use crate::meta::Meta;
use crate::mode::Mode;
use crate::pg::client;
use crate::pg::url::ConnSettings;
use crate::settings::restore::RestoreOptions;
use crate::signals::Signals;
use crate::signing::TrustedKeys;
use crate::storage::local::LocalStore;
use crate::storage::s3::{self, S3Settings};
use crate::storage::{BackupName, BackupStore};
use crate::ui;

/// One backup of the chosen run: where it is (a path or an `s3://` URI, for
/// messages, and as restore reads it) and its meta.json.
struct Member {
    source: String,
    wanted: Wanted,
    meta: Meta,
}

/// The newest globals backup and the databases of its run.
struct Run {
    id: String,
    globals: Member,
    databases: Vec<Member>,
}

/// Every complete full or globals backup in `store` that belongs to an
/// `--all-databases` run (a meta.json that cannot be read is warned about
/// and passed over); `wanted` says how restore reads one.
async fn members_in(
    store: &impl BackupStore,
    wanted: impl Fn(&BackupName) -> Wanted,
) -> Result<Vec<(Mode, NaiveDateTime, Member)>> {
    let mut members = Vec::new();
    for b in store.list_backups().await? {
        let complete = b.has_dump && b.has_meta;
        if !complete || !matches!(b.name.mode, Mode::Full | Mode::Globals) {
            continue;
        }
        let meta = match store.load_meta(&b.name).await {
            Ok(Some(meta)) if meta.cluster_run.is_some() => meta,
            Ok(_) => continue,
            Err(err) => {
                ui::warn(&one_line(&err));
                continue;
            }
        };
        let member = Member {
            source: store.dump_location(&b.name),
            wanted: wanted(&b.name),
            meta,
        };
        members.push((b.name.mode, b.name.timestamp, member));
    }
    Ok(members)
}

/// Picks the run: the newest complete globals backup that belongs to an
/// `--all-databases` run, and every complete full backup with the same run id.
async fn find_run(place: &Place) -> Result<Run> {
    let (mut members, where_) = match place {
        Place::S3(settings) => {
            let store = s3::connect(S3Settings::clone(settings)).await?;
            let key = |name: &BackupName| Wanted::S3Object {
                s3: settings.clone(),
                key: store.key_for(&name.dump_file()),
            };
            (
                members_in(&store, key).await?,
                "under the S3 prefix".to_owned(),
            )
        }
        Place::Dir(dir) => {
            let path = |name: &BackupName| Wanted::File(dir.join(name.dump_file()));
            (
                members_in(&LocalStore::new(dir), path).await?,
                format!("in {}", dir.display()),
            )
        }
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

/// The whole run into the server of `conn`. Ok(false): something of it
/// failed (exit 1), named in the last line.
pub(super) async fn restore_all(
    conn: &ConnSettings,
    place: &Place,
    opts: &RestoreOptions,
) -> Result<bool> {
    refuse_without_terminal(opts.confirm)?;
    let run = find_run(place).await?;
    let mut opts = opts.clone();
    // One encrypted backup makes the run encrypted: a plaintext member is refused.
    opts.tuning.decrypt.run_encrypted = std::iter::once(&run.globals)
        .chain(&run.databases)
        .any(|m| m.meta.encryption.is_some());
    refuse_unsound(&run, opts.tuning.decrypt.run_encrypted)?;
    let opts = &opts;
    match &opts.tuning.decrypt.trusted_keys {
        Some(keys) => refuse_unsigned(&run, keys).await?,
        None => ui::warn(
            "no trusted keys configured (--trusted-keys / PGBAK_TRUSTED_KEYS): this restore \
             trusts whoever can write to the bucket; unsigned backups are accepted",
        ),
    }
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
        database_names(&run).join(", ")
    ));
    if opts.confirm {
        confirm(conn, &run).await?;
    }
    let mut signals = Signals::new()?;

    // The globals first: the databases' owners and grants need the roles.
    let applied = restore_globals(opts, conn, &run.globals, &mut signals).await?;
    let mut failed: Vec<String> = missing
        .iter()
        .map(|db| format!("{db} (the run has no complete backup of it)"))
        .collect();
    failed.extend(applied.failed.iter().map(|f| format!("globals: {f}")));
    failed.extend(restore_databases(opts, conn, &run).await?);
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
        return Ok(false);
    }
    ui::info(&format!(
        "restore of run {} complete: {} role(s) created, {} database(s) restored on {}",
        run.id,
        applied.created_roles.len(),
        run.databases.len(),
        conn.endpoint()
    ));
    Ok(true)
}

/// Every meta.json of the run holds only what PostgreSQL could have recorded,
/// and each names the database its file name says; in an encrypted run, each
/// backup says it is encrypted too (a plaintext one in place of an encrypted
/// one is refused again, on its bytes, when it is read). Checked before
/// anything is touched, since their values become SQL run as a superuser
/// (exit 2, naming the backup and the field).
fn refuse_unsound(run: &Run, encrypted: bool) -> Result<()> {
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
/// them for its own file: checked before the confirmation and anything else,
/// so one unsigned backup cannot leave the server half rebuilt (each is
/// checked again as it is restored, on what is then read).
async fn refuse_unsigned(run: &Run, keys: &TrustedKeys) -> Result<()> {
    for member in std::iter::once(&run.globals).chain(&run.databases) {
        let file = member.source.rsplit('/').next().unwrap_or(&member.source);
        let text = meta_text(&member.wanted).await?;
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

/// The text of a member's meta.json as stored (its signature covers the
/// text); None when there is none.
async fn meta_text(wanted: &Wanted) -> Result<Option<String>> {
    match wanted {
        Wanted::File(dump) => {
            let Some(path) = archive::meta_path_for(dump) else {
                return Ok(None);
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Wanted::S3Object { s3, key } => {
            let Some((stem, _)) = crate::storage::split_dump_file(key) else {
                return Ok(None);
            };
            let store = s3::connect(S3Settings::clone(s3)).await?;
            let meta = store.read_meta_text(&format!("{stem}.meta.json")).await?;
            Ok(meta.map(|(_, text)| text))
        }
        Wanted::Newest { .. } => Ok(None),
    }
}

fn database_names(run: &Run) -> Vec<&str> {
    run.databases
        .iter()
        .map(|m| m.meta.database.as_str())
        .collect()
}

/// Every database of the run, each dropped and created again, without
/// asking again; returns the ones that failed and why. Only an interruption
/// stops it early.
async fn restore_databases(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    run: &Run,
) -> Result<Vec<String>> {
    let mut one = opts.clone();
    one.create_db = true;
    one.confirm = false;
    let mut failed = Vec::new();
    for member in &run.databases {
        let db = &member.meta.database;
        ui::info(&format!("restoring database {db:?} from {}", member.source));
        match restore_into(&one, &member.wanted, &conn.with_dbname(db)).await {
            Ok(true) => {}
            Ok(false) => failed.push(format!("{db} (see above)")),
            Err(err) if is_interruption(&err) => return Err(err),
            Err(err) => {
                ui::error(&format!("database {db:?}: {}", one_line(&err)));
                failed.push(format!("{db} ({})", one_line(&err)));
            }
        }
    }
    Ok(failed)
}

/// Checks and applies the globals backup; returns what it did.
async fn restore_globals(
    opts: &RestoreOptions,
    conn: &ConnSettings,
    member: &Member,
    signals: &mut Signals,
) -> Result<crate::pg::globals::Applied> {
    // An encrypted globals file needs a fitting identity (exit 2 otherwise);
    // small, it is decrypted in memory, never onto disk.
    let decrypt = Decrypt {
        scratch_dir: None,
        ..opts.tuning.decrypt.clone()
    };
    let backup = Backup::open(archive::locate(&member.wanted).await?, &decrypt)?;
    let trusted = backup.authentic(&decrypt).map_err(|why| {
        usage(format!(
            "not restoring the globals {}: {why}",
            member.source
        ))
    })?;
    ui::info(&format!("globals {}: {trusted}", member.source));
    let MetaState::Read(meta) = &backup.meta_state else {
        bail!(
            "the globals backup {} has no readable meta.json",
            member.source
        );
    };
    backup
        .checksum(signals)
        .await
        .with_context(|| format!("not restoring the globals {}", member.source))?;
    let sql = String::from_utf8(backup.source.read_all()?)
        .with_context(|| format!("reading {}: not UTF-8 text", backup.located.dump.display()))?;
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
        database_names(run).join("\n    ")
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
