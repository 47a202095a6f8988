//! The documentation as a test subject: README.md and the manual in docs/.
//!
//! - [`generated`]: the reference pages' generated blocks are what the code
//!   generates today (`UPDATE_DOCS=1 cargo test --test docs` rewrites them);
//! - [`links`]: every relative link and anchor resolves, as GitHub and mdBook
//!   make anchors from headings;
//! - [`guarantees`]: every test docs/GUARANTEES.md names exists;
//! - [`rules`]: the Prometheus alerting rules are valid (promtool) and name
//!   only metrics pgbak writes;
//! - [`readme`]: the README stays short and keeps the test command CI runs.
//!
//! No server is needed: these run in a second or two.

mod generated;
mod guarantees;
mod links;
mod readme;
mod reference;
mod rules;

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, the other Markdown files at the root and in bench/, and every
/// Markdown file under docs/.
pub fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CONTRIBUTING.md",
        "bench/README.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .collect();
    collect(&root().join("docs"), "md", &mut files);
    files.sort();
    files
}

/// Every file under `dir` whose name ends in `.ext`, recursively.
pub fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// A file's text; a test that needs a missing file fails naming it.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `path` relative to the repository, for messages.
pub fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}
