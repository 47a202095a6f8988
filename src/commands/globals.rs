//! The globals backup: `pg_dumpall --globals-only` (roles, memberships, role
//! settings, tablespaces), which no per-database dump holds. It is written,
//! checksummed, uploaded, pruned and encrypted (with recipients: `.dump.age`)
//! like a dump, through the same pipeline, as `<db>_globals_<ts>.dump` (plain
//! SQL, readable with `psql -f`) with its own meta.json (mode `globals`).
//!
//! Role passwords need read access to `pg_authid`, which managed services
//! (RDS, Cloud SQL, Azure) refuse even to their admin role: then the globals
//! are taken again with `--no-role-passwords` and meta.json says so.

use anyhow::{anyhow, Context, Result};

use super::backup::{Began, Dumped, Output};
use crate::meta::{GlobalsInfo, Meta};
use crate::mode::Mode;
use crate::pg::{client, tools};
use crate::pipeline::{self, Sinks};
use crate::settings::backup::BackupJob;
use crate::signals::Signals;
use crate::storage::{fsio, Stores};
use crate::ui;

/// Takes the globals of `job`'s server. `databases`: those the run dumps
/// (recorded in meta.json), empty for a single-database `--globals`.
/// An upload failure comes back beside the complete local backup, as a
/// dump's does ([`Dumped`]).
pub async fn backup(
    job: &BackupJob,
    stores: &Stores,
    signals: &mut Signals,
    databases: Vec<String>,
) -> Result<Dumped> {
    let began = Began::now();
    fsio::ensure_dir(&job.output_dir)?;
    let client = signals.guard(client::connect(&job.conn)).await?;
    let server = client::server_version(&client).await?;
    let identity = super::backup::server_identity(job, &client).await;
    drop(client);
    let tools = tools::find(job.pg_bin_dir.as_deref(), server.major(), &server.text)?;

    let (sql, info) = signals.guard(dump_globals(job, &tools, databases)).await?;
    if let Some(note) = &info.note {
        ui::warn(note);
    }

    let (mut output, file) =
        Output::reserve(job, stores, Mode::Globals, began, &identity, signals).await?;
    let s3 = output.start_upload(Some(sql.len() as u64), signals).await?;
    let extra = output.start_copies(Some(sql.len() as u64), signals).await?;
    let source = std::io::Cursor::new(sql.into_bytes());
    let pump = pipeline::spawn_pump(
        source,
        Sinks { file, s3, extra },
        job.recipients.clone(),
        "writing globals",
    );
    let (pumped, sinks) = match pump
        .await
        .context("writing the globals stopped unexpectedly")
    {
        Ok((Ok(pumped), sinks)) => (pumped, sinks),
        Ok((Err(err), _)) | Err(err) => return Err(output.fail(err).await),
    };
    let copied = output
        .complete_uploads(sinks.s3, sinks.extra, pumped.stored.0, signals)
        .await?;
    let meta = Meta {
        globals: Some(info),
        ..output.meta(job, &pumped, &server, &identity, &tools)
    };
    let (made, upload_failed) = output
        .commit(job, sinks.file, copied, meta, signals)
        .await?;
    ui::info(&format!(
        "globals backup complete: {} ({}, role passwords {})",
        made.dump.display(),
        ui::bytes(made.meta.size_bytes),
        if made.meta.globals.as_ref().is_some_and(|g| g.role_passwords) {
            "included"
        } else {
            "not included"
        }
    ));
    Ok(Dumped {
        made,
        upload_failed,
    })
}

/// Runs pg_dumpall; without the right to read pg_authid, again without passwords.
async fn dump_globals(
    job: &BackupJob,
    tools: &tools::PgTools,
    databases: Vec<String>,
) -> Result<(String, GlobalsInfo)> {
    let run = |no_passwords: bool| {
        let mut cmd = tools.command("pg_dumpall", &job.conn);
        cmd.arg("--globals-only")
            .arg("--no-password")
            .arg(format!("--database={}", job.conn.dbname));
        if no_passwords {
            cmd.arg("--no-role-passwords");
        }
        ui::debug(&format!("running {}", tools::describe(&cmd)));
        tools::run(cmd, "pg_dumpall --globals-only")
    };
    let mut info = GlobalsInfo {
        role_passwords: !job.no_role_passwords,
        note: job
            .no_role_passwords
            .then(|| "role passwords left out (--no-role-passwords)".to_owned()),
        databases,
    };
    let mut out = run(job.no_role_passwords).await?;
    if !out.success() && !job.no_role_passwords && out.stderr.contains("pg_authid") {
        info.role_passwords = false;
        info.note = Some(format!(
            "this user may not read pg_authid (a managed service, or no superuser): the globals \
             were taken without role passwords; set them again after a restore ({})",
            crate::pg::restore::one_line(&out.stderr)
        ));
        out = run(true).await?;
    }
    if !out.success() {
        return Err(out.failure("pg_dumpall --globals-only").into());
    }
    if !out.stdout.contains("PostgreSQL database cluster dump") {
        return Err(anyhow!(
            "pg_dumpall's output does not look like a globals dump"
        ));
    }
    Ok((out.stdout, info))
}

