//! The reading side of encryption: how verify and restore hand an age-encrypted
//! backup to pg_restore without a plaintext file on disk.
//!
//! - The identity is checked first: a missing or wrong one is a usage error
//!   (exit 2) naming the recipients the backup was made for, before any
//!   database is touched.
//! - One pg_restore job: the plaintext streams from a decrypting thread into
//!   pg_restore's stdin (pg_restore cannot read a custom archive from a named
//!   pipe: it opens the file twice, so stdin it is).
//! - Parallel jobs: pg_restore's workers reopen and seek the archive, so it
//!   must be a file. It is decrypted into an *unnamed* file (`O_TMPFILE`, mode
//!   0600) in the scratch directory (`--scratch-dir`, default `/dev/shm`, a
//!   tmpfs) and handed over as `/proc/<pid>/fd/<n>`. Having no name, it
//!   vanishes when pgbak exits, whichever way, SIGKILL included. Without room
//!   for it the restore falls back to one streamed job, saying so.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

use super::Identities;
use crate::archive::Header;
use crate::error::{finding, usage};
use crate::meta::Meta;
use crate::pg::restore::{Input, PgRestoreVerdict, RestoreJob};
use crate::signals::Signals;
use crate::ui;

const CHUNK: usize = 1 << 20;
/// The tmpfs used for parallel restores when no `--scratch-dir` is given.
pub const DEFAULT_SCRATCH: &str = "/dev/shm";

/// A backup file as pg_restore will read it: as it is, or decrypted on the way.
pub struct Source {
    pub dump: PathBuf,
    /// Set for an age file, with the identities that open it.
    identities: Option<Arc<Identities>>,
    scratch_dir: Option<PathBuf>,
    /// meta.json's plaintext checksum and size, when known.
    expected: Option<(String, u64)>,
}

impl Source {
    /// Opens `dump` for reading. An age file needs an identity that fits: a
    /// missing or wrong one is a usage error naming the file's recipients (from
    /// meta.json). A damaged file is not diagnosed here: the checksum step does.
    pub fn open(
        dump: &Path,
        meta: Option<&Meta>,
        identity_file: Option<&Path>,
        scratch_dir: Option<&Path>,
    ) -> Result<Source> {
        let mut source = Source {
            dump: dump.to_path_buf(),
            identities: None,
            scratch_dir: scratch_dir.map(Path::to_path_buf),
            expected: None,
        };
        if !super::is_age_file(dump)? {
            return Ok(source);
        }
        let encryption = meta.and_then(|m| m.encryption.as_ref());
        let recipients = encryption.map_or_else(
            || "not recorded (no meta.json)".to_owned(),
            |e| e.recipients.join(", "),
        );
        let Some(identity_file) = identity_file else {
            return Err(usage(format!(
                "{} is encrypted with age (recipients: {recipients}); pass --identity-file FILE \
                 or set PGBAK_AGE_IDENTITY_FILE to the file holding one of their private keys",
                dump.display()
            )));
        };
        let identities = Identities::load(identity_file)?;
        match open_reader(dump, &identities) {
            Ok(_) => {}
            Err(Opened::NoMatchingKey) => {
                let fits = encryption.is_some_and(|e| identities.fits_any(&e.recipients));
                if !fits {
                    return Err(usage(format!(
                        "the identity file {} (public key {}) cannot decrypt {}: it was encrypted to {recipients}",
                        identity_file.display(),
                        if identities.publics.is_empty() {
                            "unknown".to_owned()
                        } else {
                            identities.publics.join(", ")
                        },
                        dump.display()
                    )));
                }
                // The key fits meta.json but not the file: the file is damaged,
                // which the checksum step reports.
            }
            Err(Opened::Other(_)) => {}
        }
        source.identities = Some(Arc::new(identities));
        source.expected = encryption.map(|e| (e.plaintext_sha256.clone(), e.plaintext_size_bytes));
        Ok(source)
    }

    pub fn encrypted(&self) -> bool {
        self.identities.is_some()
    }

    /// The keys of an encrypted backup, to decrypt it elsewhere than from its file.
    pub fn shared_identities(&self) -> Option<Arc<Identities>> {
        self.identities.clone()
    }

