//! pg_restore reading a dump as it downloads (`--jobs 1`,
//! [`crate::storage::s3::stream::Streamed`]): the object's bytes arrive in order,
//! are hashed as they arrive (all of them: what pg_restore does not read is
//! still downloaded and hashed once it hangs up), decrypted on the way for
//! an `.dump.age`, and written to pg_restore's stdin. At the end the object's
//! SHA-256 and size are compared with meta.json: a mismatch is a Finding
//! that fails the restore (whose copy its caller then removes) and is kept
//! in the stream's [`crate::storage::s3::stream::Proof`] for verify's checksum check.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Receiver;

use super::Backup;
use crate::encryption::decrypt::{Fed, Plain};
use crate::encryption::Identities;
use crate::error::{finding, one_line};
use crate::storage::s3::stream::{Streamed, Verdict};

const CHUNK: usize = 1 << 20;

impl Backup {
    /// The streamed dump as pg_restore's stdin (see the module doc).
    pub async fn streamed(&self, streamed: &Streamed) -> Result<Plain> {
        let chunks = streamed.open().await;
        let ids = self.source.shared_identities();
        let streamed = streamed.clone();
        Plain::fed_by(
            &self.located.dump,
            self.source.expected_plaintext(),
            move |out| feed(chunks, ids, &streamed, out),
        )
    }
}

/// The downloaded chunks as one reader, hashing every byte received.
struct Incoming {
    chunks: Receiver<Result<Bytes>>,
    current: Bytes,
    hasher: Sha256,
    bytes: u64,
    /// Why the download stopped, when it failed.
    failed: Option<String>,
}

impl Incoming {
    /// The next chunk (hashed); None at the end of the object or after a failure.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.failed.is_some() {
            return None;
        }
        match self.chunks.blocking_recv()? {
            Ok(chunk) => {
                self.hasher.update(&chunk);
                self.bytes += chunk.len() as u64;
                Some(chunk)
            }
            Err(err) => {
                self.failed = Some(one_line(&err));
                None
            }
        }
    }

    /// Reads (and hashes) what is left of the object.
    fn drain(&mut self) {
        self.current = Bytes::new();
        while self.next_chunk().is_some() {}
    }
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.next_chunk() {
                Some(chunk) => self.current = chunk,
                None => {
                    return match &self.failed {
                        Some(why) => Err(std::io::Error::other(why.clone())),
                        None => Ok(0),
                    }
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The feeding thread: plaintext into `out` until the end or until
/// pg_restore hangs up, then the rest of the object hashed, then the verdict.
fn feed(
    chunks: Receiver<Result<Bytes>>,
    ids: Option<Arc<Identities>>,
    streamed: &Streamed,
    mut out: File,
) -> Result<Fed> {
    let mut incoming = Incoming {
        chunks,
        current: Bytes::new(),
        hasher: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let copied = copy(&mut incoming, ids.as_deref(), &mut out);
    drop(out);
    incoming.drain();
    let verdict = match (&incoming.failed, judge(&incoming, streamed)) {
        (Some(why), _) => Verdict::Unread(format!(
            "the download of {} failed midway: {why}",
            streamed.uri()
        )),
        (None, Ok(matched)) => Verdict::Matches(matched),
        (None, Err(differs)) => Verdict::Differs(differs),
    };
    let result = match &verdict {
        Verdict::Matches(_) => copied,
        Verdict::Differs(why) => Err(finding(why.clone())),
        Verdict::Unread(why) => Err(anyhow!(why.clone())),
    };
    if let Ok(mut proof) = streamed.proof.lock() {
        *proof = Some(verdict);
    }
    result
}

/// The object's checksum and size against meta.json's.
fn judge(incoming: &Incoming, streamed: &Streamed) -> Result<String, String> {
    let sha256 = hex::encode(incoming.hasher.clone().finalize());
    if sha256 != streamed.sha256 || incoming.bytes != streamed.size {
        return Err(format!(
            "{} does not match its meta.json: {} bytes with sha256 {}, expected {} bytes with \
             sha256 {} (checked as it streamed into pg_restore: its restore is not kept)",
            streamed.uri(),
            incoming.bytes,
            sha256,
            streamed.size,
            streamed.sha256
        ));
    }
    Ok(format!(
        "sha256 {} and {} equal meta.json (checked as the dump streamed into pg_restore)",
        sha256.get(..16).unwrap_or(&sha256),
        crate::ui::bytes(incoming.bytes)
    ))
}

/// Plaintext (decrypted with `ids` for an age file) from `incoming` into
/// `out`, hashed; a reader that hangs up ends it early, not in error.
fn copy(incoming: &mut Incoming, ids: Option<&Identities>, out: &mut File) -> Result<Fed> {
    let mut reader: Box<dyn Read + '_> = match ids {
        None => Box::new(incoming),
        Some(ids) => {
            let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(CHUNK, incoming))
                .map_err(|e| anyhow!("the streamed dump is not a readable age file: {e}"))?;
            let reader = decryptor
                .decrypt(ids.iter())
                .map_err(|e| anyhow!("cannot decrypt the streamed dump: {e}"))?;
            Box::new(reader)
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let complete = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow!(
                    "reading the streamed dump failed after {bytes} bytes: {e}"
                ))
            }
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break false,
            Err(e) => return Err(anyhow::Error::new(e).context("writing to pg_restore")),
        }
    };
    Ok(Fed {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(chunks: Vec<Result<&'static [u8]>>) -> Incoming {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(chunk.map(Bytes::from_static)).unwrap();
        }
        Incoming {
            chunks: rx,
            current: Bytes::new(),
            hasher: Sha256::new(),
            bytes: 0,
            failed: None,
        }
    }

    #[test]
    fn every_byte_is_hashed_in_order_even_those_the_reader_left() {
        let mut stream = incoming(vec![Ok(b"PGDMP"), Ok(b" rest"), Ok(b" tail")]);
        let mut head = [0u8; 7];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"PGDMP r");
        stream.drain();
        assert_eq!(stream.bytes, 15);
        assert_eq!(
            hex::encode(stream.hasher.finalize()),
            hex::encode(Sha256::digest(b"PGDMP rest tail"))
        );
    }

    #[test]
    fn a_download_that_fails_is_a_read_error_and_remembered() {
        let mut stream = incoming(vec![Ok(b"PGDMP"), Err(anyhow!("connection reset"))]);
        let mut all = Vec::new();
        let err = stream.read_to_end(&mut all).unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert_eq!(all, b"PGDMP");
        assert_eq!(stream.failed.as_deref(), Some("connection reset"));
        stream.drain();
        assert_eq!(stream.bytes, 5);
    }
}
