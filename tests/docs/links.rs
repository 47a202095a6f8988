//! Every relative link and anchor in README.md and docs/ resolves.
//!
//! Anchors are made from headings as GitHub and mdBook (0.5, `id_from_content`)
//! make them: the text (code spans included), lowercased, spaces to `-`,
//! everything but letters, digits, `_` and `-` dropped; a repeated heading gets
//! `-1`, `-2`, ... mdBook only agrees while smart punctuation is off (it would
//! turn `--` into a dash and drop it from the anchor), which docs/book.toml says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::{markdown_files, read, root, shown};

/// GitHub's anchor for a heading's text.
pub fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// A page's headings and links.
#[derive(Default)]
pub struct Page {
    pub anchors: BTreeSet<String>,
    pub links: Vec<String>,
}

pub fn parse(text: &str) -> Page {
    let mut page = Page::default();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut heading: Option<String> = None;
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(text, options) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some(text) = heading.take() else {
                    continue;
                };
                let base = slug(&text);
                let n = counts.entry(base.clone()).or_insert(0);
                let anchor = if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                };
                *n += 1;
                page.anchors.insert(anchor);
            }
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => {
                page.links.push(dest_url.to_string());
            }
            _ => {}
        }
    }
    page
}

/// `a/b/../c` as `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn is_external(link: &str) -> bool {
    link.contains("://") || link.starts_with("mailto:")
}

/// What is wrong with each link of `file`, given every page's anchors.
fn broken(file: &Path, page: &Page, pages: &BTreeMap<PathBuf, Page>) -> Vec<String> {
    let mut problems = Vec::new();
    for link in page.links.iter().filter(|l| !is_external(l)) {
        let (target, anchor) = match link.split_once('#') {
            Some((t, a)) => (t, Some(a)),
            None => (link.as_str(), None),
        };
        let target_path = if target.is_empty() {
            file.to_path_buf()
        } else {
            normalize(&file.parent().unwrap_or(root()).join(target))
        };
        if !target_path.exists() {
            problems.push(format!("{link}: no such file {}", shown(&target_path)));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        match pages.get(&target_path) {
            Some(target_page) if target_page.anchors.contains(anchor) => {}
            Some(_) => problems.push(format!("{link}: no heading makes the anchor #{anchor}")),
            None => problems.push(format!(
                "{link}: an anchor into a file that is not Markdown"
            )),
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let pages: BTreeMap<PathBuf, Page> = markdown_files()
        .into_iter()
        .map(|path| {
            let page = parse(&read(&path));
            (path, page)
        })
        .collect();
    assert!(pages.len() > 20, "the manual has pages: {}", pages.len());
    let mut problems = Vec::new();
    for (file, page) in &pages {
        for problem in broken(file, page, &pages) {
            problems.push(format!("{}: {problem}", shown(file)));
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// mdBook makes GitHub's anchors only with smart punctuation off.
#[test]
fn the_book_keeps_githubs_anchors() {
    let book = read(&root().join("docs/book.toml"));
    assert!(
        book.lines()
            .any(|l| l.replace(' ', "") == "smart-punctuation=false"),
        "docs/book.toml must set smart-punctuation = false under [output.html]"
    );
}

/// Every page of the book is in docs/SUMMARY.md, and everything SUMMARY.md
/// lists exists (mdBook would create an empty page for it).
#[test]
fn the_summary_lists_every_page_of_the_book() {
    let docs = root().join("docs");
    let summary = parse(&read(&docs.join("SUMMARY.md")));
    let listed: BTreeSet<PathBuf> = summary
        .links
        .iter()
        .map(|l| normalize(&docs.join(l.split('#').next().unwrap_or(l))))
        .collect();
    for page in &listed {
        assert!(
            page.exists(),
            "SUMMARY.md lists {}, which does not exist",
            shown(page)
        );
    }
    let mut files = Vec::new();
    crate::collect(&docs, "md", &mut files);
    for file in files {
        if file.file_name().is_some_and(|n| n == "SUMMARY.md") {
            continue;
        }
        assert!(
            listed.contains(&file),
            "{} is not in docs/SUMMARY.md",
            shown(&file)
        );
    }
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let cases = [
        ("pgbak backup", "pgbak-backup"),
        ("S3 / MinIO", "s3--minio"),
        ("Encryption at rest (age)", "encryption-at-rest-age"),
        (
            "Where `pgbak check` runs, and what to alert on",
            "where-pgbak-check-runs-and-what-to-alert-on",
        ),
        (
            "Guarantees, and how they are tested",
            "guarantees-and-how-they-are-tested",
        ),
        ("keep_last_n", "keep_last_n"),
    ];
    for (text, anchor) in cases {
        assert_eq!(slug(text), anchor, "{text}");
    }
    let page = parse("# A\n\n## A\n\n### `code` b\n\n[x](#a-1)\n");
    assert_eq!(
        page.anchors,
        BTreeSet::from(["a".to_owned(), "a-1".to_owned(), "code-b".to_owned()])
    );
    assert_eq!(page.links, ["#a-1"]);
}

/// Every code fence is closed: an unclosed one swallows the rest of the page.
#[test]
fn every_code_fence_is_closed() {
    for path in markdown_files() {
        let fences = read(&path)
            .lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count();
        assert!(fences % 2 == 0, "{}: {fences} fence lines", shown(&path));
    }
}
