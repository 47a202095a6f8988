//! S3 / MinIO against the real moto server: the streaming multipart upload and its integrity
//! check, what an S3 failure leaves behind, downloads for verify and restore, the upload markers
//! and their cleanup, slow and stalled links.

mod bookkeeping;
mod failures;
mod fetch;
mod fetch_sweep;
mod markers;
mod ranged;
mod scratch;
mod slow_links;
mod upload;

use std::path::{Path, PathBuf};

/// The `pgbak-fetch-*` download directories in `tmp` (fetch_sweep.rs, ranged.rs, scratch.rs).
fn fetch_dirs(tmp: &Path) -> Vec<PathBuf> {
    crate::support::files(tmp)
        .into_iter()
        .filter(|f| f.starts_with("pgbak-fetch-"))
        .map(|f| tmp.join(f))
        .collect()
}
