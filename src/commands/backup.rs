//! `pgbak backup`: dump one database into `<name>.dump` + `<name>.meta.json`.
//!
//! The steps, in order:
//! 1. connect, read the server version, pick a pg_dump at least that new;
//! 2. open a REPEATABLE READ transaction and export its snapshot;
//! 3. run `pg_dump --snapshot` and stream its output through the hash stage
//!    into `<name>.dump.partial` (and S3, when configured), while the same
//!    transaction counts every table's rows: dump and counts share one instant;
//! 4. check pg_dump's exit status and the archive magic, fsync, write
//!    meta.json's partial, then rename the dump and the meta into place;
//! 5. retention, only after all of that succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{SecondsFormat, Utc};
use tokio_postgres::Client;

use crate::cli::{BackupArgs, GlobalArgs, Mode, S3Args};
use crate::error::{interrupted, usage};
use crate::meta::{Meta, TableRows};
use crate::pg::client;
use crate::pg::tools::{self, PgTools};
use crate::pg::url::ConnSettings;
use crate::pipeline::{self, FileSink, Sink};
use crate::retention::{self, Candidate, Verdict};
use crate::signals::Signals;
use crate::storage::local::LocalStore;
use crate::storage::{fsio, validate_label, BackupName};
use crate::ui;

/// Everything one backup needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub conn: ConnSettings,
    pub output_dir: PathBuf,
    pub mode: Mode,
    pub label: Option<String>,
    pub keep: u32,
    pub compress: Option<String>,
    pub pg_bin_dir: Option<PathBuf>,
    /// S3 settings; uploading happens when a bucket is set and `upload` is true.
    pub s3: S3Args,
    pub upload: bool,
}

impl BackupJob {
    pub fn new(global: &GlobalArgs, args: &BackupArgs) -> Result<BackupJob> {
        if let Some(label) = &args.label {
            validate_label(label).map_err(usage)?;
        }
        Ok(BackupJob {
            conn: crate::settings::connection()?,
            output_dir: args.output_dir.clone(),
            mode: args.mode,
            label: args.label.clone(),
            keep: args.keep,
            compress: args.compress.clone(),
            pg_bin_dir: global.pg_bin_dir.clone(),
            s3: args.s3.clone(),
            upload: !args.no_s3 && args.s3.bucket.is_some(),
        })
    }
}

/// A backup that was written completely.
#[derive(Debug, Clone)]
pub struct Made {
    pub name: BackupName,
    /// When the run started (leftovers older than this may be cleaned up).
    pub started: std::time::SystemTime,
    pub dump: PathBuf,
    pub meta_path: PathBuf,
    pub meta: Meta,
}