/// `verify --ephemeral`: replays the globals that belong with `located` (of
/// the same server: the same `--all-databases` run, else its newest globals
/// backup beside it, in its directory or under its S3 prefix) into the
/// throwaway cluster, so the restore runs with owners and privileges and
/// grants and row-level-security policies `TO` a role are restored and
/// checked too. The globals are held to the same trust as the backup. True
/// when every role the backup needs is then there.
pub async fn into_ephemeral(
    client: &tokio_postgres::Client,
    conn: &crate::pg::url::ConnSettings,
    located: &crate::archive::Located,
    meta: Option<&Meta>,
    decrypt: &crate::archive::Decrypt,
    encrypted: bool,
    signals: &mut Signals,
) -> bool {
    let Some((meta, needed)) = meta.and_then(|m| m.roles.as_ref().map(|r| (m, r))) else {
        return false;
    };
    let found = match &located.origin {
        Some(origin) => beside(&origin.store, meta).await,
        None => None,
    };
    let Some((path, globals, _download)) = found else {
        ui::info("no globals backup beside this backup: restoring without owners and privileges");
        return false;
    };
    // Held to the same trust as the backup: encrypted when it is, signed when
    // signatures are required.
    let decrypt = crate::archive::Decrypt {
        scratch_dir: None,
        run_encrypted: decrypt.run_encrypted || encrypted,
        ..decrypt.clone()
    };
    let parsed = read_trusted(&path, &decrypt).and_then(|sql| {
        crate::pg::globals::parse::Globals::parse(&sql).map_err(|refused| {
            format!(
                "it holds what pg_dumpall --globals-only never writes ({}), so none of it runs",
                refused
                    .iter()
                    .map(|(n, r)| format!("statement {n}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
    });
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(why) => {
            ui::warn(&format!(
                "{} cannot be used ({why}): restoring without owners and privileges",
                globals.file
            ));
            return false;
        }
    };
    let Ok(present) = client::role_names(client).await else {
        return false;
    };
    let replay = crate::pg::globals::Replay {
        globals: &parsed,
        pre_existing: &present,
        reset: false,
        lock_wait_timeout: std::time::Duration::from_secs(60),
    };
    match crate::pg::globals::apply(client, conn, &replay, signals).await {
        Ok(applied) => {
            ui::info(&format!(
                "globals {} restored into the throwaway cluster ({} role(s))",
                globals.file,
                applied.created_roles.len()
            ));
            for failure in &applied.failed {
                ui::warn(&format!("globals: not restored: {failure}"));
            }
        }
        Err(err) => {
            ui::warn(&crate::error::one_line(&err));
            return false;
        }
    }
    match client::role_names(client).await {
        Ok(roles) => super::restore::missing_roles(needed, &roles).is_empty(),
        Err(_) => false,
    }
}

/// A globals backup's SQL, once it is shown to be authentic
/// ([`crate::archive::Backup::authentic`]) and to match its meta.json
/// (decrypted in memory when encrypted); why not, in words.
fn read_trusted(
    path: &std::path::Path,
    decrypt: &crate::archive::Decrypt,
) -> Result<String, String> {
    let words = |err: anyhow::Error| crate::error::one_line(&err);
    let backup = crate::archive::Backup::open(crate::archive::Located::local(path), decrypt)
        .map_err(words)?;
    backup.authentic(decrypt).map_err(|u| u.to_string())?;
    let meta = backup
        .meta()
        .ok_or("its meta.json is missing or unreadable")?;
    match crate::pipeline::hash_file(path) {
        Ok((sha256, _)) if sha256 == meta.sha256 => {}
        _ => return Err("it does not match its meta.json".to_owned()),
    }
    let bytes = backup.source.read_all().map_err(words)?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// A globals backup found for a dump: its local file (with its meta.json
/// beside it, as stored), its meta.json, and the temporary directory of a
/// download (removed when dropped).
type Found = (std::path::PathBuf, Meta, Option<tempfile::TempDir>);

/// Of the globals backups beside a dump, those of its server (a shared
/// place holds other servers' globals too; backups that record no server
/// go with each other): the one of its run, else the newest.
fn pick<T>(mut found: Vec<(T, Meta)>, meta: &Meta) -> Option<(T, Meta)> {
    found.retain(|(_, m)| m.server == meta.server);
    if let Some(run) = &meta.cluster_run {
        if let Some(i) = found
            .iter()
            .position(|(_, m)| m.cluster_run.as_ref() == Some(run))
        {
            return Some(found.swap_remove(i));
        }
    }
    found.pop()
}

/// The globals backup for `meta`'s dump in `store` (its directory or its
/// S3 prefix): read in place, or downloaded with its meta.json (checked
/// against it) into a private download directory (`crate::archive::fetch_dir`).
async fn beside(store: &crate::storage::Store, meta: &Meta) -> Option<Found> {
    let mut found = Vec::new();
    for b in store.list_backups().await.ok()? {
        if b.has_dump && b.has_meta && b.name.mode == Mode::Globals {
            if let Ok(Some(m)) = store.load_meta(&b.name).await {
                found.push((b.name.dump_file(), m));
            }
        }
    }
    let (file, m) = pick(found, meta)?;
    let no_check = |_: Option<&Meta>| Ok(());
    match store
        .fetch(&file, crate::archive::fetch_dir::create, &no_check)
        .await
    {
        Ok(fetched) => Some((fetched.dump, m, fetched.temp)),
        Err(err) => {
            ui::warn(&format!(
                "downloading the globals {}: {}",
                store.address(&file),
                crate::error::one_line(&err)
            ));
            None
        }
    }
}
