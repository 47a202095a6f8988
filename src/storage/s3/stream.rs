//! A backup's dump read from the bucket as a stream, for a restore that
//! starts pg_restore before the download ends (`--jobs 1`): pg_restore reads
//! a custom archive written through a pipe sequentially, so it needs no file.
//!
//! Only the dump's head (its first range, at least 1 MiB: the archive header
//! and table of contents, which `pg_restore --list` reads) is written to the download
//! directory, so the checks before the restore run on a file as always; the
//! whole object is then read again from its first byte, in order, in ranged
//! GETs pinned to the ETag the head was read from, and hashed on the way.
//! Its SHA-256 and size are only known at the end: the reader ([`crate::archive::stream`])
//! compares them with meta.json and the restore built from a stream that
//! does not match fails and is removed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{ObjectHead, Store};

/// Chunks in the channel between the download and the reader (each one range).
const QUEUED: usize = 2;

/// The least of a dump written locally before it streams: its table of
/// contents must be in it (one range, when ranges are larger).
const HEAD_MIN: u64 = 1 << 20;

/// How much of a dump is written locally before it streams (pure).
pub fn head_len(part: u64) -> u64 {
    part.max(HEAD_MIN)
}

/// The verdict on a streamed dump against meta.json, once the stream ended
/// (None before). Shared with the verify report.
pub type Proof = Arc<Mutex<Option<Verdict>>>;

/// What the end of a stream proved, each with its words.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every byte went by and the sha256 and size equal meta.json.
    Matches(String),
    /// They differ: the backup is bad.
    Differs(String),
    /// The download failed midway: no verdict on the backup.
    Unread(String),
}

/// An object that will be streamed whole, with what meta.json says it is.
#[derive(Clone)]
pub struct Streamed {
    store: Store,
    key: String,
    head: ObjectHead,
    /// meta.json's `sha256` and `size_bytes`.
    pub sha256: String,
    pub size: u64,
    /// Set when the stream ended ([`Proof`]).
    pub proof: Proof,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "streamed {}", self.store.uri(&self.key))
    }
}

impl Streamed {
    /// Where the bytes come from, for messages.
    pub fn uri(&self) -> String {
        self.store.uri(&self.key)
    }

    /// Starts reading the whole object, in order; the chunks (or the error
    /// that stopped the read) arrive on the returned channel, which ends
    /// with the object. Dropping the receiver stops the download.
    pub async fn open(&self) -> tokio::sync::mpsc::Receiver<Result<Bytes>> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUED);
        let (part, concurrency) = (
            self.store.settings.download_part_size,
            self.store.settings.download_concurrency,
        );
        let mut parts = self
            .store
            .ranged(&self.key, &self.head, part, concurrency)
            .await;
        tokio::spawn(async move {
            loop {
                let next = parts.next().await;
                let end = !matches!(next, Ok(Some(_)));
                let sent = match next {
                    Ok(Some(chunk)) => tx.send(Ok(chunk)).await,
                    Ok(None) => break,
                    Err(err) => tx.send(Err(err)).await,
                };
                if end || sent.is_err() {
                    break;
                }
            }
        });
        rx
    }
}

impl Store {
    /// The object `key` is streamed later when it is larger than its head
    /// (`head_len`): the head is written to `dest` (created 0600) now, and
    /// the `Streamed` returned; None (nothing written) for a smaller
    /// object, which is downloaded whole as before.
    pub async fn download_head(
        &self,
        key: &str,
        dest: &Path,
        sha256: &str,
        size: u64,
    ) -> Result<Option<Streamed>> {
        let head = self.head_object(key).await?;
        let len = head_len(self.settings.download_part_size);
        if head.size <= len {
            return Ok(None);
        }
        let mut parts = self.ranged(key, &head, len, 1).await;
        let first = parts.next().await?;
        drop(parts);
        let Some(first) = first else {
            bail!("{} is empty", self.uri(key));
        };
        write_new(dest, &first).await?;
        Ok(Some(Streamed {
            store: self.clone(),
            key: key.to_owned(),
            head,
            sha256: sha256.to_owned(),
            size,
            proof: Arc::default(),
        }))
    }
}

/// `bytes` into a new file `dest` (0600), all of them there when this
/// returns. tokio's `write_all` returns once its last chunk is handed to a
/// background write: without the flush, the archive checks that read the head
/// next found it empty or short on a busy machine, and refused an encrypted
/// backup as "not encrypted (no age header)".
async fn write_new(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = super::fetch::create_private(dest).await?;
    file.write_all(bytes)
        .await
        .with_context(|| format!("writing {}", dest.display()))?;
    file.flush()
        .await
        .with_context(|| format!("writing {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_head_is_all_on_disk_when_written() {
        let dir = tempfile::tempdir().unwrap();
        for (i, len) in [1usize << 20, 8 << 20, 16 << 20].into_iter().enumerate() {
            let dest = dir.path().join(format!("head-{i}"));
            write_new(&dest, &vec![7u8; len]).await.unwrap();
            // Read at once, as the archive checks do.
            assert_eq!(std::fs::read(&dest).unwrap().len(), len);
        }
    }

    #[test]
    fn the_head_is_one_range_but_never_under_a_mebibyte() {
        assert_eq!(head_len(16 << 20), 16 << 20);
        assert_eq!(head_len(64 << 10), 1 << 20);
        assert_eq!(head_len(1 << 20), 1 << 20);
    }
}
