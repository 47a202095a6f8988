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
