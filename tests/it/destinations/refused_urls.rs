//! `--to` URLs refused before anything runs: a secret (never echoed), two destinations with
//! one name, an unknown parameter.

use super::to_dir;
use crate::support::bucket::backup_dir;
use crate::support::{output_text, pg16, pgbak, run};

#[test]
fn destinations_with_a_secret_in_the_url_are_refused_without_echo() {
    let pg = pg16();
    let db = pg.fresh_db("dest secret");
    let dir = backup_dir("dest-secret");
    let secret = "wJalrXUtnFEMI-never-printed-K7MDENG";
    // (URL, the name the refusal gives)
    let cases = [
        (format!("s3://b/p?secret-key={secret}"), "secret-key"),
        (
            format!("s3://b/p?aws_session_token={secret}"),
            "aws_session_token",
        ),
        (format!("s3://AKIA:{secret}@b/p"), "user:password@"),
    ];
    for (url, name) in cases {
        for how in ["flag", "env"] {
            let mut cmd = pgbak(pg);
            cmd.env("DATABASE_URL", db.url())
                .args(["backup", "--no-s3", "--output-dir"])
                .arg(&dir);
            if how == "flag" {
                cmd.args(["--to", &url]);
            } else {
                cmd.env("PGBAK_TO", &url);
            }
            let out = run(&mut cmd);
            let text = output_text(&out);
            assert_eq!(out.status.code(), Some(2), "{how} {name}: {text}");
            assert!(text.contains(name), "{how}: {text}");
            assert!(!text.contains(secret), "{how} echoed the secret: {text}");
        }
    }
    // Nothing was dumped.
    assert!(crate::support::files(&dir).is_empty());
}

#[test]
fn destinations_with_one_name_or_an_unknown_parameter_are_usage_errors() {
    let nas = backup_dir("dest-dup");
    for (urls, words) in [
        (
            vec![
                to_dir(&nas.join("a"), "name=x"),
                to_dir(&nas.join("b"), "name=x"),
            ],
            "two destinations are named \"x\"",
        ),
        (
            vec![to_dir(&nas, "colour=blue")],
            "unknown parameter \"colour\"",
        ),
    ] {
        let mut cmd = crate::support::pgbak_bare();
        cmd.args(["list", "--backup-dir"]).arg(&nas);
        for url in &urls {
            cmd.args(["--to", url]);
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
        assert!(output_text(&out).contains(words), "{}", output_text(&out));
    }
}
