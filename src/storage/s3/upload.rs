//! The multipart upload that streams a dump to S3 while pg_dump runs: the
//! [`S3Sink`] stage of the pipeline (bounded part buffers handed to an async
//! uploader, see `part`), the [`UploadHandle`] every failure path aborts
//! through, and the completion with its integrity check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::marker::LiveMarker;
use super::part::{run_uploader, Part, Spare};
use super::{b64, error_chain, head_after_upload, needs, sdk_error, PartPlan, Store};
use crate::meta::S3Location;
use crate::pipeline::Sink;
use crate::ui;

impl Store {
    /// Starts a multipart upload of `file_name` (and its marker) and returns
    /// the sink that feeds it. Must be called inside the tokio runtime the sink will use.
    pub async fn start_upload(&self, file_name: &str, estimate: Option<u64>) -> Result<S3Sink> {
        let key = self.key_for(file_name);
        let mut request = self
            .client()
            .await
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(aws_sdk_s3::types::StorageClass::from(
                self.settings.storage_class.as_str(),
            ))
            .content_type("application/octet-stream");
        if self.checksums().await {
            request = request.checksum_algorithm(ChecksumAlgorithm::Sha256);
        }
        let (sse, kms_key) = self.sse_headers();
        let request = request
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key);
        let created = request
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))
            .context("starting the multipart upload")?;
        let upload_id = created
            .upload_id()
            .context("the store returned no upload id")?
            .to_owned();
        let plan = self.part_plan(estimate);
        ui::debug(&format!(
            "multipart upload {upload_id} of {}: parts from {} up to {}, {} at once \
             (part buffers at most {})",
            self.uri(&key),
            ui::bytes(plan.base),
            ui::bytes(plan.max_size),
            self.settings.concurrency,
            ui::bytes((self.settings.concurrency as u64 + 1).saturating_mul(plan.max_size))
        ));
        let marker = self.start_marker(&key, &upload_id).await;
        let handle = Arc::new(UploadHandle {
            client: self.client().await.clone(),
            bucket: self.bucket().to_owned(),
            key,
            upload_id,
            storage_class: self.settings.storage_class.to_string(),
            checksums: self.checksums().await,
            stall_timeout: self.settings.stall_timeout,
            marker,
            finished: AtomicBool::new(false),
            completed: AtomicBool::new(false),
            aborting: tokio::sync::Mutex::new(()),
        });
        Ok(S3Sink::new(handle, plan, self.settings.concurrency))
    }

    /// The part sizes of an upload; warns when the database (`estimate`)
    /// is already larger than the part limit can hold.
    fn part_plan(&self, estimate: Option<u64>) -> PartPlan {
        let s = &self.settings;
        let plan = PartPlan::new(s.part_size, s.max_part_size, s.max_parts, estimate);
        if let Some(size) = estimate.filter(|size| *size > plan.capacity()) {
            ui::warn(&format!(
                "the database is {}, but {} parts of at most {} hold {}: the upload will fail \
                 if the dump is that large (raise --s3-max-part-size-mib)",
                ui::bytes(size),
                s.max_parts,
                ui::bytes(plan.max_size),
                ui::bytes(plan.capacity())
            ));
        }
        plan
    }
}

/// What identifies one multipart upload; shared by the sink and the code that
/// must abort it on any failure path.
pub struct UploadHandle {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) upload_id: String,
    storage_class: String,
    pub(super) checksums: bool,
    /// A part attempt that moves no byte and gets no answer for this long has stalled.
    pub(super) stall_timeout: Duration,
    /// The `<key>.uploading` marker, refreshed while the upload runs (None
    /// when it could not be written).
    marker: Option<LiveMarker>,
    /// Completed or aborted: nothing left to abort.
    finished: AtomicBool,
    /// Completed: the object exists.
    completed: AtomicBool,
    /// Held while aborting, so every caller of [`UploadHandle::abort`]
    /// returns only once the abort (started by whichever came first) is done.
    aborting: tokio::sync::Mutex<()>,
}

