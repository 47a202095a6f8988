//! Children that must not outlive pgbak, and the sweep that stops those that
//! did anyway; and the environment every child starts from ([`command`]).
//!
//! Every child pgbak starts with [`crate::pg::tools::die_with_parent`]
//! (pg_dump, pg_dumpall, pg_restore, the throwaway server) gets the parent-death
//! signal, and also the environment marker `PGBAK_PARENT=<pid>:<start>`: the
//! pid of the pgbak that started it and that process's start time (clock
//! ticks since boot, field 22 of `/proc/<pid>/stat`). The signal reaches only
//! the direct child, not the processes it forks (pg_restore's workers, the
//! server's backends), and not a child that ignores or survives it; those
//! inherit the marker. So the next run of `backup`, `verify`, `restore` or
//! `cron` ([`stop_leftovers`]) reads `/proc/*/environ` (the processes it may
//! read: its own user's, or all as root), and stops the ones whose pgbak is
//! gone: SIGTERM, SIGKILL after [`GRACE`].
//!
//! No state file, and safe against pid reuse: a pgbak counts as alive only when
//! its pid runs *and* started at the recorded time, and a leftover is signalled
//! only while it is still the process (same start time) that was found. Only
//! processes in pgbak's own pid namespace are judged (a pid from another
//! namespace, a container's, means something else here). A child kept on
//! purpose (`verify --ephemeral --no-cleanup`) gets no marker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::ui;

/// The environment variable that marks a child of pgbak.
pub const MARKER: &str = "PGBAK_PARENT";

/// How long a leftover gets to stop after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// This process's marker value, `<pid>:<start>`.
pub fn identity() -> &'static str {
    static IDENTITY: OnceLock<String> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let pid = std::process::id();
        let start = stat(Path::new("/proc/self")).map_or(0, |s| s.start);
        format!("{pid}:{start}")
    })
}

/// Marks a child as pgbak's: the sweep of a later run stops it if this pgbak is gone.
pub fn mark(cmd: &mut tokio::process::Command) {
    cmd.env(MARKER, identity());
}

/// A command for `program` whose environment holds only what every child
/// needs from this run's ([`crate::settings::env`]): where things are and the
/// locale ([`inherited`]). Never pgbak's own secrets (AWS keys, webhook and
/// heartbeat URLs, routing keys, the values of `*_FILE`s): a child gets its
/// connection explicitly ([`crate::pg::tools::PgTools::command`] sets the
/// libpq variables of the one server it talks to), and nothing else of the
/// run reaches `/proc/<pid>/environ` of a pg_dump or what it starts.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear().envs(
        crate::settings::env()
            .vars_os()
            .filter(|(name, _)| name.to_str().is_some_and(inherited)),
    );
    cmd
}

/// Whether a child inherits the variable `name` from this run: the search
/// path, home and temp directories, locale and time zone, the user's name
/// (libpq's default user), a Kerberos credential cache's location (a path,
/// not the credential), OpenSSL's trusted roots (`sslrootcert=system`). Pure.
pub fn inherited(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "HOME"
            | "TMPDIR"
            | "LANG"
            | "LANGUAGE"
            | "TZ"
            | "USER"
            | "LOGNAME"
            | "KRB5CCNAME"
            | "SSL_CERT_FILE"
            | "SSL_CERT_DIR"
    ) || name.starts_with("LC_")
}

/// What `alembic` gets beyond [`inherited`]: its connection, as the
/// application's `env.py` reads it (`DATABASE_URL`, libpq's `PG*`), and the
/// Python environment it runs in. Pure.
pub fn for_alembic(name: &str) -> bool {
    name == "DATABASE_URL"
        || name == "VIRTUAL_ENV"
        || name.starts_with("PG") && !name.starts_with("PGBAK_")
        || name.starts_with("PYTHON")
}

/// What `/proc/<pid>/stat` says that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `R`, `S`, `Z` (zombie: already dead, waiting for its parent) ...
    state: char,
    start: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses: the fields after it start after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start: fields.get(22 - 3)?.parse().ok()?,
    })
}

fn stat(proc_dir: &Path) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(proc_dir.join("stat")).ok()?)
}

