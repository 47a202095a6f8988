//! Proving a stored backup's bytes without restoring it (`verify
//! --checksum-only`): its dump read back from where it is stored, streamed
//! through SHA-256 (and, for `.dump.age`, through age's decryption to
//! nowhere, the plaintext hashed too), and compared with its meta.json.
//!
//! A backup verified once on the night it was made can rot later: a bit
//! flipped on a disk, an object truncated by a tool, a key lost. Restoring
//! every retained backup again costs hours; reading it back costs its
//! download. Memory is one chunk of the stream (and age's buffer), whatever
//! the size; nothing is written to disk.

use std::io::Read;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::encryption::Identities;
use crate::error::finding;
use crate::meta::Meta;
use crate::storage::Store;

/// Chunks queued between the download and the decrypting thread.
const QUEUE: usize = 4;

/// What a proof found, when the bytes match.
#[derive(Debug, Clone, PartialEq)]
pub struct Proven {
    pub bytes: u64,
    /// The plaintext was decrypted and matched too (false: not encrypted, or
    /// no identity was given).
    pub decrypted: bool,
}

/// Reads the dump `file` of `store` back and checks it against `meta`: its
/// SHA-256 and size, and for an encrypted one (with `identities`) that it
/// decrypts into the plaintext meta.json recorded. A mismatch or a
/// decryption that fails is a [`crate::error::Finding`]; an identity that
/// fits none of the backup's recipients is an error (nothing is proven
/// either way); so is a store that cannot be read.
pub async fn prove(
    store: &Store,
    file: &str,
    meta: &Meta,
    identities: Option<Arc<Identities>>,
) -> Result<Proven> {
    let encryption = meta.encryption.as_ref().filter(|_| file.ends_with(".age"));
    let identities = match (encryption, identities) {
        (Some(e), Some(ids)) if !ids.fits_any(&e.recipients) => {
            return Err(anyhow!(
                "the identity file {} fits none of the recipients it was encrypted to ({}): \
                 its decryption was not checked",
                ids.file.display(),
                e.recipients.join(", ")
            ))
        }
        (Some(_), ids) => ids,
        (None, _) => None,
    };
    let mut chunks = store.read_chunks(file).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let plain = identities.map(|ids| tokio::task::spawn_blocking(move || decrypt(rx, &ids)));
    let mut tx = Some(tx);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = chunks
        .next()
        .await
        .with_context(|| format!("reading {} back", store.address(file)))?
    {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        // A decryption that stopped early (it failed) still lets the hash finish.
        if let Some(sender) = &tx {
            if sender.send(chunk).await.is_err() {
                tx = None;
            }
        }
    }
    drop(tx);
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != meta.sha256 || bytes != meta.size_bytes {
        return Err(finding(format!(
            "the stored bytes do not match meta.json: sha256 {}, {bytes} bytes; meta.json says \
             sha256 {}, {} bytes (corrupt or truncated)",
            short(&sha256),
            short(&meta.sha256),
            meta.size_bytes
        )));
    }
    let Some(plain) = plain else {
        return Ok(Proven {
            bytes,
            decrypted: false,
        });
    };
    let (plain_sha, plain_bytes) = plain
        .await
        .context("decrypting stopped unexpectedly")?
        .map_err(|e| finding(format!("the backup does not decrypt: {e:#}")))?;
    if let Some(e) = encryption {
        if plain_sha != e.plaintext_sha256 || plain_bytes != e.plaintext_size_bytes {
            return Err(finding(format!(
                "the decrypted archive does not match meta.json: sha256 {}, {plain_bytes} bytes; \
                 meta.json says sha256 {}, {} bytes",
                short(&plain_sha),
                short(&e.plaintext_sha256),
                e.plaintext_size_bytes
            )));
        }
    }
    Ok(Proven {
        bytes,
        decrypted: true,
    })
}

/// Decrypts the ciphertext arriving on `rx` to nowhere: the plaintext's
/// SHA-256 and size.
fn decrypt(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    identities: &Identities,
) -> Result<(String, u64)> {
    let input = Received {
        rx,
        current: Bytes::new(),
    };
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(input))
        .context("not a readable age file")?;
    let mut reader = decryptor
        .decrypt(identities.iter())
        .context("no key of the identity opens it (damaged header)")?;
    let mut sink = Hashed::default();
    std::io::copy(&mut reader, &mut sink).with_context(|| format!("after {} bytes", sink.bytes))?;
    Ok((hex::encode(sink.hasher.finalize()), sink.bytes))
}

/// A writer that keeps only the SHA-256 and size of what it is given.
#[derive(Default)]
struct Hashed {
    hasher: Sha256,
    bytes: u64,
}

impl std::io::Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chunks of a channel as a blocking reader.
struct Received {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for Received {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}
