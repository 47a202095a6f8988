//! Sending the parts of a multipart upload, with stall detection instead of
//! a time limit.
//!
//! A part has no whole-request timeout: a 256 MiB part on an ordinary uplink
//! takes minutes, and that is fine while bytes move. What must not happen is
//! an attempt that waits forever on a link that stopped moving (a half-open
//! connection, a path MTU black hole, a store that accepted the body and
//! never answers). So the body is handed to the connection in small slices,
//! each slice taken is progress, and the answer arriving ends the attempt; an
//! attempt with no progress for the stall timeout (`PGBAK_S3_STALL_TIMEOUT`)
//! is abandoned and retried, and a part that stalls [`STALL_ATTEMPTS`] times
//! fails the upload. The SDK's own stalled-stream protection cannot do this:
//! it stops watching once the body is handed over, and does not see the
//! wait for the answer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::StalledStreamProtectionConfig;
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::upload::{UploadHandle, Uploaded};
use super::{b64, needs, sdk_error, CONNECT_TIMEOUT};
use crate::ui;

/// Attempts of a part that stalls before the upload fails.
pub const STALL_ATTEMPTS: u32 = 3;
/// The body goes to the connection in slices this large: each one taken is
/// seen as progress.
const SLICE: usize = 64 * 1024;

/// One part on its way to the uploader; the permit is its share of the
/// memory bound. Dropped once its upload is done (or abandoned), it gives
/// its buffer to `spare` before its permit goes.
pub(super) struct Part {
    pub(super) number: u32,
    pub(super) bytes: Bytes,
    pub(super) spare: Spare,
    pub(super) _permit: OwnedSemaphorePermit,
}

impl Drop for Part {
    fn drop(&mut self) {
        // Only when nothing else holds the bytes (a request still sending them).
        if let Ok(buffer) = std::mem::take(&mut self.bytes).try_into_mut() {
            self.spare.put(buffer);
        }
    }
}

/// The buffers of an upload's parts that are done, for its next parts: an
/// upload allocates at most its `concurrency + 1` buffers (a new buffer is
/// made only when none is spare, and only with a permit), instead of one per
/// part.
#[derive(Clone, Default)]
pub(super) struct Spare(Arc<std::sync::Mutex<Vec<BytesMut>>>);

impl Spare {
    fn put(&self, mut buffer: BytesMut) {
        buffer.clear();
        if let Ok(mut spare) = self.0.lock() {
            spare.push(buffer);
        }
    }

    /// An empty buffer for a part of `size` bytes: a spare one when it is
    /// large enough (parts grow along the plan: a smaller one is freed).
    pub(super) fn take(&self, size: usize) -> BytesMut {
        let spare = self.0.lock().ok().and_then(|mut spare| spare.pop());
        match spare {
            Some(buffer) if buffer.capacity() >= size => buffer,
            _ => BytesMut::with_capacity(size),
        }
    }
}

/// Receives parts and uploads them concurrently (the permits bound how many);
/// stops at the first failed part.
pub(super) async fn run_uploader(
    handle: Arc<UploadHandle>,
    mut rx: mpsc::Receiver<Part>,
) -> Result<Vec<Uploaded>> {
    let mut running = tokio::task::JoinSet::new();
    let mut done = Vec::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            part = rx.recv(), if open => match part {
                Some(part) => {
                    let handle = handle.clone();
                    running.spawn(upload_part(handle, part));
                }
                None => open = false,
            },
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let uploaded = joined.context("a part upload stopped unexpectedly")??;
                done.push(uploaded);
            }
        }
    }
    Ok(done)
}

async fn upload_part(handle: Arc<UploadHandle>, part: Part) -> Result<Uploaded> {
    let number = part.number;
    let len = part.bytes.len() as u64;
    let sha256 = if handle.checksums {
        let bytes = part.bytes.clone();
        let digest = tokio::task::spawn_blocking(move || <[u8; 32]>::from(Sha256::digest(&bytes)))
            .await
            .context("hashing a part")?;
        Some(digest)
    } else {
        None
    };
    let what = || format!("uploading part {number} ({})", ui::bytes(len));
    let stall = handle.stall_timeout;
    for attempt in 1..=STALL_ATTEMPTS {
        let progress = Arc::new(Progress::new());
        let sent = watch(
            send_part(&handle, &part, sha256.as_ref(), &progress),
            &progress,
            stall,
        )
        .await;
        match sent {
            Some(result) => {
                let etag = result.with_context(what)?;
                // The permit (and so the part's memory) is released when `part` is dropped.
                return Ok(Uploaded {
                    number,
                    etag,
                    sha256,
                });
            }
            None if attempt < STALL_ATTEMPTS => ui::warn(&format!(
                "{}: stalled (no byte moved and no answer for {}), attempt {attempt} of \
                 {STALL_ATTEMPTS}; retrying",
                what(),
                humantime::format_duration(stall)
            )),
            None => {}
        }
    }
    bail!(
        "{}: the upload stalled: no byte moved and no answer for {} in each of {STALL_ATTEMPTS} \
         attempts (PGBAK_S3_STALL_TIMEOUT)",
        what(),
        humantime::format_duration(stall)
    )
}