    /// meta.json's plaintext checksum and size of an encrypted backup.
    pub fn expected_plaintext(&self) -> Option<(String, u64)> {
        self.expected.clone()
    }

    /// The keys that opened an encrypted backup (they open its meta.json's
    /// sealed section too).
    pub fn identities(&self) -> Option<&Identities> {
        self.identities.as_deref()
    }

    /// The archive header, read through the decryption when encrypted. A
    /// header that is not a custom archive's, or bytes that do not decrypt,
    /// are a [`crate::error::Finding`].
    pub fn header(&self) -> Result<Header> {
        let Some(identities) = &self.identities else {
            return crate::archive::read_header(&self.dump);
        };
        let mut reader =
            open_reader(&self.dump, identities).map_err(|err| finding(err.describe(&self.dump)))?;
        let mut head = [0u8; 32];
        let mut len = 0;
        while len < head.len() {
            match reader.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(finding(format!(
                        "cannot decrypt {}: {e} (corrupt or truncated)",
                        self.dump.display()
                    )))
                }
            }
        }
        crate::archive::parse_header(&head[..len]).map_err(finding)
    }

    /// The whole plaintext in memory (small files: the globals SQL).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let Some(identities) = &self.identities else {
            return std::fs::read(&self.dump)
                .with_context(|| format!("reading {}", self.dump.display()));
        };
        let mut reader =
            open_reader(&self.dump, identities).map_err(|e| anyhow!(e.describe(&self.dump)))?;
        let mut plain = Vec::new();
        reader.read_to_end(&mut plain).with_context(|| {
            format!(
                "decrypting {} (the file is corrupt or truncated)",
                self.dump.display()
            )
        })?;
        if let Some((sha256, _)) = &self.expected {
            if hex::encode(Sha256::digest(&plain)) != *sha256 {
                return Err(anyhow!(
                    "the decrypted {} differs from its meta.json",
                    self.dump.display()
                ));
            }
        }
        Ok(plain)
    }

    /// For `pg_restore --list`: the plaintext streamed into its stdin.
    pub fn for_list(&self) -> Result<Plain> {
        match &self.identities {
            None => Ok(Plain::file(&self.dump)),
            Some(ids) => Plain::stream(&self.dump, ids.clone(), None),
        }
    }

    /// For a restore with `jobs` workers; returns the jobs actually possible.
    /// Encrypted and parallel: decrypted into an unnamed scratch file first
    /// (timed and logged: that is the price of parallelism).
    pub async fn for_restore(&self, jobs: u32) -> Result<(Plain, u32)> {
        let Some(ids) = &self.identities else {
            return Ok((Plain::file(&self.dump), jobs));
        };
        if jobs <= 1 {
            return Ok((
                Plain::stream(&self.dump, ids.clone(), self.expected.clone())?,
                1,
            ));
        }
        let need = std::fs::metadata(&self.dump)
            .with_context(|| format!("reading {}", self.dump.display()))?
            .len();
        let Some(dir) = pick_scratch(self.scratch_dir.as_deref(), need)? else {
            ui::warn(&format!(
                "{DEFAULT_SCRATCH} has no room for the decrypted archive ({}) that a parallel \
                 restore needs: restoring with 1 job, streamed. Set --scratch-dir / \
                 PGBAK_SCRATCH_DIR to a directory with room (ideally a tmpfs) for --jobs {jobs}",
                ui::bytes(need)
            ));
            return Ok((
                Plain::stream(&self.dump, ids.clone(), self.expected.clone())?,
                1,
            ));
        };
        let clock = Instant::now();
        let (dump, ids2) = (self.dump.clone(), ids.clone());
        let dir2 = dir.clone();
        let (file, fed) =
            tokio::task::spawn_blocking(move || decrypt_to_scratch(&dump, &ids2, &dir2))
                .await
                .context("decrypting stopped unexpectedly")??;
        check_fed(&fed, self.expected.as_ref(), &self.dump)?;
        ui::info(&format!(
            "decrypted {} into an unnamed 0600 file in {} in {:.1}s for the {jobs}-job restore \
             (removed when pgbak exits)",
            ui::bytes(fed.bytes),
            dir.display(),
            clock.elapsed().as_secs_f64()
        ));
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        ));
        Ok((
            Plain {
                input: Input::File(path),
                feeder: None,
                scratch: Some(file),
                expected: None,
                dump: self.dump.clone(),
            },
            jobs,
        ))
    }
}

