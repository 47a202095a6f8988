//! Where a backup's bytes go and how it becomes complete, shared by the
//! database dump ([`super`]) and the globals backup ([`crate::commands::globals`]):
//! the claimed name and its locked `.partial`, the S3 multipart upload, the
//! meta.json every backup records, and the commit: upload completed and
//! checked, meta.json's partial, both renamed into place, meta.json uploaded
//! beside the dump, both objects locked.
//!
//! S3 problems never stop the local backup: they are kept, and the run fails
//! with [`UploadFailed`] once the local backup is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};

use super::copies::{Copies, Ended};
use super::Made;
use crate::meta::{Encryption, Meta, S3Location, ServerIdentity};
use crate::mode::Mode;
use crate::pg::client::ServerVersion;
use crate::pg::tools::PgTools;
use crate::pipeline::{Extra, FileSink, Pumped, Sink};
use crate::settings::backup::BackupJob;
use crate::signals::Signals;
use crate::storage::s3::{S3Sink, UploadFailed, UploadHandle};
use crate::storage::{fsio, BackupName, Store, Stores};
use crate::ui;

/// When a backup began: the time in its name and meta.json, and the clock
/// its duration is measured with.
#[derive(Debug, Clone, Copy)]
pub struct Began {
    pub at: DateTime<Utc>,
    clock: Instant,
}

impl Began {
    pub fn now() -> Began {
        Began {
            at: Utc::now(),
            clock: Instant::now(),
        }
    }
}

/// One backup being written: its name, paths and upload.
pub struct Output {
    pub name: BackupName,
    pub dump_path: PathBuf,
    pub meta_path: PathBuf,
    began: Began,
    /// Where the upload goes (the bucket built at dispatch), when it does.
    bucket: Option<Store>,
    /// The bucket once its upload started.
    store: Option<Store>,
    upload: Option<Arc<UploadHandle>>,
    location: Option<S3Location>,
    /// The first S3 problem; the run fails with it once the local backup is complete.
    upload_failure: Option<anyhow::Error>,
    /// The `--to` destinations' copies (none without `--to`).
    copies: Copies,
    /// Every destination of the run, for the outcome's count.
    stores: Stores,
    /// The `--to` destination where [`Output::reserve`] claimed the name
    /// (the authoritative store when there is no `S3_*` bucket).
    claimed: Option<String>,
}

impl Output {
    /// Claims the backup's name in `job`'s directory (and, with S3, makes
    /// sure the prefix holds nothing of that name): its `.partial` file,
    /// created exclusively, is the sink returned. `server` puts the server's
    /// tag into the name, so two servers sharing a prefix never share one.
    pub async fn reserve(
        job: &BackupJob,
        stores: &Stores,
        mode: Mode,
        began: Began,
        server: &ServerIdentity,
        signals: &mut Signals,
    ) -> Result<(Output, FileSink)> {
        let wanted = BackupName::new(&job.conn.dbname, mode, job.label.as_deref(), began.at)
            .with_server(Some(crate::storage::server_tag(server)))
            .with_encryption(job.recipients.is_some());
        let bucket = stores.bucket.clone();
        // Whether a name is taken: the authoritative store's say (without an
        // `S3_*` bucket, the first `--to` bucket, whose copy then needs no
        // claim of its own).
        let authority = stores.authoritative().filter(|s| s.is_bucket());
        let (name, file, claimed) = signals
            .guard(reserve_name(&job.output_dir, authority, wanted))
            .await?;
        let claimed = match (&bucket, claimed) {
            (None, true) => stores
                .added()
                .iter()
                .find(|d| d.store.is_bucket())
                .map(|d| d.name.clone()),
            _ => None,
        };
        let output = Output {
            dump_path: job.output_dir.join(name.dump_file()),
            meta_path: job.output_dir.join(name.meta_file()),
            name,
            began,
            bucket,
            store: None,
            upload: None,
            location: None,
            upload_failure: None,
            copies: Copies::default(),
            stores: stores.clone(),
            claimed,
        };
        Ok((output, file))
    }

    /// Starts the multipart upload when the job uploads; `estimate` sizes its
    /// parts. A failure to start is kept (and warned about): the local backup
    /// continues.
    pub async fn start_upload(
        &mut self,
        estimate: Option<u64>,
        signals: &mut Signals,
    ) -> Result<Option<S3Sink>> {
        let Some(bucket) = self.bucket.clone() else {
            return Ok(None);
        };
        let started = signals
            .guard(async { Ok(bucket.start_upload(&self.name, estimate).await) })
            .await?;
        match started {
            Ok(sink) => {
                self.upload = Some(sink.handle());
                self.store = Some(bucket);
                Ok(Some(sink))
            }
            Err(err) => {
                ui::warn(&format!(
                    "cannot upload to S3; the local backup continues: {}",
                    crate::error::one_line(&err)
                ));
                self.upload_failure = Some(err);
                Ok(None)
            }
        }
    }

