//! What the generated blocks hold, each made from the code that decides it:
//! the environment variables from `settings::vars::ALL` (and the flags clap
//! reads them for), the exit codes from `error::CODES`, every command's
//! `--help` from clap, sample meta.json and verdict documents from the
//! structs pgbak serializes, the alert bodies from `alert::body`, and the
//! Prometheus rules file the metrics page shows.

mod alerts;
mod cli;
mod environment;
mod exit_codes;
mod meta;

use std::collections::BTreeMap;

/// Every generated block, by the name its markers carry.
pub fn blocks() -> BTreeMap<&'static str, String> {
    let mut blocks = BTreeMap::new();
    blocks.insert("environment", environment::page());
    blocks.insert("exit-codes", exit_codes::table());
    blocks.insert("cli", cli::page());
    blocks.insert("meta-json-example", meta::example());
    blocks.insert("verdict-example", meta::verdict_example());
    blocks.insert("alert-generic", alerts::generic());
    blocks.insert("alert-generic-skipped", alerts::generic_skipped());
    blocks.insert("alert-slack", alerts::slack());
    blocks.insert("alert-pagerduty-trigger", alerts::pagerduty_trigger());
    blocks.insert("alert-pagerduty-resolve", alerts::pagerduty_resolve());
    blocks.insert("alert-messages", alerts::messages());
    blocks.insert("prometheus-rules", fenced("yaml", crate::rules::RULES));
    blocks
}

/// `text` as a fenced code block.
pub fn fenced(lang: &str, text: &str) -> String {
    format!("```{lang}\n{}\n```\n", text.trim_end_matches('\n'))
}

/// A JSON value as an indented, fenced block.
pub fn json_block(value: &serde_json::Value) -> String {
    fenced(
        "json",
        &serde_json::to_string_pretty(value).expect("JSON values always serialize"),
    )
}

/// Every key path of a JSON document: `a`, `a.b`, `list[].c`; objects under
/// a key listed in `opaque` (maps keyed by data, such as `extensions`) stop there.
pub fn key_paths(value: &serde_json::Value, opaque: &[&str]) -> Vec<String> {
    fn walk(value: &serde_json::Value, prefix: &str, opaque: &[&str], out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    out.push(path.clone());
                    if !opaque.contains(&path.as_str()) {
                        walk(child, &path, opaque, out);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{prefix}[]"), opaque, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", opaque, &mut out);
    out.sort();
    out.dedup();
    out
}

/// The key paths a page documents under the heading `section` (up to the
/// next heading of the same or a higher level): the first cell of each table
/// row, when it is one code span (`| \`a.b\` | ... |`).
pub fn documented_keys(page: &str, section: &str) -> Vec<String> {
    let mut lines = page
        .lines()
        .skip_while(|l| l.trim_start_matches('#').trim() != section);
    let Some(heading) = lines.next() else {
        panic!("no heading {section:?}");
    };
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut keys = Vec::new();
    let mut fenced = false;
    for line in lines {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        if let Some((key, rest)) = cell.split_once('`') {
            if rest.trim_start().starts_with('|') {
                keys.push(key.to_owned());
            }
        }
    }
    keys
}

/// Fails naming the keys a document has and its page does not, and the other way round.
pub fn assert_documented(what: &str, serialized: &[String], documented: &[String]) {
    let missing: Vec<&String> = serialized
        .iter()
        .filter(|k| !documented.contains(k))
        .collect();
    let stale: Vec<&String> = documented
        .iter()
        .filter(|k| !serialized.contains(k))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{what}: keys written but not documented: {missing:?}; documented but never written: {stale:?}"
    );
}
