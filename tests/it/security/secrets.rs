//! Secrets never leave: the password is in no argv, output or meta.json; secrets from `*_FILE`
//! and short passwords are scrubbed; pg_dump and pg_restore get the connection and no other
//! secret; pgbak holds its secrets in a process that dumps no core.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::faults::spawn_blocked_backup;
use crate::support::roles::{drop_role, login_superuser};
use crate::support::verify::Dir;
use crate::support::{
    self, dumps, files, output_text, paths, pg16, pgbak, restore_cmd, run, TableLock, PASSWORD,
};

#[test]
fn the_password_is_never_in_argv_output_or_meta() {
    let pg = pg16();
    let db = pg.db_with("no_leak", "CREATE TABLE t(x int)");
    let tmp = tempfile::tempdir().unwrap();
    let lock = TableLock::hold(pg, &db.name, "t");
    let child = spawn_blocked_backup(pg, &db.name, tmp.path(), &["--verbose", "--json"]);
    // pg_dump is running now: no process's argv holds the password.
    let mut seen_pg_dump = false;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        seen_pg_dump |= text.contains("pg_dump") && text.contains("--snapshot");
        assert!(!text.contains(PASSWORD), "password in argv: {text}");
    }
    assert!(seen_pg_dump, "pg_dump was running while argv was read");
    lock.release();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!output_text(&out).contains(PASSWORD));
    for file in files(tmp.path()) {
        if file.ends_with(".meta.json") {
            let text = std::fs::read_to_string(tmp.path().join(file)).unwrap();
            assert!(!text.contains(PASSWORD));
        }
    }
}

#[test]
fn trust_secret_file_forms_and_short_passwords_are_scrubbed() {
    let pg = pg16();
    let db = pg.db_with_rows("secret files", 10);
    let password = "Qz9";
    let role = login_superuser(pg, "short", &db.name, password);
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("database-url");
    std::fs::write(
        &secret,
        format!(
            "postgresql://{role}:{password}@127.0.0.1:{}/{}\n",
            pg.port, db.name
        ),
    )
    .unwrap();
    let out_dir = tmp.path().join("backups");
    let out = pgbak(pg)
        .env("DATABASE_URL_FILE", &secret)
        .args(["backup", "-v", "--output-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(dumps(&out_dir).len(), 1);
    // A failing run quotes the URL's parts: the 3-character password never shows.
    let bad = tmp.path().join("bad-url");
    std::fs::write(
        &bad,
        format!("postgresql://{role}:{password}@127.0.0.1:1/{}\n", db.name),
    )
    .unwrap();
    let out = pgbak(pg)
        .env("DATABASE_URL_FILE", &bad)
        .args(["backup", "-v", "--output-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    drop_role(pg, &role);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(!text.contains(&format!(":{password}@")), "{text}");
    let missing = pgbak(pg)
        .env("DATABASE_URL_FILE", tmp.path().join("absent"))
        .args(["backup", "--output-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", output_text(&missing));
}

/// A copy of `real` (a bin dir) whose `wrapped` tools append their environment
/// to `<dir>/env.log` before running the real one; the rest are symlinks.
fn recording_bin_dir(real: &Path, wrapped: &[&str], hint: &str) -> Dir {
    let dir = Dir::new(hint);
    let log = dir.join("env.log");
    for entry in std::fs::read_dir(real).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = dir.join(&name);
        if wrapped.contains(&name.as_str()) {
            std::fs::write(
                &target,
                format!(
                    "#!/bin/sh\nenv >> '{}'\necho ---- >> '{}'\nexec '{}' \"$@\"\n",
                    log.display(),
                    log.display(),
                    entry.path().display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        } else {
            std::os::unix::fs::symlink(entry.path(), &target).unwrap();
        }
    }
    dir
}

#[test]
fn host_pg_dump_and_pg_restore_get_the_connection_and_no_secret() {
    let pg = pg16();
    let source = pg.db_with_rows("child env source", 3);
    let real = paths().pg17_bin.clone().unwrap_or_else(|| pg.bin.clone());
    let bin = recording_bin_dir(&real, &["pg_dump", "pg_restore"], "child-env-bin");
    let secrets_dir = Dir::new("child-env-secrets");
    let routing_file = secrets_dir.join("routing-key");
    std::fs::write(&routing_file, "routing-key-from-its-file-42\n").unwrap();
    let secrets = [
        ("AWS_ACCESS_KEY_ID", "AKIA-never-in-children"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-never-in-children"),
        (
            "ALERT_WEBHOOK_URL",
            "https://hooks.example/never-in-children",
        ),
        ("HEARTBEAT_URL", "https://hc.example/ping/never-in-children"),
    ];
    let with_secrets = |cmd: &mut std::process::Command| {
        cmd.env("PGBAK_PG_BIN_DIR", &*bin)
            .env("PAGERDUTY_ROUTING_KEY_FILE", &routing_file);
        for (k, v) in secrets {
            cmd.env(k, v);
        }
    };
    let backups = Dir::new("child-env-backups");
    let mut cmd = support::backup_cmd(pg, &source.name, &backups, &[]);
    with_secrets(&mut cmd);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dump = backups.join(&support::dumps(&backups)[0]);
    let target = pg.fresh_db("child env target");
    let mut cmd = restore_cmd(&target, &dump, &["--no-confirm"]);
    with_secrets(&mut cmd);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let seen = std::fs::read_to_string(bin.join("env.log")).unwrap();
    let runs: Vec<&str> = seen.split("----\n").filter(|r| !r.is_empty()).collect();
    assert!(runs.len() >= 3, "pg_dump and pg_restore ran: {seen}");
    for (k, v) in secrets {
        assert!(
            !seen.contains(k) && !seen.contains(v),
            "{k} reached a child:\n{seen}"
        );
    }
    for absent in [
        "routing-key-from-its-file-42",
        "PAGERDUTY_ROUTING_KEY",
        "DATABASE_URL",
    ] {
        assert!(!seen.contains(absent), "{absent} reached a child:\n{seen}");
    }
    // What the tools need is there: the connection of the one server each talks to.
    let connected: Vec<&&str> = runs.iter().filter(|r| r.contains("PGPASSWORD=")).collect();
    assert!(connected.len() >= 2, "{seen}");
    for run in connected {
        assert!(
            run.contains("PGBAK_PARENT=") && run.contains("PATH="),
            "{run}"
        );
    }
}

#[test]
fn host_pgbak_holds_its_secrets_in_a_process_that_dumps_no_core() {
    let pg = pg16();
    let db = pg.db_with_rows("no core", 10);
    let backups = Dir::new("no-core");
    let lock = support::TableLock::hold(pg, &db.name, "t");
    // Started with core dumps allowed, as a shell with `ulimit -c unlimited` would.
    let cmd = support::backup_cmd(pg, &db.name, &backups, &[]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg("ulimit -c unlimited && exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => shell.env(k, v),
            None => shell.env_remove(k),
        };
    }
    let mut child = shell.spawn().unwrap();
    support::wait_for_blocked_dump(pg, &db.name);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lock);
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default()
        .split_whitespace()
        .skip(4)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(core, ["0", "0"], "{limits}");
}
