//! The rebuild's preflight and plan: everything that can stop it is checked
//! before the confirmation and before any change (the identity decrypts the
//! run, every backup is there with its recorded size, the globals read and
//! hold nothing pg_dumpall would not write, a pg_restore fits the run and
//! the target, the connection and its privileges), and what it will do is
//! shown: the run and why, the newer runs and why not, the databases it
//! replaces (and their sizes) and those it leaves out, the roles that exist
//! and differ.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use tokio_postgres::Client;

use super::inventory::Member;
use crate::archive::{self, Backup, Decrypt, MetaState};
use crate::error::{finding, usage};
use crate::meta::Meta;
use crate::pg::client::{self, ServerVersion};
use crate::pg::globals::parse::Globals;
use crate::pg::globals::roles::{self, Difference};
use crate::pg::journal::Journal;
use crate::pg::tools::{self, PgTools};
use crate::pg::url::ConnSettings;
use crate::settings::restore::RestoreOptions;
use crate::signals::Signals;

/// The chosen run's backups.
pub struct ChosenRun {
    pub id: String,
    pub globals: Member,
    pub databases: Vec<Member>,
    /// The destinations its backups are read from, in order: the one its
    /// runs were read from first ([`super::inventory::Inventory::read_across`]).
    pub sources: Vec<crate::storage::Destination>,
}

/// What the preflight found.
pub struct Preflight {
    pub version: ServerVersion,
    pub user: String,
    pub superuser: bool,
    pub tools: PgTools,
    pub globals: Globals,
    /// The globals hold the roles' passwords.
    pub passwords: bool,
    pub note: Option<String>,
    /// Roles that existed before pgbak first touched the server.
    pub pre_existing: BTreeSet<String>,
    /// Roles of the backup on the target that differ from it, and how.
    pub differ: BTreeMap<String, Difference>,
    /// The run's databases that exist on the target, with their sizes.
    pub existing: BTreeMap<String, i64>,
    pub encrypted: bool,
}

/// Checks everything the rebuild needs, changing nothing.
pub async fn preflight(
    admin: &Client,
    run: &ChosenRun,
    opts: &RestoreOptions,
    journal: Option<&Journal>,
    signals: &mut Signals,
) -> Result<Preflight> {
    let members: Vec<&Member> = std::iter::once(&run.globals)
        .chain(&run.databases)
        .collect();
    let encrypted = identity_fits(&members, opts)?;
    signals.guard(readable(&members)).await?;
    let version = client::server_version(admin).await?;
    let row = admin
        .query_one(
            "SELECT current_user::text, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .context("asking who pgbak is connected as")?;
    let need = members
        .iter()
        .filter_map(|m| archive::major_of(&m.meta.pg_dump_version))
        .max()
        .unwrap_or_default()
        .max(version.major());
    let tools = tools_for(opts, need, &version)?;
    let (globals, meta) =
        read_globals(&run.globals, &run.sources, &opts.tuning.decrypt, signals).await?;
    let pre_existing = match journal {
        Some(j) => j.pre_existing.clone(),
        None => client::role_names(admin).await?,
    };
    let info = meta.globals.as_ref();
    let passwords = info.is_some_and(|g| g.role_passwords);
    let have = roles::read(admin, &globals).await?;
    let on_target: BTreeSet<String> = have.keys().cloned().collect();
    let differ = roles::compare(&globals, &have, passwords, Some(&on_target));
    let names: Vec<String> = run
        .databases
        .iter()
        .map(|m| m.meta.database.clone())
        .collect();
    let existing = admin
        .query(
            "SELECT datname::text, CASE WHEN has_database_privilege(oid, 'CONNECT')
                                        THEN pg_catalog.pg_database_size(oid) ELSE -1 END
               FROM pg_catalog.pg_database WHERE datname = ANY($1)",
            &[&names],
        )
        .await
        .context("listing the target's databases")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Preflight {
        version,
        user: row.get(0),
        superuser: row.get(1),
        tools,
        globals,
        passwords,
        note: info.and_then(|g| g.note.clone()),
        pre_existing,
        differ,
        existing,
        encrypted,
    })
}