    /// Starts the copies at the `--to` destinations; each one that cannot
    /// start is recorded as failed, and the others go on.
    pub async fn start_copies(
        &mut self,
        estimate: Option<u64>,
        signals: &mut Signals,
    ) -> Result<Vec<Extra>> {
        let (copies, sinks) = Copies::start(
            &self.stores,
            &self.name,
            self.claimed.as_deref(),
            estimate,
            signals,
        )
        .await?;
        self.copies = copies;
        Ok(sinks)
    }

    /// The backup failed with `err`: nothing of the upload stays behind (no
    /// open multipart upload, no object). Returns `err`.
    pub async fn fail(&self, err: anyhow::Error) -> anyhow::Error {
        self.discard().await;
        err
    }

    async fn discard(&self) {
        if let Some(upload) = &self.upload {
            upload.discard().await;
        }
        self.copies.discard().await;
    }

    /// Completes the multipart uploads of `size` stored bytes, the bucket's
    /// and every `--to` copy's at once (none waits for another store to
    /// assemble its object), and checks each; a failure is kept for the end
    /// of the run. The copies as they ended go to [`Output::commit`].
    pub async fn complete_uploads(
        &mut self,
        s3: Option<S3Sink>,
        extra: Vec<Extra>,
        size: u64,
        signals: &mut Signals,
    ) -> Result<Vec<Ended>> {
        let bucket = async {
            match s3 {
                Some(s3) => Some(s3.complete(size).await),
                None => None,
            }
        };
        let copies = super::copies::complete_uploads(extra, size);
        match signals
            .guard(async { Ok(tokio::join!(bucket, copies)) })
            .await
        {
            Ok((bucket, copies)) => {
                match bucket {
                    Some(Ok(location)) => self.location = Some(location),
                    Some(Err(err)) => self.upload_failure = Some(err),
                    None => {}
                }
                Ok(copies)
            }
            Err(interrupted) => Err(self.fail(interrupted).await),
        }
    }

