//! pg_dump, pg_restore and the throwaway server die with a SIGKILLed pgbak: none is left running,
//! and the throwaway server's environment holds no secret.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::processes::{processes_with, signal};
use crate::support::verify::verify_dirs;
use crate::support::{
    self, backup_cmd, dumps, output_text, pg16, pgbak, wait_for_blocked_dump, wait_no_pg_dump,
    wait_until, TableLock, PASSWORD,
};

fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // State is the field after the command name in parentheses; Z is a zombie.
    !stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
}

/// The postmaster of the throwaway cluster under the temp dir, once it runs.
fn ephemeral_postmaster(before: &[PathBuf]) -> Option<(PathBuf, i32)> {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).ok()?.flatten() {
        let dir = entry.path();
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbak-verify-")
            || before.contains(&dir)
        {
            continue;
        }
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            return Some((dir, pid));
        }
    }
    None
}

#[test]
fn trust_sigkill_during_a_dump_leaves_no_pg_dump_running() {
    let pg = pg16();
    let db = pg.db_with_rows("sigkill dump child", 100);
    let tmp = tempfile::tempdir().unwrap();
    let lock = TableLock::hold(pg, &db.name, "t");
    let mut child = backup_cmd(pg, &db.name, tmp.path(), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_blocked_dump(pg, &db.name);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_no_pg_dump(pg, &db.name, Duration::from_secs(10));
    drop(lock);
}

/// A backup of `db` plus a verify run of it that is SIGKILLed once pg_restore
/// and its workers run: no pg_restore of that run survives it.
///
/// Nothing but the parent-death signal may be what stops them, or the test
/// proves nothing: pgbak's end of pg_restore's stderr pipe closes when it
/// dies, and a pg_restore worker (the leader ignores SIGPIPE, its workers do
/// not) that then writes an error dies of SIGPIPE and takes the leader with
/// it. pg_dump 17's archives make every worker write one on a 16 server
/// (`SET transaction_timeout`, a harmless error), which is how this test
/// passed before the signal existed. So dump and restore with the server's
/// own major version: nothing is written to stderr, and without the signal
/// pg_restore runs on to the end of the restore, far beyond the window below.
#[test]
fn trust_sigkill_during_a_verify_restore_leaves_no_pg_restore_running() {
    let pg = pg16();
    let db = pg.fixture_db("sigkill restore child", 1.0);
    let tmp = tempfile::tempdir().unwrap();
    let same_major = || {
        let mut cmd = support::pgbak_bare();
        cmd.env("PGBAK_PG_BIN_DIR", &pg.bin)
            .env("DATABASE_URL", pg.url(&db.name));
        cmd
    };
    let out = same_major()
        .arg("backup")
        .arg("--output-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = tmp.path().join(&dumps(tmp.path())[0]);
    let dump_text = dump.to_string_lossy().into_owned();
    let mut child = same_major()
        .args(["verify", "--jobs", "4"])
        .arg(&dump)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The leader and at least one worker (forked by pg_restore: not pgbak's child).
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_with(&["pg_restore", &dump_text, "--dbname"]).len() < 2 {
        assert!(Instant::now() < deadline, "the restore never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_with(&["pg_restore", &dump_text]);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg_restore of the killed verify still runs: pids {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next verify sweeps the killed run's temporary database.
    let out = crate::support::run(&mut crate::support::verify::verify_cmd(&db, &dump, &[]));
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn trust_ephemeral_cluster_gets_no_secrets_dies_with_pgbak_and_is_swept() {
    let pg = pg16();
    let db = pg.fixture_db("ephemeral secrets", 0.3);
    let tmp = tempfile::tempdir().unwrap();
    // Written by PostgreSQL 16's pg_dump, so its pg_restore (beside pgvector) reads it.
    let dump = crate::support::verify::backup_with(&db, tmp.path(), Some(&pg.bin));
    let before = verify_dirs(&std::env::temp_dir());
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-never-in-children"),
        (
            "ALERT_WEBHOOK_URL",
            "https://hooks.example/never-in-children",
        ),
        ("PAGERDUTY_ROUTING_KEY", "routing-key-never-in-children"),
    ];
    // PostgreSQL 16's own tools: its installation has pgvector for the throwaway server.
    let mut cmd = pgbak(pg);
    cmd.env("DATABASE_URL", pg.url(&db.name))
        .env("PGBAK_PG_BIN_DIR", &pg.bin)
        .args(["verify", "--ephemeral"])
        .arg(&dump)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("verify.log")).unwrap());
    for (k, v) in secrets {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Once the restore runs, stop pgbak (SIGSTOP) so the cluster stays up
    // while the test looks at it; the restore goes on.
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes_with(&["pg_restore", &dump.to_string_lossy(), "--dbname"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restore never started: {}",
            std::fs::read_to_string(tmp.path().join("verify.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), libc::SIGSTOP);
    let (dir, postmaster) = ephemeral_postmaster(&before).expect("the throwaway cluster runs");
    // The server's environment, which every program it starts inherits:
    // PATH, LANG and TZ at most, no secret of pgbak's. (Read from /proc: the
    // cluster takes no login without the password only pgbak knows.)
    let environ = String::from_utf8_lossy(
        &std::fs::read(format!("/proc/{postmaster}/environ"))
            .expect("reading the server's environ"),
    )
    .replace('\0', "\n");
    assert!(!environ.contains(PASSWORD), "{environ}");
    assert!(!environ.contains("DATABASE_URL"), "{environ}");
    for (k, v) in secrets {
        assert!(
            !environ.contains(k) && !environ.contains(v),
            "{k} in {environ}"
        );
    }
    for line in environ.lines().filter(|l| !l.is_empty()) {
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            ["PATH", "LANG", "TZ", "PWD", "SHLVL", "_"].contains(&key)
                || key.starts_with("PG")
                || key.starts_with("LC_"),
            "unexpected variable in the throwaway server's environment: {line}"
        );
    }
    // SIGKILL pgbak: the server dies with it.
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(Duration::from_secs(15), || !process_alive(postmaster));
    assert!(dir.exists(), "SIGKILL cannot remove the directory");
    // The next --ephemeral run removes the leftover directory.
    let out = pgbak(pg)
        .env("DATABASE_URL", pg.url(&db.name))
        .env("PGBAK_PG_BIN_DIR", &pg.bin)
        .args(["verify", "--ephemeral"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!dir.exists(), "{} left behind", dir.display());
}
