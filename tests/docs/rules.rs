//! contrib/prometheus/pgbak.rules.yml: the alerting rules the metrics page
//! shows. `promtool check rules` and `promtool test rules` (the rules' own
//! unit tests, pgbak.rules.test.yml) run when promtool is installed (Debian:
//! the `prometheus` package); every metric a rule reads is one pgbak writes.

use std::process::Command;

use crate::{read, root};

pub const RULES: &str = include_str!("../../contrib/prometheus/pgbak.rules.yml");

/// The `pgbak_*` metric names in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("pgbak_") && word.len() > "pgbak_".len())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_metric_a_rule_reads_is_one_pgbak_writes() {
    let writers = [
        read(&root().join("src/metrics.rs")),
        read(&root().join("src/metrics/destinations.rs")),
        read(&root().join("src/commands/check/output.rs")),
    ]
    .join("\n");
    let exprs: String = RULES
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect::<Vec<_>>()
        .join("\n");
    let names = metric_names(&exprs);
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert!(
            writers.contains(&format!("\"{name}")) || writers.contains(&format!(" {name} ")),
            "the rules read {name}, which neither METRICS_FILE nor check --prometheus writes"
        );
    }
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let dir = root().join("contrib/prometheus");
    let run = |args: &[&str]| {
        Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
    };
    let check = match run(&["check", "rules", "pgbak.rules.yml"]) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: promtool is not installed (Debian: apt-get install prometheus)");
            return;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = run(&["test", "rules", "pgbak.rules.test.yml"]).expect("running promtool");
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}
