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

/// `pgbak man --dir DIR`: the top page and one page per subcommand, each titled and
/// cross-referenced like git's and cargo's, the top page the same as `pgbak man` prints.
#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = crate::support::scratch_dir("man").join("man1");
    let out = run(pgbak_bare().args(["man", "--dir"]).arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let subcommands = crate::support::SUBCOMMANDS;
    let mut expected: Vec<String> = subcommands.iter().map(|s| format!("pgbak-{s}.1")).collect();
    expected.push("pgbak.1".into());
    expected.sort();
    assert_eq!(
        crate::support::files(&dir),
        expected,
        "no help page, nothing else"
    );
    let top = std::fs::read_to_string(dir.join("pgbak.1")).expect("pgbak.1");
    let printed = run(pgbak_bare().arg("man"));
    assert!(
        top == String::from_utf8_lossy(&printed.stdout),
        "--dir's pgbak.1 is what `pgbak man` prints"
    );
    for sub in subcommands {
        assert!(
            top.contains(&format!("pgbak\\-{sub}(1)")),
            "pgbak.1 names pgbak-{sub}(1)"
        );
        let page = std::fs::read_to_string(dir.join(format!("pgbak-{sub}.1"))).unwrap();
        assert!(
            page.contains(&format!(".TH pgbak-{sub} 1")),
            "{sub}: {page}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(format!("pgbak-{sub}.1")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o044, 0o044, "{sub}: man pages are world-readable");
    }
    let backup = std::fs::read_to_string(dir.join("pgbak-backup.1")).unwrap();
    assert!(backup.contains("\\-\\-output\\-dir") && !backup.contains("\\-\\-ephemeral"));
    // Writing again replaces the pages; a file in the way is a clear failure.
    let again = run(pgbak_bare().args(["man", "--dir"]).arg(&dir));
    assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
    let blocked = run(pgbak_bare().args(["man", "--dir"]).arg(dir.join("pgbak.1")));
    assert_eq!(blocked.status.code(), Some(1), "{}", output_text(&blocked));
    assert!(String::from_utf8_lossy(&blocked.stderr).contains("pgbak.1"));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