/// What the decrypting side wrote.
#[derive(Debug, Clone)]
pub struct Fed {
    pub bytes: u64,
    pub sha256: String,
    /// The whole plaintext went out (false when the reader stopped early).
    pub complete: bool,
}

/// The archive as one pg_restore reads it, and what keeps it readable.
pub struct Plain {
    input: Input,
    feeder: Option<std::thread::JoinHandle<Result<Fed>>>,
    /// The unnamed scratch file, open for as long as pg_restore may read it.
    scratch: Option<File>,
    expected: Option<(String, u64)>,
    dump: PathBuf,
}

impl Plain {
    fn file(dump: &Path) -> Plain {
        Plain {
            input: Input::File(dump.to_path_buf()),
            feeder: None,
            scratch: None,
            expected: None,
            dump: dump.to_path_buf(),
        }
    }

    /// A pipe whose read end becomes pg_restore's stdin, fed by a decrypting thread.
    fn stream(dump: &Path, ids: Arc<Identities>, expected: Option<(String, u64)>) -> Result<Plain> {
        let path = dump.to_path_buf();
        Plain::fed_by(dump, expected, move |write| feed(&path, &ids, write))
    }

    /// A pipe whose read end becomes pg_restore's stdin, written by `feed`
    /// on a thread of its own; its plaintext is checked against `expected`
    /// at [`Plain::finish`]. (`dump` names the backup in messages.)
    pub fn fed_by(
        dump: &Path,
        expected: Option<(String, u64)>,
        feed: impl FnOnce(File) -> Result<Fed> + Send + 'static,
    ) -> Result<Plain> {
        let (read, write) = pipe()?;
        let feeder = std::thread::Builder::new()
            .name("pgbak-feed".into())
            .spawn(move || feed(write))
            .context("starting the thread that feeds pg_restore")?;
        Ok(Plain {
            input: Input::Pipe(read),
            feeder: Some(feeder),
            scratch: None,
            expected,
            dump: dump.to_path_buf(),
        })
    }

    pub fn input(&self) -> &Input {
        &self.input
    }

    /// pg_restore reading this archive (or its decryption). A decryption that
    /// failed on the way is one more error of the outcome: pg_restore did not
    /// get the whole archive. pg_restore's harmless warnings are printed.
    /// Verify and restore both run pg_restore through here.
    pub async fn restore(
        self,
        job: &RestoreJob<'_>,
        signals: &mut Signals,
    ) -> Result<PgRestoreVerdict> {
        let mut outcome = crate::pg::restore::restore(job, self.input(), signals).await?;
        // Off the runtime: a feeder may still be waiting for downloaded bytes the runtime delivers.
        let finished = tokio::task::spawn_blocking(move || self.finish())
            .await
            .context("waiting for the thread that fed pg_restore")?;
        if let Err(err) = finished {
            outcome.errors.push(crate::error::one_line(&err));
        }
        for warning in crate::pg::restore::distinct(&outcome.warnings) {
            ui::warn(&format!("pg_restore (harmless): {warning}"));
        }
        Ok(outcome)
    }

    /// After pg_restore exited: closes the pipe, waits for the decrypting thread
    /// and reports a decryption failure or a plaintext that differs from meta.json.
    pub fn finish(self) -> Result<()> {
        let Plain {
            input,
            feeder,
            scratch,
            expected,
            dump,
        } = self;
        // Closing our read end lets a writer blocked on a full pipe see EPIPE.
        drop(input);
        drop(scratch);
        let Some(feeder) = feeder else {
            return Ok(());
        };
        let fed = feeder
            .join()
            .map_err(|_| anyhow!("the decryption thread panicked"))??;
        check_fed(&fed, expected.as_ref(), &dump)
    }
}

fn check_fed(fed: &Fed, expected: Option<&(String, u64)>, dump: &Path) -> Result<()> {
    if let (true, Some((sha256, size))) = (fed.complete, expected) {
        if &fed.sha256 != sha256 || fed.bytes != *size {
            return Err(anyhow!(
                "the decrypted archive of {} differs from meta.json: sha256 {}, {} bytes; meta.json says {}, {size} bytes",
                dump.display(),
                &fed.sha256[..16],
                fed.bytes,
                sha256.get(..16).unwrap_or(sha256)
            ));
        }
    }
    Ok(())
}

