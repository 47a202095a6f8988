//! The byte path of a backup as a chain of stages: a source (pg_dump's stdout),
//! the hash stage (SHA-256 and byte count, computed on the way), optionally the
//! age encryption stage ([`Encrypt`], a [`Sink`] wrapping the others: it hashes
//! what it passes on, the stored ciphertext), and sinks (the local `.partial`
//! file, an S3 multipart upload). Any stream (a dump, a globals file) gets
//! encrypted the same way: wrap its sinks in [`Encrypt`].
//!
//! The pump runs on a blocking thread with large reads: one read, one hash
//! update and one write per megabyte keeps pgbak's cost far below pg_dump's.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::encryption::Recipients;
use crate::storage::fsio;
use crate::storage::s3::S3Sink;

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

/// The encryption stage: everything written to it is age-encrypted (to the
/// run's recipients, with a fresh file key) and the ciphertext goes to the
/// inner sinks, hashed on the way. `finish` writes the final chunk, then
/// finishes the inner sinks; [`Encrypt::stored`] is then the ciphertext's
/// size and SHA-256 (what meta.json records and verify checks first).
pub struct Encrypt<'a> {
    writer: Option<age::stream::StreamWriter<Fanout<'a>>>,
    stored: Option<(u64, String)>,
    /// The first sink error, kept whole (the age writer only passes io::Error on).
    error: Arc<Mutex<Option<anyhow::Error>>>,
}

/// The ciphertext side: buffers to 1 MiB, hashes, hands out to the sinks.
struct Fanout<'a> {
    sinks: Vec<&'a mut dyn Sink>,
    buf: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
    error: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Fanout<'_> {
    fn push_out(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        for sink in self.sinks.iter_mut() {
            if let Err(err) = sink.write(&self.buf) {
                let text = crate::error::one_line(&err);
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(err);
                }
                return Err(std::io::Error::other(text));
            }
        }
        self.hasher.update(&self.buf);
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl Write for Fanout<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.push_out()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.push_out()
    }
}

impl<'a> Encrypt<'a> {
    pub fn new(recipients: &Recipients, sinks: Vec<&'a mut dyn Sink>) -> Result<Encrypt<'a>> {
        let error = Arc::new(Mutex::new(None));
        let fanout = Fanout {
            sinks,
            buf: Vec::with_capacity(CHUNK + (64 << 10)),
            hasher: Sha256::new(),
            bytes: 0,
            error: error.clone(),
        };
        let writer = recipients
            .encryptor()?
            .wrap_output(fanout)
            .context("writing the age header")?;
        Ok(Encrypt {
            writer: Some(writer),
            stored: None,
            error,
        })
    }

    /// Size and SHA-256 of the ciphertext, once `finish` succeeded.
    pub fn stored(&self) -> Option<(u64, String)> {
        self.stored.clone()
    }

    fn failed(&mut self, err: std::io::Error) -> anyhow::Error {
        let inner = self.error.lock().ok().and_then(|mut slot| slot.take());
        inner.unwrap_or_else(|| anyhow::Error::new(err).context("encrypting the stream"))
    }
}

impl Sink for Encrypt<'_> {
    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let writer = self
            .writer
            .as_mut()
            .context("writing to a finished encryption")?;
        match writer.write_all(chunk) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.failed(err)),
        }
    }

    fn finish(&mut self) -> Result<()> {
        let writer = self
            .writer
            .take()
            .context("finishing a finished encryption")?;
        let mut fanout = match writer.finish() {
            Ok(fanout) => fanout,
            Err(err) => return Err(self.failed(err)),
        };
        if let Err(err) = fanout.push_out() {
            return Err(self.failed(err));
        }
        for sink in fanout.sinks.iter_mut() {
            sink.finish()?;
        }
        self.stored = Some((fanout.bytes, hex::encode(fanout.hasher.clone().finalize())));
        Ok(())
    }

    /// Drops the stream; the sinks are the caller's (lent for the stream's
    /// life), so the caller aborts them.
    fn abort(&mut self) {
        self.writer = None;
    }
}

/// The sinks of one backup: its local `.partial` file, when uploading the
/// S3 multipart upload, and one sink per `--to` destination.
pub struct Sinks {
    pub file: FileSink,
    pub s3: Option<S3Sink>,
    pub extra: Vec<Extra>,
}

