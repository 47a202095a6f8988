//! `pgbak backup`: dump one database into `<name>.dump` + `<name>.meta.json`.
//!
//! The steps, in order (this file orchestrates them; the work is where named):
//! 1. connect, read the server version, pick a pg_dump at least that new;
//! 2. claim the name (its `.partial`, [`output`]) and start the S3 upload;
//!    open a REPEATABLE READ transaction and export its snapshot
//!    ([`crate::pg::snapshot`]);
//! 3. run `pg_dump --snapshot` ([`crate::pg::dump`]) and stream its output
//!    through the hash stage (and, with recipients, the age encryption stage:
//!    the file is then `<name>.dump.age` and no plaintext byte reaches disk or
//!    S3) into `<name>.dump.partial` (and S3, when configured), while the same
//!    transaction counts every table's rows: dump and counts share one instant;
//! 4. check pg_dump's exit status and the archive magic, fsync, write
//!    meta.json's partial, then rename the dump and the meta into place
//!    ([`output`]). With S3 configured, the same bytes go up as a multipart
//!    upload while pg_dump runs; it is completed and checked only after
//!    pg_dump succeeded, then meta.json goes up beside it. An upload failure
//!    leaves the local backup complete (meta.json `s3: null`) and fails the run;
//! 5. the anomaly check against the authoritative store, then retention
//!    ([`after_backup`], shared with cron): after a failed upload too, but
//!    then retention stays local.

pub mod all;
pub mod each;
mod output;
mod retention;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use tokio_postgres::Client;

pub use self::output::upload_meta;
pub(crate) use self::output::{Began, Output};
pub use self::retention::apply_retention;
use crate::anomaly::Findings;
use crate::meta::{Meta, ServerIdentity};
use crate::pg::client;
use crate::pg::dump::{self as pg_dump, DumpJob, Streamed};
use crate::pg::replay::{self, ReplayPause};
use crate::pg::snapshot::Snapshot;
use crate::pg::tools::{self, PgTools};
use crate::pipeline::Sinks;
use crate::settings::backup::{BackupJob, BackupSettings};
use crate::signals::Signals;
use crate::storage::s3::{self, UploadFailed};
use crate::storage::{fsio, BackupName};
use crate::ui;

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