/// Every encrypted backup of the run decrypts with the identity given (exit 2
/// otherwise, naming them). True when any is encrypted.
fn identity_fits(members: &[&Member], opts: &RestoreOptions) -> Result<bool> {
    let encrypted: Vec<&&Member> = members
        .iter()
        .filter(|m| m.meta.encryption.is_some())
        .collect();
    if encrypted.is_empty() {
        return Ok(false);
    }
    let Some(file) = &opts.tuning.decrypt.identity_file else {
        return Err(usage(format!(
            "the run's backups are encrypted with age ({} of {}); pass --identity-file FILE or set \
             PGBAK_AGE_IDENTITY_FILE: nothing was changed",
            encrypted.len(),
            members.len()
        )));
    };
    let identities = crate::encryption::Identities::load(file)?;
    let misfits: Vec<&str> = encrypted
        .iter()
        .filter(|m| {
            let recipients = m
                .meta
                .encryption
                .as_ref()
                .map(|e| e.recipients.clone())
                .unwrap_or_default();
            !identities.fits_any(&recipients)
        })
        .map(|m| m.source.as_str())
        .collect();
    if !misfits.is_empty() {
        return Err(usage(format!(
            "the identity file {} cannot decrypt {}: nothing was changed",
            file.display(),
            misfits.join(", ")
        )));
    }
    Ok(true)
}

/// Every backup of the run is there with the size its meta.json records.
async fn readable(members: &[&Member]) -> Result<()> {
    let mut problems = Vec::new();
    for m in members {
        let checked = m
            .store
            .check_size(&m.name.dump_file(), m.meta.size_bytes)
            .await;
        if let Err(err) = checked {
            problems.push(format!("{}: {}", m.source, crate::error::one_line(&err)));
        }
    }
    if !problems.is_empty() {
        return Err(finding(format!(
            "not restoring: backups of the run cannot be read as recorded: {}",
            problems.join("; ")
        )));
    }
    Ok(())
}

/// The client tools for the run and the target (exit 2 when none fit).
fn tools_for(opts: &RestoreOptions, need: u32, server: &ServerVersion) -> Result<PgTools> {
    let found = match &opts.pg_bin_dir {
        Some(dir) => tools::find(Some(dir), 0, "").and_then(|t| {
            if t.major < need {
                bail!(
                    "{} is PostgreSQL {}; the run and the target ({}) need pg_restore {need} or newer",
                    t.tool("pg_restore").display(),
                    t.version,
                    server.text
                )
            }
            Ok(t)
        }),
        None => tools::find(None, need, &server.text),
    };
    found.map_err(|e| {
        usage(format!(
            "not restoring: {}: nothing was changed",
            crate::error::one_line(&e)
        ))
    })
}

