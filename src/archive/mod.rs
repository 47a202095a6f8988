//! A backup as verify and restore see it before touching any database: which
//! one was asked for ([`Wanted`], resolved at dispatch), where its `.dump` is
//! (a path, the newest in a directory or under the S3 prefix, or fetched from
//! S3), its meta.json, and the steps both commands take on it, in order, as
//! methods of [`Backup`]: the checksum against meta.json, the archive header,
//! a pg_restore that can read it, and its `pg_restore --list`; then restoring
//! it ([`restore`]: the extensions it needs, decryption, pg_restore judged).
//!
//! A step that finds the backup bad returns a [`crate::error::Finding`]:
//! verify reports it as a failed check, restore refuses with it. Any other
//! error means pgbak could not look.

pub mod fetch_dir;
mod header;
mod holders;
pub mod proof;
pub mod restore;
mod stream;
mod tools;
mod trust;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use header::{parse_header, read_header, Compression, Header};
pub use holders::{first_address, locate_across, say_used, skip};
pub use tools::{describe, major_of, pick_tools};
pub use trust::{downgrade, signed_for, Untrusted};

use crate::encryption::decrypt::Source;
use crate::error::{as_finding, finding, one_line, usage};
use crate::meta::Meta;
use crate::pg::client::ServerVersion;
use crate::pg::restore::Listing;
use crate::pg::tools::PgTools;
use crate::signals::Signals;
use crate::storage::s3::{MetaCheck, S3Settings};
use crate::storage::select::{self, Selector};
pub use crate::storage::Place;
use crate::storage::{Fetched, Store};

/// Which backup the operator asked for.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// A local `.dump` (or `.dump.age`) file.
    File(PathBuf),
    /// An object named by an `s3://bucket/key` URI; `s3` is in that bucket.
    S3Object { s3: Box<S3Settings>, key: String },
    /// The newest backup `select` accepts (the target database's, in the
    /// mode asked, not one that failed verification).
    Newest { place: Place, select: Selector },
    /// The dump file of this name in the store at hand (a backup of an
    /// `--all-databases` run, found by listing it).
    Stored(String),
}

impl Wanted {
    /// The store the backup is in, as the settings describe it: the named
    /// file's directory, the URI's bucket with the key's folder as prefix,
    /// or where the newest is looked for. (`Stored` names no place of its
    /// own: its store is the one listed; the current directory here.)
    pub fn place(&self) -> Place {
        match self {
            Wanted::File(path) => Place::Dir(
                path.parent()
                    .map_or_else(PathBuf::new, std::path::Path::to_path_buf),
            ),
            Wanted::S3Object { s3, key } => {
                let mut s3 = s3.clone();
                s3.prefix = key
                    .rsplit_once('/')
                    .map_or_else(String::new, |(dir, _)| format!("{dir}/"));
                Place::S3(s3)
            }
            Wanted::Newest { place, .. } => place.clone(),
            Wanted::Stored(_) => Place::Dir(PathBuf::new()),
        }
    }
}

/// A backup file ready to read. Holds the temp dir of a download alive.
#[derive(Debug)]
pub struct Located {
    pub dump: PathBuf,
    pub meta_path: Option<PathBuf>,
    /// True when the dump is a temporary download (nothing is recorded in its meta.json).
    pub temporary: bool,
    /// Where the backup lives: verify records its verdict there, and the
    /// run's globals are looked for beside it.
    pub origin: Option<Origin>,
    /// The other destinations that hold the same backup (none known bad):
    /// verify records its verdict on each of them too.
    pub also: Vec<Origin>,
    /// Set when `dump` is only the head of a dump read whole from the bucket
    /// as pg_restore reads it (`archive/stream.rs`): its checksum is known at the end.
    pub stream: Option<crate::storage::s3::stream::Streamed>,
    _temp: Option<tempfile::TempDir>,
}

/// Where a located backup lives: its store and its dump's file name there.
#[derive(Clone)]
pub struct Origin {
    pub store: Store,
    pub file: String,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.store.address(&self.file))
    }
}

impl Located {
    /// A local dump; its meta.json is the sibling `<stem>.meta.json`.
    pub fn local(dump: &Path) -> Located {
        let origin = dump.file_name().map(|file| Origin {
            store: Store::local(dump.parent().unwrap_or(Path::new(""))),
            file: file.to_string_lossy().into_owned(),
        });
        Located {
            dump: dump.to_path_buf(),
            meta_path: meta_path_for(dump),
            temporary: false,
            origin,
            also: Vec::new(),
            stream: None,
            _temp: None,
        }
    }

