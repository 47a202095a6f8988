//! Backups on S3 or MinIO (issue 3/6 fills this in).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::S3Args;

/// A backup fetched from S3 into a local directory.
#[derive(Debug)]
pub struct Fetched {
    pub dump: PathBuf,
    /// None when the bucket holds no meta.json for it.
    pub meta: Option<PathBuf>,
}

/// Downloads `uri` (`s3://bucket/key.dump`), or with `uri` None the newest
/// complete full backup under the configured prefix, with its meta.json,
/// into `dest_dir`.
pub async fn fetch_backup(_args: &S3Args, _uri: Option<&str>, _dest_dir: &Path) -> Result<Fetched> {
    Err(crate::error::usage("S3 support is not yet implemented"))
}