pub async fn run(global: &GlobalArgs, args: BackupArgs) -> Result<ExitCode> {
    let job = BackupJob::new(global, &args)?;
    let mut signals = Signals::new()?;
    let made = dump(&job, &mut signals).await?;
    let deleted = apply_retention(&job, &made)?;
    if args.json {
        let summary = serde_json::json!({
            "dump": made.dump,
            "meta_path": made.meta_path,
            "meta": made.meta,
            "deleted": deleted,
        });
        ui::stdout_line(&serde_json::to_string_pretty(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Steps 1-4: the backup itself. On any failure or signal nothing is left
/// behind: no `.dump`, no `.meta.json`, no `.partial`.
pub async fn dump(job: &BackupJob, signals: &mut Signals) -> Result<Made> {
    let started = Utc::now();
    let clock = Instant::now();
    fsio::ensure_dir(&job.output_dir)?;

    let client = signals.guard(client::connect(&job.conn)).await?;
    let server = client::server_version(&client).await?;
    let tools = tools::find(job.pg_bin_dir.as_deref(), server.major(), &server.text)?;
    let compression = match &job.compress {
        Some(spec) => tools::pg_dump_compress_arg(tools.major, spec),
        None => tools::default_compression(&tools).await,
    };

    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .context("opening the snapshot transaction")?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .context("exporting the snapshot")?
        .get(0);

    let (name, sink) = reserve_name(job, started)?;
    let dump_path = job.output_dir.join(name.dump_file());
    let meta_path = job.output_dir.join(name.meta_file());
    ui::info(&format!(
        "backing up database {:?} at {} ({} mode, compression {compression}, pg_dump {}) to {}",
        job.conn.dbname,
        job.conn.endpoint(),
        job.mode.as_str(),
        tools.version,
        dump_path.display()
    ));

    let streamed = stream_dump(job, &tools, &compression, &snapshot, client, sink, signals).await?;
    let Streamed {
        summary,
        sink,
        catalog,
    } = streamed;

    let finished = Utc::now();
    let meta = Meta {
        format_version: crate::meta::FORMAT_VERSION,
        database: job.conn.dbname.clone(),
        mode: job.mode.as_str().to_owned(),
        label: job.label.clone(),
        file: name.dump_file(),
        size_bytes: summary.bytes,
        sha256: summary.sha256.clone(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        finished_at: finished.to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_seconds: (clock.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        compression,
        server_version: server.text.clone(),
        pg_dump_version: tools.version.clone(),
        alembic_revision: catalog.alembic_revision,
        extensions: catalog.extensions,
        tables: catalog.tables,
        host: crate::settings::host_name(),
        pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
        s3: None,
        verification: None,
    };
    commit(sink, &meta, &meta_path)?;
    ui::info(&format!(
        "backup complete: {} ({}, sha256 {}, {:.1}s)",
        dump_path.display(),
        ui::bytes(meta.size_bytes),
        &meta.sha256[..16],
        meta.duration_seconds
    ));
    Ok(Made {
        name,
        started: started.into(),
        dump: dump_path,
        meta_path,
        meta,
    })
}

/// Picks the file name and claims it by creating its `.partial` exclusively.
/// Two backups of one group within a second (or at once): the later one moves
/// to the next free second, so nothing is ever overwritten.
fn reserve_name(job: &BackupJob, at: chrono::DateTime<Utc>) -> Result<(BackupName, FileSink)> {
    let mut name = BackupName::new(&job.conn.dbname, job.mode, job.label.as_deref(), at);
    for _ in 0..600 {
        let dump_path = job.output_dir.join(name.dump_file());
        let meta_path = job.output_dir.join(name.meta_file());
        if !meta_path.exists() {
            match FileSink::create(&dump_path) {
                Ok(sink) => return Ok((name, sink)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating {}.partial", dump_path.display()))
                }
            }
        }
        name = name.next_second();
    }
    bail!(
        "no free backup file name in {} (600 seconds taken)",
        job.output_dir.display()
    )
}

/// What the snapshot transaction read while pg_dump ran.
struct Catalog {
    extensions: BTreeMap<String, String>,
    tables: Vec<TableRows>,
    alembic_revision: Option<String>,
}

async fn read_catalog(client: &Client, mode: Mode) -> Result<Catalog> {
    let extensions = client::extensions(client).await?;
    let alembic_revision = client::alembic_revision(client).await?;
    let names = client::user_tables(client).await?;
    let tables = if mode == Mode::Schema {
        names
            .into_iter()
            .map(|(schema, name)| TableRows {
                schema,
                name,
                rows: None,
            })
            .collect()
    } else {
        client::row_counts(client, &names).await?
    };
    Ok(Catalog {
        extensions,
        tables,
        alembic_revision,
    })
}

struct Streamed {
    summary: pipeline::Summary,
    sink: FileSink,
    catalog: Catalog,
}

/// Step 3: pg_dump into the pump, the catalog read alongside. Any failure or
/// signal kills pg_dump and drops the sink (which removes the partial file)
/// before returning.
async fn stream_dump(
    job: &BackupJob,
    tools: &PgTools,
    compression: &str,
    snapshot: &str,
    client: Client,
    sink: FileSink,
    signals: &mut Signals,
) -> Result<Streamed> {
    let mut cmd = tools.command("pg_dump", &job.conn);
    cmd.arg("--format=custom")
        .arg(format!("--compress={compression}"))
        .arg(format!("--snapshot={snapshot}"))
        .arg("--no-password");
    match job.mode {
        Mode::Full => {}
        Mode::Schema => {
            cmd.arg("--schema-only");
        }
        Mode::Data => {
            cmd.arg("--data-only");
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ui::debug(&format!("running {}", tools::describe(&cmd)));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", tools.tool("pg_dump").display()))?;
    let stdout = child.stdout.take().context("pg_dump has no stdout")?;
    let stderr = tools::collect_stderr(child.stderr.take().context("pg_dump has no stderr")?);
    let source =
        pipeline::blocking_pipe(stdout.into_owned_fd().context("taking pg_dump's stdout")?)?;

    let mut pump = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let mut progress = ui::Progress::new("dumping");
        let result = pipeline::pump(source, &mut [&mut sink as &mut dyn Sink], &mut progress)
            .and_then(|summary| sink.finish().map(|()| summary));
        progress.finish();
        (result, sink)
    });
    let mode = job.mode;
    let mut catalog = tokio::spawn(async move {
        let catalog = read_catalog(&client, mode).await;
        // Keep the transaction (and so the snapshot) open until pg_dump is done.
        (catalog, client)
    });

    // The pump ends when pg_dump closes its output (done or dead) or a write fails.
    let pumped = tokio::select! {
        joined = &mut pump => joined,
        sig = signals.recv() => {
            tools::terminate(&mut child).await;
            let _ = pump.await;
            catalog.abort();
            return Err(interrupted(sig));
        }
    };
    let (pumped, sink) = pumped.context("the dump stream stopped unexpectedly")?;
    let summary = match pumped {
        Ok(summary) => summary,
        Err(err) => {
            // A write failed (disk full): pg_dump would block on a full pipe.
            tools::terminate(&mut child).await;
            catalog.abort();
            drop(sink);
            return Err(err);
        }
    };
    let status = tokio::select! {
        status = child.wait() => status.context("waiting for pg_dump")?,
        sig = signals.recv() => {
            tools::terminate(&mut child).await;
            catalog.abort();
            return Err(interrupted(sig));
        }
    };
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        catalog.abort();
        return Err(anyhow!(
            "pg_dump failed ({}): {}",
            status,
            if stderr.is_empty() {
                "no error output"
            } else {
                &stderr
            }
        ));
    }
    if !stderr.is_empty() {
        ui::warn(&format!("pg_dump: {stderr}"));
    }
    if !summary.head.starts_with(b"PGDMP") {
        bail!("pg_dump's output does not start with PGDMP: not a custom-format archive");
    }
    let (catalog, client) = tokio::select! {
        joined = &mut catalog => joined.context("reading the catalog stopped unexpectedly")?,
        sig = signals.recv() => {
            catalog.abort();
            return Err(interrupted(sig));
        }
    };
    let catalog = catalog?;
    drop(client);
    Ok(Streamed {
        summary,
        sink,
        catalog,
    })
}

/// Step 4: meta.json's partial first (a full disk fails here, before any
/// rename), then the dump and the meta renamed into place.
fn commit(sink: FileSink, meta: &Meta, meta_path: &Path) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(meta).context("encoding meta.json")?;
    json.push(b'\n');
    // The same locked-partial path as the dump, so no concurrent cleanup takes it;
    // dropped on error, it removes itself.
    let mut meta_sink = FileSink::create(meta_path)
        .with_context(|| format!("creating {}", fsio::partial_path(meta_path).display()))?;
    meta_sink.write(&json)?;
    meta_sink.finish()?;
    sink.commit()?;
    meta_sink.commit()
}

/// Step 5: local retention for the group of the backup just made, and the
/// `.partial` leftovers of runs that died. Returns the files deleted.
pub fn apply_retention(job: &BackupJob, made: &Made) -> Result<Vec<String>> {
    let store = LocalStore::new(&job.output_dir);
    let mut deleted = Vec::new();
    for partial in store.stale_partials(&made.name.group(), made.started)? {
        ui::info(&format!(
            "removing {}, left by a run that did not finish",
            partial.display()
        ));
        std::fs::remove_file(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
        deleted.push(partial.display().to_string());
    }
    let backups = store.list()?;
    let candidates: Vec<Candidate> = backups
        .iter()
        .map(|b| Candidate {
            name: b.name.clone(),
            has_dump: b.has_dump,
            has_meta: b.has_meta,
        })
        .collect();
    for (name, verdict) in retention::plan(&candidates, &made.name, job.keep) {
        if let Verdict::Delete(why) = verdict {
            if let Some(backup) = backups.iter().find(|b| b.name == name) {
                ui::info(&format!("retention: deleting {} ({why})", name.stem()));
                store.remove(backup)?;
                deleted.push(backup.dump.display().to_string());
            }
        }
    }
    Ok(deleted)
}