    /// The backup `fetched` from `store`, whose dump is `file` there.
    fn fetched(store: &Store, file: &str, fetched: Fetched) -> Located {
        Located {
            dump: fetched.dump,
            meta_path: fetched.meta,
            temporary: fetched.temp.is_some(),
            origin: Some(Origin {
                store: store.clone(),
                file: file.to_owned(),
            }),
            also: Vec::new(),
            stream: fetched.stream,
            _temp: fetched.temp,
        }
    }
}

/// `x.dump` (or `x.dump.age`) -> `x.meta.json` beside it; None for a file not named so.
pub fn meta_path_for(dump: &Path) -> Option<PathBuf> {
    let name = dump.file_name()?.to_str()?;
    Some(dump.with_file_name(crate::storage::meta_file_for(name)?))
}

/// Finds the backup in `store` (built at dispatch from [`Wanted::place`]):
/// the named file, an S3 object (downloaded into a private temp dir), or
/// the newest complete backup in the directory or under the prefix.
pub async fn locate(wanted: &Wanted, store: &Store) -> Result<Located> {
    locate_checked(wanted, store, &|_| Ok(())).await
}

/// [`locate`], with `check` asked about a downloaded backup's meta.json
/// before its dump is fetched (a local one is there already: the caller
/// checks it).
pub async fn locate_checked(
    wanted: &Wanted,
    store: &Store,
    check: MetaCheck<'_>,
) -> Result<Located> {
    locate_as(wanted, store, check, false).await
}

/// [`holders::locate_across`]; with `stream` and one bucket to read from, a
/// dump larger than one range is only fetched as its head, to be streamed
/// into pg_restore ([`Located::stream`]).
pub async fn locate_streaming(
    wanted: &Wanted,
    from: &[crate::storage::Destination],
    check: MetaCheck<'_>,
    stream: bool,
) -> Result<Located> {
    match from {
        [only] if stream => locate_as(wanted, &only.store, check, true).await,
        _ => locate_across(wanted, from, check).await,
    }
}

async fn locate_as(
    wanted: &Wanted,
    store: &Store,
    check: MetaCheck<'_>,
    stream: bool,
) -> Result<Located> {
    let file = match wanted {
        Wanted::File(path) => {
            return match std::fs::metadata(path) {
                Ok(m) if m.is_file() => Ok(Located::local(path)),
                Ok(_) => Err(usage(format!("{} is not a file", path.display()))),
                Err(e) => Err(usage(format!(
                    "cannot read the backup {}: {e}",
                    path.display()
                ))),
            }
        }
        Wanted::Newest { place, select } => {
            let advice = match place {
                Place::Dir(dir) => nothing_advice(dir),
                Place::S3(_) => String::new(),
            };
            select::newest(store, select, &advice).await?.dump_file()
        }
        Wanted::S3Object { key, .. } => key.rsplit('/').next().unwrap_or(key).to_owned(),
        Wanted::Stored(file) => file.clone(),
    };
    // Private, and marked with this run so the next one removes it if this one is killed.
    let fetched = store
        .fetch_as(&file, fetch_dir::create, check, stream)
        .await?;
    Ok(Located::fetched(store, &file, fetched))
}

/// What to try when `dir` holds no backup to pick: the default directory is
/// named as the default (pass --backup-dir), one that was given is not.
fn nothing_advice(dir: &Path) -> String {
    let missing = if dir.exists() {
        ""
    } else {
        " (the directory does not exist)"
    };
    if dir == Path::new(crate::settings::defaults::BACKUP_DIR) {
        format!(
            "{missing}; that is the default directory: pass --backup-dir (or set BACKUP_DIR) to \
             where the backups are, name a backup file, or use --from-s3"
        )
    } else {
        format!(
            "{missing}; name a backup file, or use --from-s3 for the backups under the S3 prefix"
        )
    }
}

/// meta.json as far as it could be read.
#[derive(Debug, Clone)]
pub enum MetaState {
    Read(Box<Meta>),
    /// Why there is none (missing, unreadable, invalid), in words.
    Unavailable(String),
}

impl MetaState {
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            MetaState::Read(meta) => Some(meta),
            MetaState::Unavailable(_) => None,
        }
    }
}