/// `pgbak backup`, with its settings resolved at dispatch.
pub async fn run(settings: BackupSettings) -> Result<ExitCode> {
    let BackupSettings {
        plan,
        globals,
        output: print,
    } = settings;
    if let Some(excludes) = &plan.all_databases {
        return all::backup_all(&plan.job, excludes, print).await;
    }
    let job = plan.job;
    if let Some(s3) = &job.s3 {
        if let Some(warning) = s3::keep_warning(job.policy.last, &s3.storage_class) {
            ui::warn(&warning);
        }
    }
    check_object_lock(&job).await?;
    let mut signals = Signals::new()?;
    let made = match dump(&job, &mut signals).await {
        Ok(made) => made,
        Err(err) => {
            // The upload failed but the local backup is complete: the anomaly
            // check and local retention still run, as in `pgbak cron`; the
            // upload failure is still the outcome.
            if let Some(made) = complete_despite_upload(&err) {
                after_backup(&job, &made).await?;
            }
            return Err(err);
        }
    };
    let (anomaly, mut deleted) = after_backup(&job, &made).await?;
    let mut globals_made = None;
    if globals {
        let made = super::globals::backup(&job, &mut signals, Vec::new()).await?;
        deleted.extend(apply_retention(&job, &made).await?);
        globals_made = Some(made);
    }
    if print == crate::settings::commands::Output::Json {
        let summary = serde_json::json!({
            "dump": made.dump,
            "meta_path": made.meta_path,
            "meta": made.meta,
            "globals": globals_made.map(|g| serde_json::json!({
                "dump": g.dump, "meta_path": g.meta_path, "meta": g.meta,
            })),
            "deleted": deleted,
            "anomaly": anomaly.map(|a| a.summary()),
        });
        ui::stdout_line(&serde_json::to_string_pretty(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Step 5, one rule for `backup`, `cron` and every database of
/// `--all-databases`: once a backup is complete locally, uploaded or not,
/// the anomaly check (against the authoritative store) and then retention
/// (locally; under the S3 prefix only when the upload succeeded). A pin
/// that could not be written stops retention.
pub async fn after_backup(job: &BackupJob, made: &Made) -> Result<(Option<Findings>, Vec<String>)> {
    crate::signals::unless_stopped(async {
        let anomaly = check_anomaly(job, made).await?;
        let deleted = apply_retention(job, made).await?;
        Ok((anomaly, deleted))
    })
    .await
}

/// The anomaly check of `made` against the previous good backup of its
/// group in the authoritative store: `job`'s S3 prefix when it has one
/// (whether or not this upload succeeded), else its directory.
pub async fn check_anomaly(job: &BackupJob, made: &Made) -> Result<Option<Findings>> {
    let (dir, s3) = (&job.output_dir, job.s3.as_ref());
    crate::anomaly::check_and_pin(dir, s3, &made.name, &made.meta, job.anomaly).await
}

/// Before anything is dumped: a lock asked for on a bucket without Object
/// Lock is an exit-2 error, not a backup that silently stays deletable.
pub async fn check_object_lock(job: &BackupJob) -> Result<()> {
    if let (Some(_), Some(s3)) = (&job.lock, &job.s3) {
        s3::connect(s3.clone()).await?.require_object_lock().await?;
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
    let began = Began::now();
    fsio::ensure_dir(&job.output_dir)?;

    let client = signals.guard(client::connect(&job.conn)).await?;
    client::set_lock_timeout(&client, job.lock_wait_timeout).await?;
    let standby = client::in_recovery(&client).await?;
    let identity = server_identity(job, &client).await;
    // On a standby, the markers of paused replay live in the authoritative store.
    let bucket = match (&job.s3, standby) {
        (Some(settings), true) => s3::connect(settings.clone()).await.ok(),
        _ => None,
    };
    let markers = || replay::Markers {
        dir: job.output_dir.clone(),
        s3: bucket.clone(),
        server: crate::storage::server_tag(&identity),
    };
    let pause = match (standby, job.pause_replay) {
        (true, true) => Some(
            signals
                .guard(ReplayPause::begin(markers(), &job.conn))
                .await?,
        ),
        (true, false) => {
            replay::resume_leftovers(&markers(), &client).await;
            None
        }
        (false, true) => {
            ui::info("--pause-replay: the server is not a standby; nothing to pause");
            None
        }
        (false, false) => None,
    };
    let made = dump_from(job, signals, client, standby, &identity, began).await;
    if let Some(pause) = pause {
        pause.end().await;
    }
    made
}

/// [`dump`] once connected: the server and its tools, the name claimed and
/// the upload started, then the snapshot and pg_dump into the sinks, then
/// the commit.
async fn dump_from(
    job: &BackupJob,
    signals: &mut Signals,
    client: Client,
    standby: bool,
    identity: &ServerIdentity,
    began: Began,
) -> Result<(Made, Option<anyhow::Error>)> {
    let server = client::server_version(&client).await?;
    let tools = tools::find(job.pg_bin_dir.as_deref(), server.major(), &server.text)?;
    let compression = match &job.compress {
        Some(spec) => tools::pg_dump_compress_arg(tools.major, spec),
        None => tools::default_compression(&tools).await,
    };
    let estimate = size_estimate(job, &client).await;

    let (mut output, file) = Output::reserve(job, job.mode, began, identity, signals).await?;
    announce(job, &compression, &tools, &output.dump_path);
    let s3 = output.start_upload(job, estimate, signals).await?;

    // The snapshot is exported only now, after S3 was contacted, so it never
    // idles while a slow or unreachable store is tried.
    let streamed = async {
        let snapshot = Snapshot::export(&client, standby, job.mode, signals).await?;
        let run = DumpJob {
            conn: &job.conn,
            tools: &tools,
            server: &server,
            mode: job.mode,
            compression: &compression,
            lock_wait_timeout: job.lock_wait_timeout,
            snapshot: &snapshot,
            recipients: job.recipients.as_ref(),
        };
        pg_dump::stream(&run, client, Sinks { file, s3 }, signals).await
    }
    .await;
    let Streamed {
        pumped,
        sinks,
        catalog,
    } = match streamed {
        Ok(streamed) => streamed,
        Err(err) => return Err(output.fail(err).await),
    };

    output
        .complete_upload(sinks.s3, pumped.stored.0, signals)
        .await?;
    let meta = Meta {
        compression,
        alembic_revision: catalog.alembic_revision,
        extensions: catalog.extensions,
        tables: catalog.tables,
        standby,
        unlogged_tables_skipped: catalog.unlogged_skipped,
        database_properties: Some(catalog.properties),
        roles: Some(catalog.roles),
        schema_objects: catalog.schema_objects,
        ..output.meta(job, &pumped, &server, identity, &tools)
    };
    let (made, upload_failure) = output.commit(job, sinks.file, meta, signals).await?;
    ui::info(&format!(
        "backup complete: {} ({}, sha256 {}, {:.1}s)",
        made.dump.display(),
        ui::bytes(made.meta.size_bytes),
        &made.meta.sha256[..16],
        made.meta.duration_seconds
    ));
    Ok((made, upload_failure))
}

/// The server this backup comes from: `--server-name` (or host:port) and
/// the system identifier when this user may read it.
pub async fn server_identity(job: &BackupJob, client: &Client) -> ServerIdentity {
    ServerIdentity {
        name: job.server_name.clone(),
        system_identifier: client::system_identifier(client).await,
    }
}

/// The database's size, which sizes the upload's parts so even a
/// multi-terabyte dump fits the part limit; None without an upload.
async fn size_estimate(job: &BackupJob, client: &Client) -> Option<u64> {
    job.s3.as_ref()?;
    client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .ok()
        .map(|row| row.get::<_, i64>(0).max(0) as u64)
}

/// The line that says what this backup is about to do.
fn announce(job: &BackupJob, compression: &str, tools: &PgTools, dump_path: &Path) {
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