    /// The meta.json every backup records, finished now; the caller adds
    /// what its kind of backup knows (tables, extensions, globals...).
    pub fn meta(
        &self,
        job: &BackupJob,
        pumped: &Pumped,
        server: &ServerVersion,
        identity: &ServerIdentity,
        tools: &PgTools,
    ) -> Meta {
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        Meta {
            format_version: crate::meta::FORMAT_VERSION,
            database: job.conn.dbname.clone(),
            mode: self.name.mode,
            label: job.label.clone(),
            file: self.name.dump_file(),
            size_bytes: pumped.stored.0,
            sha256: pumped.stored.1.clone(),
            started_at: stamp(self.began.at),
            finished_at: stamp(Utc::now()),
            duration_seconds: (self.began.clock.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            compression: "none".to_owned(),
            server_version: server.text.clone(),
            pg_dump_version: tools.version.clone(),
            alembic_revision: None,
            extensions: Default::default(),
            tables: Vec::new(),
            host: crate::settings::host_name(),
            pgbak_version: env!("CARGO_PKG_VERSION").to_owned(),
            // Recorded only once both objects are verified in the bucket.
            s3: None,
            verification: None,
            standby: false,
            unlogged_tables_skipped: Vec::new(),
            pinned: None,
            database_properties: None,
            roles: None,
            cluster_run: job.cluster_run.clone(),
            globals: None,
            schema_objects: None,
            server: Some(identity.clone()),
            signature: None,
            sealed: None,
            encryption: job.recipients.as_ref().map(|r| Encryption {
                format: "age".to_owned(),
                recipients: r.texts(),
                plaintext_sha256: pumped.plain.sha256.clone(),
                plaintext_size_bytes: pumped.plain.bytes,
            }),
        }
    }

    /// Makes the backup complete: meta.json's partial, then the dump and the
    /// meta renamed into place; with a completed upload, meta.json goes up
    /// beside the dump and both objects are locked. The local backup is then
    /// complete whatever S3 did: an upload problem comes back beside it.
    pub async fn commit(
        mut self,
        job: &BackupJob,
        file: FileSink,
        copied: Vec<Ended>,
        mut meta: Meta,
        signals: &mut Signals,
    ) -> Result<(Made, Option<anyhow::Error>)> {
        // Sealed once, so the local and the uploaded meta.json are the same
        // document, and what this run prints or keeps holds no secret either.
        meta = match meta.sealed() {
            Ok(meta) => meta,
            Err(err) => return Err(self.fail(err).await),
        };
        if let Some(key) = &job.signing_key {
            // Signed (the sealed document, as it is stored) before anything is
            // renamed into place: a backup is complete only with its signature
            // (see `crate::signing`).
            meta.signature = match key.sign(&meta) {
                Ok(signature) => Some(signature),
                Err(err) => return Err(self.fail(err).await),
            };
        }
        if let Err(err) = commit(file, &meta, &self.meta_path) {
            return Err(self.fail(err).await);
        }
        let meta = self.publish(job, meta, signals).await?;
        let mut copies = std::mem::take(&mut self.copies);
        copies
            .commit(job, copied, &self.name, &meta, signals)
            .await?;
        let failure = self.outcome(&copies);
        let made = Made {
            held: self.held(&copies),
            name: self.name,
            started: self.began.at.into(),
            dump: self.dump_path,
            meta_path: self.meta_path,
            meta,
        };
        Ok((made, failure))
    }

    /// meta.json goes up beside the dump with the S3 location in it; the
    /// local one gets the same contents once the bucket is shown to hold both
    /// objects, which are then locked together. Returns the meta as it is now.
    async fn publish(
        &mut self,
        job: &BackupJob,
        meta: Meta,
        signals: &mut Signals,
    ) -> Result<Meta> {
        let (Some(store), Some(location)) = (self.store.take(), self.location.take()) else {
            return Ok(meta);
        };
        let mut remote = meta.clone();
        remote.s3 = Some(location.clone());
        let put = signals
            .guard(async { Ok(store.upload_meta(&self.name, &remote).await) })
            .await;
        match put {
            Ok(Ok(())) => {}
            // A dump object without its meta.json is incomplete: remove it, and
            // say so in the local meta.json.
            Ok(Err(err)) => {
                self.discard().await;
                self.upload_failure = Some(err);
                return Ok(meta);
            }
            Err(interrupted) => return Err(self.fail(interrupted).await),
        }
        remote.write(&self.meta_path)?;
        ui::info(&format!(
            "uploaded {} and its meta.json ({})",
            store.dump_location(&self.name),
            location.storage_class
        ));
        if let Some(lock) = &job.lock {
            // Both objects exist now: lock them together. A failure leaves
            // them uploaded (and deletable) and fails the run.
            let locked = signals
                .guard(async { Ok(store.lock_backup(lock, &self.name).await) })
                .await?;
            if let Err(err) = locked {
                self.upload_failure = Some(err);
            }
        }
        Ok(remote)
    }

    /// The destinations that hold the backup now, in order, by name.
    fn held(&self, copies: &Copies) -> Vec<String> {
        let mut held = vec![crate::storage::LOCAL.to_owned()];
        if self.bucket.is_some() && self.upload_failure.is_none() {
            held.push(crate::storage::BUCKET.to_owned());
        }
        held.extend(copies.held().map(str::to_owned));
        held
    }

    /// The run's error when a destination failed: without `--to`, as ever
    /// ("the local backup is complete, but uploading it … failed"); with,
    /// "complete on 2 of 3 destinations: offsite failed: …", every failed
    /// destination named with its reason.
    fn outcome(&mut self, copies: &Copies) -> Option<anyhow::Error> {
        let upload = self.upload_failure.take();
        if copies.is_empty() {
            return upload.map(|err| self.failed(&err));
        }
        let mut failed: Vec<String> = Vec::new();
        if let Some(err) = &upload {
            failed.push(format!(
                "{} failed: {}",
                crate::storage::BUCKET,
                crate::error::one_line(err)
            ));
        }
        failed.extend(
            copies
                .failed()
                .map(|(name, why)| format!("{name} failed: {why}")),
        );
        if failed.is_empty() {
            return None;
        }
        self.upload_failure = upload;
        let total = 1 + usize::from(self.bucket.is_some()) + copies.len();
        let kind = if self.name.mode == Mode::Globals {
            "globals backup"
        } else {
            "backup"
        };
        Some(anyhow::Error::new(UploadFailed {
            message: format!(
                "the {kind} {} is complete on {} of {total} destinations: {}",
                self.name.stem(),
                total - failed.len(),
                failed.join("; ")
            ),
        }))
    }

    /// The run's error for an upload that failed while the local backup completed.
    fn failed(&self, err: &anyhow::Error) -> anyhow::Error {
        let target = self
            .bucket
            .as_ref()
            .map_or_else(String::new, |b| b.dump_location(&self.name));
        let kind = if self.name.mode == Mode::Globals {
            "globals backup"
        } else {
            "backup"
        };
        anyhow::Error::new(UploadFailed {
            message: format!(
                "the local {kind} {} is complete, but uploading it to {target} failed: {}",
                self.dump_path.display(),
                crate::error::one_line(err)
            ),
        })
    }
}

/// Picks the file name and claims it by creating its `.partial` exclusively.
/// The name comes from the clock, but never sorts before a name already in
/// its group (a backup named in the future by a clock that was more than 10
/// minutes ahead does not drag every later name after it; `pgbak check`
/// reports it). A name already taken, in the directory or under the S3
/// prefix (another pod, or two runs within a second; claimed there by a
/// conditional write of the upload's marker), moves to the next free
/// second, so nothing is ever overwritten. A prefix that cannot be
/// asked is named in a warning; the upload then fails on its own. Also
/// returns whether the name was claimed under `remote`.
async fn reserve_name(
    output_dir: &Path,
    remote: Option<&Store>,
    mut name: BackupName,
) -> Result<(BackupName, FileSink, bool)> {
    let mut remote = remote;
    if let Some(newest) = newest_in_group(output_dir, remote, &name).await {
        // Never before a name already in the group (three runs within a second
        // would otherwise take T, T+1, then T again once retention freed T, and
        // "newest" would be the wrong backup) -- unless that name is far in the
        // future, from a clock that was ahead.
        let ahead = newest.timestamp - name.timestamp;
        if ahead >= chrono::Duration::zero() && ahead < chrono::Duration::seconds(600) {
            name = BackupName {
                timestamp: newest.timestamp,
                ..name
            }
            .next_second();
        }
    }
    for _ in 0..600 {
        if let Some(store) = remote {
            match store.claim(&name).await {
                Ok(true) => {}
                Ok(false) => {
                    name = name.next_second();
                    continue;
                }
                Err(err) => {
                    ui::warn(&format!(
                        "cannot tell whether {} is free in {}: {}",
                        name.stem(),
                        store.describe(),
                        crate::error::one_line(&err)
                    ));
                    remote = None;
                }
            }
        }
        let dump_path = output_dir.join(name.dump_file());
        let meta_path = output_dir.join(name.meta_file());
        if !meta_path.exists() && !dump_path.exists() {
            match FileSink::create(&dump_path) {
                Ok(sink) => return Ok((name, sink, remote.is_some())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating {}.partial", dump_path.display()))
                }
            }
        }
        name = name.next_second();
    }
    bail!(
        "no free backup file name in {} (600 seconds taken)",
        output_dir.display()
    )
}

/// The newest name of `name`'s group in the directory and under the prefix
/// (a prefix that cannot be listed counts as empty: the claim below says so).
async fn newest_in_group(
    output_dir: &Path,
    remote: Option<&Store>,
    name: &BackupName,
) -> Option<BackupName> {
    let group = name.group();
    let prefix = format!("{}_", group_prefix(name));
    let mut files = Vec::new();
    for store in std::iter::once(&Store::local(output_dir)).chain(remote) {
        if let Ok(names) = store.files_with(&prefix).await {
            files.extend(names);
        }
    }
    files
        .iter()
        .filter_map(|f| {
            let f = f.strip_suffix(".partial").unwrap_or(f);
            let f = f
                .strip_suffix(crate::storage::s3::MARKER_SUFFIX)
                .unwrap_or(f);
            BackupName::parse(f).or_else(|| BackupName::parse_verdict(f))
        })
        .filter(|n| n.group() == group)
        .max_by_key(|n| n.timestamp)
}

/// A name's stem without its timestamp: every key of its group starts so.
fn group_prefix(name: &BackupName) -> String {
    let stem = name.stem();
    stem.rsplit_once('_')
        .map_or(stem.clone(), |(rest, _)| rest.to_owned())
}

/// meta.json's partial first (a full disk fails here, before any rename),
/// then the dump and the meta renamed into place.
pub(super) fn commit(sink: FileSink, meta: &Meta, meta_path: &Path) -> Result<()> {
    let json = meta.to_json()?;
    // The same locked-partial path as the dump, so no concurrent cleanup takes it;
    // dropped on error, it removes itself.
    let mut meta_sink = FileSink::create(meta_path)
        .with_context(|| format!("creating {}", fsio::partial_path(meta_path).display()))?;
    meta_sink.write(&json)?;
    meta_sink.finish()?;
    sink.commit()?;
    meta_sink.commit()
}