impl UploadHandle {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Removes whatever this upload left: aborts it while it is open, deletes
    /// the object once it was completed. For failures after the dump uploaded.
    pub async fn discard(&self) {
        if !self.completed.load(Ordering::SeqCst) {
            return self.abort().await;
        }
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
        {
            Ok(_) => ui::info(&format!("deleted {}", self.uri())),
            Err(err) => ui::warn(&format!(
                "could not delete {} ({}); it has no meta.json and will not be pruned",
                self.uri(),
                error_chain(&err)
            )),
        }
    }

    /// Aborts the multipart upload so no parts stay stored (and billed), and
    /// removes its marker. Idempotent, and a second caller waits for the
    /// first one's abort; failures are logged, not returned (the run fails anyway).
    pub async fn abort(&self) {
        let _aborting = self.aborting.lock().await;
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
        {
            Ok(_) => ui::info(&format!("aborted the multipart upload to {}", self.uri())),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_upload()) =>
            {
                ui::info(&format!(
                    "the multipart upload to {} is already gone",
                    self.uri()
                ))
            }
            Err(err) => {
                // The marker stays: it names this process, so the next run on
                // this host sees that its writer is gone and aborts the upload.
                ui::warn(&format!(
                    "could not abort the multipart upload {} to {} ({}); the next backup of \
                     this group aborts it, and a bucket lifecycle rule \
                     AbortIncompleteMultipartUpload removes such leftovers",
                    self.upload_id,
                    self.uri(),
                    error_chain(&err)
                ));
                if let Some(marker) = &self.marker {
                    marker.halt();
                }
                return;
            }
        }
        self.remove_marker().await;
    }

    /// Stops refreshing the marker and deletes it: the upload is over.
    async fn remove_marker(&self) {
        if let Some(marker) = &self.marker {
            marker.remove(&self.client, &self.bucket).await;
        }
    }
}

/// A part the store acknowledged.
pub(super) struct Uploaded {
    pub(super) number: u32,
    pub(super) etag: Option<String>,
    pub(super) sha256: Option<[u8; 32]>,
}

/// The S3 stage of the pipeline. `write` runs on the pump's blocking thread:
/// it fills a part buffer and hands full parts over a bounded channel to an
/// async uploader. Every part buffer, the one being filled included, holds a
/// permit of a semaphore with `concurrency + 1` permits, so at most that many
/// parts exist at once: memory is bounded by `(concurrency + 1) * part size`
/// whatever the dump's size. A part's buffer, once its upload is done, is
/// kept for the next part ([`Spare`]) rather than freed: freed 8 MiB buffers
/// stayed resident in the allocator (8-14 MiB of a scale-1 backup's RSS,
/// measured against glibc with a fixed mmap threshold).
///
/// Upload errors never fail `write` (the local file must complete): the sink
/// records the first error, drops further bytes, and [`S3Sink::complete`]
/// reports it.
pub struct S3Sink {
    handle: Arc<UploadHandle>,
    runtime: tokio::runtime::Handle,
    plan: PartPlan,
    permits: Arc<Semaphore>,
    /// The buffers of parts already sent, reused for the next ones.
    spare: Spare,
    buffer: BytesMut,
    permit: Option<OwnedSemaphorePermit>,
    next_part: u32,
    bytes: u64,
    tx: Option<mpsc::Sender<Part>>,
    uploader: Option<tokio::task::JoinHandle<Result<Vec<Uploaded>>>>,
    parts: Vec<Uploaded>,
    failure: Option<anyhow::Error>,
}

impl S3Sink {
    fn new(handle: Arc<UploadHandle>, plan: PartPlan, concurrency: usize) -> S3Sink {
        let (tx, rx) = mpsc::channel::<Part>(1);
        let uploader = tokio::spawn(run_uploader(handle.clone(), rx));
        S3Sink {
            handle,
            runtime: tokio::runtime::Handle::current(),
            plan,
            permits: Arc::new(Semaphore::new(concurrency + 1)),
            spare: Spare::default(),
            buffer: BytesMut::new(),
            permit: None,
            next_part: 1,
            bytes: 0,
            tx: Some(tx),
            uploader: Some(uploader),
            parts: Vec::new(),
            failure: None,
        }
    }

    /// The upload's identity, for aborting it from any failure path.
    pub fn handle(&self) -> Arc<UploadHandle> {
        self.handle.clone()
    }

