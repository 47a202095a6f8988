//! Finding pg_dump, pg_restore and friends at least as new as the server, and
//! running them with the connection in their environment, never in argv
//! (their environment is given explicitly, from this run's snapshot).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};

use super::url::ConnSettings;
use crate::error::usage;

/// A directory of client tools and the version its pg_dump reports.
#[derive(Debug, Clone)]
pub struct PgTools {
    pub bin_dir: PathBuf,
    pub major: u32,
    /// As pg_dump prints it, e.g. "17.10".
    pub version: String,
}

impl PgTools {
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A command for `tool` that talks to `conn`: the little of this run's
    /// environment every child gets ([`crate::children::command`]) and the
    /// connection (password included) as libpq variables, nothing else;
    /// killed if pgbak drops it (Ctrl-C, errors).
    pub fn command(&self, tool: &str, conn: &ConnSettings) -> Command {
        let mut cmd = crate::children::command(self.tool(tool));
        cmd.envs(conn.child_env());
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        // SIGTERM makes pg_dump/pg_restore cancel their queries on the server.
        die_with_parent(&mut cmd, Signal::TERM);
        cmd
    }
}

/// TCP keepalives for the client tools' connections, as conninfo (the same
/// timing as pgbak's own sessions, [`super::client::KEEPALIVE_IDLE`]): a
/// half-open link fails pg_dump in about two minutes instead of hanging.
pub const KEEPALIVE_CONNINFO: &str =
    "keepalives=1 keepalives_idle=60 keepalives_interval=10 keepalives_count=6";

/// Makes the child receive `signal` when pgbak dies, however it dies
/// (SIGKILL, OOM killer): no pg_dump, pg_restore or throwaway server outlives
/// the run that started it. A uid change clears the setting: set the uid with
/// `Command::uid` (std changes it before this hook runs), never in another
/// `pre_exec`. pgbak spawns children only from the main thread and the
/// runtime's worker threads, which live as long as the process, so the
/// thread-scoped kernel setting means "the process" here.
/// The child is also marked for [`crate::children::stop_leftovers`].
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command, signal: Signal) {
    use rustix::process::{getpid, getppid, kill_process, set_parent_process_death_signal};
    // For what the signal misses (the child's own children): the next run's sweep.
    crate::children::mark(cmd);
    let parent = getpid();
    // SAFETY: the only `unsafe` in pgbak (the `layout` test counts it). std has
    // no safe way to run code in the child between fork and exec, and the
    // parent-death signal can only be set there, by the child itself. The hook
    // makes three raw system calls through rustix (prctl, getppid, kill): no
    // allocation, no lock, nothing that is not async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            set_parent_process_death_signal(Some(signal))?;
            // The parent may have died between fork and prctl.
            if getppid() != Some(parent) {
                let _ = kill_process(getpid(), signal);
            }
            Ok(())
        });
    }
}

/// Parses `pg_dump (PostgreSQL) 16.14 (Debian 16.14-1.pgdg120+1)` into (16, "16.14").
pub fn parse_version(output: &str) -> Option<(u32, String)> {
    let rest = output.trim().split(')').nth(1)?.trim();
    let version = rest.split_whitespace().next()?;
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().ok()?;
    Some((major, version.to_owned()))
}

/// `pg_dump --version`, with only the environment every child inherits.
pub(super) fn version_command(pg_dump: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(pg_dump);
    cmd.env_clear()
        .envs(
            crate::settings::env()
                .vars_os()
                .filter(|(name, _)| name.to_str().is_some_and(crate::children::inherited)),
        )
        .arg("--version")
        .stdin(Stdio::null());
    cmd
}

/// The version in what `pg_dump --version` printed, when it succeeded.
pub(super) fn version_in(out: &std::process::Output) -> Option<(u32, String)> {
    out.status
        .success()
        .then(|| parse_version(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

fn version_of(pg_dump: &Path) -> Option<(u32, String)> {
    version_in(&version_command(pg_dump).output().ok()?)
}

/// Directories to look in, in order: PATH, then the usual install roots
/// (newest first).
pub(super) fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = crate::settings::path_dirs();
    let mut roots = Vec::new();
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix(prefix) {
                if let Ok(major) = version.parse::<u32>() {
                    roots.push((major, entry.path().join(suffix)));
                }
            }
        }
    }
    roots.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    dirs.extend(roots.into_iter().map(|(_, dir)| dir));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs
}

