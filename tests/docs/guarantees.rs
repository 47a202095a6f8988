//! docs/GUARANTEES.md names, under each guarantee, the tests that prove it:
//! a `Tests:` line, then one bullet per test, `- \`name\`: what it shows`.
//! Every name must exist: a test function in tests/ or src/ (`fn name(`),
//! a prefix of some (`cron_*`), a unit-test module (`retention::tests`), a
//! module's test (`pg::restore::tests::name`) or a file (`tests/props.rs`).

use std::path::PathBuf;

use crate::{collect, read, root};

/// The names under every `Tests:` line, with the guarantee they belong to.
pub fn named_tests(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut guarantee = String::new();
    let mut in_tests = false;
    for line in page.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            guarantee = title.to_owned();
            in_tests = false;
        } else if line.trim() == "Tests:" {
            in_tests = true;
        } else if in_tests {
            if let Some(rest) = line.strip_prefix("- `") {
                let name = rest.split('`').next().unwrap_or_default();
                out.push((guarantee.clone(), name.to_owned()));
            } else if !line.trim().is_empty() && !line.starts_with("  ") {
                in_tests = false;
            }
        }
    }
    out
}

fn sources() -> String {
    let mut files = Vec::new();
    collect(&root().join("src"), "rs", &mut files);
    collect(&root().join("tests"), "rs", &mut files);
    files.iter().map(|f| read(f)).collect::<Vec<_>>().join("\n")
}

/// The source file of a module path under src/ (`pg::restore` ->
/// src/pg/restore.rs or src/pg/restore/mod.rs).
fn module_file(path: &[&str]) -> Option<PathBuf> {
    let base = root().join("src").join(path.join("/"));
    [base.with_extension("rs"), base.join("mod.rs")]
        .into_iter()
        .find(|p| p.exists())
}

fn exists(name: &str, sources: &str) -> bool {
    let is_fn =
        |f: &str| sources.contains(&format!("fn {f}(")) || sources.contains(&format!("fn {f}<"));
    if name.contains('/') {
        return root().join(name).exists();
    }
    if let Some(prefix) = name.strip_suffix('*') {
        return sources.contains(&format!("fn {prefix}"));
    }
    let parts: Vec<&str> = name.split("::").collect();
    match parts.as_slice() {
        [single] => is_fn(single),
        [module @ .., "tests"] => {
            module_file(module).is_some_and(|file| read(&file).contains("mod tests"))
        }
        [module @ .., "tests", test] => module_file(module).is_some() && is_fn(test),
        [.., test] => is_fn(test),
        [] => false,
    }
}

#[test]
fn every_test_guarantees_md_names_exists() {
    let page = read(&root().join("docs/GUARANTEES.md"));
    let named = named_tests(&page);
    assert!(
        named.len() > 100,
        "GUARANTEES.md names {} tests",
        named.len()
    );
    let sources = sources();
    let missing: Vec<String> = named
        .iter()
        .filter(|(_, name)| !exists(name, &sources))
        .map(|(g, name)| format!("{name} (under {g:?})"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/GUARANTEES.md names tests that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_guarantee_names_its_tests() {
    let page = read(&root().join("docs/GUARANTEES.md"));
    let named = named_tests(&page);
    let guarantees: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|title| title.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert!(guarantees.len() >= 16, "{guarantees:?}");
    for guarantee in guarantees {
        assert!(
            named.iter().any(|(g, _)| g == guarantee),
            "guarantee {guarantee:?} names no test"
        );
    }
}

#[test]
fn names_are_read_from_the_tests_lists_only() {
    let page = "## 1. X\n\nText with `not_a_test`.\n\nTests:\n- `a_test`: proves it\n- `m::tests`\n  continued\n\nAfter.\n- `not_either`\n";
    assert_eq!(
        named_tests(page),
        [
            ("1. X".to_owned(), "a_test".to_owned()),
            ("1. X".to_owned(), "m::tests".to_owned())
        ]
    );
    let sources = "fn real_test() {}\nfn cron_one() {}";
    assert!(exists("real_test", sources));
    assert!(!exists("made_up_test", sources));
    assert!(exists("cron_*", sources));
    assert!(!exists("verify_*", sources));
    assert!(exists("tests/props.rs", sources));
}