/// The globals backup: checksum, decryption, and every statement of a kind
/// pg_dumpall writes (else the rebuild is refused, naming them).
pub async fn read_globals(
    member: &Member,
    sources: &[crate::storage::Destination],
    decrypt: &Decrypt,
    signals: &mut Signals,
) -> Result<(Globals, Meta)> {
    // Small: decrypted in memory, never onto disk.
    let decrypt = Decrypt {
        scratch_dir: None,
        ..decrypt.clone()
    };
    let backup = Backup::open(
        signals
            .guard(archive::locate_across(&member.wanted(), sources, &|_| {
                Ok(())
            }))
            .await?,
        &decrypt,
    )?;
    let trusted = backup.authentic(&decrypt).map_err(|why| {
        usage(format!(
            "not restoring the globals {}: {why}",
            member.source
        ))
    })?;
    crate::ui::info(&format!("globals {}: {trusted}", member.source));
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
        .with_context(|| format!("reading {}: not UTF-8 text", member.source))?;
    let globals = Globals::parse(&sql).map_err(|refused| {
        finding(format!(
            "not restoring: the globals backup {} holds what pg_dumpall --globals-only never \
             writes, and none of it was run: {}",
            member.source,
            refused
                .iter()
                .map(|(n, r)| format!("statement {n}: {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    Ok((globals, (**meta).clone()))
}

/// What the plan shows.
pub struct Shown<'a> {
    pub conn: &'a ConnSettings,
    pub run: &'a ChosenRun,
    pub choice: &'a crate::runs::choose::Choice,
    /// The run's server, described.
    pub server: &'a str,
    /// The place the run is read from.
    pub source: &'a str,
    pub pre: &'a Preflight,
    pub journal: Option<&'a Journal>,
    /// Databases backed up there that the run does not contain.
    pub left_out: &'a [String],
    pub reset_roles: bool,
}

/// The plan, as lines: what the rebuild will do and why.
pub fn describe(shown: &Shown<'_>) -> Vec<String> {
    let Shown {
        conn,
        run,
        choice,
        server,
        source,
        pre,
        journal,
        left_out,
        reset_roles,
    } = *shown;
    let mut lines = vec![format!(
        "rebuild {} from run {} of {server} ({}), read from {source}",
        conn.endpoint(),
        run.id,
        choice.why
    )];
    for (id, why) in &choice.newer {
        lines.push(format!("  newer run {id} not chosen: {why}"));
    }
    for problem in &choice.problems {
        lines.push(format!("  NOTE the chosen run is incomplete: {problem}"));
    }
    let continued = journal.filter(|j| j.run_id == run.id);
    if let Some(j) = journal {
        let done: Vec<&str> = j
            .databases
            .iter()
            .filter(|(_, s)| *s == "done")
            .map(|(d, _)| d.as_str())
            .collect();
        lines.push(format!(
            "  the target's restore journal: run {} started {}; done: {}",
            j.run_id,
            j.started_at,
            if done.is_empty() {
                "nothing yet".to_owned()
            } else {
                done.join(", ")
            }
        ));
    }
    lines.push(format!(
        "  target: PostgreSQL {} as {}{}; pg_restore {} ({}){}",
        pre.version.text,
        pre.user,
        if pre.superuser {
            " (superuser)"
        } else {
            " (NOT a superuser: roles with SUPERUSER, REPLICATION or BYPASSRLS cannot be made)"
        },
        pre.tools.version,
        pre.tools.tool("pg_restore").display(),
        if pre.encrypted {
            "; the identity decrypts every backup of the run"
        } else {
            ""
        }
    ));
    lines.extend(describe_roles(pre, reset_roles));
    lines.push(
        "  databases (each restored under a temporary name and swapped in when complete):".into(),
    );
    for m in &run.databases {
        let db = &m.meta.database;
        let state = if continued.is_some_and(|j| j.databases.get(db).is_some_and(|s| s == "done")) {
            "done by this run already: skipped".to_owned()
        } else {
            match pre.existing.get(db) {
                Some(size) if *size >= 0 => format!(
                    "EXISTS ({}): DROPPED and replaced",
                    crate::ui::bytes(*size as u64)
                ),
                Some(_) => "EXISTS: DROPPED and replaced".to_owned(),
                None => "new".to_owned(),
            }
        };
        lines.push(format!("    {db}: {state} (from {})", m.source));
    }
    for db in left_out {
        lines.push(format!("  NOT in the run, not restored: {db}"));
    }
    lines
}

/// The plan's lines about the roles: how many, which existed before, and
/// every one on the target that differs from the backup.
fn describe_roles(pre: &Preflight, reset_roles: bool) -> Vec<String> {
    let roles = &pre.globals.roles;
    let before: Vec<&str> = roles
        .keys()
        .filter(|r| pre.pre_existing.contains(*r))
        .map(String::as_str)
        .collect();
    let treated = if reset_roles {
        "made as in the backup (--reset-roles)"
    } else {
        "left as they are"
    };
    let passwords = if pre.passwords {
        String::new()
    } else {
        let why = pre.note.as_deref().unwrap_or("the globals hold none");
        format!("; WITHOUT passwords ({why})")
    };
    let mut lines = vec![format!(
        "  roles: {} in the backup; {} existed before and are {treated} ({}); every other one \
         is created or made as in the backup{passwords}",
        roles.len(),
        before.len(),
        before.join(", ")
    )];
    for (role, d) in &pre.differ {
        let whose = if pre.pre_existing.contains(role) {
            if reset_roles {
                "existed before; will be made as in the backup"
            } else {
                "existed before; LEFT AS IT IS (--reset-roles changes it)"
            }
        } else {
            "made by an earlier attempt; will be made as in the backup"
        };
        if !d.differs.is_empty() {
            lines.push(format!(
                "    role {role} differs ({whose}): {}",
                d.differs.join("; ")
            ));
        }
    }
    lines
}
