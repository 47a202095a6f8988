//! The secrets of a run, gathered once at dispatch from the parsed command
//! line and the environment snapshot into the [`Redactor`] that every printed
//! line, alert body and heartbeat body is scrubbed with. Nothing adds a
//! secret later: a value this module does not know is not hidden, so every
//! setting that can carry a credential is named here.
//!
//! What is hidden, and in which form:
//! - the connection's password, however it was given: in `DATABASE_URL`
//!   (as written and percent-decoded), `PGPASSWORD` (or `PGPASSWORD_FILE`,
//!   loaded into the snapshot at startup), or the matching `.pgpass` line;
//! - the password of a verify target (`--target-url`, `--verify-target-url`,
//!   `PGBAK_VERIFY_TARGET_URL`), found the same ways;
//! - `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`;
//! - alert webhook and heartbeat URLs and the PagerDuty routing key: whole,
//!   and the parts a message may quote alone (password, query, a path long
//!   enough to hold a token, as Slack's hooks do).

use super::env::Env;
use super::vars;
use crate::cli::{Cli, Command, CronReportArgs};
use crate::pg::url::ConnSettings;
use crate::ui::Redactor;

/// Paths this short (`/`, `/hook`) are routes, not tokens: hiding them would
/// mask ordinary words in every line.
const SHORTEST_SECRET_PATH: usize = 9;

/// The redactor of a parsed command line, with this run's environment.
pub fn redactor(cli: &Cli) -> Redactor {
    gather(&given(&cli.command), super::env())
}

/// The redactor of a `pgbak cron` whose command line did not parse: the
/// environment's secrets, and the reporting settings' when they parsed.
pub fn report_redactor(report: Option<&CronReportArgs>) -> Redactor {
    let given = report.map(report_given).unwrap_or_default();
    gather(&given, super::env())
}

/// The values of a command's arguments that carry secrets (clap has already
/// filled them from their environment variables), by what they are.
#[derive(Debug, Default, PartialEq)]
struct Given<'a> {
    /// Connection URLs: their password is the secret.
    connections: Vec<&'a str>,
    /// Webhook and heartbeat URLs, routing keys: secret whole and in parts.
    webhooks: Vec<&'a str>,
}

fn given(command: &Command) -> Given<'_> {
    match command {
        Command::Cron(args) => {
            let mut given = report_given(&args.report);
            given.connections.extend(args.verify_target_url.as_deref());
            given
        }
        Command::Verify(args) => Given {
            connections: args.target_url.as_deref().into_iter().collect(),
            webhooks: Vec::new(),
        },
        Command::Check(args) => Given {
            connections: Vec::new(),
            webhooks: args.heartbeat_url.as_deref().into_iter().collect(),
        },
        _ => Given::default(),
    }
}

fn report_given(report: &CronReportArgs) -> Given<'_> {
    Given {
        connections: Vec::new(),
        webhooks: [
            &report.alert_webhook_url,
            &report.heartbeat_url,
            &report.pagerduty_routing_key,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect(),
    }
}

/// Every secret of `given` and of `env`. The environment's are taken whatever
/// the command: hiding a value a command never uses costs nothing.
fn gather(given: &Given, env: &Env) -> Redactor {
    let lookup = env.lookup();
    let mut secrets: Vec<String> = Vec::new();
    // DATABASE_URL or PG*, and the .pgpass line libpq would use for them.
    if let Ok(conn) = ConnSettings::resolve(&lookup) {
        secrets.extend(conn.password);
    }
    for name in [
        vars::PGPASSWORD,
        vars::AWS_SECRET_ACCESS_KEY,
        vars::AWS_SESSION_TOKEN,
    ] {
        secrets.extend(env.get(name));
    }
    let env_connections = [vars::DATABASE_URL, vars::PGBAK_VERIFY_TARGET_URL].map(|n| env.get(n));
    for url in env_connections.iter().flatten() {
        secrets.extend(connection_secrets(url, &lookup));
    }
    for url in &given.connections {
        secrets.extend(connection_secrets(url, &lookup));
    }
    let env_webhooks = [
        vars::ALERT_WEBHOOK_URL,
        vars::HEARTBEAT_URL,
        vars::PAGERDUTY_ROUTING_KEY,
        vars::PGBAK_CHECK_HEARTBEAT_URL,
    ]
    .map(|n| env.get(n));
    for value in env_webhooks.iter().flatten() {
        secrets.extend(url_secrets(value));
    }
    for value in &given.webhooks {
        secrets.extend(url_secrets(value));
    }
    Redactor::new(secrets)
}

