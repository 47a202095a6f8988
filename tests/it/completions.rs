//! The shell completions and the man page, generated from the same clap
//! definitions as `--help`: they exist and know the subcommands.

use crate::s3::run;
use crate::support::{output_text, pgbak_bare};

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
