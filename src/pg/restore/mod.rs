//! Running pg_restore for verify and restore: reading an archive's table of
//! contents, restoring it tuned for speed, and telling pg_restore's harmless
//! complaints (a role that does not exist here, a setting the older server
//! does not know) from errors that mean the copy is incomplete.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

use super::tools::{self, PgTools};
use super::url::ConnSettings;
use crate::error::{finding, interrupted, usage};
use crate::signals::Signals;
use crate::ui;

mod script;
pub mod sessions;
mod unprivileged;
mod verdict;
pub use unprivileged::{extension_schemas, superuser_only};
pub use verdict::{
    classify, distinct, failure, judge, missing_extension, one_line, PgRestoreVerdict, STDERR_CAP,
};

/// Where pg_restore reads the archive: a file (seekable, so `--jobs` works) or
/// its stdin, a pipe fed by the caller (one job: pg_restore cannot seek a pipe).
#[derive(Debug)]
pub enum Input {
    File(std::path::PathBuf),
    /// The read end; each pg_restore gets a duplicate as its stdin.
    Pipe(std::fs::File),
}

impl Input {
    /// Adds the archive to pg_restore's command line (or its stdin).
    fn attach(&self, cmd: &mut Command) -> Result<()> {
        match self {
            Input::File(path) => match own_fd(path) {
                // pgbak is not dumpable (crate::hardening), so a child may not
                // open /proc/<pgbak>/fd/N: it gets the file as its stdin
                // instead and opens its own /proc/self/fd/0 (its workers too,
                // which inherit it). Every pg_restore runs with --no-password
                // or without a connection, so nothing reads that stdin.
                Some(_) => {
                    let file = std::fs::File::open(path)
                        .context("passing the decrypted archive to pg_restore")?;
                    cmd.arg("/proc/self/fd/0").stdin(Stdio::from(file));
                }
                None => {
                    cmd.arg(path);
                }
            },
            Input::Pipe(read) => {
                let dup = read
                    .try_clone()
                    .context("passing the archive to pg_restore")?;
                cmd.stdin(Stdio::from(dup));
            }
        }
        Ok(())
    }
}

/// N when `path` is `/proc/<this process>/fd/N` (an unnamed file pgbak holds).
fn own_fd(path: &Path) -> Option<i32> {
    let own = format!("/proc/{}/fd/", std::process::id());
    path.to_str()?.strip_prefix(&own)?.parse().ok()
}

/// What `pg_restore --list` found.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Entries in the table of contents.
    pub entries: usize,
    /// `TABLE DATA` entries.
    pub table_data: usize,
    /// Extensions the archive creates.
    pub extensions: Vec<String>,
    /// pg_restore's warnings (an unsupported compression shows up here).
    pub warnings: String,
    /// The table of contents as printed (what `--table` is resolved against).
    pub toc: String,
}

/// Reads the archive's table of contents without connecting anywhere. A
/// pg_restore built without the archive's compression only warns here and
/// fails later, at the first data block: that warning is an error for us.
/// An archive pg_restore cannot read is a [`crate::error::Finding`].
pub async fn list(tools: &PgTools, input: &Input) -> Result<Listing> {
    let mut cmd = crate::children::command(tools.tool("pg_restore"));
    // --verbose adds each entry's dependencies (`;\tdepends on: ...`), which
    // a table restore follows (`table_toc`); every reader skips `;` lines.
    cmd.arg("--list")
        .arg("--verbose")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    input.attach(&mut cmd)?;
    let out = tools::run(cmd, "pg_restore --list").await?;
    let pg_restore = tools.tool("pg_restore");
    if !out.success() {
        return Err(finding(
            out.failure(&format!("{} --list", pg_restore.display()))
                .to_string(),
        ));
    }
    if out.stderr.contains("does not support compression") {
        return Err(finding(format!(
            "{} (PostgreSQL {}) was built without the archive's compression method and cannot read its data: {}. \
             Use a pg_restore built with it (PGDG's packages have gzip, lz4 and zstd) through --pg-bin-dir / PGBAK_PG_BIN_DIR",
            pg_restore.display(),
            tools.version,
            one_line(&out.stderr)
        )));
    }
    let mut listing = Listing {
        entries: 0,
        table_data: 0,
        extensions: Vec::new(),
        warnings: out.stderr,
        toc: out.stdout.clone(),
    };
    for line in out.stdout.lines() {
        if line.trim().is_empty() || line.starts_with(';') {
            continue;
        }
        listing.entries += 1;
        // `5; 3079 16385 EXTENSION - vector ` / `3460; 0 16400 TABLE DATA public users postgres`
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) == Some(&"TABLE") && fields.get(4) == Some(&"DATA") {
            listing.table_data += 1;
        }
        if fields.get(3) == Some(&"EXTENSION") {
            if let Some(name) = fields.get(5) {
                listing.extensions.push((*name).to_owned());
            }
        }
    }
    Ok(listing)
}

