//! The one store type every command talks to: a place that holds backups
//! (a directory, an S3 prefix, or a map in tests) behind one set of
//! methods, so retention, selection, the anomaly check, verdicts, run
//! records, list, check, prune, unpin and the restore of a whole server are
//! written once for all of them.
//!
//! An enum rather than a trait object: the backends are a closed set this
//! crate ships, each variant's code lives in its own module beside this one
//! (`local`, `s3/`, `memory`), the futures stay `Send` without boxing, and a
//! new backend is one more variant whose every `match` is in this file (the
//! compiler lists them). Nothing outside `storage/` matches on the variants:
//! commands ask [`Store::is_bucket`] when a message must say which it is.

mod backup;
mod copy;
mod destination;
mod files;

pub use destination::{Destination, DestinationPlace, Overrides, BUCKET, LOCAL};
pub use files::Chunks;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::storage::local::LocalStore;

use crate::meta::{Meta, S3Location, Verification};
use crate::runs::RunRecord;
use crate::storage::s3::{self, S3Settings};
use crate::storage::verdict::{self, VerdictFile};
use crate::storage::{BackupName, Listed};

/// A place that holds backups.
#[derive(Clone)]
pub enum Store {
    /// A directory.
    Local(LocalStore),
    /// A prefix in a bucket on S3 or an S3-compatible server.
    S3(Box<s3::Store>),
    /// A map, for the tests of what sits above the storage.
    #[cfg(test)]
    Memory(std::sync::Arc<crate::storage::memory::MemoryStore>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What a store was told to be, as the settings describe it: resolved at
/// dispatch, opened into a [`Store`] by [`Place::open`].
#[derive(Debug, Clone)]
pub enum Place {
    Dir(PathBuf),
    S3(Box<S3Settings>),
}

impl Place {
    /// The store of this place; nothing is read or connected yet (an S3
    /// client is made at its first request, once: [`s3::Store`]).
    pub fn open(&self) -> Store {
        match self {
            Place::Dir(dir) => Store::local(dir),
            Place::S3(settings) => Store::S3(Box::new(s3::Store::new(S3Settings::clone(settings)))),
        }
    }
}

/// Where one file of a store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Path(PathBuf),
    Object { bucket: String, key: String },
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Path(path) => write!(f, "{}", path.display()),
            Address::Object { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Everything a store lists, from one listing: its backups (oldest first)
/// and its `--all-databases` run records (file names, sorted).
#[derive(Debug, Default)]
pub struct Listing {
    pub backups: Vec<Listed>,
    pub runs: Vec<String>,
}

/// A backup made readable as local files: the store's own files for a
/// directory, a checked download into `temp` for a bucket.
#[derive(Debug)]
pub struct Fetched {
    pub dump: PathBuf,
    /// Where its meta.json is (None: a bucket holds none for it; for a
    /// directory, the sibling name whether or not the file exists).
    pub meta: Option<PathBuf>,
    /// The download's directory, removed when dropped; None for files read in place.
    pub temp: Option<tempfile::TempDir>,
    /// Set when only the dump's head was downloaded: the whole dump is streamed from there.
    pub stream: Option<crate::storage::s3::stream::Streamed>,
}

impl Store {
    /// The directory `dir`.
    pub fn local(dir: &Path) -> Store {
        Store::Local(LocalStore::new(dir))
    }

    /// Where the store is, for messages: a directory or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self {
            Store::Local(local) => local.dir.display().to_string(),
            Store::S3(s3) => format!("s3://{}/{}", s3.bucket(), s3.settings.prefix),
            #[cfg(test)]
            Store::Memory(_) => "memory".into(),
        }
    }

    /// Whether this is a bucket (for messages that name it so).
    pub fn is_bucket(&self) -> bool {
        matches!(self, Store::S3(_))
    }

    /// Where `file` (a file name of this store) is.
    pub fn address(&self, file: &str) -> Address {
        match self {
            Store::Local(local) => Address::Path(local.dir.join(file)),
            Store::S3(s3) => Address::Object {
                bucket: s3.bucket().to_owned(),
                key: s3.key_for(file),
            },
            #[cfg(test)]
            Store::Memory(_) => Address::Path(PathBuf::from(format!("mem:{file}"))),
        }
    }

    /// Where a backup's dump is: a path or an `s3://` URI.
    pub fn dump_location(&self, name: &BackupName) -> String {
        self.address(&name.dump_file()).to_string()
    }

    /// The store that holds an upload recorded in a meta.json (its bucket
    /// may be another than this store's); this store when it is no bucket.
    pub fn holding(&self, location: &S3Location) -> Store {
        match self {
            Store::S3(s3) if s3.bucket() != location.bucket => {
                Store::S3(Box::new(s3.at(&location.bucket, &s3.settings.prefix)))
            }
            other => other.clone(),
        }
    }

    /// The store of the same kind at the folder of `key` (a file of this
    /// store named with its folder, as an `s3://` URI's key is): a backup is
    /// judged, and its globals looked for, beside it.
    pub fn beside(&self, key: &str) -> Store {
        let folder = key
            .rsplit_once('/')
            .map_or_else(String::new, |(dir, _)| format!("{dir}/"));
        match self {
            Store::S3(s3) => Store::S3(Box::new(s3.at(&s3.settings.bucket, &folder))),
            Store::Local(local) => Store::local(&local.dir.join(folder)),
            #[cfg(test)]
            Store::Memory(_) => self.clone(),
        }
    }

    /// Everything the store holds, from one listing.
    pub async fn list(&self) -> Result<Listing> {
        match self {
            Store::Local(local) => local.listing(),
            Store::S3(s3) => s3.listing().await,
            #[cfg(test)]
            Store::Memory(memory) => Ok(memory.listing()),
        }
    }

    /// Every backup, oldest first.
    pub async fn list_backups(&self) -> Result<Vec<Listed>> {
        Ok(self.list().await?.backups)
    }

    /// The file names of the `--all-databases` run records here ([`crate::runs`]).
    pub async fn list_runs(&self) -> Result<Vec<String>> {
        Ok(self.list().await?.runs)
    }

    /// A backup's meta.json; None when it has none.
    pub async fn load_meta(&self, name: &BackupName) -> Result<Option<Meta>> {
        match self {
            #[cfg(test)]
            Store::Memory(memory) => Ok(memory.meta(name)),
            _ => Ok(self.load_meta_text(name).await?.map(|(meta, _)| meta)),
        }
    }

    /// A backup's meta.json with its text as stored, which a signature covers.
    pub async fn load_meta_text(&self, name: &BackupName) -> Result<Option<(Meta, String)>> {
        match self {
            Store::Local(local) => {
                let path = local.dir.join(name.meta_file());
                if !path.is_file() {
                    return Ok(None);
                }
                Meta::read_with_text(&path).map(Some)
            }
            Store::S3(s3) => s3.read_meta_text(&s3.key_for(&name.meta_file())).await,
            #[cfg(test)]
            Store::Memory(_) => anyhow::bail!("the memory store keeps no text"),
        }
    }

    /// Replaces a backup's meta.json (atomically where the store allows).
    pub async fn store_meta(&self, name: &BackupName, meta: &Meta) -> Result<()> {
        match self {
            Store::Local(local) => meta.write(&local.dir.join(name.meta_file())),
            Store::S3(s3) => {
                let mut json = serde_json::to_vec_pretty(meta).context("encoding meta.json")?;
                json.push(b'\n');
                s3.put_small(&s3.key_for(&name.meta_file()), json).await
            }
            #[cfg(test)]
            Store::Memory(memory) => {
                memory.set_meta(name, meta);
                Ok(())
            }
        }
    }

    /// Puts the meta.json of a backup just uploaded beside its dump and
    /// checks that the store holds it as sent.
    pub async fn upload_meta(&self, name: &BackupName, meta: &Meta) -> Result<()> {
        let bytes = meta.to_json()?;
        let size = bytes.len() as u64;
        self.put(&name.meta_file(), bytes).await?;
        self.check_size(&name.meta_file(), size).await
    }

    /// The verdict recorded beside a backup (`<stem>.verify.json`); None when there is none.
    pub async fn load_verdict(&self, name: &BackupName) -> Result<Option<Verification>> {
        Ok(self
            .load_verdict_file(name)
            .await?
            .and_then(|v| v.verification))
    }

    /// The whole verdict document beside a backup (its restore verdict and
    /// its checksum proof); None when there is none.
    pub async fn load_verdict_file(&self, name: &BackupName) -> Result<Option<VerdictFile>> {
        match self {
            Store::Local(local) => verdict::read_local_file(&local.dir, name),
            Store::S3(s3) => {
                let key = s3.key_for(&name.verdict_file());
                let Some(body) = s3.get_small(&key, "a verdict").await? else {
                    return Ok(None);
                };
                let text = std::str::from_utf8(&body)
                    .with_context(|| format!("reading {}: not UTF-8", s3.uri(&key)))?;
                VerdictFile::parse(text, name)
                    .map(Some)
                    .with_context(|| format!("reading {}", s3.uri(&key)))
            }
            #[cfg(test)]
            Store::Memory(_) => Ok(None),
        }
    }

    /// Records a verdict beside a backup, replacing the one there (its
    /// checksum proof is kept).
    pub async fn store_verdict(
        &self,
        name: &BackupName,
        verification: &Verification,
    ) -> Result<()> {
        match self {
            Store::Local(local) => verdict::write_local(&local.dir, name, verification),
            Store::S3(_) => {
                let mut document = self.verdict_to_update(name).await;
                document.verification = Some(verification.clone());
                self.put_verdict_file(name, &document).await
            }
            #[cfg(test)]
            Store::Memory(memory) => {
                memory.set_verification(name, verification);
                Ok(())
            }
        }
    }

    /// Records a `verify --checksum-only` proof beside a backup, keeping
    /// its restore verdict.
    pub async fn store_checksum_proof(
        &self,
        name: &BackupName,
        proof: &verdict::ChecksumProof,
    ) -> Result<()> {
        let mut document = self.verdict_to_update(name).await;
        document.checksum = Some(proof.clone());
        self.put_verdict_file(name, &document).await
    }

    /// The verdict document to rewrite: the one there, or a new one when
    /// there is none or it cannot be read (it judged nothing readable).
    async fn verdict_to_update(&self, name: &BackupName) -> VerdictFile {
        match self.load_verdict_file(name).await {
            Ok(Some(document)) => document,
            Ok(None) => VerdictFile::empty(name),
            Err(err) => {
                crate::ui::warn(&format!("{}; it is replaced", crate::error::one_line(&err)));
                VerdictFile::empty(name)
            }
        }
    }

    /// Writes a verdict document and checks the store holds it as sent.
    async fn put_verdict_file(&self, name: &BackupName, document: &VerdictFile) -> Result<()> {
        match self {
            Store::Local(local) => verdict::write_local_file(&local.dir, name, document),
            Store::S3(s3) => {
                let key = s3.key_for(&name.verdict_file());
                let json = document.to_json()?;
                let size = json.len() as u64;
                s3.put_small(&key, json).await?;
                s3.check_small(&key, size).await
            }
            #[cfg(test)]
            Store::Memory(_) => anyhow::bail!("the memory store keeps no verdict documents"),
        }
    }

    /// Records a verify's verdict on the backup whose dump is `file` here,
    /// with its `meta` as read: a `<stem>.verify.json` beside it; in a
    /// directory also in its meta.json's `verification` (a bucket's
    /// meta.json may be under Object Lock: never rewritten there). Returns
    /// where it went; None when nothing could be (a file not named as pgbak
    /// names backups, in a bucket).
    pub async fn record_verdict(
        &self,
        file: &str,
        meta: &Meta,
        verification: &Verification,
    ) -> Result<Option<String>> {
        let name = BackupName::parse(file);
        match (self, name) {
            (Store::Local(local), name) => {
                let Some(meta_file) = crate::storage::meta_file_for(file) else {
                    return Ok(None);
                };
                let path = local.dir.join(meta_file);
                let mut meta = meta.clone();
                meta.verification = Some(verification.clone());
                meta.write(&path)?;
                let Some(name) = name else {
                    return Ok(Some(path.display().to_string()));
                };
                verdict::write_local(&local.dir, &name, verification)?;
                Ok(Some(
                    local.dir.join(name.verdict_file()).display().to_string(),
                ))
            }
            (_, None) => Ok(None),
            (store, Some(name)) => {
                store.store_verdict(&name, verification).await?;
                Ok(Some(store.address(&name.verdict_file()).to_string()))
            }
        }
    }

    /// A listed backup's meta.json with its newest verdict in `verification`
    /// (the verdict object beside it, or meta.json's own field when newer).
    /// A verdict that cannot be read is named in a warning and left out.
    pub async fn load_judged(&self, backup: &Listed) -> Result<Option<Meta>> {
        let Some(mut meta) = self.load_meta(&backup.name).await? else {
            return Ok(None);
        };
        if backup.has_verdict {
            match self.load_verdict(&backup.name).await {
                Ok(found) => meta.verification = verdict::newest(meta.verification.take(), found),
                Err(err) => crate::ui::warn(&crate::error::one_line(&err)),
            }
        }
        Ok(Some(meta))
    }

    /// A run record; None when it does not exist.
    pub async fn load_run(&self, file: &str) -> Result<Option<RunRecord>> {
        let Some(body) = self.get(file, "a run record").await? else {
            return Ok(None);
        };
        let address = self.address(file);
        let text =
            std::str::from_utf8(&body).with_context(|| format!("reading {address}: not UTF-8"))?;
        RunRecord::parse(text)
            .map(Some)
            .with_context(|| format!("reading {address}"))
    }

    /// Writes a run record (replacing the one of the same run).
    pub async fn store_run(&self, record: &RunRecord) -> Result<()> {
        self.put(&record.file_name(), record.to_json()?).await
    }

    /// Removes a backup: the dump first, so an interruption leaves a meta.json
    /// without its dump (debris the next run removes), never the reverse; its
    /// verdict goes with its meta.json (a verdict alone judges nothing).
    pub async fn remove_backup(&self, backup: &Listed) -> Result<()> {
        match self {
            Store::Local(local) => local.remove(&backup.name),
            Store::S3(s3) => {
                if backup.has_dump {
                    s3.delete_keys(&[s3.key_for(&backup.name.dump_file())])
                        .await?;
                }
                let mut rest = vec![s3.key_for(&backup.name.verdict_file())];
                if backup.has_meta {
                    rest.insert(0, s3.key_for(&backup.name.meta_file()));
                }
                s3.delete_keys(&rest).await
            }
            #[cfg(test)]
            Store::Memory(memory) => memory.remove(&backup.name),
        }
    }

    /// The warning for `--keep N` with a storage class that bills a minimum
    /// number of days; None for stores without such classes.
    pub fn keep_warning(&self, keep: u32) -> Option<String> {
        match self {
            Store::S3(s3) => s3::keep_warning(keep, &s3.settings.storage_class),
            _ => None,
        }
    }
}

/// The stores one command works with, built once at dispatch from its
/// settings: its destinations in order (the local directory when it has
/// one, named `local`; the `S3_*` bucket when S3 is configured, named `s3`;
/// then each `--to` destination), with `local` and `bucket` kept apart for
/// the code that treats today's two places as such.
///
/// The authoritative store (every decision that depends on history reads
/// it): the `S3_*` bucket when configured, else the first bucket among the
/// `--to` destinations, else the directory (else the first destination).
#[derive(Clone, Default)]
pub struct Stores {
    pub local: Option<Store>,
    pub bucket: Option<Store>,
    destinations: Vec<Destination>,
}

impl Stores {
    /// The directory `dir` and the bucket of `s3`, as far as each is given.
    pub fn open(dir: Option<&Path>, s3: Option<&S3Settings>) -> Stores {
        Stores::open_with(dir, s3, &[])
    }