/// meta.json as far as it can be read; Err only for one written in a newer
/// format than this pgbak reads (exit 2: the backup is never taken for one
/// without meta.json).
pub fn read_meta(located: &Located) -> Result<MetaState> {
    read_meta_and_text(located).map(|(state, _)| state)
}

/// meta.json as far as it could be read, and its text (which the signature
/// covers); Err only for a newer format, as [`read_meta`].
fn read_meta_and_text(located: &Located) -> Result<(MetaState, Option<String>)> {
    let Some(path) = &located.meta_path else {
        if located.temporary {
            return Ok((
                MetaState::Unavailable(format!(
                    "the bucket holds no meta.json for {}",
                    located.dump.display()
                )),
                None,
            ));
        }
        return Ok((
            MetaState::Unavailable(format!(
                "{} has no meta.json beside it (its name does not end in .dump)",
                located.dump.display()
            )),
            None,
        ));
    };
    if !path.exists() {
        return Ok((
            MetaState::Unavailable(format!("{} is missing", path.display())),
            None,
        ));
    }
    match Meta::read_with_text(path) {
        Ok((meta, text)) => Ok((MetaState::Read(Box::new(meta)), Some(text))),
        Err(err) if crate::meta::is_newer_format(&err) => Err(err),
        Err(err) => Ok((MetaState::Unavailable(one_line(&err)), None)),
    }
}

/// How a backup is read: the identity that decrypts it, where it is
/// decrypted for a parallel restore, and what makes it trusted ([`trust`]).
#[derive(Debug, Clone, Default)]
pub struct Decrypt {
    pub identity_file: Option<PathBuf>,
    pub scratch_dir: Option<PathBuf>,
    /// `--require-encryption`: a plaintext dump is refused (so is one when
    /// an identity is given).
    pub require_encryption: bool,
    /// Other backups of the same `--all-databases` run are encrypted, so this one must be.
    pub run_encrypted: bool,
    /// `--trusted-keys`: meta.json must be signed by one of them; None: the bucket is trusted.
    pub trusted_keys: Option<std::sync::Arc<crate::signing::TrustedKeys>>,
}

/// A backup opened for reading: where it is, its meta.json, and its reader
/// (decrypting a `.dump.age` on the way). Its methods are the steps verify
/// and restore both take before restoring, in this order: [`Backup::checksum`],
/// [`Backup::header`], [`Backup::tools`] (once the server is known),
/// [`Backup::list`].
pub struct Backup {
    pub located: Located,
    pub meta_state: MetaState,
    /// meta.json's text as read, which its signature covers.
    meta_text: Option<String>,
    pub source: Source,
}

impl Backup {
    /// Reads meta.json and picks the identity that decrypts the dump: an
    /// encrypted backup without one that fits is a usage error (exit 2). The
    /// same identity opens meta.json's sealed section.
    pub fn open(located: Located, decrypt: &Decrypt) -> Result<Backup> {
        let (mut meta_state, meta_text) = read_meta_and_text(&located)?;
        let source = Source::open(
            &located.dump,
            meta_state.meta(),
            decrypt.identity_file.as_deref(),
            decrypt.scratch_dir.as_deref(),
        )?;
        if let (MetaState::Read(meta), Some(identities)) = (&mut meta_state, source.identities()) {
            meta.unseal(identities).map_err(|e| usage(one_line(&e)))?;
        }
        Ok(Backup {
            located,
            meta_state,
            meta_text,
            source,
        })
    }

    pub fn meta(&self) -> Option<&Meta> {
        self.meta_state.meta()
    }

    /// The dump's SHA-256 and size against meta.json, before anything reads
    /// the archive (a truncated dump can still pass `pg_restore --list`).
    /// Some(what matched); None without meta.json; a mismatch is a Finding.
    pub async fn checksum(&self, signals: &mut Signals) -> Result<Option<String>> {
        let Some(meta) = self.meta() else {
            return Ok(None);
        };
        if let Some(streamed) = &self.located.stream {
            return Ok(Some(format!(
                "sha256 {} and {} are checked against meta.json as the dump streams into \
                 pg_restore",
                short(&streamed.sha256),
                crate::ui::bytes(streamed.size)
            )));
        }
        signals
            .guard(check_checksum(&self.located.dump, meta))
            .await
            .map(Some)
    }

