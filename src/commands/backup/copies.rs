//! The copies of one backup at the `--to` destinations (issue 27): started
//! beside the local file and the `S3_*` upload, fed by the same pump (the
//! same bytes, one checksum, one encryption), committed after them with
//! the same meta.json. A destination that fails is dropped from this run
//! (its partial file removed, its upload aborted) and named in the run's
//! outcome; the others are kept.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::meta::{Meta, S3Location};
use crate::pipeline::{Extra, ExtraSink, FileSink};
use crate::settings::backup::BackupJob;
use crate::signals::Signals;
use crate::storage::s3::UploadHandle;
use crate::storage::{fsio, Address, BackupName, Destination, Stores};

/// The `--to` destinations of one backup and how each one went.
#[derive(Default)]
pub struct Copies {
    copies: Vec<Copy>,
}

struct Copy {
    destination: Destination,
    /// Its upload, while one is open (aborted on any failure).
    upload: Option<Arc<UploadHandle>>,
    /// Why it failed; None while it goes well.
    failure: Option<String>,
}

impl Copies {
    /// Starts a copy of `name` at each `--to` destination of `stores`: a
    /// `.partial` file created exclusively in a directory (created 0700 when
    /// missing), a multipart upload in a bucket once the name is claimed
    /// there (unless `claimed` names it: the name was claimed there when it
    /// was chosen). One that cannot start is recorded as failed.
    pub async fn start(
        stores: &Stores,
        name: &BackupName,
        claimed: Option<&str>,
        estimate: Option<u64>,
        signals: &mut Signals,
    ) -> Result<(Copies, Vec<Extra>)> {
        let mut copies = Copies::default();
        let mut sinks = Vec::new();
        for destination in stores.added() {
            let mut copy = Copy {
                destination: destination.clone(),
                upload: None,
                failure: None,
            };
            let started = signals
                .guard(async {
                    let claim = claimed != Some(destination.name.as_str());
                    Ok(copy.start(name, claim, estimate).await)
                })
                .await?;
            match started {
                Ok(sink) => sinks.push(Extra::new(&destination.name, sink)),
                Err(err) => copy.fail(&err),
            }
            copies.copies.push(copy);
        }
        Ok((copies, sinks))
    }

    /// Whether there are `--to` destinations at all.
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// Removes whatever the open uploads left (the backup failed).
    pub async fn discard(&self) {
        for copy in &self.copies {
            if let Some(upload) = &copy.upload {
                upload.discard().await;
            }
        }
    }

    /// Completes each copy that the stream reached whole (its upload, when
    /// a bucket's, completed and checked by [`complete_uploads`]): a
    /// directory's files renamed into place beside their meta.json, a
    /// bucket's meta.json (recording that bucket) put beside its dump and
    /// both locked as that destination says.
    pub async fn commit(
        &mut self,
        job: &BackupJob,
        mut copied: Vec<Ended>,
        name: &BackupName,
        meta: &Meta,
        signals: &mut Signals,
    ) -> Result<()> {
        for copy in &mut self.copies {
            if copy.failure.is_some() {
                continue; // It never started.
            }
            let ended = match copied.iter().position(|e| e.name == copy.destination.name) {
                Some(at) => copied.swap_remove(at).outcome,
                None => Err(anyhow!("its copy stopped unexpectedly")),
            };
            let ended = match ended {
                Ok(ended) => ended,
                Err(err) => {
                    copy.fail(&err);
                    if let Some(upload) = &copy.upload {
                        upload.discard().await;
                    }
                    continue;
                }
            };
            let done = signals
                .guard(async { Ok(copy.commit(job, ended, name, meta).await) })
                .await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    copy.fail(&err);
                    if let Some(upload) = &copy.upload {
                        upload.discard().await;
                    }
                }
                Err(interrupted) => {
                    self.discard().await;
                    return Err(interrupted);
                }
            }
        }
        Ok(())
    }

    /// The destinations that hold the backup now, by name.
    pub fn held(&self) -> impl Iterator<Item = &str> {
        self.copies
            .iter()
            .filter(|c| c.failure.is_none())
            .map(|c| c.destination.name.as_str())
    }

    /// The destinations that failed, by name, each with its one-line reason.
    pub fn failed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.copies.iter().filter_map(|c| {
            c.failure
                .as_deref()
                .map(|why| (c.destination.name.as_str(), why))
        })
    }

    /// How many destinations were asked for.
    pub fn len(&self) -> usize {
        self.copies.len()
    }
}