/// The sink of one `--to` destination: a directory's `.partial` file or a
/// bucket's multipart upload. It never fails the pump: the first error is
/// kept, the sink stops taking bytes (a directory's partial file is
/// removed), and the other destinations go on; [`Extra::failure`] says why.
/// (A bucket's sink already behaves so: see [`S3Sink`]; it blocks the pump
/// at most for the stall timeout, after which its part fails.)
pub struct Extra {
    /// The destination's name.
    pub name: String,
    pub sink: ExtraSink,
    failure: Option<anyhow::Error>,
}

/// Where an [`Extra`]'s bytes go.
pub enum ExtraSink {
    File(FileSink),
    S3(S3Sink),
}

impl Extra {
    pub fn new(name: &str, sink: ExtraSink) -> Extra {
        Extra {
            name: name.to_owned(),
            sink,
            failure: None,
        }
    }

    /// Why this destination dropped out of the stream, when it did.
    pub fn failure(&mut self) -> Option<anyhow::Error> {
        self.failure.take()
    }

    fn inner(&mut self) -> &mut dyn Sink {
        match &mut self.sink {
            ExtraSink::File(file) => file,
            ExtraSink::S3(s3) => s3,
        }
    }

    fn drop_out(&mut self, err: anyhow::Error) {
        crate::ui::warn(&format!(
            "destination {} dropped from this backup; the others go on: {}",
            self.name,
            crate::error::one_line(&err)
        ));
        self.inner().abort();
        self.failure = Some(err);
    }
}

