//! Running pg_dump for a backup: `pg_dump --snapshot` streams its custom
//! archive through the pipeline into the backup's sinks while the snapshot
//! transaction reads the catalog alongside; its exit status and the archive
//! magic decide; a failure pgbak recognises (a lock not granted, a standby's
//! recovery conflict) is explained in the operator's terms. The counterpart
//! of [`super::restore`].

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::client::{self, ServerVersion};
use super::snapshot::{self, Catalog, Snapshot};
use super::tools::{self, PgTools};
use super::url::ConnSettings;
use crate::encryption::Recipients;
use crate::error::interrupted;
use crate::mode::Mode;
use crate::pipeline::{self, Pumped, Sinks};
use crate::signals::Signals;
use crate::ui;

/// One pg_dump run, resolved.
pub struct DumpJob<'a> {
    pub conn: &'a ConnSettings,
    pub tools: &'a PgTools,
    pub server: &'a ServerVersion,
    pub mode: Mode,
    /// In pg_dump's `--compress` syntax.
    pub compression: &'a str,
    /// Longest wait for a table lock (pg_dump and pgbak's catalog reads).
    pub lock_wait_timeout: Duration,
    pub snapshot: &'a Snapshot,
    /// Encrypt to these (age) on the way to the sinks.
    pub recipients: Option<&'a Recipients>,
}

/// A dump that pg_dump finished and the pipeline stored (not yet committed).
pub struct Streamed {
    pub pumped: Pumped,
    pub sinks: Sinks,
    pub catalog: Catalog,
}

/// pg_dump into the sinks, the catalog read alongside in the snapshot
/// transaction (`client`, kept open until pg_dump is done). Any failure or
/// signal kills pg_dump and drops the sinks (which removes the partial file)
/// before returning; the caller aborts the S3 upload.
pub async fn stream(
    job: &DumpJob<'_>,
    client: Client,
    sinks: Sinks,
    signals: &mut Signals,
) -> Result<Streamed> {
    let cmd = command(job)?;
    ui::debug(&format!("running {}", tools::describe(&cmd)));
    let (child, source, stderr) = spawn(cmd, job.tools)?;
    let pump = pipeline::spawn_pump(source, sinks, job.recipients.cloned(), "dumping");
    // The catalog reads wait for the table locks pg_dump waits for; on any
    // way out before they are done they are cancelled on the server, which
    // would otherwise keep the session (and its snapshot) queued for the lock.
    let token = client.cancel_token();
    let catalog = Alongside::read(client, job);
    let streamed = stream_alongside(job, child, pump, stderr, catalog, signals).await;
    if streamed.is_err() {
        super::cancel::cancel_with(&token, job.conn).await;
    }
    streamed
}

