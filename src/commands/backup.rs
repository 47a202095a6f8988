//! `pgbak backup`: dump one database into `<name>.dump` + `<name>.meta.json`.
//!
//! The steps, in order:
//! 1. connect, read the server version, pick a pg_dump at least that new;
//! 2. open a REPEATABLE READ transaction and export its snapshot;
//! 3. run `pg_dump --snapshot` and stream its output through the hash stage
//!    (and, with recipients, the age encryption stage: the file is then
//!    `<name>.dump.age` and no plaintext byte reaches disk or S3) into
//!    `<name>.dump.partial` (and S3, when configured), while the same
//!    transaction counts every table's rows: dump and counts share one instant;
//! 4. check pg_dump's exit status and the archive magic, fsync, write
//!    meta.json's partial, then rename the dump and the meta into place;
//!    With S3 configured, the same bytes go up as a multipart upload while
//!    pg_dump runs; it is completed and checked only after pg_dump succeeded,
//!    then meta.json goes up beside it. An upload failure leaves the local
//!    backup complete (meta.json `s3: null`) and fails the run;
//! 5. retention, only after all of that succeeded (on S3 too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{SecondsFormat, Utc};
use tokio_postgres::Client;

use crate::cli::{BackupArgs, GlobalArgs, Mode, ObjectLockArgs, S3Args};
use crate::encryption::Recipients;
use crate::error::{interrupted, usage};
use crate::meta::{DatabaseProperties, Encryption, Meta, TableRows};
use crate::pg::catalog;
use crate::pg::client::{self, ServerVersion};
use crate::pg::replay::{self, ReplayPause};
use crate::pg::tools::{self, PgTools};
use crate::pg::url::ConnSettings;
use crate::pipeline::{self, FileSink, Sink};
use crate::retention::apply::{self, Marks, Scope};
use crate::retention::Policy;
use crate::signals::Signals;
use crate::storage::local::LocalStore;
use crate::storage::object_lock::LockPolicy;
use crate::storage::s3::{self, S3Settings, S3Sink, Store, UploadFailed, UploadHandle};
use crate::storage::{fsio, validate_label, BackupName};
use crate::ui;

/// Everything one backup needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub conn: ConnSettings,
    pub output_dir: PathBuf,
    pub mode: Mode,
    pub label: Option<String>,
    pub policy: Policy,
    pub compress: Option<String>,
    pub pg_bin_dir: Option<PathBuf>,
    /// S3 settings; uploading happens when a bucket is set and `upload` is true.
    pub s3: S3Args,
    pub upload: bool,
    /// Longest wait for a table lock (pg_dump and pgbak's catalog reads).
    pub lock_wait_timeout: std::time::Duration,
    /// On a standby, pause WAL replay while dumping.
    pub pause_replay: bool,
    /// S3 Object Lock to set on what is uploaded.
    pub lock: Option<LockPolicy>,
    /// The anomaly threshold in percent; None when the check is off.
    pub anomaly: Option<u32>,
    /// The `--all-databases` run this backup belongs to (recorded in meta.json).
    pub cluster_run: Option<String>,
    /// Leave role passwords out of a globals backup.
    pub no_role_passwords: bool,
    /// Encrypt to these (age); None writes a plaintext `.dump`.
    pub recipients: Option<Recipients>,
}

