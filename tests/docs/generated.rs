//! Generated blocks in the Markdown pages: text between
//! `<!-- BEGIN GENERATED name -->` and `<!-- END GENERATED name -->` is what
//! [`crate::reference::blocks`] makes of the code today. A page keeps its
//! hand-written prose around the blocks; `UPDATE_DOCS=1 cargo test --test docs`
//! rewrites the blocks in place, and without it a stale block fails the test
//! with the command that fixes it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{markdown_files, read, shown};

const BEGIN: &str = "<!-- BEGIN GENERATED ";
const END: &str = "<!-- END GENERATED ";
const CLOSE: &str = " -->";

/// How to regenerate, for failure messages.
pub const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test docs";

/// One page's text with every generated block replaced by `blocks`' text;
/// the names of the blocks found; an error for a block without an end or
/// with a name nothing generates.
pub fn regenerate(
    text: &str,
    blocks: &BTreeMap<&'static str, String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(text.len());
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let name_end = after_begin
            .find(CLOSE)
            .ok_or("a BEGIN GENERATED marker without its closing -->")?;
        let name = after_begin[..name_end].trim().to_owned();
        let body_start = start + BEGIN.len() + name_end + CLOSE.len();
        let end_marker = format!("{END}{name}{CLOSE}");
        let body_len = rest[body_start..]
            .find(&end_marker)
            .ok_or_else(|| format!("generated block {name:?} has no {end_marker:?}"))?;
        let content = blocks
            .get(name.as_str())
            .ok_or_else(|| format!("no generator makes a block named {name:?}"))?;
        out.push_str(&rest[..body_start]);
        out.push('\n');
        out.push_str(content.trim_end_matches('\n'));
        out.push('\n');
        out.push_str(&end_marker);
        rest = &rest[body_start + body_len + end_marker.len()..];
        names.push(name);
    }
    out.push_str(rest);
    Ok((out, names))
}

#[test]
fn generated_blocks_are_what_the_code_generates() {
    let blocks = crate::reference::blocks();
    let update = std::env::var_os("UPDATE_DOCS").is_some_and(|v| !v.is_empty() && v != "0");
    let mut used = BTreeSet::new();
    let mut stale = Vec::new();
    for path in markdown_files() {
        let text = read(&path);
        let (fresh, names) =
            regenerate(&text, &blocks).unwrap_or_else(|e| panic!("{}: {e}", shown(&path)));
        used.extend(names);
        if fresh != text {
            if update {
                std::fs::write(&path, &fresh)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", shown(&path)));
                eprintln!("updated {}", shown(&path));
            } else {
                stale.push(shown(&path));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated blocks are stale in {stale:?}: run `{REGENERATE}` and commit the result"
    );
    let unused: Vec<&&str> = blocks.keys().filter(|k| !used.contains(**k)).collect();
    assert!(
        unused.is_empty(),
        "blocks generated for no page: {unused:?} (add `{BEGIN}name{CLOSE}` ... `{END}name{CLOSE}` where they belong)"
    );
}

#[test]
fn a_block_is_replaced_between_its_markers_and_the_rest_is_kept() {
    let blocks = BTreeMap::from([("x", "new\n".to_owned())]);
    let page = "intro\n<!-- BEGIN GENERATED x -->\nold\nlines\n<!-- END GENERATED x -->\nafter\n";
    let (out, names) = regenerate(page, &blocks).unwrap();
    assert_eq!(
        out,
        "intro\n<!-- BEGIN GENERATED x -->\nnew\n<!-- END GENERATED x -->\nafter\n"
    );
    assert_eq!(names, ["x"]);
    assert_eq!(regenerate(&out, &blocks).unwrap().0, out, "idempotent");
    let unknown = "<!-- BEGIN GENERATED y -->\n<!-- END GENERATED y -->\n";
    assert!(regenerate(unknown, &blocks).is_err());
    let unclosed = "<!-- BEGIN GENERATED x -->\nold\n";
    assert!(regenerate(unclosed, &blocks).is_err());
}