/// A connection URL's password: as written, percent-decoded, or from `.pgpass`.
fn connection_secrets(url: &str, env: crate::pg::url::Env) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(conn) = ConnSettings::from_url(url, env) {
        secrets.extend(conn.password);
    }
    if let Ok(parsed) = url::Url::parse(url) {
        secrets.extend(parsed.password().map(str::to_owned));
    }
    secrets
}

/// A URL (or key) whole, and the parts that may be printed on their own: the
/// password, the query, the path (Slack and other hooks put the token there).
fn url_secrets(value: &str) -> Vec<String> {
    let mut secrets = vec![value.to_owned()];
    let Ok(url) = url::Url::parse(value) else {
        return secrets;
    };
    secrets.push(url.as_str().to_owned());
    secrets.extend(url.password().map(str::to_owned));
    secrets.extend(url.query().map(str::to_owned));
    if url.path().len() >= SHORTEST_SECRET_PATH {
        secrets.push(url.path().to_owned());
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(argv).expect("the command line parses")
    }

    /// A `.pgpass` holding `line`, and its path (the directory lives as long as the first).
    fn pgpass(line: &str) -> (tempfile::TempDir, String) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pgpass");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let path = path.to_str().unwrap().to_owned();
        (tmp, path)
    }

    #[test]
    fn the_redactor_hides_every_source_of_a_secret() {
        let (_tmp, pgpass) = pgpass("target-host:5432:*:checker:pgpass-secret");
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgresql://app:url%40secret@db:5432/app"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_SESSION_TOKEN", "aws-token"),
            ("PGPASSFILE", pgpass.as_str()),
            ("HEARTBEAT_URL", "https://hc-ping.com/hb-uuid-token"),
        ]);
        let cli = parse(&[
            "pgbak",
            "cron",
            "--alert-webhook-url",
            "https://hooks.example.com/services/T000/B000/TOKENPART?key=QUERYKEY",
            "--pagerduty-routing-key",
            "routing-key-secret",
            "--verify-target-url",
            "postgresql://checker@target-host/postgres",
        ]);
        let redactor = gather(&given(&cli.command), &env);
        for secret in [
            "url@secret",
            "url%40secret",
            "aws-secret",
            "aws-token",
            "pgpass-secret",
            "https://hc-ping.com/hb-uuid-token",
            "/hb-uuid-token",
            "https://hooks.example.com/services/T000/B000/TOKENPART?key=QUERYKEY",
            "/services/T000/B000/TOKENPART",
            "key=QUERYKEY",
            "routing-key-secret",
        ] {
            assert!(redactor.hides(secret), "{secret} is not hidden");
        }
        let text = redactor.scrub(
            "POST https://hooks.example.com/services/T000/B000/TOKENPART?key=QUERYKEY failed; \
             key=QUERYKEY; password url@secret",
        );
        assert!(
            !text.contains("TOKENPART") && !text.contains("QUERYKEY") && !text.contains("secret"),
            "{text}"
        );
    }

    #[test]
    fn pgpassword_wins_over_pgpass_and_is_hidden() {
        // What PGPASSWORD_FILE's content becomes at startup; libpq reads no
        // .pgpass when PGPASSWORD is set, and neither does pgbak.
        let (_tmp, pgpass) = pgpass("*:*:*:*:pgpass-secret");
        let env = Env::from_pairs([
            ("PGHOST", "db"),
            ("PGUSER", "app"),
            ("PGPASSWORD", "file-secret"),
            ("PGPASSFILE", pgpass.as_str()),
        ]);
        let redactor = gather(&Given::default(), &env);
        assert!(redactor.hides("file-secret"));
        assert!(!redactor.hides("pgpass-secret"));
        let env = Env::from_pairs([("PGHOST", "db"), ("PGPASSFILE", pgpass.as_str())]);
        assert!(gather(&Given::default(), &env).hides("pgpass-secret"));
    }

    #[test]
    fn command_line_secrets_are_taken_from_the_command_that_has_them() {
        let verify = parse(&[
            "pgbak",
            "verify",
            "--target-url",
            "postgresql://u:target-secret@h/d",
        ]);
        let redactor = gather(&given(&verify.command), &Env::default());
        assert!(redactor.hides("target-secret"));
        let check = parse(&[
            "pgbak",
            "check",
            "--heartbeat-url",
            "https://kuma.example/api/push/push-token?status=up",
        ]);
        let redactor = gather(&given(&check.command), &Env::default());
        assert!(redactor.hides("/api/push/push-token"));
        assert!(redactor.hides("status=up"));
        // Short routes are not secrets: hiding "/hook" would mask ordinary words.
        assert_eq!(url_secrets("http://h/hook").len(), 2);
        let list = parse(&["pgbak", "list"]);
        assert_eq!(given(&list.command), Given::default());
        assert_eq!(gather(&Given::default(), &Env::default()), Redactor::none());
    }
}