/// One `--to` copy once the stream is over, by destination name: how it
/// ended, or why it failed.
pub struct Ended {
    name: String,
    outcome: Result<Streamed>,
}

/// A copy the stream reached whole.
enum Streamed {
    /// A directory's `.partial` file, still to be renamed into place.
    File(FileSink),
    /// A bucket's upload, completed and checked.
    Uploaded(S3Location),
}

/// Ends every copy's part of the stream: a bucket's upload is completed and
/// checked, all of them at once (a store assembling a large object makes no
/// other wait); a directory's file waits for [`Copies::commit`]; a copy
/// that dropped out of the stream ends with why.
pub async fn complete_uploads(extras: Vec<Extra>, size: u64) -> Vec<Ended> {
    let ending = extras.into_iter().map(|mut extra| async move {
        let name = extra.name.clone();
        let outcome = match extra.failure() {
            Some(err) => Err(err),
            None => match extra.sink {
                ExtraSink::File(file) => Ok(Streamed::File(file)),
                ExtraSink::S3(upload) => upload.complete(size).await.map(Streamed::Uploaded),
            },
        };
        Ended { name, outcome }
    });
    futures_util::future::join_all(ending).await
}

impl Copy {
    fn fail(&mut self, err: &anyhow::Error) {
        if self.failure.is_none() {
            self.failure = Some(crate::error::one_line(err));
        }
    }

    /// The file or upload this copy's bytes go to.
    /// `claim`: the name still has to be claimed here (a bucket).
    async fn start(
        &mut self,
        name: &BackupName,
        claim: bool,
        estimate: Option<u64>,
    ) -> Result<ExtraSink> {
        let store = &self.destination.store;
        if store.is_bucket() {
            if claim && !store.claim(name).await? {
                return Err(anyhow!(
                    "{} already holds a backup named {}",
                    store.describe(),
                    name.stem()
                ));
            }
            let sink = store.start_upload(name, estimate).await?;
            self.upload = Some(sink.handle());
            return Ok(ExtraSink::S3(sink));
        }
        let path = self.path(&name.dump_file())?;
        if let Some(dir) = path.parent() {
            fsio::ensure_dir(dir)?;
        }
        let file = FileSink::create(&path)
            .with_context(|| format!("creating {}.partial", path.display()))?;
        Ok(ExtraSink::File(file))
    }

    /// Where `file` of this directory destination is.
    fn path(&self, file: &str) -> Result<PathBuf> {
        match self.destination.store.address(file) {
            Address::Path(path) => Ok(path),
            other => Err(anyhow!("{other} is no file")),
        }
    }

    async fn commit(
        &mut self,
        job: &BackupJob,
        ended: Streamed,
        name: &BackupName,
        meta: &Meta,
    ) -> Result<()> {
        let store = &self.destination.store;
        match ended {
            Streamed::File(file) => {
                let meta_path = self.path(&name.meta_file())?;
                super::output::commit(file, meta, &meta_path)?;
            }
            Streamed::Uploaded(location) => {
                let mut remote = meta.clone();
                remote.s3 = Some(location);
                store.upload_meta(name, &remote).await?;
                // Both objects are there: a lock that fails leaves them (the
                // copy is good, if deletable) and fails the run.
                self.upload = None;
                let lock = self.destination.overrides.object_lock(job.lock);
                if let Some(lock) = &lock {
                    store.lock_backup(lock, name).await?;
                }
            }
        }
        crate::ui::info(&format!(
            "copied to destination {}: {}",
            self.destination.name,
            store.dump_location(name)
        ));
        Ok(())
    }
}