impl Sink for Extra {
    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.failure.is_none() {
            if let Err(err) = self.inner().write(chunk) {
                self.drop_out(err);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.failure.is_none() {
            if let Err(err) = self.inner().finish() {
                self.drop_out(err);
            }
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.inner().abort();
    }
}

/// What one pump through a backup's sinks did.
#[derive(Debug, Clone)]
pub struct Pumped {
    /// What the source gave (pg_dump's archive, the globals SQL).
    pub plain: Summary,
    /// Size and SHA-256 of what was stored (the ciphertext when encrypting).
    pub stored: (u64, String),
}

/// Runs the pump on a blocking thread: `source` through the encryption stage
/// (with recipients) into the sinks, which are finished. The sinks come back
/// either way: the caller commits them, or drops them (a dropped [`FileSink`]
/// removes its partial file).
pub fn spawn_pump(
    source: impl Read + Send + 'static,
    mut sinks: Sinks,
    recipients: Option<Recipients>,
    what: &'static str,
) -> tokio::task::JoinHandle<(Result<Pumped>, Sinks)> {
    tokio::task::spawn_blocking(move || {
        let mut progress = crate::ui::Progress::new(what);
        let result = {
            let mut out: Vec<&mut dyn Sink> = vec![&mut sinks.file];
            if let Some(s3) = sinks.s3.as_mut() {
                out.push(s3);
            }
            out.extend(sinks.extra.iter_mut().map(|e| e as &mut dyn Sink));
            pump_into(source, out, recipients.as_ref(), &mut progress)
        };
        progress.finish();
        (result, sinks)
    })
}

/// The pump into `sinks`, through the encryption stage when there are
/// recipients; finishes the sinks.
fn pump_into(
    source: impl Read,
    mut sinks: Vec<&mut dyn Sink>,
    recipients: Option<&Recipients>,
    progress: &mut crate::ui::Progress,
) -> Result<Pumped> {
    match recipients {
        None => {
            let plain = pump(source, &mut sinks, progress)?;
            sinks.iter_mut().try_for_each(|s| s.finish())?;
            let stored = (plain.bytes, plain.sha256.clone());
            Ok(Pumped { plain, stored })
        }
        Some(recipients) => {
            let mut encrypt = Encrypt::new(recipients, sinks)?;
            let plain = pump(source, &mut [&mut encrypt], progress)?;
            encrypt.finish()?;
            let stored = encrypt
                .stored()
                .context("the encryption stage did not finish")?;
            Ok(Pumped { plain, stored })
        }
    }
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
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    fcntl_getfl(&fd)
        .and_then(|flags| fcntl_setfl(&fd, flags - OFlags::NONBLOCK))
        .map_err(std::io::Error::from)
        .context("configuring the pg_dump pipe")?;
    // Larger pipe, fewer wake-ups; the kernel may refuse, which is fine.
    let _ = rustix::pipe::fcntl_setpipe_size(&fd, CHUNK);
    Ok(File::from(fd))
}

/// The local file sink: `<final>.partial`, created exclusively with mode 0600
/// and locked (so cleanup of dead runs' leftovers never touches it), fsynced
/// by `finish`. The rename to the final name is [`FileSink::commit`], done only
/// after everything upstream (pg_dump's exit status) has been checked.
pub struct FileSink {
    file: Option<File>,
    writeback: Option<Writeback>,
    partial: PathBuf,
    target: PathBuf,
}

/// How much is written between two requests to put the file on disk.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Writeback while the file is written: every [`WRITEBACK_EVERY`] bytes a
/// thread of its own syncs what is there (its own handle of the file), so the
/// sync at the end waits for the tail only, not for the whole dump (tens of
/// milliseconds at the end of every backup; the pump never waits for it).
struct Writeback {
    wake: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
    unsynced: u64,
}

impl Writeback {
    /// None when the thread cannot start: the sync at the end then does it all.
    fn start(file: &File) -> Option<Writeback> {
        let handle = file.try_clone().ok()?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("pgbak-writeback".to_owned())
            .spawn(move || woken.iter().try_for_each(|()| handle.sync_data()))
            .ok()?;
        Some(Writeback {
            wake,
            thread,
            unsynced: 0,
        })
    }

    fn wrote(&mut self, bytes: usize) {
        self.unsynced += bytes as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            // Full: a sync is pending, and covers these bytes when it runs.
            // Gone: the thread failed, and `finish` says why.
            let _ = self.wake.try_send(());
            self.unsynced = 0;
        }
    }

    /// Waits for the thread; the first sync that failed fails the file.
    fn finish(self) -> std::io::Result<()> {
        drop(self.wake);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writeback thread panicked")))
    }
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
            writeback: Writeback::start(&file),
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
            .with_context(|| format!("writing {}", self.partial.display()))?;
        if let Some(writeback) = self.writeback.as_mut() {
            writeback.wrote(chunk.len());
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let file = self.file.as_mut().context("finishing a closed file")?;
        // Beside a sync the thread may still be making: both wait for one writeback.
        let synced = file.sync_all();
        if let Some(writeback) = self.writeback.take() {
            writeback
                .finish()
                .with_context(|| format!("syncing {}", self.partial.display()))?;
        }
        synced.with_context(|| format!("syncing {}", self.partial.display()))
    }

    fn abort(&mut self) {
        self.writeback = None;
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
    fn encrypted_stream_decrypts_to_the_input_and_hashes_the_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.dump.age");
        let (secret, public) = crate::encryption::generate();
        let recipients = crate::encryption::Recipients::resolve(&[public], None)
            .unwrap()
            .unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut sink = FileSink::create(&target).unwrap();
        let mut progress = crate::ui::Progress::new("test");
        let (plain, stored) = {
            let mut enc = Encrypt::new(&recipients, vec![&mut sink]).unwrap();
            let summary = pump(&data[..], &mut [&mut enc], &mut progress).unwrap();
            enc.finish().unwrap();
            (summary, enc.stored().unwrap())
        };
        sink.commit().unwrap();
        assert_eq!(plain.sha256, hex::encode(Sha256::digest(&data)));
        let on_disk = std::fs::read(&target).unwrap();
        assert!(on_disk.starts_with(crate::encryption::MAGIC));
        assert!(!on_disk.windows(5).any(|w| w == b"PGDMP") || !data.starts_with(b"PGDMP"));
        assert_eq!(hash_file(&target).unwrap(), (stored.1, stored.0));
        let identity: age::x25519::Identity = secret.parse().unwrap();
        let decrypted = age::decrypt(&identity, &on_disk).unwrap();
        assert_eq!(decrypted, data);
    }

    #[test]
    fn a_file_synced_on_the_way_holds_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("big.dump");
        // Past WRITEBACK_EVERY a few times, in the pump's chunks.
        let data: Vec<u8> = (0..(WRITEBACK_EVERY as usize * 3 + 12_345))
            .map(|i| (i % 253) as u8)
            .collect();
        let mut sink = FileSink::create(&target).unwrap();
        assert!(sink.writeback.is_some(), "the writeback thread started");
        let mut progress = crate::ui::Progress::new("test");
        let summary = pump(&data[..], &mut [&mut sink], &mut progress).unwrap();
        sink.finish().unwrap();
        assert!(sink.writeback.is_none(), "finish waited for the thread");
        sink.commit().unwrap();
        assert_eq!(summary.bytes, data.len() as u64);
        assert_eq!(std::fs::read(&target).unwrap(), data);
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
