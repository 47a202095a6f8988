//! Issue 22, the host's half (items 3, 6, 7, 8, 10): what a local user, a
//! planted file or pgbak's own children could get from a run. Each test builds
//! the attack and shows it fails: children see no secret, another OS user
//! cannot reach the throwaway cluster, a planted `pgbak-verify-*` directory
//! cannot make pgbak signal a process or follow a symlink.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{self, output_text, paths, pg16, pgbak, restore_cmd, run};
use crate::verify::Dir;

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
    let source = pg.fresh_db("child env source");
    source.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 3) g");
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

/// The scratch dirs of this test process's `pgbak-verify-*` kind under `dir`.
fn verify_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pgbak-verify-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