impl BackupJob {
    pub fn new(global: &GlobalArgs, args: &BackupArgs) -> Result<BackupJob> {
        if let Some(label) = &args.label {
            validate_label(label).map_err(usage)?;
        }
        let upload = !args.no_s3 && args.s3.bucket.as_deref().is_some_and(|b| !b.is_empty());
        if upload {
            // Bad S3 settings are a usage error before anything is dumped.
            S3Settings::from_args(&args.s3, None)?;
        }
        let recipients = Recipients::resolve(
            &args.encrypt.recipients,
            args.encrypt.recipients_file.as_deref(),
        )?;
        let lock = object_lock_for(&args.s3, args.no_s3, &args.object_lock)?;
        Ok(BackupJob {
            lock,
            anomaly: crate::anomaly::threshold(&args.anomaly)?,
            conn: crate::settings::connection()?,
            output_dir: args.output_dir.clone(),
            mode: args.mode,
            label: args.label.clone(),
            policy: Policy::from_args(&args.retention)?,
            compress: args.compress.clone(),
            pg_bin_dir: global.pg_bin_dir.clone(),
            s3: args.s3.clone(),
            upload,
            lock_wait_timeout: global.lock_wait_timeout,
            pause_replay: args.pause_replay,
            recipients,
            cluster_run: None,
            no_role_passwords: args.no_role_passwords
                || crate::settings::env_flag("PGBAK_NO_ROLE_PASSWORDS"),
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
    if args.all_databases || crate::settings::env_flag("PGBAK_ALL_DATABASES") {
        return super::cluster::backup_all(global, args).await;
    }
    let job = BackupJob::new(global, &args)?;
    if job.upload {
        if let Some(warning) = s3::keep_warning(job.policy.last, &job.s3.storage_class) {
            ui::warn(&warning);
        }
    }
    check_object_lock(&job).await?;
    let mut signals = Signals::new()?;
    let made = match dump(&job, &mut signals).await {
        Ok(made) => made,
        Err(err) => {
            // The upload failed but the local backup is complete: local
            // retention still runs; the upload failure is still the outcome.
            if let Some(made) = complete_despite_upload(&err) {
                apply_retention(&job, &made).await?;
            }
            return Err(err);
        }
    };
    let anomaly = crate::anomaly::check_and_pin(&job, &made, job.anomaly).await?;
    let mut deleted = apply_retention(&job, &made).await?;
    let mut globals = None;
    if args.globals {
        let made = super::globals::backup(&job, &mut signals, Vec::new()).await?;
        deleted.extend(apply_retention(&job, &made).await?);
        globals = Some(made);
    }
    if args.json {
        let summary = serde_json::json!({
            "dump": made.dump,
            "meta_path": made.meta_path,
            "meta": made.meta,
            "globals": globals.map(|g| serde_json::json!({
                "dump": g.dump, "meta_path": g.meta_path, "meta": g.meta,
            })),
            "deleted": deleted,
            "anomaly": anomaly.map(|a| a.summary()),
        });
        ui::stdout_line(&serde_json::to_string_pretty(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The Object Lock settings of a run; asking for a lock without a bucket is
/// a usage error (with `--no-s3` the lock is moot and ignored).
pub fn object_lock_for(
    s3: &S3Args,
    no_s3: bool,
    args: &ObjectLockArgs,
) -> Result<Option<LockPolicy>> {
    let lock = LockPolicy::from_args(args)?;
    if no_s3 {
        return Ok(None);
    }
    if lock.is_some() && s3.bucket.as_deref().is_none_or(str::is_empty) {
        return Err(usage(
            "--s3-object-lock-days needs an S3 bucket (S3_BUCKET or --s3-bucket)",
        ));
    }
    Ok(lock)
}

/// Before anything is dumped: a lock asked for on a bucket without Object
/// Lock is an exit-2 error, not a backup that silently stays deletable.
pub async fn check_object_lock(job: &BackupJob) -> Result<()> {
    if job.lock.is_some() {
        s3::connect(S3Settings::from_args(&job.s3, None)?)
            .await?
            .require_object_lock()
            .await?;
    }
    Ok(())
}

/// Steps 1-4: the backup itself. On any failure or signal nothing is left
/// behind: no `.dump`, no `.meta.json`, no `.partial`.
/// On a standby with `--pause-replay`, WAL replay is paused around it and
/// resumed on every way out.
pub async fn dump(job: &BackupJob, signals: &mut Signals) -> Result<Made> {
    match dump_local_first(job, signals).await? {
        (_, Some(upload_failed)) => Err(upload_failed),
        (made, None) => Ok(made),
    }
}

/// [`dump`], but an upload failure after the local backup completed comes
/// back beside it (an [`UploadFailed`] error) instead of in place of it, so
/// `pgbak cron` can still verify and prune the complete local backup.
pub async fn dump_local_first(
    job: &BackupJob,
    signals: &mut Signals,
) -> Result<(Made, Option<anyhow::Error>)> {
    let started = Utc::now();
    let clock = Instant::now();
    fsio::ensure_dir(&job.output_dir)?;

    let client = signals.guard(client::connect(&job.conn)).await?;
    client::set_lock_timeout(&client, job.lock_wait_timeout).await?;
    let standby = client::in_recovery(&client).await?;
    let pause = match (standby, job.pause_replay) {
        (true, true) => Some(
            signals
                .guard(ReplayPause::begin(&job.output_dir, &job.conn))
                .await?,
        ),
        (true, false) => {
            replay::resume_leftovers(&job.output_dir, &client).await;
            None
        }
        (false, true) => {
            ui::info("--pause-replay: the server is not a standby; nothing to pause");
            None
        }
        (false, false) => None,
    };
    let made = dump_from(job, signals, client, standby, started, clock).await;
    if let Some(pause) = pause {
        pause.end().await;
    }
    made
}

/// [`dump`] once connected.
async fn dump_from(
    job: &BackupJob,
    signals: &mut Signals,
    client: Client,
    standby: bool,
    started: chrono::DateTime<Utc>,
    clock: Instant,
) -> Result<(Made, Option<anyhow::Error>)> {
    let server = client::server_version(&client).await?;
    let tools = tools::find(job.pg_bin_dir.as_deref(), server.major(), &server.text)?;
    let compression = match &job.compress {
        Some(spec) => tools::pg_dump_compress_arg(tools.major, spec),
        None => tools::default_compression(&tools).await,
    };
    // Sizes the upload's parts so even a multi-terabyte dump fits the part limit.
    let estimate = if job.upload {
        client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .ok()
            .map(|row| row.get::<_, i64>(0).max(0) as u64)
    } else {
        None
    };

    let (name, sink) = reserve_name(
        &job.output_dir,
        BackupName::new(&job.conn.dbname, job.mode, job.label.as_deref(), started)
            .with_encryption(job.recipients.is_some()),
    )?;
    let dump_path = job.output_dir.join(name.dump_file());
    let meta_path = job.output_dir.join(name.meta_file());
    ui::info(&format!(
        "backing up database {:?} at {} ({} mode, compression {compression}, pg_dump {}{}) to {}",
        job.conn.dbname,
        job.conn.endpoint(),
        job.mode.as_str(),
        tools.version,
        job.recipients
            .as_ref()
            .map_or_else(String::new, |r| format!(
                ", age-encrypted to {} recipient(s)",
                r.texts().len()
            )),
        dump_path.display()
    ));

    // S3 problems never stop the local backup: they are kept in `upload_failure`
    // and fail the run once the local backup is complete.
    let mut upload_failure: Option<anyhow::Error> = None;
    let mut store: Option<Store> = None;
    let mut s3_sink: Option<S3Sink> = None;
    if job.upload {
        let started = signals
            .guard(async { Ok(start_upload(job, &name, estimate).await) })
            .await?;
        match started {
            Ok((st, sk)) => {
                store = Some(st);
                s3_sink = Some(sk);
            }
            Err(err) => {
                ui::warn(&format!(
                    "cannot upload to S3; the local backup continues: {}",
                    crate::error::one_line(&err)
                ));
                upload_failure = Some(err);
            }
        }
    }
    let upload = s3_sink.as_ref().map(S3Sink::handle);

    // The snapshot is exported only now, after S3 was contacted, so it never
    // idles while a slow or unreachable store is tried.
    let snapshot = match export_snapshot(&client, job.mode, signals).await {
        Ok((id, sequences)) => Snapshot {
            id,
            standby,
            sequences,
        },
        Err(err) => {
            discard(&upload).await;
            return Err(err);
        }
    };

    let streamed = match stream_dump(
        job,
        &server,
        &tools,
        &compression,
        &snapshot,
        client,
        sink,
        s3_sink,
        signals,
    )
    .await
    {
        Ok(streamed) => streamed,
        Err(err) => {
            discard(&upload).await;
            return Err(err);
        }
    };
    let Streamed {
        summary,
        stored,
        sink,
        s3: s3_sink,
        catalog,
    } = streamed;

    let mut location = None;
    if let Some(s3_sink) = s3_sink {
        match signals
            .guard(async { Ok(s3_sink.complete(stored.0).await) })
            .await
        {
            Ok(Ok(loc)) => location = Some(loc),
            Ok(Err(err)) => upload_failure = Some(err),
            Err(interrupted) => {
                discard(&upload).await;
                return Err(interrupted);
            }
        }
    }

    let finished = Utc::now();
    let meta = Meta {
        format_version: crate::meta::FORMAT_VERSION,
        database: job.conn.dbname.clone(),
        mode: job.mode.as_str().to_owned(),
        label: job.label.clone(),
        file: name.dump_file(),
        size_bytes: stored.0,
        sha256: stored.1.clone(),
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
        // Recorded only once both objects are verified in the bucket (below).
        s3: None,
        verification: None,
        standby,
        unlogged_tables_skipped: catalog.unlogged_skipped,
        pinned: None,
        database_properties: Some(catalog.properties),
        roles: Some(catalog.roles),
        cluster_run: job.cluster_run.clone(),
        globals: None,
        encryption: job.recipients.as_ref().map(|r| Encryption {
            format: "age".to_owned(),
            recipients: r.texts(),
            plaintext_sha256: summary.sha256.clone(),
            plaintext_size_bytes: summary.bytes,
        }),
        schema_objects: catalog.schema_objects,
    };
    if let Err(err) = commit(sink, &meta, &meta_path) {
        discard(&upload).await;
        return Err(err);
    }
    let mut meta = meta;
    if let (Some(store), Some(location)) = (&store, &location) {
        // meta.json goes up beside the dump with the S3 location in it; the local one
        // gets the same contents once the bucket is shown to hold both objects.
        let key = store.key_for(&name.meta_file());
        let mut remote = meta.clone();
        remote.s3 = Some(location.clone());
        let put = signals
            .guard(async { Ok(upload_meta(store, &key, &remote).await) })
            .await;
        let failed = match put {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(Ok(err)),
            Err(interrupted) => Some(Err(interrupted)),
        };
        if let Some(err) = failed {
            // A dump object without its meta.json is incomplete: remove it, and
            // say so in the local meta.json.
            discard(&upload).await;
            match err {
                Ok(err) => upload_failure = Some(err),
                Err(interrupted) => return Err(interrupted),
            }
        } else {
            remote.write(&meta_path)?;
            meta = remote;
            ui::info(&format!(
                "uploaded {} and its meta.json ({})",
                store.uri(&location.key),
                location.storage_class
            ));
            if let Some(lock) = &job.lock {
                // Both objects exist now: lock them together. A failure leaves
                // them uploaded (and deletable) and fails the run.
                let locked = signals
                    .guard(async {
                        Ok(store
                            .lock_backup(lock, &[&location.key, &key], finished)
                            .await)
                    })
                    .await?;
                if let Err(err) = locked {
                    upload_failure = Some(err);
                }
            }
        }
    }
    let upload_failure = upload_failure.map(|err| {
        let target = format!(
            "s3://{}/{}{}",
            job.s3.bucket.as_deref().unwrap_or_default(),
            s3::normalize_prefix(job.s3.prefix.as_deref().unwrap_or_default()),
            name.dump_file()
        );
        anyhow::Error::new(UploadFailed {
            message: format!(
                "the local backup {} is complete, but uploading it to {target} failed: {}",
                dump_path.display(),
                crate::error::one_line(&err)
            ),
            local_dump: Some(dump_path.clone()),
        })
    });
    ui::info(&format!(
        "backup complete: {} ({}, sha256 {}, {:.1}s)",
        dump_path.display(),
        ui::bytes(meta.size_bytes),
        &meta.sha256[..16],
        meta.duration_seconds
    ));
    let made = Made {
        name,
        started: started.into(),
        dump: dump_path,
        meta_path,
        meta,
    };
    Ok((made, upload_failure))
}

/// The complete local backup of a run whose upload failed, read back from its
/// meta.json; None for every other error.
pub fn complete_despite_upload(err: &anyhow::Error) -> Option<Made> {
    let failed = err.chain().find_map(|c| c.downcast_ref::<UploadFailed>())?;
    let dump = failed.local_dump.clone()?;
    let name = BackupName::parse(&dump.file_name()?.to_string_lossy())?;
    let meta_path = dump.with_file_name(name.meta_file());
    let meta = Meta::read(&meta_path).ok()?;
    let started = chrono::DateTime::parse_from_rfc3339(&meta.started_at).ok()?;
    Some(Made {
        name,
        started: started.with_timezone(&Utc).into(),
        dump,
        meta_path,
        meta,
    })
}

/// Picks the file name and claims it by creating its `.partial` exclusively.
/// Two backups of one group within a second (or at once): the later one moves
/// to the next free second, so nothing is ever overwritten.
pub(crate) fn reserve_name(
    output_dir: &Path,
    mut name: BackupName,
) -> Result<(BackupName, FileSink)> {
    // Names stay in order even when runs come faster than one a second: a new
    // backup is always named after the newest one of its group, so "newest"
    // (retention, restore, verify) means the same by name and by time.
    let newest = LocalStore::new(output_dir)
        .list()?
        .into_iter()
        .filter(|b| b.name.group() == name.group())
        .map(|b| b.name.timestamp)
        .max();
    if let Some(newest) = newest {
        while name.timestamp <= newest {
            name = name.next_second();
        }
    }
    for _ in 0..600 {
        let dump_path = output_dir.join(name.dump_file());
        let meta_path = output_dir.join(name.meta_file());
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
        output_dir.display()
    )
}

/// Opens the REPEATABLE READ transaction whose snapshot pg_dump shares, and
/// reads the sequences in it before pg_dump starts (see [`catalog::sequences_for_backup`]).
async fn export_snapshot(
    client: &Client,
    mode: Mode,
    signals: &mut Signals,
) -> Result<(String, Option<Vec<catalog::Sequence>>)> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .context("opening the snapshot transaction")?;
    let id = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .context("exporting the snapshot")?
        .get(0);
    let sequences = signals
        .guard(catalog::sequences_for_backup(client, mode))
        .await?;
    Ok((id, sequences))
}

/// Connects to the bucket and starts the multipart upload of `name`'s dump.
pub(crate) async fn start_upload(
    job: &BackupJob,
    name: &BackupName,
    estimate: Option<u64>,
) -> Result<(Store, S3Sink)> {
    let store = s3::connect(S3Settings::from_args(&job.s3, None)?).await?;
    let sink = store.start_upload(&name.dump_file(), estimate).await?;
    Ok((store, sink))
}

/// Puts meta.json beside the dump and checks that the bucket holds it.
pub(crate) async fn upload_meta(store: &Store, key: &str, meta: &Meta) -> Result<()> {
    let bytes = meta.to_json()?;
    let size = bytes.len() as u64;
    store.put_small(key, bytes).await?;
    store.check_small(key, size).await
}

/// Leaves nothing of a failed upload behind: no open multipart upload, no object.
pub(crate) async fn discard(upload: &Option<Arc<UploadHandle>>) {
    if let Some(upload) = upload {
        upload.discard().await;
    }
}

/// What the snapshot transaction read while pg_dump ran.
struct Catalog {
    extensions: BTreeMap<String, String>,
    tables: Vec<TableRows>,
    alembic_revision: Option<String>,
    /// On a standby: unlogged tables, whose rows pg_dump skips there.
    unlogged_skipped: Vec<String>,
    properties: DatabaseProperties,
    roles: Vec<String>,
    /// Indexes, constraints, triggers, RLS, and the sequences read before pg_dump.
    schema_objects: Option<catalog::Catalog>,
}

/// The catalog in the snapshot. On a standby the rows of unlogged tables
/// cannot be read (and pg_dump skips them): they are recorded with 0 rows,
/// which is exactly what the dump holds, and listed as skipped.
async fn read_catalog(
    client: &Client,
    mode: Mode,
    server: &ServerVersion,
    snapshot: (bool, Option<Vec<catalog::Sequence>>),
) -> Result<Catalog> {
    let (standby, sequences) = snapshot;
    let schema_objects = catalog::for_backup(client, sequences).await?;
    let properties = client::database_properties(client, server).await?;
    let roles = client::dependent_roles(client).await?;
    let extensions = client::extensions(client).await?;
    let alembic_revision = client::alembic_revision(client).await?;
    let names = client::user_tables(client).await?;
    let unlogged = if standby {
        client::unlogged_tables(client).await?
    } else {
        Vec::new()
    };
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
        let (skipped, counted): (Vec<_>, Vec<_>) =
            names.into_iter().partition(|t| unlogged.contains(t));
        let mut tables = client::row_counts(client, &counted).await?;
        tables.extend(skipped.into_iter().map(|(schema, name)| TableRows {
            schema,
            name,
            rows: Some(0),
        }));
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        tables
    };
    Ok(Catalog {
        extensions,
        tables,
        alembic_revision,
        unlogged_skipped: unlogged
            .iter()
            .map(|(schema, name)| format!("{schema}.{name}"))
            .collect(),
        properties,
        roles,
        schema_objects,
    })
}

struct Streamed {
    /// What pg_dump wrote (the plaintext archive).
    summary: pipeline::Summary,
    /// Size and SHA-256 of what was stored (the ciphertext when encrypting).
    stored: (u64, String),
    sink: FileSink,
    s3: Option<S3Sink>,
    catalog: Catalog,
}

/// Step 3: pg_dump into the pump, the catalog read alongside. Any failure or
/// signal kills pg_dump and drops the sink (which removes the partial file)
/// before returning; the caller aborts the S3 upload.
#[allow(clippy::too_many_arguments)]
async fn stream_dump(
    job: &BackupJob,
    server: &ServerVersion,
    tools: &PgTools,
    compression: &str,
    snapshot: &Snapshot,
    client: Client,
    sink: FileSink,
    s3: Option<S3Sink>,
    signals: &mut Signals,
) -> Result<Streamed> {
    let mut cmd = tools.command("pg_dump", &job.conn);
    cmd.arg("--format=custom")
        .arg(format!("--compress={compression}"))
        .arg(format!("--snapshot={}", snapshot.id))
        .arg(format!(
            "--lock-wait-timeout={}ms",
            job.lock_wait_timeout.as_millis().max(1)
        ))
        .arg(format!(
            "--dbname={}",
            crate::pg::restore::dbname_conninfo(&job.conn.dbname)
        ))
        .arg("--no-password");
    match job.mode {
        Mode::Full => {}
        Mode::Schema => {
            cmd.arg("--schema-only");
        }
        Mode::Data => {
            cmd.arg("--data-only");
        }
        Mode::Globals => bail!("globals are taken by pg_dumpall, not pg_dump"),
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

    let recipients = job.recipients.clone();
    let mut pump = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let mut s3 = s3;
        let mut progress = ui::Progress::new("dumping");
        let result = {
            let mut sinks: Vec<&mut dyn Sink> = vec![&mut sink];
            if let Some(s3) = s3.as_mut() {
                sinks.push(s3);
            }
            pump_through(source, sinks, recipients.as_ref(), &mut progress)
        };
        progress.finish();
        (result, sink, s3)
    });
    let mode = job.mode;
    let snapshot_facts = (snapshot.standby, snapshot.sequences.clone());
    let server = server.clone();
    let mut catalog = tokio::spawn(async move {
        let catalog = read_catalog(&client, mode, &server, snapshot_facts).await;
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
    let (pumped, sink, s3) = pumped.context("the dump stream stopped unexpectedly")?;
    let (summary, stored) = match pumped {
        Ok(pumped) => pumped,
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
        let why = explain(job, &stderr).await;
        let failed = tools::ChildFailed::new("pg_dump", status, &stderr);
        return Err(anyhow!("{why}{failed}"));
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
    let catalog = match catalog {
        Ok(catalog) => catalog,
        Err(err) => {
            let why = explain(job, &crate::error::one_line(&err)).await;
            return Err(err.context(why.trim_end_matches(": ").to_owned()));
        }
    };
    drop(client);
    Ok(Streamed {
        summary,
        stored,
        sink,
        s3,
        catalog,
    })
}

/// The exported snapshot pg_dump shares, whether it was taken on a standby,
/// and the sequences read in it before pg_dump started.
struct Snapshot {
    id: String,
    standby: bool,
    sequences: Option<Vec<catalog::Sequence>>,
}

/// Why a dump failed, in the operator's terms, when the error is one pgbak
/// recognises: a lock not granted within --lock-wait-timeout (naming who
/// holds it), or a standby cancelling the dump to replay WAL. Empty otherwise;
/// else it ends in ": " so the original error follows.
async fn explain(job: &BackupJob, error: &str) -> String {
    match failure_kind(error) {
        Some(FailureKind::LockTimeout) => {
            let holders = client::lock_holders(&job.conn).await.unwrap_or_default();
            let who = if holders.is_empty() {
                "the session holding it has ended since".to_owned()
            } else {
                format!("held by {}", holders.join(", "))
            };
            format!(
                "a table lock was not granted within --lock-wait-timeout {} ({who}); end that \
                 session, or run the backup when it is done: ",
                humantime::format_duration(job.lock_wait_timeout)
            )
        }
        Some(FailureKind::RecoveryConflict) => "the standby cancelled the dump to replay WAL \
             from the primary (a recovery conflict): set hot_standby_feedback = on or raise \
             max_standby_streaming_delay on the standby, or back up with --pause-replay \
             (PGBAK_PAUSE_REPLAY=true): "
            .to_owned(),
        None => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    LockTimeout,
    RecoveryConflict,
}

/// Recognises the server's wording, as pg_dump or pgbak's own query quote it.
fn failure_kind(error: &str) -> Option<FailureKind> {
    // pg_dump implements --lock-wait-timeout with statement_timeout around LOCK TABLE.
    let dump_lock_wait = error.contains("LOCK TABLE") && error.contains("statement timeout");
    if error.contains("conflict with recovery") {
        Some(FailureKind::RecoveryConflict)
    } else if dump_lock_wait
        || error.contains("lock timeout")
        || error.contains("could not obtain lock")
    {
        Some(FailureKind::LockTimeout)
    } else {
        None
    }
}

/// The pump into `sinks`, through the encryption stage when there are
/// recipients; finishes the sinks. Returns the plaintext summary and the
/// stored bytes' size and SHA-256.
pub(crate) fn pump_through(
    source: impl std::io::Read,
    mut sinks: Vec<&mut dyn Sink>,
    recipients: Option<&Recipients>,
    progress: &mut ui::Progress,
) -> Result<(pipeline::Summary, (u64, String))> {
    match recipients {
        None => {
            let summary = pipeline::pump(source, &mut sinks, progress)?;
            sinks.iter_mut().try_for_each(|s| s.finish())?;
            let stored = (summary.bytes, summary.sha256.clone());
            Ok((summary, stored))
        }
        Some(recipients) => {
            let mut encrypt = pipeline::Encrypt::new(recipients, sinks)?;
            let summary = pipeline::pump(source, &mut [&mut encrypt], progress)?;
            encrypt.finish()?;
            let stored = encrypt
                .stored()
                .context("the encryption stage did not finish")?;
            Ok((summary, stored))
        }
    }
}

/// Step 4: meta.json's partial first (a full disk fails here, before any
/// rename), then the dump and the meta renamed into place.
pub(crate) fn commit(sink: FileSink, meta: &Meta, meta_path: &Path) -> Result<()> {
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

/// Multipart uploads of this group left open by earlier runs that died or
/// lost the store before they could abort: aborted now, so no parts stay
/// stored (and billed). Another live run may be writing an open upload, from
/// another host or another output directory, so an upload is aborted only on
/// evidence about that key itself (see [`stale_upload`]), never merely
/// because this run's directory knows nothing of it.
async fn abort_stale_uploads(job: &BackupJob, made: &Made, store: &Store) -> Result<Vec<String>> {
    let mut aborted = Vec::new();
    // Optional housekeeping: a missing permission is a warning, not a failed run.
    let open = match store.open_uploads().await {
        Ok(open) => open,
        Err(err) => {
            ui::warn(&format!(
                "skipping the cleanup of stale multipart uploads: {}",
                crate::error::one_line(&err)
            ));
            return Ok(aborted);
        }
    };
    let max_age = stale_upload_age()?;
    for upload in open {
        let Some(file) = upload.key.strip_prefix(store.settings.prefix.as_str()) else {
            continue;
        };
        let Some(name) = BackupName::parse(file) else {
            continue;
        };
        if name.group() != made.name.group()
            || name.timestamp >= made.name.timestamp
            || !crate::storage::is_plain_file_name(file)
        {
            continue;
        }
        let age = upload
            .initiated
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
        let Some(why) = stale_upload(&job.output_dir.join(file), age, max_age) else {
            continue;
        };
        crate::signals::check()?;
        ui::info(&format!(
            "aborting the multipart upload of {}: {why}",
            store.uri(&upload.key)
        ));
        if let Err(err) = store.abort_upload(&upload.key, &upload.upload_id).await {
            ui::warn(&format!(
                "could not abort a stale multipart upload: {}",
                crate::error::one_line(&err)
            ));
            continue;
        }
        aborted.push(format!(
            "{} (upload {})",
            store.uri(&upload.key),
            upload.upload_id
        ));
    }
    Ok(aborted)
}

/// `.partial` files of dead runs that local retention removed in this run:
/// evidence, for the S3 cleanup that follows, that their uploads are dead too.
fn dead_partials() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static DEAD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    DEAD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open uploads older than this are abandoned whoever started them; no dump
/// streams that long. `PGBAK_S3_STALE_UPLOAD_AGE` changes it.
const STALE_UPLOAD_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn stale_upload_age() -> Result<std::time::Duration> {
    match crate::pg::url::process_env("PGBAK_S3_STALE_UPLOAD_AGE") {
        None => Ok(STALE_UPLOAD_AGE),
        Some(text) => crate::cli::parse_duration(&text)
            .map_err(|e| usage(format!("PGBAK_S3_STALE_UPLOAD_AGE={text:?}: {e}"))),
    }
}

/// Why the open upload of `dump` (this directory's path for its key) is
/// abandoned, or None while its writer may live: the run that wrote it here
/// finished (its `.dump` is complete) or died (its `.partial` is unlocked),
/// or the upload is older than `max_age`. An upload this directory knows
/// nothing of (another host, another output directory) is left to age out.
fn stale_upload(
    dump: &Path,
    age: Option<std::time::Duration>,
    max_age: std::time::Duration,
) -> Option<&'static str> {
    let partial = fsio::partial_path(dump);
    if dead_partials().contains(&partial) {
        return Some("its run died (local retention removed its .partial file)");
    }
    if let Ok(file) = std::fs::File::open(&partial) {
        if file.try_lock().is_err() {
            return None;
        }
        return Some("its run died (its .partial file is no longer held)");
    }
    if dump.exists() {
        return Some("its run finished the local backup without completing the upload");
    }
    age.filter(|age| *age > max_age)
        .map(|_| "it is older than PGBAK_S3_STALE_UPLOAD_AGE (24 h by default)")
}

/// Step 5: retention for the group of the backup just made, locally and
/// (when this run's upload succeeded) under the S3 prefix, through the same
/// [`retention::apply`]; a backup verified or pinned locally is treated so on
/// S3 too. Also removes the `.partial` leftovers and open uploads of runs
/// that died. Returns what was deleted.
pub async fn apply_retention(job: &BackupJob, made: &Made) -> Result<Vec<String>> {
    let local = LocalStore::new(&job.output_dir);
    let mut deleted = Vec::new();
    for partial in local.stale_partials(&made.name.group(), made.started)? {
        crate::signals::check()?;
        dead_partials().push(partial.clone());
        ui::info(&format!(
            "removing {}, left by a run that did not finish",
            partial.display()
        ));
        std::fs::remove_file(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
        deleted.push(partial.display().to_string());
    }
    let now = Utc::now();
    let mut scope = Scope {
        policy: &job.policy,
        just_made: Some(&made.name),
        // Grouping by file name is not enough: meta.json's database decides.
        database: Some(&made.meta.database),
        dry_run: false,
        store: "local",
    };
    let applied = apply::apply(&local, &scope, &Marks::default(), now).await?;
    deleted.extend(applied.deleted);
    let Some(location) = made.meta.s3.as_ref().filter(|_| job.upload) else {
        return Ok(deleted);
    };
    let store = s3::connect(S3Settings::from_args(&job.s3, Some(&location.bucket))?).await?;
    scope.store = "s3";
    let remote = apply::apply(&store, &scope, &applied.marks, now).await?;
    deleted.extend(remote.deleted);
    deleted.extend(abort_stale_uploads(job, made, &store).await?);
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_failures_are_recognised() {
        for (error, want) in [
            (
                "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout \
                 | pg_dump: detail: Query was: LOCK TABLE public.busy IN ACCESS SHARE MODE",
                Some(FailureKind::LockTimeout),
            ),
            (
                "counting rows of public.busy: db error: ERROR: canceling statement due to lock timeout",
                Some(FailureKind::LockTimeout),
            ),
            (
                "pg_dump: error: Dumping the contents of table \"t\" failed: PQgetResult() failed. \
                 | ERROR:  canceling statement due to conflict with recovery",
                Some(FailureKind::RecoveryConflict),
            ),
            (
                "FATAL: terminating connection due to conflict with recovery",
                Some(FailureKind::RecoveryConflict),
            ),
            ("canceling statement due to statement timeout", None),
            ("pg_dump: error: connection to server failed", None),
        ] {
            assert_eq!(failure_kind(error), want, "{error}");
        }
    }
}