    fn fail(&mut self, err: anyhow::Error) {
        if self.failure.is_none() {
            ui::warn(&format!(
                "upload to {} failed; the local backup continues: {}",
                self.handle.uri(),
                crate::error::one_line(&err)
            ));
            self.failure = Some(err);
        }
        self.tx = None;
        self.buffer = BytesMut::new();
        self.permit = None;
    }

    /// The uploader's error after it stopped (a send failed because it is gone).
    fn uploader_error(&mut self) -> anyhow::Error {
        match self.uploader.take() {
            Some(task) => match self.runtime.block_on(task) {
                Ok(Err(err)) => err,
                Ok(Ok(_)) => anyhow!("the uploader stopped early"),
                Err(join) => anyhow!("the uploader stopped: {join}"),
            },
            None => anyhow!("the uploader is gone"),
        }
    }

    /// Makes sure a part buffer (and its permit) is ready to fill.
    fn ensure_buffer(&mut self) {
        if self.permit.is_none() && self.next_part > self.plan.max_parts {
            self.fail(anyhow!(
                "the dump is larger than {}, what --s3-max-parts {} parts of at most {} \
                 (--s3-max-part-size-mib) hold: raise --s3-max-part-size-mib or \
                 --s3-part-size-mib",
                ui::bytes(self.plan.capacity()),
                self.plan.max_parts,
                ui::bytes(self.plan.max_size)
            ));
            return;
        }
        if self.permit.is_none() {
            let permits = self.permits.clone();
            // Blocks the pump until a part's upload finished: the memory bound.
            match self.runtime.block_on(permits.acquire_owned()) {
                Ok(permit) => self.permit = Some(permit),
                Err(_) => return,
            }
            let size = self.plan.size(self.next_part) as usize;
            self.buffer = self.spare.take(size);
        }
    }

    fn send_part(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let bytes = std::mem::take(&mut self.buffer).freeze();
        let part = Part {
            number: self.next_part,
            bytes,
            spare: self.spare.clone(),
            _permit: permit,
        };
        self.next_part += 1;
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(part).is_ok(),
            None => false,
        };
        if !sent {
            let err = self.uploader_error();
            self.fail(err);
        }
    }

    /// Completes the upload after pg_dump succeeded: the part list, then the
    /// integrity check (size, and the SHA-256 composite checksum where the store
    /// keeps one). Any failure aborts the upload (or deletes the object).
    pub async fn complete(mut self, size: u64) -> Result<S3Location> {
        let handle = self.handle.clone();
        let result = self.complete_inner(size).await;
        if result.is_err() {
            handle.abort().await;
        }
        result
    }

    async fn complete_inner(&mut self, size: u64) -> Result<S3Location> {
        if let Some(err) = self.failure.take() {
            return Err(err);
        }
        if self.bytes != size {
            bail!(
                "the upload received {} bytes, the dump has {size}",
                self.bytes
            );
        }
        let h = &self.handle;
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.number);
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .set_e_tag(p.etag.clone())
                    .set_checksum_sha256(p.sha256.map(|d| b64(&d)))
                    .build()
            })
            .collect();
        h.client
            .complete_multipart_upload()
            .bucket(&h.bucket)
            .key(&h.key)
            .upload_id(&h.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))
            .context("completing the multipart upload")?;
        h.finished.store(true, Ordering::SeqCst);
        h.completed.store(true, Ordering::SeqCst);
        h.remove_marker().await;
        match self.check_object(size, &parts).await {
            Ok(()) => {}
            Err(Checked::Wrong(err)) => {
                // The object is complete but wrong: it must not stay.
                let _ = h
                    .client
                    .delete_object()
                    .bucket(&h.bucket)
                    .key(&h.key)
                    .send()
                    .await;
                return Err(err);
            }
            Err(Checked::Unknown(err)) => {
                // Nothing says the object is wrong: it stays (without a meta.json beside
                // it, so no retention counts it), and the run fails.
                return Err(err.context(format!(
                    "{} was uploaded but could not be checked; it is left in place, and the \
                     local meta.json does not record it",
                    h.uri()
                )));
            }
        }
        Ok(S3Location {
            bucket: h.bucket.clone(),
            key: h.key.clone(),
            storage_class: h.storage_class.clone(),
        })
    }

    /// The integrity check. Err(Some) is evidence against the object (it must
    /// go); Err(None) wraps a store that could not be asked (the object stays).
    async fn check_object(&self, size: u64, parts: &[Uploaded]) -> Result<(), Checked> {
        let h = &self.handle;
        let head = match head_after_upload(&h.client, &h.bucket, &h.key).await {
            Ok(Some(head)) => head,
            Ok(None) => {
                return Err(Checked::Wrong(anyhow!(
                    "{} is not in the bucket after its upload completed",
                    h.uri()
                )))
            }
            Err(err) => return Err(Checked::Unknown(needs(err, "s3:GetObject"))),
        };
        let stored = head.content_length().unwrap_or(-1);
        if stored != size as i64 {
            return Err(Checked::Wrong(anyhow!(
                "the store holds {stored} bytes, the dump has {size}: integrity check failed"
            )));
        }
        let expected = composite_sha256(parts);
        match (expected, head.checksum_sha256()) {
            (Some(expected), Some(got)) => {
                let got = got.split('-').next().unwrap_or(got);
                if got != expected {
                    return Err(Checked::Wrong(anyhow!(
                        "the store's SHA-256 checksum {got} differs from the uploaded parts' \
                         {expected}: integrity check failed"
                    )));
                }
                ui::debug(&format!("{}: size and SHA-256 checksum match", h.uri()));
            }
            _ => ui::debug(&format!(
                "{}: size matches (the store keeps no SHA-256 checksum)",
                h.uri()
            )),
        }
        Ok(())
    }
}

