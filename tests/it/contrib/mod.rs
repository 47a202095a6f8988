//! What the project ships, checked against the real binary: contrib/'s systemd units, crontab
//! line, environment example and Kubernetes manifests; the .deb, .rpm and tarball packages; the
//! GitHub workflows and deny.toml.

mod destination_urls;
mod kubernetes;
mod packages;
mod units;
mod workflows;