/// One pg_restore into one database.
#[derive(Debug, Clone)]
pub struct RestoreJob<'a> {
    pub tools: &'a PgTools,
    /// The target; its `dbname` is the database restored into.
    pub conn: &'a ConnSettings,
    pub jobs: u32,
    /// `maintenance_work_mem` for the restore's sessions ("default": the server's).
    pub maintenance_work_mem: &'a str,
    /// `-L`: restore only these TOC lines (an exact `--table` selection).
    pub list_file: Option<&'a Path>,
    /// `-n`: restore only these schemas.
    pub schemas: &'a [String],
    /// Restore owners and privileges (every role the dump needs exists on the
    /// target); false is pg_restore `--no-owner --no-privileges`.
    pub owners: bool,
    /// A table restore: one transaction (all or nothing, [`script`]), and
    /// with [`TableWay::Clean`] the listed objects dropped first, with
    /// [`TableWay::DataOnly`] only rows.
    pub table_way: Option<TableWay>,
    /// The longest any of pg_restore's statements waits for a lock
    /// (`--lock-wait-timeout`): then pgbak cancels it and names who blocked
    /// it. None: no limit.
    pub lock_wait_timeout: Option<Duration>,
    /// Restore tablespace assignments; false is `--no-tablespaces` (verify's
    /// copy: its throwaway role may create in no tablespace but the default).
    pub tablespaces: bool,
    /// `--role`: SET ROLE to it after connecting (`pgbak restore --role`).
    pub role: Option<&'a str>,
}

impl<'a> RestoreJob<'a> {
    /// The whole archive into `conn`'s database with `jobs` jobs, and nothing
    /// more: no owners, privileges or tablespaces, no selection, no lock
    /// limit (verify's copy). Restore adds what it keeps.
    pub fn new(
        tools: &'a PgTools,
        conn: &'a ConnSettings,
        jobs: u32,
        maintenance_work_mem: &'a str,
    ) -> RestoreJob<'a> {
        RestoreJob {
            tools,
            conn,
            jobs,
            maintenance_work_mem,
            list_file: None,
            schemas: &[],
            owners: false,
            table_way: None,
            lock_wait_timeout: None,
            tablespaces: false,
            role: None,
        }
    }
}

/// How `restore --table` treats the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableWay {
    /// The table is not there: create it with everything that belongs to it.
    Create,
    /// `--data-only`: append the rows to the existing table.
    DataOnly,
    /// `--clean`: drop the table (with what belongs to it) and create it again.
    Clean,
}

/// Checks a `maintenance_work_mem` value before it goes into PGOPTIONS.
pub fn validate_memory_setting(value: &str) -> Result<()> {
    if value == "default" {
        return Ok(());
    }
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["", "kB", "MB", "GB", "TB"].contains(&unit)
    {
        return Err(usage(format!(
            "invalid --maintenance-work-mem {value:?}: expected a size such as 512MB or 1GB, or \"default\""
        )));
    }
    Ok(())
}

/// PGOPTIONS of the restore's sessions (pg_restore's, and psql's for a table):
/// the connection's own options, then no timeouts, then the tuning. The
/// archive turns a role's `statement_timeout`, `lock_timeout` and
/// `idle_in_transaction_session_timeout` off itself, but only in its first
/// statements: before them, psql's single transaction idles while pg_restore
/// starts, and a role's 1 ms idle timeout ended it.
pub fn pgoptions(conn: &ConnSettings, maintenance_work_mem: &str) -> String {
    let tuning = format!("-c maintenance_work_mem={maintenance_work_mem}");
    let mut ours = super::client::NO_TIMEOUTS.to_vec();
    if maintenance_work_mem != "default" {
        ours.push(&tuning);
    }
    super::client::startup_options(conn.params.get("options").map(String::as_str), &ours)
}

/// libpq conninfo naming only the database (host, user, password come from
/// the environment): any database name survives, `=` and quotes included.
/// TCP keepalives go with it (libpq has no environment variable for them).
pub fn dbname_conninfo(dbname: &str) -> String {
    format!(
        "dbname='{}' {}",
        dbname.replace('\\', "\\\\").replace('\'', "\\'"),
        tools::KEEPALIVE_CONNINFO
    )
}