/// [`stream`] once pg_dump runs and the catalog is being read beside it.
async fn stream_alongside(
    job: &DumpJob<'_>,
    mut child: Child,
    pump: JoinHandle<(Result<Pumped>, Sinks)>,
    stderr: JoinHandle<String>,
    catalog: Alongside,
    signals: &mut Signals,
) -> Result<Streamed> {
    // The pump ends when pg_dump closes its output (done or dead) or a write fails.
    let (pumped, sinks) = await_pump(&mut child, pump, signals).await?;
    let status = tokio::select! {
        status = child.wait() => status.context("waiting for pg_dump")?,
        sig = signals.recv() => {
            tools::terminate(&mut child).await;
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
    if !pumped.plain.head.starts_with(b"PGDMP") {
        bail!("pg_dump's output does not start with PGDMP: not a custom-format archive");
    }
    let catalog = catalog.finish(job, signals).await?;
    Ok(Streamed {
        pumped,
        sinks,
        catalog,
    })
}

/// pg_dump's command line: custom format, the shared snapshot, the lock
/// wait, the mode; the password only in its environment.
fn command(job: &DumpJob<'_>) -> Result<Command> {
    let mut cmd = job.tools.command("pg_dump", job.conn);
    cmd.arg("--format=custom")
        .arg(format!("--compress={}", job.compression))
        .arg(format!("--snapshot={}", job.snapshot.id))
        .arg(format!(
            "--lock-wait-timeout={}ms",
            job.lock_wait_timeout.as_millis().max(1)
        ))
        .arg(format!(
            "--dbname={}",
            super::restore::dbname_conninfo(&job.conn.dbname)
        ))
        .arg("--no-password");
    cmd.env(
        "PGOPTIONS",
        pgoptions(job.conn.params.get("options").map(String::as_str)),
    );
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
    Ok(cmd)
}

/// pg_dump's startup options: the connection's own, then no timeouts. pg_dump
/// turns a role's `statement_timeout`, `lock_timeout` and
/// `idle_in_transaction_session_timeout` off itself, but only after its first
/// query (the search_path), which a role's 1 ms timeout could cancel: from
/// startup, they are off (pg_dump still times its LOCK TABLEs itself, for
/// `--lock-wait-timeout`).
fn pgoptions(user_options: Option<&str>) -> String {
    super::client::startup_options(user_options, &super::client::NO_TIMEOUTS)
}

/// Starts pg_dump: the child, its stdout as a blocking pipe for the pump,
/// and its stderr collected on the side.
fn spawn(mut cmd: Command, tools: &PgTools) -> Result<(Child, File, JoinHandle<String>)> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", tools.tool("pg_dump").display()))?;
    let stdout = child.stdout.take().context("pg_dump has no stdout")?;
    let stderr = tools::collect_stderr(child.stderr.take().context("pg_dump has no stderr")?);
    let fd = stdout.into_owned_fd().context("taking pg_dump's stdout")?;
    let source = pipeline::blocking_pipe(fd)?;
    Ok((child, source, stderr))
}

/// Waits for the pump; a signal or a failed write (disk full: pg_dump would
/// block on a full pipe) kills pg_dump. The sinks are dropped on failure.
async fn await_pump(
    child: &mut Child,
    mut pump: JoinHandle<(Result<Pumped>, Sinks)>,
    signals: &mut Signals,
) -> Result<(Pumped, Sinks)> {
    let joined = tokio::select! {
        joined = &mut pump => joined,
        sig = signals.recv() => {
            tools::terminate(child).await;
            let _ = pump.await;
            return Err(interrupted(sig));
        }
    };
    let (pumped, sinks) = joined.context("the dump stream stopped unexpectedly")?;
    match pumped {
        Ok(pumped) => Ok((pumped, sinks)),
        Err(err) => {
            tools::terminate(child).await;
            drop(sinks);
            Err(err)
        }
    }
}

/// The catalog read in the snapshot transaction while pg_dump runs; aborted
/// when dropped, so every early return of [`stream`] ends it.
struct Alongside(JoinHandle<(Result<Catalog>, Client)>);

impl Alongside {
    fn read(client: Client, job: &DumpJob<'_>) -> Alongside {
        let (mode, server) = (job.mode, job.server.clone());
        let (standby, sequences) = (job.snapshot.standby, job.snapshot.sequences.clone());
        Alongside(tokio::spawn(async move {
            let catalog = snapshot::read_catalog(&client, mode, &server, standby, sequences).await;
            // Keep the transaction (and so the snapshot) open until pg_dump is done.
            (catalog, client)
        }))
    }

    fn abort(&self) {
        self.0.abort();
    }

    /// The catalog, once read; a lock or recovery failure is explained.
    async fn finish(mut self, job: &DumpJob<'_>, signals: &mut Signals) -> Result<Catalog> {
        let (catalog, client) = tokio::select! {
            joined = &mut self.0 => joined.context("reading the catalog stopped unexpectedly")?,
            sig = signals.recv() => return Err(interrupted(sig)),
        };
        drop(client);
        match catalog {
            Ok(catalog) => Ok(catalog),
            Err(err) => {
                let why = explain(job, &crate::error::one_line(&err)).await;
                Err(explained(err, &why))
            }
        }
    }
}

impl Drop for Alongside {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a dump failed, in the operator's terms, when the error is one pgbak
/// recognises: a lock not granted within --lock-wait-timeout (naming who
/// holds it), or a standby cancelling the dump to replay WAL. Empty otherwise;
/// else it ends in ": " so the original error follows.
async fn explain(job: &DumpJob<'_>, error: &str) -> String {
    match failure_kind(error) {
        Some(FailureKind::LockTimeout) => {
            let holders = client::lock_holders(job.conn).await.unwrap_or_default();
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

/// `err` with the explanation from [`explain`] in front, when there is one.
fn explained(err: anyhow::Error, why: &str) -> anyhow::Error {
    match why.trim_end_matches(": ") {
        "" => err,
        why => err.context(why.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_starts_with_no_timeouts_after_the_operators_options() {
        let off =
            "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0";
        assert_eq!(pgoptions(None), off);
        assert_eq!(pgoptions(Some("")), off);
        assert_eq!(
            pgoptions(Some("-c work_mem=64MB")),
            format!("-c work_mem=64MB {off}")
        );
    }

    #[test]
    fn an_unexplained_catalog_failure_reads_as_itself() {
        let err = anyhow!("counting rows of public.t: db error");
        assert_eq!(
            crate::error::one_line(&explained(err, "")),
            "counting rows of public.t: db error"
        );
        let err = anyhow!("lock timeout");
        assert_eq!(
            crate::error::one_line(&explained(err, "a table lock was not granted: ")),
            "a table lock was not granted: lock timeout"
        );
    }

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
