//! `pgbak backup`: dump one database into `<name>.dump` + `<name>.meta.json`.
//!
//! The steps, in order (this file orchestrates them; the work is where named):
//! 1. take the lock of the backup group (database and mode, the one `pgbak
//!    cron` takes: [`group_lock`]); held by another run, the backup does not
//!    start (exit 75);
//! 2. connect, read the server version, pick a pg_dump at least that new;
//! 3. claim the name (its `.partial`, [`output`]) and start the S3 upload;
//!    open a REPEATABLE READ transaction and export its snapshot
//!    ([`crate::pg::snapshot`]);
//! 4. run `pg_dump --snapshot` ([`crate::pg::dump`]) and stream its output
//!    through the hash stage (and, with recipients, the age encryption stage:
//!    the file is then `<name>.dump.age` and no plaintext byte reaches disk or
//!    S3) into `<name>.dump.partial` (and S3, when configured), while the same
//!    transaction counts every table's rows: dump and counts share one instant;
//! 5. check pg_dump's exit status and the archive magic, fsync, write
//!    meta.json's partial, then rename the dump and the meta into place
//!    ([`output`]). With S3 configured, the same bytes go up as a multipart
//!    upload while pg_dump runs; it is completed and checked only after
//!    pg_dump succeeded, then meta.json goes up beside it. An upload failure
//!    leaves the local backup complete (meta.json `s3: null`) and fails the run;
//! 6. the steps after the dump, the same for `backup`, `cron` and every
//!    database of `--all-databases` ([`after::after_dump`]): verify (cron),
//!    the anomaly check against the authoritative store, retention.

pub mod after;
pub mod all;
mod copies;
pub mod each;
mod output;
mod retention;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use tokio_postgres::Client;

pub(crate) use self::output::{Began, Output};
pub use self::retention::apply_retention;
use crate::lock::{self, RunLock};
use crate::meta::{Meta, ServerIdentity};
use crate::pg::client::{self, ServerVersion};
use crate::pg::dump::{self as pg_dump, DumpJob, Streamed};
use crate::pg::probe::Probe;
use crate::pg::replay::{self, ReplayPause};
use crate::pg::snapshot::Snapshot;
use crate::pg::tools::PgTools;
use crate::pipeline::Sinks;
use crate::settings::backup::{BackupJob, BackupPlan, BackupSettings};
use crate::signals::Signals;
use crate::storage::{fsio, BackupName, Store, Stores};
use crate::ui;
use after::{after_dump, After};

/// A backup that was written completely.
#[derive(Debug, Clone)]
pub struct Made {
    pub name: BackupName,
    /// The destinations that hold it, by name, in order (`local` first).
    pub held: Vec<String>,
    /// When the run started (leftovers older than this may be cleaned up).
    pub started: std::time::SystemTime,
    pub dump: PathBuf,
    pub meta_path: PathBuf,
    pub meta: Meta,
}

/// A backup complete locally, and what went wrong with its upload (the run
/// then fails with it, after the steps that still apply: [`after::after_dump`]).
pub struct Dumped {
    pub made: Made,
    pub upload_failed: Option<anyhow::Error>,
}