/// `<pid>:<start>` -> (pid, start).
fn parse_marker(value: &str) -> Option<(u32, u64)> {
    let (pid, start) = value.split_once(':')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// The marker's value in a NUL-separated `/proc/<pid>/environ`.
fn marker_in(environ: &[u8]) -> Option<&str> {
    let prefix = format!("{MARKER}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// A process left running by a pgbak that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    /// Its start time: it is signalled only while it is still this process.
    start: u64,
    /// Its command name (`pg_restore`, `postgres`).
    pub program: String,
    /// The pid of the pgbak that started it (or its parent).
    pub parent: u32,
}

impl Leftover {
    /// Whether the process still runs (a zombie has stopped: only its parent's wait is missing).
    fn running(&self) -> bool {
        stat(&proc_dir(self.pid)).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }

    fn signal(&self, signal: Signal) {
        if !self.running() {
            return;
        }
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return;
        };
        if let Err(err) = rustix::process::kill_process(pid, signal) {
            ui::debug(&format!(
                "signalling pid {}: {}",
                self.pid,
                std::io::Error::from(err)
            ));
        }
    }
}

/// Whether the process `pid` that started at `start` (clock ticks since
/// boot) still runs: a pid reused by another process does not count.
pub fn runs(pid: u32, start: u64) -> bool {
    stat(&proc_dir(pid)).is_some_and(|s| s.start == start && s.state != 'Z')
}

fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Every readable process in this pid namespace whose marker names a pgbak
/// that no longer runs. Unreadable processes (other users') are skipped.
pub fn find_leftovers() -> Vec<Leftover> {
    let own_ns = std::fs::read_link("/proc/self/ns/pid").ok();
    let own_pid = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // Whether each marker's pgbak is alive, asked once per marker.
    let mut alive: BTreeMap<(u32, u64), bool> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let dir = entry.path();
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        let Some((parent, parent_start)) = marker_in(&environ).and_then(parse_marker) else {
            continue;
        };
        let parent_alive = *alive.entry((parent, parent_start)).or_insert_with(|| {
            stat(&proc_dir(parent)).is_some_and(|s| s.start == parent_start && s.state != 'Z')
        });
        if parent_alive || std::fs::read_link(dir.join("ns/pid")).ok() != own_ns {
            continue;
        }
        let Some(own) = stat(&dir).filter(|s| s.state != 'Z') else {
            continue;
        };
        let program = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        found.push(Leftover {
            pid,
            start: own.start,
            program,
            parent,
        });
    }
    found
}

/// Stops what [`find_leftovers`] finds: one warning per process, SIGTERM
/// (pg_dump and pg_restore cancel their queries, a postmaster shuts down),
/// then SIGKILL for any still running after [`GRACE`]. Never fails the run.
pub async fn stop_leftovers() {
    let leftovers = tokio::task::spawn_blocking(find_leftovers)
        .await
        .unwrap_or_default();
    if leftovers.is_empty() {
        return;
    }
    for l in &leftovers {
        ui::warn(&format!(
            "stopping {} (pid {}): left running by pgbak pid {}, which is gone",
            l.program, l.pid, l.parent
        ));
        l.signal(Signal::TERM);
    }
    let deadline = Instant::now() + GRACE;
    while leftovers.iter().any(Leftover::running) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in leftovers.iter().filter(|l| l.running()) {
        ui::warn(&format!(
            "{} (pid {}) did not stop within {}s of SIGTERM: killing it",
            l.program,
            l.pid,
            GRACE.as_secs()
        ));
        l.signal(Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_whatever_the_command_name() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        let cases = [
            (format!("42 (pg_restore) {tail}"), Some(('S', 987_654))),
            (format!("42 (a) b (c)) {tail}"), Some(('S', 987_654))),
            ("42 (short) S 1 2".to_owned(), None),
            ("garbage".to_owned(), None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_stat(&line).map(|s| (s.state, s.start)),
                want,
                "{line}"
            );
        }
        let own = stat(Path::new("/proc/self")).expect("this process's stat");
        // (the main thread's state: it may sleep while this test thread runs)
        assert!(own.start > 0 && own.state != 'Z', "{own:?}");
    }

    #[test]
    fn markers_are_found_in_an_environment_block() {
        let environ = b"PATH=/bin\0PGBAK_PARENT=123:456\0PGBAK_PARENTS=x\0";
        assert_eq!(marker_in(environ), Some("123:456"));
        assert_eq!(marker_in(b"PATH=/bin\0"), None);
        assert_eq!(parse_marker("123:456"), Some((123, 456)));
        for bad in ["123", "x:1", "1:", ""] {
            assert_eq!(parse_marker(bad), None, "{bad}");
        }
    }

    #[test]
    fn children_inherit_no_secret() {
        for name in [
            "PATH",
            "HOME",
            "TMPDIR",
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "TZ",
            "USER",
            "KRB5CCNAME",
        ] {
            assert!(inherited(name), "{name}");
        }
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            "ALERT_WEBHOOK_URL",
            "PAGERDUTY_ROUTING_KEY",
            "HEARTBEAT_URL",
            "DATABASE_URL",
            "DATABASE_URL_FILE",
            "PGPASSWORD",
            "PGBAK_VERIFY_TARGET_URL",
            "PGBAK_AGE_IDENTITY_FILE",
            "S3_BUCKET",
            "LD_PRELOAD",
        ] {
            assert!(!inherited(name), "{name}");
        }
        for name in [
            "DATABASE_URL",
            "PGPASSWORD",
            "PGHOST",
            "PYTHONPATH",
            "VIRTUAL_ENV",
        ] {
            assert!(for_alembic(name), "{name}");
        }
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "ALERT_WEBHOOK_URL",
            "PGBAK_AGE_IDENTITY_FILE",
        ] {
            assert!(!for_alembic(name), "{name}");
        }
    }

    #[test]
    fn this_process_is_alive_by_its_own_marker() {
        let (pid, start) = parse_marker(identity()).expect("own identity");
        assert_eq!(pid, std::process::id());
        assert_eq!(stat(&proc_dir(pid)).map(|s| s.start), Some(start));
    }
}
