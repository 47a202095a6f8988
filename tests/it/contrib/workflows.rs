//! The GitHub workflows (.github/workflows/) are valid workflow files, checked against
//! GitHub's schema with check-jsonschema (offline: the schema ships with it; skipped when
//! scripts/setup.sh could not install it into .tools/lint), the release workflow keeps the
//! steps README.md's "Releases and the supply chain" promises, and deny.toml's exceptions
//! each say why (the graph checked by cargo-deny where it is installed).

use std::path::PathBuf;
use std::process::Command;

use crate::support::{output_text, repo_dir};

fn workflows() -> Vec<PathBuf> {
    let dir = repo_dir().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn workflows_match_githubs_schema() {
    let tool = repo_dir().join(".tools/lint/bin/check-jsonschema");
    if !tool.exists() {
        eprintln!("skipped: check-jsonschema is not installed (scripts/setup.sh)");
        return;
    }
    let files = workflows();
    assert!(files.len() >= 2, "{files:?}");
    let out = Command::new(&tool)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(&files)
        .output()
        .expect("running check-jsonschema");
    assert!(out.status.success(), "{}", output_text(&out));
    // It does fail on a broken workflow: a job without runs-on or steps.
    let broken = crate::support::scratch_dir("workflow").join("broken.yml");
    std::fs::write(
        &broken,
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n",
    )
    .unwrap();
    let out = Command::new(&tool)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(&broken)
        .output()
        .expect("running check-jsonschema");
    assert!(!out.status.success(), "{}", output_text(&out));
    let _ = std::fs::remove_dir_all(broken.parent().unwrap());
}

#[test]
fn release_workflow_builds_checks_and_drafts_what_the_readme_promises() {
    let text = std::fs::read_to_string(repo_dir().join(".github/workflows/release.yml"))
        .expect("release.yml");
    for part in [
        "tags: [\"v*\"]",
        "runner: ubuntu-24.04-arm",
        "cargo auditable build --release --locked",
        "scripts/package.sh --binary target/release/pgbak --out dist",
        "cargo cyclonedx --format json",
        "sha256sum -- * >SHA256SUMS",
        "scripts/release-notes.sh",
        "gh release create \"$GITHUB_REF_NAME\"",
        "--draft",
        "ghcr.io/${{ github.repository }}",
        "type=semver,pattern={{version}}",
        "EmbarkStudios/cargo-deny-action",
        "systemd-analyze verify",
        "dpkg -i --force-confdef --force-confold",
        "dpkg -P pgbak",
        "rpm -V pgbak",
    ] {
        assert!(text.contains(part), "release.yml lacks {part}");
    }
    let notes = Command::new(repo_dir().join("scripts/release-notes.sh"))
        .arg("0.1.0")
        .output()
        .expect("running release-notes.sh");
    assert!(notes.status.success(), "{}", output_text(&notes));
    let notes = String::from_utf8_lossy(&notes.stdout);
    assert!(
        notes.starts_with("The first version") && notes.contains("### Added"),
        "{notes}"
    );
    assert!(
        !notes.contains("## [Unreleased]"),
        "only 0.1.0's section: {notes}"
    );
    let missing = Command::new(repo_dir().join("scripts/release-notes.sh"))
        .arg("9.9.9")
        .output()
        .expect("running release-notes.sh");
    assert_eq!(missing.status.code(), Some(1), "{}", output_text(&missing));
}

/// deny.toml: every exception says why (an entry without a reason fails), and, where
/// cargo-deny is installed (not by setup.sh: it is minutes of compiling; the workflows run
/// it), the graph passes its bans, licenses and sources checks.
#[test]
fn deny_toml_exceptions_have_reasons_and_the_graph_passes() {
    let text = std::fs::read_to_string(repo_dir().join("deny.toml")).expect("deny.toml");
    let exceptions: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("{ crate = "))
        .collect();
    assert!(!exceptions.is_empty(), "deny.toml lists no skip");
    for line in &exceptions {
        let reason = line.split("reason = \"").nth(1).unwrap_or_default();
        assert!(reason.len() > 20, "an exception without its reason: {line}");
    }
    for key in [
        "multiple-versions = \"deny\"",
        "unknown-git = \"deny\"",
        "yanked = \"deny\"",
    ] {
        assert!(text.contains(key), "deny.toml lacks {key}");
    }
    let local = repo_dir().join(".tools/cargo/bin/cargo-deny");
    let deny = if local.exists() {
        local
    } else {
        match std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("cargo-deny"))
            .find(|p| p.is_file())
        {
            Some(path) => path,
            None => {
                eprintln!("cargo-deny not installed: deny.toml's checks not run here");
                return;
            }
        }
    };
    let out = Command::new(deny)
        .args(["check", "bans", "licenses", "sources"])
        .current_dir(repo_dir())
        .output()
        .expect("running cargo-deny");
    assert!(out.status.success(), "{}", output_text(&out));
}