/// Picks the client tools for a server of major version `need` (or newer,
/// when an archive written by a newer pg_dump must be read):
/// `--pg-bin-dir`/`PGBAK_PG_BIN_DIR` when given (and then only it), else the
/// first new-enough pg_dump on PATH, else in the usual install roots.
pub fn find(explicit: Option<&Path>, need: u32, server_text: &str) -> Result<PgTools> {
    let mut seen: Vec<(PathBuf, String)> = Vec::new();
    let mut visited = std::collections::HashSet::new();
    let dirs = match explicit {
        Some(dir) => vec![dir.to_path_buf()],
        None => candidate_dirs(),
    };
    for dir in dirs {
        if !visited.insert(dir.clone()) {
            continue;
        }
        let pg_dump = dir.join("pg_dump");
        if !pg_dump.is_file() {
            if explicit.is_some() {
                return Err(usage(format!(
                    "--pg-bin-dir {} holds no pg_dump",
                    dir.display()
                )));
            }
            continue;
        }
        match version_of(&pg_dump) {
            Some((major, version)) if major >= need => return Ok(chosen(dir, major, version)),
            Some((_, version)) => seen.push((dir, version)),
            None => seen.push((dir, "unreadable version".to_owned())),
        }
    }
    let found = if seen.is_empty() {
        "none found".to_owned()
    } else {
        seen.iter()
            .map(|(dir, v)| format!("{} ({v})", dir.join("pg_dump").display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(usage(format!(
        "the server runs PostgreSQL {server_text} and needs pg_dump/pg_restore {need} or newer; \
         found: {found}. Install postgresql-client-{need} (Debian/Ubuntu, PGDG repository) or \
         postgresql{need} (RHEL), or point --pg-bin-dir / PGBAK_PG_BIN_DIR at its bin directory"
    )))
}

/// The tools in `dir`, whose pg_dump said `version`: the ones this run uses.
pub(super) fn chosen(dir: PathBuf, major: u32, version: String) -> PgTools {
    crate::ui::debug(&format!(
        "using the client tools in {} (pg_dump {version})",
        dir.display()
    ));
    PgTools {
        bin_dir: dir,
        major,
        version,
    }
}

/// The program and its arguments, for debug logs (never the environment,
/// which holds the password).
pub fn describe(cmd: &Command) -> String {
    let std = cmd.as_std();
    std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stops a child the way an operator would: SIGTERM first (pg_dump and
/// pg_restore then cancel their queries on the server), SIGKILL after 5 s.
pub async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        // Our own child, not reaped yet (id() is Some): the pid is still its.
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
        if waited.is_ok() {
            return;
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Collects a child's stderr while it runs, so a full pipe never stalls it and
/// the text can be quoted in the error.
pub fn collect_stderr(stderr: ChildStderr) -> tokio::task::JoinHandle<String> {
    let drained = drain_stderr(stderr, 1 << 20);
    tokio::spawn(async move { drained.await.map(|(text, _)| text).unwrap_or_default() })
}

/// Reads a child's stderr to its end, keeping the first `cap` bytes (a runaway
/// child must not fill memory) and discarding the rest, never closing the pipe
/// early: a closed pipe kills the child (and pg_restore's workers) by SIGPIPE.
/// Returns the text and whether anything was discarded.
pub fn drain_stderr(
    mut stderr: ChildStderr,
    cap: usize,
) -> tokio::task::JoinHandle<(String, bool)> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        let mut truncated = false;
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                    truncated |= n > room;
                }
            }
        }
        (String::from_utf8_lossy(&kept).trim().to_owned(), truncated)
    })
}

/// Output of a finished child.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The failure of this run, for an error or a report line.
    pub fn failure(&self, what: &str) -> ChildFailed {
        ChildFailed::new(what, self.status, &self.stderr)
    }
}

/// Runs `cmd` to completion with stdout and stderr captured.
pub async fn run(mut cmd: Command, what: &str) -> Result<Finished> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child: Child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let out = child
        .wait_with_output()
        .await
        .with_context(|| format!("waiting for {what}"))?;
    Ok(Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Runs `cmd` and fails with [`ChildFailed`] when it does not exit 0.
pub async fn run_ok(cmd: Command, what: &str) -> Result<Finished> {
    let out = run(cmd, what).await?;
    if !out.success() {
        return Err(out.failure(what).into());
    }
    Ok(out)
}

/// A child process that did not succeed: what it was, how it ended (exit
/// code or signal), and the end of what it said. Every "X failed (exit N):
/// stderr" that pgbak prints is one of these (modelled on ripgrep's `CommandError`).
#[derive(Debug)]
pub struct ChildFailed {
    /// What ran, as the operator knows it (`pg_dumpall --globals-only`).
    pub what: String,
    pub status: ExitStatus,
    /// The last [`STDERR_TAIL`] bytes of its stderr (or log), trimmed.
    pub stderr: String,
}

/// How much of a failed child's stderr an error quotes: the end, where the reason is.
pub const STDERR_TAIL: usize = 4000;

impl ChildFailed {
    pub fn new(what: impl Into<String>, status: ExitStatus, stderr: &str) -> ChildFailed {
        let stderr = stderr.trim();
        let mut start = stderr.len().saturating_sub(STDERR_TAIL);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        ChildFailed {
            what: what.into(),
            status,
            stderr: stderr[start..].to_owned(),
        }
    }

    /// `exit 1`, or `killed by signal 9`.
    pub fn ending(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_owned(),
        }
    }
}

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let said = if self.stderr.is_empty() {
            "no error output".to_owned()
        } else {
            crate::pg::restore::one_line(&self.stderr)
        };
        write!(f, "{} failed ({}): {said}", self.what, self.ending())
    }
}

