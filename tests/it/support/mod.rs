//! Test harness: throwaway PostgreSQL clusters, an S3 API server (moto) and an HTTP listener,
//! all real processes on 127.0.0.1, plus the `pgbak` command with a clean environment, what
//! tests do to a backup directory ([`backups`]) and the faults they inject ([`faults`]).
//!
//! Binaries come from `.tools/paths.env`, written by `scripts/setup.sh`. Shared servers are
//! started lazily, once per test process; a detached reaper stops and removes each one when the
//! test process exits, however it exits (panic, abort, SIGKILL).
//!
//! Environment: `PGBAK_TEST_PG16_BIN`, `PGBAK_TEST_PG17_BIN`, ... override `.tools/paths.env`
//! (an empty value disables that version); `PGBAK_FIXTURE` replaces the fixture path;
//! `PGBAK_TEST_TMPDIR` moves the scratch dirs (clusters, sockets, moto logs).
#![allow(dead_code, unused_imports)]

pub mod backups;
pub mod bucket;
pub mod cluster;
pub mod cron;
pub mod databases;
pub mod destinations;
pub mod faults;
pub mod http;
pub mod keys;
pub mod names;
pub mod processes;
pub mod proxy;
pub mod roles;
pub mod runs;
pub mod s3;
pub mod verify;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub use backups::{
    assert_only, backup, backup_cmd, dumps, earlier_backup, edit_meta, files, lock_owned_by,
    one_file, read_meta, restore_cmd, restore_exits, run, sha256_hex, spawn_backup, stdout_json,
};
pub use cluster::{
    pg15, pg16, pg17, private_cluster, standby_of, OwnedCluster, Pg, TestDb, PASSWORD,
};
pub use faults::{
    wait_for_blocked_dump, wait_for_lock, wait_no_pg_dump, wait_until, TableLock, Tmpfs,
};
pub use http::{HttpListener, Request};
pub use s3::{private_s3, s3, second_s3, MultipartUpload, OwnedS3, S3Object, S3Server};

/// Absolute paths of the tools `scripts/setup.sh` installed.
#[derive(Debug, Clone)]
pub struct Paths {
    pub pg16_bin: PathBuf,
    pub pg17_bin: Option<PathBuf>,
    pub pg15_bin: Option<PathBuf>,
    pub moto: PathBuf,
    pub aws: Option<PathBuf>,
}

/// The repository root (where Cargo.toml is).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Paths from `.tools/paths.env`; a variable of the same name in the environment wins.
pub fn paths() -> &'static Paths {
    static PATHS: OnceLock<Paths> = OnceLock::new();
    PATHS.get_or_init(|| {
        let file = repo_dir().join(".tools/paths.env");
        let mut vars = match std::fs::read_to_string(&file) {
            Ok(text) => parse_env_file(&text),
            Err(err) => panic!(
                "cannot read {}: {err}; run scripts/setup.sh first",
                file.display()
            ),
        };
        for (key, value) in std::env::vars() {
            if key.starts_with("PGBAK_TEST_") {
                vars.insert(key, value);
            }
        }
        let get = |key: &str| -> Option<PathBuf> {
            vars.get(key).filter(|v| !v.is_empty()).map(PathBuf::from)
        };
        let required = |key: &str| -> PathBuf {
            get(key).unwrap_or_else(|| {
                panic!(
                    "{key} missing in {}; run scripts/setup.sh first",
                    file.display()
                )
            })
        };
        Paths {
            pg16_bin: required("PGBAK_TEST_PG16_BIN"),
            pg17_bin: get("PGBAK_TEST_PG17_BIN"),
            pg15_bin: get("PGBAK_TEST_PG15_BIN"),
            moto: required("PGBAK_TEST_MOTO"),
            aws: get("PGBAK_TEST_AWS"),
        }
    })
}

/// Parses `KEY=VALUE` lines as setup.sh writes them: values may be shell single-quoted, with
/// `'\''` standing for a quote inside.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim_start_matches("export ").trim();
        let mut value = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    for q in chars.by_ref() {
                        if q == '\'' {
                            break;
                        }
                        value.push(q);
                    }
                }
                '\\' => {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                }
                '"' => {
                    for q in chars.by_ref() {
                        if q == '"' {
                            break;
                        }
                        value.push(q);
                    }
                }
                c => value.push(c),
            }
        }
        vars.insert(key.to_string(), value);
    }
    vars
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed
/// out before (servers started in parallel threads do not race for the same one).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0 to find a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found after 100 tries");
}

/// Whether the tests run as root (then PostgreSQL runs as the `postgres` user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` system user.
pub fn postgres_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let name = std::ffi::CString::new("postgres").unwrap_or_default();
        // SAFETY: name is a valid C string; getpwnam returns null or a pointer to static data
        // that is read at once (tests call this under OnceLock, so no concurrent getpwnam here).
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        assert!(
            !pw.is_null(),
            "running as root, but there is no `postgres` user to run the server as \
             (useradd --system postgres)"
        );
        // SAFETY: pw is non-null and points to a valid passwd struct.
        unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
    })
}

/// uid and gid of the system user `name` (which must exist).
pub fn ids_of(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, name])
            .output()
            .expect("running id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {name}"))
    };
    (id("-u"), id("-g"))
}

