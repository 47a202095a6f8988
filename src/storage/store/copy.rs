//! A backup's dump copied into a store from another one (`pgbak sync`):
//! on the server when both are prefixes of the same S3 endpoint, else
//! streamed from a local file (the directory's own, or a checked download)
//! through the same sinks a backup writes (a `.partial` renamed into place;
//! the multipart upload with its bounded part buffers), every byte read
//! hashed and checked against meta.json before the copy is made visible.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Store;
use crate::pipeline::{pump, FileSink, Sink, Summary};
use crate::storage::BackupName;

impl Store {
    /// Copies the dump `file` (of `size` bytes) from `source` on the server
    /// when both are prefixes of the same S3 endpoint; Ok(false) when they
    /// are not (the caller streams it).
    pub async fn copy_on_server(&self, source: &Store, file: &str, size: u64) -> Result<bool> {
        match (self, source) {
            (Store::S3(to), Store::S3(from)) if to.same_endpoint(from) => {
                to.copy_from(from, file, size).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Writes `name`'s dump here from the local file `from`, streamed, and
    /// checks what was read against meta.json's `sha256` and `size`: a
    /// mismatch (or any failure) leaves no dump here.
    pub async fn put_dump_from(
        &self,
        name: &BackupName,
        from: &Path,
        sha256: &str,
        size: u64,
    ) -> Result<()> {
        let check = |summary: &Summary| -> Result<()> {
            if summary.sha256 != sha256 || summary.bytes != size {
                bail!(
                    "{} does not match its meta.json: {} bytes with sha256 {}, expected {size} \
                     bytes with sha256 {sha256}",
                    from.display(),
                    summary.bytes,
                    summary.sha256
                );
            }
            Ok(())
        };
        match self {
            Store::Local(local) => {
                crate::storage::fsio::ensure_dir(&local.dir)?;
                let target = local.dir.join(name.dump_file());
                let sink = FileSink::create(&target)
                    .with_context(|| format!("creating {}", target.display()))?;
                let (summary, sink) = pump_file(from.to_path_buf(), sink).await?;
                check(&summary?)?;
                sink.commit()
            }
            Store::S3(_) => {
                let sink = self.start_upload(name, Some(size)).await?;
                let handle = sink.handle();
                let (summary, sink) = pump_file(from.to_path_buf(), sink).await?;
                match summary.and_then(|s| check(&s)) {
                    Ok(()) => sink.complete(size).await.map(|_| ()),
                    Err(err) => {
                        handle.abort().await;
                        Err(err)
                    }
                }
            }
            #[cfg(test)]
            Store::Memory(_) => bail!("the memory store holds no files"),
        }
    }
}

/// Pumps the file `from` into `sink` on a blocking thread and finishes it;
/// the sink comes back either way (dropped, a [`FileSink`] removes its
/// partial file).
async fn pump_file<S: Sink + 'static>(from: PathBuf, mut sink: S) -> Result<(Result<Summary>, S)> {
    tokio::task::spawn_blocking(move || {
        let mut progress = crate::ui::Progress::new("copying");
        let pumped = std::fs::File::open(&from)
            .with_context(|| format!("opening {}", from.display()))
            .and_then(|file| pump(file, &mut [&mut sink], &mut progress))
            .and_then(|summary| sink.finish().map(|()| summary));
        progress.finish();
        (pumped, sink)
    })
    .await
    .context("the copy stopped unexpectedly")
}
