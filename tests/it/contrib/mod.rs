//! What the project ships, checked against the real binary: contrib/'s systemd units, crontab
//! line, environment example and Kubernetes manifests; the .deb, .rpm and tarball packages; the
//! GitHub workflows and deny.toml.

mod destination_urls;
mod kubernetes;
mod packages;
mod units;
mod workflows;

use std::path::Path;
use std::process::Command;

use crate::support::output_text;

/// `systemd-analyze verify` of `units` (files in `dir`), with `dir/man` as the
/// MANPATH (their Documentation= must resolve): passes with no warning.
pub(crate) fn assert_units_verify(analyze: &Path, dir: &Path, units: &[&str]) {
    let out = Command::new(analyze)
        .arg("verify")
        .args(units)
        .current_dir(dir)
        .env("MANPATH", dir.join("man"))
        .output()
        .expect("running systemd-analyze");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(out.stderr.is_empty(), "warnings: {}", output_text(&out));
}