/// Runs pg_restore to its end, or until a signal: then pg_restore and its
/// workers are stopped (their queries cancelled) before the error returns.
pub async fn restore(
    job: &RestoreJob<'_>,
    input: &Input,
    signals: &mut Signals,
) -> Result<PgRestoreVerdict> {
    if let Some(way) = job.table_way {
        return script::in_one_transaction(job, way, input, signals).await;
    }
    let mut cmd = job.tools.command("pg_restore", job.conn);
    if !job.owners {
        cmd.arg("--no-owner").arg("--no-privileges");
    }
    if !job.tablespaces {
        cmd.arg("--no-tablespaces");
    }
    if let Some(role) = job.role {
        cmd.arg(format!("--role={role}"));
    }
    cmd.arg("--no-password")
        .arg(format!("--jobs={}", job.jobs.max(1)))
        .arg(format!("--dbname={}", dbname_conninfo(&job.conn.dbname)));
    if let Some(list) = job.list_file {
        cmd.arg("--use-list").arg(list);
    }
    for schema in job.schemas {
        cmd.arg(format!("--schema={schema}"));
    }
    input.attach(&mut cmd)?;
    cmd.env("PGOPTIONS", pgoptions(job.conn, job.maintenance_work_mem));
    // Its sessions: watched for lock waits, ended on the server when pgbak is stopped.
    let own = sessions::Sessions::of(job.conn);
    // Its own process group: the workers pg_restore forks are stopped with it.
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    ui::debug(&format!("running {}", tools::describe(&cmd)));
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", job.tools.tool("pg_restore").display()))?;
    let mut group = ProcessGroup::new(child);
    let watch = job
        .lock_wait_timeout
        .map(|limit| sessions::Watch::start(job.conn.clone(), own.clone(), limit));
    let stderr = tools::drain_stderr(
        group
            .child
            .stderr
            .take()
            .context("pg_restore has no stderr")?,
        STDERR_CAP,
    );
    let status = tokio::select! {
        status = group.child.wait() => status.context("waiting for pg_restore")?,
        sig = signals.recv() => {
            ui::warn(&format!("{}: stopping pg_restore and its statements on the server", sig.name()));
            // Frozen first, so it starts nothing new while its sessions end.
            group.signal(Signal::STOP);
            sessions::terminate(job.conn, &own).await;
            group.stop().await;
            return Err(interrupted(sig));
        }
    };
    group.reaped = true;
    let (stderr, truncated) = stderr.await.unwrap_or_default();
    let mut outcome = judge(
        &stderr,
        status.code(),
        status.signal(),
        truncated,
        job.jobs.max(1),
    );
    outcome.blockers = watch.map(|w| w.blockers()).unwrap_or_default();
    Ok(outcome)
}

/// A child in its own process group, killed with its group when dropped.
struct ProcessGroup {
    child: Child,
    pgid: Option<i32>,
    reaped: bool,
}

impl ProcessGroup {
    fn new(child: Child) -> ProcessGroup {
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        ProcessGroup {
            child,
            pgid,
            reaped: false,
        }
    }

    fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.pgid.and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pgid, sig);
        }
    }

    /// SIGTERM, then SIGKILL (a stopped group is continued to see the SIGTERM).
    async fn stop(&mut self) {
        self.signal(Signal::TERM);
        self.signal(Signal::CONT);
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            self.signal(Signal::KILL);
            let _ = self.child.wait().await;
        }
        // Workers may outlive the leader by a moment.
        self.signal(Signal::KILL);
        self.reaped = true;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_settings_are_checked_and_options_kept() {
        for ok in ["1GB", "512MB", "65536", "default"] {
            assert!(validate_memory_setting(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1 GB", "1GB -c x=y", "lots", "GB"] {
            assert!(validate_memory_setting(bad).is_err(), "{bad}");
        }
        let mut conn = crate::pg::url::ConnSettings::from_url("postgresql://u@h/d", &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let off =
            "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0";
        assert_eq!(
            pgoptions(&conn, "1GB"),
            format!("{off} -c maintenance_work_mem=1GB")
        );
        assert_eq!(pgoptions(&conn, "default"), off);
        conn.params
            .insert("options".into(), "-c search_path=app".into());
        assert_eq!(
            pgoptions(&conn, "1GB"),
            format!("-c search_path=app {off} -c maintenance_work_mem=1GB")
        );
        assert_eq!(
            pgoptions(&conn, "default"),
            format!("-c search_path=app {off}")
        );
    }

    #[test]
    fn conninfo_quotes_any_name() {
        let keepalives = format!(" {}", tools::KEEPALIVE_CONNINFO);
        assert_eq!(
            dbname_conninfo("odd db \"name\""),
            format!("dbname='odd db \"name\"'{keepalives}")
        );
        assert_eq!(
            dbname_conninfo("a'b\\c=d"),
            format!("dbname='a\\'b\\\\c=d'{keepalives}")
        );
    }
}
