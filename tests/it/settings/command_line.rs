//! The command line as a new user meets it: `--env-file` serves the ad-hoc commands, `--help`
//! shows only the options a command uses, and the completions and the man page are generated
//! from the same clap definitions and know the subcommands.

use std::path::Path;

use crate::support::verify::{backup, Dir};
use crate::support::{output_text, pg16, pgbak, pgbak_bare, run};

fn write_env_file(dir: &Path, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join("pgbak.env");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// list, check, prune, verify and restore read the cron environment file
/// (`--env-file`, as cron does): one way to run ad-hoc commands with the
/// unattended settings. On main they refused the flag (exit 2).
#[test]
fn env_file_serves_the_ad_hoc_commands() {
    let pg = pg16();
    let db = pg.db_with(
        "env file adhoc",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)",
    );
    let dir = Dir::new("env-file-adhoc");
    let dump = backup(&db, &dir);
    let file = write_env_file(
        &dir,
        &[
            format!("DATABASE_URL={}", db.url()),
            format!("BACKUP_DIR={}", dir.display()),
            "PGBAK_CHECK_MAX_VERIFIED_AGE=0".to_owned(),
        ],
    );
    let stem = dump
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".dump", "");
    let env_file = file.to_str().unwrap();
    let out = run(pgbak_bare().args(["list", "--json", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&stem),
        "{}",
        output_text(&out)
    );
    let out = run(pgbak_bare().args(["check", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(pgbak_bare().args(["prune", "--dry-run", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(pgbak(pg).args(["verify", "--env-file", env_file]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    db.psql("DELETE FROM t");
    let out = run(pgbak(pg).args([
        "restore",
        "--no-confirm",
        "--create-db",
        "--env-file",
        env_file,
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(db.psql("SELECT count(*) FROM t"), "10");
    // A file that is not there is a usage error before anything runs.
    let out = run(pgbak_bare().args(["list", "--env-file", "/nonexistent/pgbak.env"]));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

/// list, check and prune connect to no database: their help shows neither
/// --pg-bin-dir nor --lock-wait-timeout; the commands that dump or restore do.
#[test]
fn help_shows_only_the_options_a_command_uses() {
    let help = |command: &str| -> String {
        let out = run(pgbak_bare().args([command, "--help"]));
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for command in ["list", "check", "prune", "unpin"] {
        let text = help(command);
        for option in ["--pg-bin-dir", "--lock-wait-timeout"] {
            assert!(
                !text.contains(option),
                "{command} --help shows {option}:\n{text}"
            );
        }
    }
    for (command, options) in [
        ("backup", &["--pg-bin-dir", "--lock-wait-timeout"][..]),
        ("cron", &["--pg-bin-dir", "--lock-wait-timeout"]),
        ("verify", &["--pg-bin-dir"]),
        ("restore", &["--pg-bin-dir"]),
    ] {
        let text = help(command);
        for option in options {
            assert!(
                text.contains(option),
                "{command} --help lacks {option}:\n{text}"
            );
        }
    }
    // The old place, before the command, still works.
    let out = run(pgbak_bare().args(["--pg-bin-dir", "/nonexistent", "backup", "--help"]));
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn completions_and_man_page_are_generated() {
    let cases = [
        ("bash", "_pgbak()"),
        ("zsh", "#compdef pgbak"),
        ("fish", "complete -c pgbak"),
    ];
    for (shell, marker) in cases {
        let out = run(pgbak_bare().args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("cron") && text.contains("verify"),
            "{shell} knows the subcommands"
        );
    }
    let out = run(pgbak_bare().arg("man"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie") || text.contains(".TH pgbak"),
        "{text}"
    );
    assert!(text.contains("cron"));
}