/// The outcome of an integrity check that did not pass.
enum Checked {
    /// The store holds something else (or nothing): evidence against the object.
    Wrong(anyhow::Error),
    /// The store could not be asked: no evidence either way.
    Unknown(anyhow::Error),
}
impl Sink for S3Sink {
    fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        self.bytes += chunk.len() as u64;
        while !chunk.is_empty() && self.failure.is_none() {
            self.ensure_buffer();
            if self.failure.is_some() {
                break;
            }
            if self.permit.is_none() {
                let err = self.uploader_error();
                self.fail(err);
                break;
            }
            let size = self.plan.size(self.next_part) as usize;
            let take = (size - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buffer.len() >= size {
                self.send_part();
            }
        }
        Ok(())
    }

    /// Sends the last part and waits for every part to be stored. Failures are
    /// kept for [`S3Sink::complete`], never returned (the local file goes on).
    fn finish(&mut self) -> Result<()> {
        if self.failure.is_some() {
            return Ok(());
        }
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.ensure_buffer();
            self.send_part();
        }
        if self.failure.is_some() {
            return Ok(());
        }
        self.tx = None;
        let Some(task) = self.uploader.take() else {
            return Ok(());
        };
        match self.runtime.block_on(task) {
            Ok(Ok(parts)) => self.parts = parts,
            Ok(Err(err)) => self.fail(err),
            Err(join) => self.fail(anyhow!("the uploader stopped: {join}")),
        }
        Ok(())
    }

    /// Stops feeding the uploader; the caller aborts the upload through its handle.
    fn abort(&mut self) {
        self.tx = None;
        if let Some(task) = self.uploader.take() {
            task.abort();
        }
    }
}

impl Drop for S3Sink {
    /// A sink dropped before its upload completed (an error or a signal
    /// anywhere upstream) also aborts the upload, quietly and in the
    /// background. Callers still await [`UploadHandle::discard`]: the process
    /// may exit before this background request is sent.
    fn drop(&mut self) {
        if let Some(task) = self.uploader.take() {
            task.abort();
        }
        if !self.handle.finished.load(Ordering::SeqCst) {
            let h = self.handle.clone();
            self.runtime.spawn(async move { h.abort().await });
        }
    }
}

/// S3's checksum of a multipart object: SHA-256 over the parts' SHA-256
/// digests in part order (the store appends `-<parts>`).
fn composite_sha256(parts: &[Uploaded]) -> Option<String> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.sha256?);
    }
    Some(b64(&hasher.finalize()))
}

/// The upload failed while the local backup completed: the run fails with
/// this (exit 1); `pgbak cron` reports the failed step as "upload".
#[derive(Debug)]
pub struct UploadFailed {
    pub message: String,
}

impl std::fmt::Display for UploadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UploadFailed {}
