//! The globals backup: `pg_dumpall --globals-only` (roles, memberships, role
//! settings, tablespaces), which no per-database dump holds. It is written,
//! checksummed, uploaded, pruned and encrypted (with recipients: `.dump.age`)
//! like a dump, through the same pipeline, as `<db>_globals_<ts>.dump` (plain
//! SQL, readable with `psql -f`) with its own meta.json (mode `globals`).
//!
//! Role passwords need read access to `pg_authid`, which managed services
//! (RDS, Cloud SQL, Azure) refuse even to their admin role: then the globals
//! are taken again with `--no-role-passwords` and meta.json says so.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use chrono::{SecondsFormat, Utc};

use super::backup::{
    commit, discard, pump_through, reserve_name, start_upload, upload_meta, BackupJob, Made,
};
use crate::cli::Mode;
use crate::meta::{Encryption, GlobalsInfo, Meta};
use crate::pg::{client, tools};
use crate::pipeline::Sink;
use crate::signals::Signals;
use crate::storage::{fsio, BackupName};
use crate::ui;

/// Takes the globals of `job`'s server. `databases`: those the run dumps
/// (recorded in meta.json), empty for a single-database `--globals`.
pub async fn backup(
    job: &BackupJob,
    signals: &mut Signals,
    databases: Vec<String>,
) -> Result<Made> {
    let started = Utc::now();
    let clock = Instant::now();
    fsio::ensure_dir(&job.output_dir)?;
    let client = signals.guard(client::connect(&job.conn)).await?;
    let server = client::server_version(&client).await?;
    drop(client);
    let tools = tools::find(job.pg_bin_dir.as_deref(), server.major(), &server.text)?;

    let (sql, info) = signals.guard(dump_globals(job, &tools, databases)).await?;
    if let Some(note) = &info.note {
        ui::warn(note);
    }

    let (name, mut sink) = reserve_name(
        &job.output_dir,
        BackupName::new(
            &job.conn.dbname,
            Mode::Globals,
            job.label.as_deref(),
            started,
        )
        .with_encryption(job.recipients.is_some()),
    )?;
    let dump_path = job.output_dir.join(name.dump_file());
    let meta_path = job.output_dir.join(name.meta_file());

    let mut upload_failure = None;
    let mut remote = None;
    if job.upload {
        match signals
            .guard(async { Ok(start_upload(job, &name, Some(sql.len() as u64)).await) })
            .await?
        {
            Ok(pair) => remote = Some(pair),
            Err(err) => upload_failure = Some(err),
        }
    }
    let (store, s3_sink) = match remote {
        Some((store, sink)) => (Some(store), Some(sink)),
        None => (None, None),
    };
    let upload = s3_sink.as_ref().map(|s| s.handle());
    let recipients = job.recipients.clone();
    let pumped = tokio::task::spawn_blocking(move || {
        let mut s3_sink = s3_sink;
        let mut progress = ui::Progress::new("writing globals");
        let result = {
            let mut sinks: Vec<&mut dyn Sink> = vec![&mut sink];
            if let Some(s3) = s3_sink.as_mut() {
                sinks.push(s3);
            }
            pump_through(sql.as_bytes(), sinks, recipients.as_ref(), &mut progress)
        };
        progress.finish();
        (result, sink, s3_sink)
    })
    .await
    .context("writing the globals stopped unexpectedly")?;
    let ((summary, stored), sink, s3_sink) = match pumped {
        (Ok(pumped), sink, s3) => (pumped, sink, s3),
        (Err(err), _, _) => {
            discard(&upload).await;
            return Err(err);
        }
    };
    let mut location = None;
    if let Some(s3_sink) = s3_sink {
        match s3_sink.complete(stored.0).await {
            Ok(loc) => location = Some(loc),
            Err(err) => upload_failure = Some(err),
        }
    }
    let meta = Meta {
        format_version: crate::meta::FORMAT_VERSION,
        database: job.conn.dbname.clone(),
        mode: Mode::Globals.as_str().to_owned(),
        label: job.label.clone(),
        file: name.dump_file(),
        size_bytes: stored.0,
        sha256: stored.1.clone(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_seconds: (clock.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        compression: "none".to_owned(),
        server_version: server.text.clone(),
        pg_dump_version: tools.version.clone(),
        alembic_revision: None,
        extensions: Default::default(),
        tables: Vec::new(),
        host: crate::settings::host_name(),
        pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
        // Recorded only once both objects are verified in the bucket (below).
        s3: None,
        verification: None,
        pinned: None,
        database_properties: None,
        roles: None,
        cluster_run: job.cluster_run.clone(),
        globals: Some(info),
        schema_objects: None,
        standby: false,
        unlogged_tables_skipped: Vec::new(),
        encryption: job.recipients.as_ref().map(|r| Encryption {
            format: "age".to_owned(),
            recipients: r.texts(),
            plaintext_sha256: summary.sha256.clone(),
            plaintext_size_bytes: summary.bytes,
        }),
    };
    if let Err(err) = commit(sink, &meta, &meta_path) {
        discard(&upload).await;
        return Err(err);
    }
    let mut meta = meta;
    if let (Some(store), Some(location)) = (&store, &location) {
        let key = store.key_for(&name.meta_file());
        let mut remote = meta.clone();
        remote.s3 = Some(location.clone());
        if let Err(err) = upload_meta(store, &key, &remote).await {
            discard(&upload).await;
            upload_failure = Some(err);
        } else {
            remote.write(&meta_path)?;
            meta = remote;
            ui::info(&format!(
                "uploaded {} and its meta.json",
                store.uri(&location.key)
            ));
            if let Some(lock) = &job.lock {
                if let Err(err) = store
                    .lock_backup(lock, &[&location.key, &key], Utc::now())
                    .await
                {
                    upload_failure = Some(err);
                }
            }
        }
    }
    if let Some(err) = upload_failure {
        return Err(crate::storage::s3::UploadFailed {
            message: format!(
                "the local globals backup {} is complete, but uploading it failed: {}",
                dump_path.display(),
                crate::error::one_line(&err)
            ),
            local_dump: None,
        }
        .into());
    }
    ui::info(&format!(
        "globals backup complete: {} ({}, role passwords {})",
        dump_path.display(),
        ui::bytes(meta.size_bytes),
        if meta.globals.as_ref().is_some_and(|g| g.role_passwords) {
            "included"
        } else {
            "not included"
        }
    ));
    Ok(Made {
        name,
        started: started.into(),
        dump: dump_path,
        meta_path,
        meta,
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

/// `verify --ephemeral`: replays the globals that belong with `located` (of the
/// same `--all-databases` run, else the newest globals backup beside it) into
/// the throwaway cluster, so the restore runs with owners and privileges and
/// grants and row-level-security policies `TO` a role are restored and
/// checked too. True when every role the backup needs is then there.
pub async fn into_ephemeral(
    client: &tokio_postgres::Client,
    located: &crate::archive::Located,
    meta: Option<&Meta>,
    identity_file: Option<&std::path::Path>,
) -> bool {
    let Some((meta, needed)) = meta.and_then(|m| m.roles.as_ref().map(|r| (m, r))) else {
        return false;
    };
    let Some((path, globals)) = beside(located, meta) else {
        ui::info("no globals backup beside this backup: restoring without owners and privileges");
        return false;
    };
    let sql = match crate::pipeline::hash_file(&path) {
        Ok((sha256, _)) if sha256 == globals.sha256 => {
            // An encrypted globals file is decrypted in memory.
            crate::encryption::decrypt::Source::open(&path, Some(&globals), identity_file, None)
                .and_then(|source| source.read_all())
                .and_then(|bytes| String::from_utf8(bytes).context("not UTF-8 text"))
                .map_err(|err| {
                    format!(
                        "{} cannot be read ({})",
                        path.display(),
                        crate::error::one_line(&err)
                    )
                })
        }
        _ => Err(format!("{} does not match its meta.json", path.display())),
    };
    let sql = match sql {
        Ok(sql) => sql,
        Err(why) => {
            ui::warn(&format!("{why}: restoring without owners and privileges"));
            return false;
        }
    };
    match crate::pg::globals::apply(client, &sql).await {
        Ok(applied) => {
            ui::info(&format!(
                "globals from {} restored into the throwaway cluster ({} role(s))",
                path.display(),
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

/// The globals backup for `meta`'s dump in its directory: same run, else the newest.
fn beside(located: &crate::archive::Located, meta: &Meta) -> Option<(std::path::PathBuf, Meta)> {
    let dir = located.dump.parent()?;
    let mut found: Vec<(std::path::PathBuf, Meta)> = crate::storage::local::LocalStore::new(dir)
        .list()
        .ok()?
        .into_iter()
        .filter(|b| b.is_complete() && b.name.mode == Mode::Globals)
        .filter_map(|b| Meta::read(&b.meta).ok().map(|m| (b.dump, m)))
        .collect();
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