    /// [`Stores::open`], then the destinations `to` after them, in order;
    /// each opened once (an S3 destination's client is its own).
    pub fn open_with(
        dir: Option<&Path>,
        s3: Option<&S3Settings>,
        to: &[DestinationPlace],
    ) -> Stores {
        let local = dir.map(Store::local);
        let bucket = s3.map(|s| Place::S3(Box::new(s.clone())).open());
        let named = |name: &str, store: &Option<Store>| {
            store.clone().map(|store| Destination {
                name: name.to_owned(),
                store,
                overrides: Overrides::default(),
            })
        };
        let mut destinations: Vec<Destination> = [named(LOCAL, &local), named(BUCKET, &bucket)]
            .into_iter()
            .flatten()
            .collect();
        destinations.extend(to.iter().map(Destination::open));
        Stores {
            local,
            bucket,
            destinations,
        }
    }

    /// One store alone, as the directory or the bucket it is: a
    /// destination judged on its own (`check`).
    pub fn single(store: &Store) -> Stores {
        match store.is_bucket() {
            true => Stores {
                bucket: Some(store.clone()),
                ..Stores::default()
            },
            false => Stores {
                local: Some(store.clone()),
                ..Stores::default()
            },
        }
    }

    /// Every destination, in order: `local`, `s3`, then the `--to` ones.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// The `--to` destinations only (after `local` and `s3`).
    pub fn added(&self) -> &[Destination] {
        let base = usize::from(self.local.is_some()) + usize::from(self.bucket.is_some());
        &self.destinations[base.min(self.destinations.len())..]
    }

    /// The destination named `name`.
    pub fn named(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// The `S3_*` bucket when there is one, else the first `--to` bucket,
    /// else the directory, else the first destination.
    pub fn authoritative(&self) -> Option<&Store> {
        self.bucket
            .as_ref()
            .or_else(|| {
                self.destinations
                    .iter()
                    .map(|d| &d.store)
                    .find(|s| s.is_bucket())
            })
            .or(self.local.as_ref())
            .or_else(|| self.destinations.first().map(|d| &d.store))
    }
}