impl std::error::Error for ChildFailed {}

/// The gzip level when pg_dump has no zstd. Measured with PostgreSQL 16's pg_dump
/// on the fixture at scale 4 (420 MB database), against the scripts' `--compress=9`
/// (84.2 s, 142.6 MB): gzip:1 3.7 s / 160.3 MB (1.12x the size), gzip:3 8.2 s /
/// 152.8 MB, gzip:4 7.0 s / 150.0 MB (0.08x the time, 1.05x the size), gzip:6
/// 20.9 s / 145.1 MB. Level 4 is the one inside both targets (<= 0.10x the time at
/// <= 1.10x the size); level 3 is slower and larger than 4 (zlib switches to lazy
/// matching at 4).
pub const GZIP_FALLBACK: &str = "gzip:4";

/// The compression pg_dump should use when none is asked for: zstd:1 when this
/// pg_dump was built with zstd (pg_dump >= 16), else [`GZIP_FALLBACK`]. The probe makes
/// pg_dump validate the spec against a socket that cannot exist: it checks
/// compression support before it connects.
pub async fn default_compression(tools: &PgTools) -> String {
    compression_given(
        tools.major,
        tools.major >= 16 && takes_zstd(&tools.tool("pg_dump")).await,
    )
}

/// [`default_compression`] of a pg_dump of major version `major`, once
/// [`takes_zstd`] has answered (it is asked only from 16 on).
pub(super) fn compression_given(major: u32, zstd: bool) -> String {
    if major >= 16 && zstd {
        return "zstd:1".to_owned();
    }
    pg_dump_compress_arg(major, GZIP_FALLBACK)
}

/// Whether `pg_dump` (16 or newer) was built with zstd; a probe that cannot
/// run says no.
pub(super) async fn takes_zstd(pg_dump: &Path) -> bool {
    let mut cmd = crate::children::command(pg_dump);
    cmd.args([
        "--compress=zstd:1",
        "--format=custom",
        "--file=/dev/null",
        "--no-password",
        "--host=/nonexistent-pgbak-probe",
    ])
    .env("PGCONNECT_TIMEOUT", "1")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    run(cmd, "pg_dump compression probe")
        .await
        .is_ok_and(|out| !out.stderr.contains("does not support compression"))
}

/// pg_dump before 16 takes only a gzip level: translate `gzip:N` to `N`.
pub fn pg_dump_compress_arg(major: u32, spec: &str) -> String {
    if major >= 16 {
        return spec.to_owned();
    }
    match spec {
        "none" => "0".to_owned(),
        "gzip" => "6".to_owned(),
        _ => spec
            .strip_prefix("gzip:")
            .map_or_else(|| spec.to_owned(), |level| level.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_child_says_how_it_ended_and_quotes_the_end_of_its_stderr() {
        use std::os::unix::process::ExitStatusExt;
        let exited = ChildFailed::new(
            "pg_dumpall --globals-only",
            ExitStatus::from_raw(1 << 8),
            "  role x\nis missing  ",
        );
        assert_eq!(
            exited.to_string(),
            "pg_dumpall --globals-only failed (exit 1): role x | is missing"
        );
        let killed = ChildFailed::new("alembic stamp head", ExitStatus::from_raw(9), "");
        assert_eq!(
            killed.to_string(),
            "alembic stamp head failed (killed by signal 9): no error output"
        );
        let long = format!("{}é{}", "x".repeat(STDERR_TAIL), "the reason");
        let tail = ChildFailed::new("pg_restore", ExitStatus::from_raw(1 << 8), &long);
        assert!(tail.stderr.len() <= STDERR_TAIL && tail.stderr.ends_with("the reason"));
    }

    #[test]
    fn versions_from_every_packaging() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 16.14\n"),
            Some((16, "16.14".into()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some((15, "15.18".into()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 18devel"),
            Some((18, "18devel".into()))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn old_pg_dump_gets_a_gzip_level() {
        assert_eq!(pg_dump_compress_arg(15, "gzip:1"), "1");
        assert_eq!(pg_dump_compress_arg(15, "none"), "0");
        assert_eq!(pg_dump_compress_arg(16, "gzip:1"), "gzip:1");
    }
}