    /// The archive header, through the decryption; a Finding when it is not
    /// a custom archive's.
    pub fn header(&self) -> Result<Header> {
        self.unproven_head(self.source.header())
    }

    /// A streamed dump's head that does not read is no verdict on the
    /// backup (its checksum is unknown, and the head may just be too short):
    /// a plain error (exit 1, nothing recorded) that says how to look.
    fn unproven_head<T>(&self, read: Result<T>) -> Result<T> {
        match (read, &self.located.stream) {
            (Err(err), Some(streamed)) if as_finding(&err).is_some() => Err(anyhow::anyhow!(
                "the head of {} ({} bytes: PGBAK_S3_DOWNLOAD_PART_SIZE, at least 1 MiB) that \
                 pg_restore reads before streaming the rest cannot be read: {}; run with --jobs \
                 2 or more to download it whole and check its sha256 first, or a larger \
                 PGBAK_S3_DOWNLOAD_PART_SIZE when its table of contents is longer",
                streamed.uri(),
                std::fs::metadata(&self.located.dump).map_or(0, |m| m.len()),
                one_line(&err)
            )),
            (read, _) => read,
        }
    }

    /// A pg_restore that reads this archive (and restores into `server`);
    /// a Finding when there is none.
    pub fn tools(
        &self,
        header: &Header,
        pg_bin_dir: Option<&Path>,
        server: Option<&ServerVersion>,
    ) -> Result<PgTools> {
        pick_tools(pg_bin_dir, header, self.meta(), server)
    }

    /// `pg_restore --list` of the archive (decrypted on the way when
    /// encrypted); a Finding when pg_restore cannot read it or the
    /// decryption fails.
    pub async fn list(&self, tools: &PgTools, signals: &mut Signals) -> Result<Listing> {
        let plain = self.source.for_list()?;
        let listed = signals
            .guard(crate::pg::restore::list(tools, plain.input()))
            .await;
        if listed.as_ref().is_err_and(|e| as_finding(e).is_none()) {
            // An interruption, or pgbak could not run pg_restore at all.
            return listed;
        }
        let finished = plain.finish();
        self.unproven_head(match (listed, finished) {
            // Only the head of a streamed dump is here: its decryption stops where the head does.
            (Ok(listing), Err(_)) if self.located.stream.is_some() => Ok(listing),
            (Ok(_), Err(err)) => Err(finding(one_line(&err))),
            (listed, _) => listed,
        })
    }

    /// The line that describes a readable archive.
    pub fn describe(&self, header: &Header, listing: &Listing, tools: &PgTools) -> String {
        describe(header, listing, tools, self.source.encrypted())
    }
}

/// Compares the file's SHA-256 and size with meta.json: what matched, or a
/// Finding saying what differs.
pub async fn check_checksum(dump: &Path, meta: &Meta) -> Result<String> {
    let path = dump.to_path_buf();
    let (sha256, size) = tokio::task::spawn_blocking(move || crate::pipeline::hash_file(&path))
        .await
        .context("hashing the dump stopped unexpectedly")??;
    if sha256 != meta.sha256 || size != meta.size_bytes {
        return Err(finding(format!(
            "the file does not match meta.json: sha256 {}, {size} bytes; meta.json says sha256 {}, {} bytes (corrupt or truncated)",
            short(&sha256),
            short(&meta.sha256),
            meta.size_bytes
        )));
    }
    Ok(format!(
        "sha256 {} and {} equal meta.json",
        short(&sha256),
        crate::ui::bytes(size)
    ))
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_names_the_default_directory_only_when_it_was_the_default() {
        let default = nothing_advice(Path::new(crate::settings::defaults::BACKUP_DIR));
        assert!(default.contains("pass --backup-dir"), "{default}");
        let given = nothing_advice(Path::new("/nonexistent/pgbak-backups"));
        assert!(!given.contains("--backup-dir"), "{given}");
        assert!(given.contains("does not exist"), "{given}");
    }

    #[test]
    fn meta_is_the_sibling_of_a_dump() {
        assert_eq!(
            meta_path_for(Path::new("/b/x_full_20261125T020000.dump")),
            Some(PathBuf::from("/b/x_full_20261125T020000.meta.json"))
        );
        assert_eq!(meta_path_for(Path::new("/b/x.sql")), None);
        assert_eq!(
            meta_path_for(Path::new("/b/x.dump.age")),
            Some(PathBuf::from("/b/x.meta.json"))
        );
    }
}
