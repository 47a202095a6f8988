//! What contrib/ ships, checked against the real binary: the systemd units, the crontab line, the
//! environment example and the Kubernetes manifests.

mod kubernetes;
mod units;