enum Opened {
    NoMatchingKey,
    Other(String),
}

impl Opened {
    fn describe(&self, dump: &Path) -> String {
        match self {
            Opened::NoMatchingKey => format!(
                "no key in the identity file opens {} (damaged header, or another identity)",
                dump.display()
            ),
            Opened::Other(why) => format!("cannot decrypt {}: {why}", dump.display()),
        }
    }
}

type AgeReader = age::stream::StreamReader<BufReader<File>>;

fn open_reader(dump: &Path, identities: &Identities) -> Result<AgeReader, Opened> {
    let file = File::open(dump).map_err(|e| Opened::Other(e.to_string()))?;
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(CHUNK, file))
        .map_err(|e| Opened::Other(format!("not a readable age file: {e}")))?;
    decryptor.decrypt(identities.iter()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Opened::NoMatchingKey,
        other => Opened::Other(other.to_string()),
    })
}

/// Copies the plaintext into `out` with its SHA-256; a reader that hangs up
/// (pg_restore --list is done) ends it early, not in error.
fn copy_plain(dump: &Path, identities: &Identities, out: &mut File, pipe: bool) -> Result<Fed> {
    let mut reader = open_reader(dump, identities).map_err(|e| anyhow!(e.describe(dump)))?;
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow!(
                "decrypting {} failed after {bytes} bytes: {e} (the file is corrupt or truncated)",
                dump.display()
            ))
            }
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if pipe && e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(Fed {
                    bytes,
                    sha256: hex::encode(hasher.finalize()),
                    complete: false,
                })
            }
            Err(e) => return Err(e).context("writing the decrypted archive"),
        }
    }
    Ok(Fed {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        complete: true,
    })
}

fn feed(dump: &Path, identities: &Identities, mut out: File) -> Result<Fed> {
    copy_plain(dump, identities, &mut out, true)
}

fn decrypt_to_scratch(dump: &Path, identities: &Identities, dir: &Path) -> Result<(File, Fed)> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::TMPFILE.bits() as i32)
        .mode(0o600)
        .open(dir)
        .with_context(|| {
            format!(
                "creating an unnamed file in {} (the scratch directory must be on a filesystem \
                 with O_TMPFILE: tmpfs, ext4, xfs, btrfs)",
                dir.display()
            )
        })?;
    let fed = copy_plain(dump, identities, &mut file, false)?;
    Ok((file, fed))
}

/// The scratch directory for a parallel restore of `need` bytes: the one asked
/// for (too small is a usage error), else the default tmpfs when at most half
/// of its free room is needed, else none.
fn pick_scratch(explicit: Option<&Path>, need: u64) -> Result<Option<PathBuf>> {
    if let Some(dir) = explicit {
        let free = free_bytes(dir).ok_or_else(|| {
            usage(format!(
                "--scratch-dir {} is not a directory pgbak can use",
                dir.display()
            ))
        })?;
        if free < need {
            return Err(usage(format!(
                "--scratch-dir {} has {} free; the decrypted archive needs {}",
                dir.display(),
                ui::bytes(free),
                ui::bytes(need)
            )));
        }
        return Ok(Some(dir.to_path_buf()));
    }
    let dir = Path::new(DEFAULT_SCRATCH);
    Ok(free_bytes(dir)
        .filter(|free| need <= free / 2)
        .map(|_| dir.to_path_buf()))
}

/// Free bytes for an unprivileged writer on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    if !dir.is_dir() {
        return None;
    }
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// A pipe with close-on-exec ends (the child gets a dup as its stdin) and a 1 MiB buffer.
fn pipe() -> Result<(File, File)> {
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, PipeFlags};
    let (read, write) = pipe_with(PipeFlags::CLOEXEC)
        .map_err(std::io::Error::from)
        .context("creating a pipe for pg_restore")?;
    // The kernel may refuse the size, which is fine.
    let _ = fcntl_setpipe_size(&write, CHUNK);
    Ok((File::from(read), File::from(write)))
}
