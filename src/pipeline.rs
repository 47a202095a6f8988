//! The byte path of a backup as a chain of stages: a source (pg_dump's stdout),
//! the hash stage (SHA-256 and byte count, computed on the way), and sinks (the
//! local `.partial` file, an S3 multipart upload). A later stage such as
//! client-side encryption slots in as one more [`Sink`] wrapper.
//!
//! The pump runs on a blocking thread with large reads: one read, one hash
//! update and one write per megabyte keeps pgbak's cost far below pg_dump's.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::storage::fsio;

const CHUNK: usize = 1 << 20;

/// Where the bytes go. `write` gets every chunk in order; `finish` makes the
/// result durable; `abort` removes whatever was written.
pub trait Sink: Send {
    fn write(&mut self, chunk: &[u8]) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
    fn abort(&mut self);
}

/// What went through the pump.
#[derive(Debug, Clone)]
pub struct Summary {
    pub bytes: u64,
    pub sha256: String,
    /// The first bytes, to check the archive's magic (`PGDMP`).
    pub head: Vec<u8>,
}

/// Reads `source` to its end, hashing and handing every chunk to each sink.
/// Stops at the first sink error (the caller aborts the sinks).
pub fn pump(
    mut source: impl Read,
    sinks: &mut [&mut dyn Sink],
    progress: &mut crate::ui::Progress,
) -> Result<Summary> {
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut head = Vec::with_capacity(16);
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading pg_dump's output"),
        };
        let chunk = &buf[..n];
        if head.len() < 16 {
            let take = (16 - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(chunk);
        for sink in sinks.iter_mut() {
            sink.write(chunk)?;
        }
        bytes += n as u64;
        progress.update(bytes);
    }
    Ok(Summary {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        head,
    })
}

/// SHA-256 and size of a file, read in large chunks.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Turns a child's pipe (non-blocking under tokio) into a blocking reader with
/// a 1 MiB pipe buffer, so the pump makes few, large reads.
pub fn blocking_pipe(fd: OwnedFd) -> Result<File> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; failures are reported, not UB.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error()).context("configuring the pg_dump pipe");
        }
        // Larger pipe, fewer wake-ups; the kernel may refuse, which is fine.
        libc::fcntl(raw, libc::F_SETPIPE_SZ, CHUNK as libc::c_int);
    }
    Ok(File::from(fd))
}

/// The local file sink: `<final>.partial`, created exclusively with mode 0600
/// and locked (so cleanup of dead runs' leftovers never touches it), fsynced
/// by `finish`. The rename to the final name is [`FileSink::commit`], done only
/// after everything upstream (pg_dump's exit status) has been checked.
pub struct FileSink {
    file: Option<File>,
    partial: PathBuf,
    target: PathBuf,
}

impl FileSink {
    /// Fails with `AlreadyExists` when the name is taken (by another run, say).
    pub fn create(target: &Path) -> std::io::Result<FileSink> {
        let partial = fsio::partial_path(target);
        if target.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "target exists",
            ));
        }
        let file = fsio::create_new(&partial)?;
        file.try_lock().map_err(std::io::Error::other)?;
        Ok(FileSink {
            file: Some(file),
            partial,
            target: target.to_path_buf(),
        })
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Renames the finished partial file to its final name (never replacing one)
    /// and makes the rename durable.
    pub fn commit(mut self) -> Result<()> {
        fsio::rename_noreplace(&self.partial, &self.target)?;
        self.file = None;
        let dir = self.target.parent().unwrap_or(Path::new("."));
        fsio::sync_dir(dir)
    }
}

impl Sink for FileSink {
    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let file = self.file.as_mut().context("writing to a closed file")?;
        file.write_all(chunk)
            .with_context(|| format!("writing {}", self.partial.display()))
    }

    fn finish(&mut self) -> Result<()> {
        let file = self.file.as_mut().context("finishing a closed file")?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.partial.display()))
    }

    fn abort(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.partial);
    }
}

impl Drop for FileSink {
    /// A sink dropped before `commit` (error, panic, signal) removes its partial file.
    fn drop(&mut self) {
        if self.file.is_some() {
            self.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pump_hashes_and_writes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.dump");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut sink = FileSink::create(&target).unwrap();
        let mut progress = crate::ui::Progress::new("test");
        let summary = pump(&data[..], &mut [&mut sink], &mut progress).unwrap();
        sink.finish().unwrap();
        sink.commit().unwrap();
        assert_eq!(summary.bytes, data.len() as u64);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert_eq!(hash_file(&target).unwrap(), (summary.sha256, summary.bytes));
        assert!(fsio::is_private(&target));
    }

    #[test]
    fn dropped_sink_leaves_nothing_and_names_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.dump");
        {
            let mut sink = FileSink::create(&target).unwrap();
            sink.write(b"PGDMP").unwrap();
            assert!(FileSink::create(&target).is_err(), "partial name is taken");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(&target, b"done").unwrap();
        assert!(FileSink::create(&target).is_err(), "final name is taken");
    }
}