/// Gives `path` (recursively) to the postgres user when running as root; no-op otherwise.
pub fn chown_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let (uid, gid) = postgres_ids();
    fn walk(path: &Path, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        if path.is_dir() && !path.is_symlink() {
            for entry in std::fs::read_dir(path).expect("read_dir") {
                walk(&entry.expect("dir entry").path(), uid, gid);
            }
        }
    }
    walk(path, uid, gid);
}

/// A command that runs as the postgres user when the tests run as root (the server and initdb
/// refuse to run as root), with a working directory that user can enter.
pub fn as_server_user(program: impl AsRef<OsStr>, cwd: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.current_dir(cwd);
    clear_pg_env(&mut cmd);
    cmd
}

/// Where scratch dirs go: `PGBAK_TEST_TMPDIR`, else the system temp dir; as root always
/// `/tmp` unless overridden, since a root-only `TMPDIR` would lock the postgres user out.
pub fn scratch_root() -> PathBuf {
    match std::env::var_os("PGBAK_TEST_TMPDIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ if is_root() => PathBuf::from("/tmp"),
        _ => std::env::temp_dir(),
    }
}

/// A fresh directory under [`scratch_root`], reachable by the postgres user.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = scratch_root().join(format!(
        "pgbak-it-{prefix}-{}-{n}-{nanos:x}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Starts a detached shell that waits for this test process to end, then runs `cleanup`
/// (a POSIX sh snippet; `$1`.. are `args`). Its own process group keeps it alive through a
/// Ctrl-C aimed at the tests; its stdio is /dev/null so it never holds the test's output pipe.
pub fn spawn_reaper(cleanup: &str, args: &[&OsStr]) -> Child {
    let script =
        format!("while kill -0 \"$PGBAK_TEST_PID\" 2>/dev/null; do sleep 1; done\n{cleanup}\n");
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("pgbak-test-reaper")
        .args(args)
        .env("PGBAK_TEST_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawning the reaper shell")
}

/// Stops the reaper in `slot` (its owner cleaned up itself, in Drop): nothing is left to do
/// when the test process ends.
pub fn stop_reaper(slot: &Mutex<Option<Child>>) {
    if let Some(mut reaper) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = reaper.kill();
        let _ = reaper.wait();
    }
}

/// Removes libpq variables (`PG*`) so the developer's environment cannot redirect a client.
pub fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Removes every variable pgbak reads, so a test sets exactly what it means to.
fn clear_pgbak_env(cmd: &mut Command) {
    const PREFIXES: &[&str] = &["PG", "AWS_", "S3_", "ALERT_", "BACKUP_", "LOG_"];
    const EXACT: &[&str] = &[
        "DATABASE_URL",
        "VERIFY_ON_BACKUP",
        "HEARTBEAT_URL",
        "METRICS_FILE",
    ];
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if PREFIXES.iter().any(|p| k.starts_with(p)) || EXACT.contains(&k.as_ref()) {
            cmd.env_remove(&key);
        }
    }
}

/// The `pgbak` binary under test with a clean environment (no DATABASE_URL, PG*, AWS_*, S3_*,
/// ALERT_*, BACKUP_*, LOG_*, ...) and `PGBAK_PG_BIN_DIR` set to zstd-capable client tools:
/// PostgreSQL 17's when installed, else those of `pg`'s own version.
pub fn pgbak(pg: &Pg) -> Command {
    let mut cmd = pgbak_bare();
    let bin = paths().pg17_bin.clone().unwrap_or_else(|| pg.bin.clone());
    cmd.env("PGBAK_PG_BIN_DIR", bin);
    cmd
}

/// The unprivileged system user `verify --ephemeral` runs its throwaway server as when pgbak
/// runs as root (pgbak's default, as the package creates it).
pub const EPHEMERAL_USER: &str = "pgbak";

/// Whether the system user `name` exists.
pub fn user_exists(name: &str) -> bool {
    Command::new("id")
        .args(["-u", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// As root, makes sure [`EPHEMERAL_USER`] exists (created once per machine, idempotently: a
/// concurrent creation by another test process is fine).
pub fn ensure_ephemeral_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if !is_root() || user_exists(EPHEMERAL_USER) {
            return;
        }
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(EPHEMERAL_USER)
            .status();
        assert!(
            user_exists(EPHEMERAL_USER),
            "running as root, and the system user {EPHEMERAL_USER} that verify --ephemeral \
             needs could not be created (useradd --system {EPHEMERAL_USER})"
        );
    });
}

/// The `pgbak` binary with the same clean environment and no `PGBAK_PG_BIN_DIR`.
pub fn pgbak_bare() -> Command {
    ensure_ephemeral_user();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgbak"));
    clear_pgbak_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// [`pgbak`] for another copy of the binary (the one a package installs).
pub fn pgbak_binary(program: &Path, pg: &Pg) -> Command {
    let mut cmd = Command::new(program);
    clear_pgbak_env(&mut cmd);
    cmd.stdin(Stdio::null());
    let bin = paths().pg17_bin.clone().unwrap_or_else(|| pg.bin.clone());
    cmd.env("PGBAK_PG_BIN_DIR", bin);
    cmd
}

/// Every subcommand, as the man pages and packages name them.
pub const SUBCOMMANDS: [&str; 12] = [
    "backup",
    "restore",
    "verify",
    "cron",
    "list",
    "check",
    "keygen",
    "prune",
    "unpin",
    "sync",
    "completions",
    "man",
];

/// Runs `cmd` to its end; the test fails, with the command's output, unless it succeeded.
/// `what` names it in that failure.
pub fn output_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        output_text(&out)
    );
    out
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