/// One attempt (with the SDK's own retries of errors) at storing a part;
/// the part's ETag.
async fn send_part(
    handle: &UploadHandle,
    part: &Part,
    sha256: Option<&[u8; 32]>,
    progress: &Arc<Progress>,
) -> Result<Option<String>> {
    let body = {
        let (bytes, progress) = (part.bytes.clone(), progress.clone());
        SdkBody::retryable(move || {
            SdkBody::from_body_1_x(PartBody {
                bytes: bytes.clone(),
                sent: 0,
                progress: progress.clone(),
            })
        })
    };
    let mut request = handle
        .client
        .upload_part()
        .bucket(&handle.bucket)
        .key(&handle.key)
        .upload_id(&handle.upload_id)
        .part_number(part.number as i32)
        .content_length(part.bytes.len() as i64)
        .body(ByteStream::new(body));
    if let Some(digest) = sha256 {
        request = request
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(digest));
    }
    // No time limit on the whole request and no SDK stall check: [`watch`] does that.
    let overrides = aws_sdk_s3::config::Builder::default()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .disable_read_timeout()
                .build(),
        )
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    let out = request
        .customize()
        .config_override(overrides)
        .send()
        .await
        .map_err(|e| needs(sdk_error(e), "s3:PutObject"))?;
    Ok(out.e_tag().map(str::to_owned))
}

/// Runs `attempt` while it makes progress: None when no progress was seen
/// for `stall` (the attempt is dropped, which closes its connection).
async fn watch<T>(
    attempt: impl std::future::Future<Output = T>,
    progress: &Progress,
    stall: Duration,
) -> Option<T> {
    tokio::pin!(attempt);
    loop {
        let idle = progress.idle();
        if idle >= stall {
            return None;
        }
        tokio::select! {
            out = &mut attempt => return Some(out),
            () = tokio::time::sleep(stall - idle) => {}
        }
    }
}

/// When the last byte of an attempt moved.
struct Progress {
    origin: Instant,
    /// Milliseconds after `origin`.
    last: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// A part's bytes as a request body, in [`SLICE`]s: the connection takes the
/// next slice only once it has room, so each one taken is bytes moving.
struct PartBody {
    bytes: Bytes,
    sent: usize,
    progress: Arc<Progress>,
}

impl Body for PartBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let start = self.sent;
        if start >= self.bytes.len() {
            return Poll::Ready(None);
        }
        let end = (start + SLICE).min(self.bytes.len());
        self.sent = end;
        self.progress.touch();
        Poll::Ready(Some(Ok(Frame::data(self.bytes.slice(start..end)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.bytes.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.bytes.len() - self.sent) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_parts_buffer_is_reused_unless_still_held_or_too_small() {
        let permits = Arc::new(tokio::sync::Semaphore::new(4));
        let spare = Spare::default();
        let part = |bytes: Bytes| Part {
            number: 1,
            bytes,
            spare: spare.clone(),
            _permit: permits.clone().try_acquire_owned().unwrap(),
        };
        let mut buffer = spare.take(1024);
        buffer.extend_from_slice(&[7; 1024]);
        let bytes = buffer.freeze();
        let at = bytes.as_ptr();
        // A request still holding the bytes: nothing comes back.
        let held = bytes.clone();
        drop(part(bytes));
        assert_eq!(spare.0.lock().unwrap().len(), 0);
        // Done: the same memory is the next part's, empty.
        drop(part(held));
        assert_eq!(permits.available_permits(), 4);
        let again = spare.take(1024);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        // A larger part than any spare buffer gets a new one.
        drop(part(again.freeze()));
        assert!(spare.take(4096).capacity() >= 4096);
        assert_eq!(spare.0.lock().unwrap().len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn watch_ends_an_attempt_only_when_nothing_moves() {
        let stall = Duration::from_secs(10);
        // Slow but moving: progress every 6 s for a minute.
        let progress = Arc::new(Progress::new());
        let moving = {
            let progress = progress.clone();
            async move {
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    progress.touch();
                }
                "done"
            }
        };
        assert_eq!(watch(moving, &progress, stall).await, Some("done"));
        // Stalled: no progress after the first 5 s.
        let progress = Arc::new(Progress::new());
        let started = tokio::time::Instant::now();
        let stalled = {
            let progress = progress.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                progress.touch();
                std::future::pending::<()>().await
            }
        };
        assert_eq!(watch(stalled, &progress, stall).await, None);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(15) && took < Duration::from_secs(16),
            "{took:?}"
        );
    }
}