/// `pgbak backup`, with its settings resolved and its stores built at dispatch.
pub async fn run(settings: BackupSettings, stores: &Stores) -> Result<ExitCode> {
    let BackupSettings {
        plan,
        globals,
        output: print,
    } = settings;
    let mut signals = Signals::new()?;
    // The group's lock, as cron takes it: two runs never dump and prune one
    // group at once. Not waited for: the operator is told at once (exit 75).
    let _lock = group_lock(&plan, std::time::Duration::ZERO, &mut signals).await?;
    if let Some(excludes) = &plan.all_databases {
        return all::backup_all(&plan.job, stores, excludes, print, &mut signals).await;
    }
    let job = &plan.job;
    if let Some(warning) = stores
        .bucket
        .as_ref()
        .and_then(|b| b.keep_warning(job.policy.last))
    {
        ui::warn(&warning);
    }
    check_object_lock(job, stores).await?;
    let after = After::new(job, stores, None);
    let dumped = dump_local_first(job, stores, &mut signals).await?;
    let made = dumped.made.clone();
    let done = after_dump(&after, dumped, &mut signals, &mut Vec::new()).await;
    if let Some((_, err)) = done.error {
        return Err(err);
    }
    let (anomaly, mut deleted) = (done.anomaly, done.deleted);
    let mut globals_made = None;
    if globals {
        let dumped = super::globals::backup(job, stores, &mut signals, Vec::new()).await?;
        globals_made = Some(dumped.made.clone());
        let done = after_dump(&after, dumped, &mut signals, &mut Vec::new()).await;
        if let Some((_, err)) = done.error {
            return Err(err);
        }
        deleted.extend(done.deleted);
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

/// The lock of `plan`'s backup group in its directory (one per database and
/// mode, or one for a server's `--all-databases` run), waiting up to `wait`
/// for a run that holds it; still held after that: exit 75. `pgbak backup`
/// and `pgbak cron` take the same one.
pub async fn group_lock(
    plan: &BackupPlan,
    wait: std::time::Duration,
    signals: &mut Signals,
) -> Result<RunLock> {
    let job = &plan.job;
    let database = match plan.all_databases {
        Some(_) => crate::settings::cron::ALL_DATABASES,
        None => job.conn.dbname.as_str(),
    };
    let name = lock::lock_file_name(&job.server_name, database, job.mode, None);
    RunLock::acquire_waiting(&job.output_dir, &name, wait, signals).await
}

/// Before anything is dumped: a lock asked for on a bucket without Object
/// Lock is an exit-2 error, not a backup that silently stays deletable.
pub async fn check_object_lock(job: &BackupJob, stores: &Stores) -> Result<()> {
    if let (Some(_), Some(bucket)) = (&job.lock, &stores.bucket) {
        bucket.require_object_lock().await?;
    }
    // A `--to` bucket: its own lock (its URL's, else the global one). One
    // that cannot be asked now is left to fail its copy, not the backup.
    for destination in stores.added().iter().filter(|d| d.store.is_bucket()) {
        if destination.overrides.object_lock(job.lock).is_none() {
            continue;
        }
        if let Err(err) = destination.store.require_object_lock().await {
            if crate::error::exit_code(&err) == crate::error::USAGE {
                return Err(err.context(format!("destination {}", destination.name)));
            }
            ui::warn(&format!(
                "cannot check Object Lock on destination {}: {}",
                destination.name,
                crate::error::one_line(&err)
            ));
        }
    }
    Ok(())
}

/// Steps 2-5: the backup itself, written to `job`'s directory and uploaded
/// to `stores`' bucket. On any failure or signal nothing is left behind: no
/// `.dump`, no `.meta.json`, no `.partial`. An upload failure after the
/// local backup completed comes back beside it ([`Dumped`]), so the steps
/// after the dump can still run for the complete local backup. On a standby
/// with `--pause-replay`, WAL replay is paused around it and resumed on
/// every way out.
pub async fn dump_local_first(
    job: &BackupJob,
    stores: &Stores,
    signals: &mut Signals,
) -> Result<Dumped> {
    let began = Began::now();
    fsio::ensure_dir(&job.output_dir)?;

    // pg_dump is asked what it is while the connection opens.
    let probe = Probe::start(job.pg_bin_dir.as_deref(), job.compress.is_none());
    let client = signals.guard(client::connect(&job.conn)).await?;
    // Asked at once: one round trip to the server, not four.
    let (lock_timeout, standby, identity, server) = tokio::join!(
        client::set_lock_timeout(&client, job.lock_wait_timeout),
        client::in_recovery(&client),
        server_identity(job, &client),
        client::server_version(&client),
    );
    lock_timeout?;
    let (standby, server) = (standby?, server?);
    // On a standby, the markers of paused replay live in the authoritative store.
    let markers = || replay::Markers {
        local: stores
            .local
            .clone()
            .unwrap_or_else(|| Store::local(&job.output_dir)),
        bucket: stores.authoritative().filter(|s| s.is_bucket()).cloned(),
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
    let connected = Connected {
        client,
        server,
        standby,
        probe,
    };
    let made = dump_from(job, stores, signals, connected, &identity, began).await;
    if let Some(pause) = pause {
        pause.end().await;
    }
    made
}

/// The server session a backup runs on, and what was learnt while it opened.
struct Connected {
    client: Client,
    server: ServerVersion,
    /// The server is a hot standby.
    standby: bool,
    /// pg_dump's answers, asked while the connection opened.
    probe: Probe,
}

/// [`dump`] once connected: the server and its tools (what the probe found
/// meanwhile), the name claimed and the upload started, then the snapshot
/// and pg_dump into the sinks, then the commit.
async fn dump_from(
    job: &BackupJob,
    stores: &Stores,
    signals: &mut Signals,
    connected: Connected,
    identity: &ServerIdentity,
    began: Began,
) -> Result<Dumped> {
    let Connected {
        client,
        server,
        standby,
        probe,
    } = connected;
    let (tools, compression) = probe
        .finish(server.major(), &server.text, job.compress.as_deref())
        .await?;
    let estimate = match stores.destinations().iter().any(|d| d.store.is_bucket()) {
        true => size_estimate(&client).await,
        false => None,
    };

    let (mut output, file) =
        Output::reserve(job, stores, job.mode, began, identity, signals).await?;
    announce(job, &compression, &tools, &output.dump_path);
    let s3 = output.start_upload(estimate, signals).await?;
    let extra = output.start_copies(estimate, signals).await?;

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
        pg_dump::stream(&run, client, Sinks { file, s3, extra }, signals).await
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

    let copied = output
        .complete_uploads(sinks.s3, sinks.extra, pumped.stored.0, signals)
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
    let (made, upload_failed) = output
        .commit(job, sinks.file, copied, meta, signals)
        .await?;
    ui::info(&format!(
        "backup complete: {} ({}, sha256 {}, {:.1}s)",
        made.dump.display(),
        ui::bytes(made.meta.size_bytes),
        &made.meta.sha256[..16],
        made.meta.duration_seconds
    ));
    Ok(Dumped {
        made,
        upload_failed,
    })
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
/// multi-terabyte dump fits the part limit.
async fn size_estimate(client: &Client) -> Option<u64> {
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
