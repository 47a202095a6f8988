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
pub mod restore;
mod tools;
mod trust;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use header::{parse_header, read_header, Compression, Header};
pub use tools::{describe, major_of, pick_tools};
pub use trust::{downgrade, signed_for, Untrusted};

use crate::encryption::decrypt::Source;
use crate::error::{as_finding, finding, one_line, usage};
use crate::meta::Meta;
use crate::pg::client::ServerVersion;
use crate::pg::restore::Listing;
use crate::pg::tools::PgTools;
use crate::signals::Signals;
use crate::storage::local::LocalStore;
use crate::storage::s3::{self, S3Settings};
use crate::storage::select::{self, Selector};

/// Where backups are kept: a local directory or an S3 prefix.
#[derive(Debug, Clone)]
pub enum Place {
    Dir(PathBuf),
    S3(Box<S3Settings>),
}

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
}

/// A backup file ready to read. Holds the temp dir of an S3 download alive.
#[derive(Debug)]
pub struct Located {
    pub dump: PathBuf,
    pub meta_path: Option<PathBuf>,
    /// True when the dump is a temporary download (nothing is recorded in its meta.json).
    pub temporary: bool,
    /// Where a downloaded backup lives: verify records its verdict there.
    pub origin: Option<Origin>,
    /// Where a download came from: the bucket's settings and the dump's key
    /// (what else belongs with it, the run's globals, is looked for there).
    pub s3_origin: Option<(Box<S3Settings>, String)>,
    _temp: Option<tempfile::TempDir>,
}

/// A backup in the bucket, as verify's verdict needs it: the prefix and its name.
#[derive(Debug, Clone)]
pub struct Origin {
    pub s3: Box<S3Settings>,
    pub name: crate::storage::BackupName,
}

impl Located {
    /// A local dump; its meta.json is the sibling `<stem>.meta.json`.
    pub fn local(dump: &Path) -> Located {
        Located {
            dump: dump.to_path_buf(),
            meta_path: meta_path_for(dump),
            temporary: false,
            origin: None,
            s3_origin: None,
            _temp: None,
        }
    }
}

/// `x.dump` (or `x.dump.age`) -> `x.meta.json` beside it; None for a file not named so.
pub fn meta_path_for(dump: &Path) -> Option<PathBuf> {
    let name = dump.file_name()?.to_str()?;
    Some(dump.with_file_name(crate::storage::meta_file_for(name)?))
}

/// Finds the backup: the named file, an S3 object (downloaded into a temp
/// dir), or the newest complete backup in the directory or under the prefix.
pub async fn locate(wanted: &Wanted) -> Result<Located> {
    locate_checked(wanted, &|_| Ok(())).await
}

/// [`locate`], with `check` asked about an S3 backup's meta.json before its
/// dump is downloaded (a local one is there already: the caller checks it).
pub async fn locate_checked(wanted: &Wanted, check: s3::MetaCheck<'_>) -> Result<Located> {
    match wanted {
        Wanted::File(path) => match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(Located::local(path)),
            Ok(_) => Err(usage(format!("{} is not a file", path.display()))),
            Err(e) => Err(usage(format!(
                "cannot read the backup {}: {e}",
                path.display()
            ))),
        },
        Wanted::Newest {
            place: Place::Dir(dir),
            select,
        } => {
            let store = LocalStore::new(dir);
            let name = select::newest(&store, select, &nothing_advice(dir)).await?;
            Ok(Located::local(&dir.join(name.dump_file())))
        }
        Wanted::S3Object { s3, key } => {
            let store = s3::connect(S3Settings::clone(s3)).await?;
            download(&store, key, check).await
        }
        Wanted::Newest {
            place: Place::S3(s3),
            select,
        } => {
            let store = s3::connect(S3Settings::clone(s3)).await?;
            let name = select::newest(&store, select, "").await?;
            download(&store, &store.key_for(&name.dump_file()), check).await
        }
    }
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

/// Downloads `key` (and its meta.json) into a temporary directory.
async fn download(store: &s3::Store, key: &str, check: s3::MetaCheck<'_>) -> Result<Located> {
    // Private, and marked with this run so the next one removes it if this one is killed.
    let temp = fetch_dir::create()?;
    let fetched = s3::fetch_backup_checked(store, key, temp.path(), check).await?;
    // A key named as pgbak names backups is one whose verdict can be
    // recorded beside it, under the key's own prefix.
    let (dir, file) = key.rsplit_once('/').map_or(("", key), |(d, f)| (d, f));
    let origin = crate::storage::BackupName::parse(file).map(|name| {
        let mut s3 = store.settings.clone();
        s3.prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Origin {
            s3: Box::new(s3),
            name,
        }
    });
    Ok(Located {
        dump: fetched.dump,
        meta_path: fetched.meta,
        temporary: true,
        origin,
        s3_origin: Some((Box::new(store.settings.clone()), key.to_owned())),
        _temp: Some(temp),
    })
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

pub fn read_meta(located: &Located) -> MetaState {
    read_meta_and_text(located).0
}

/// meta.json as far as it could be read, and its text (which the signature covers).
fn read_meta_and_text(located: &Located) -> (MetaState, Option<String>) {
    let Some(path) = &located.meta_path else {
        if located.temporary {
            return (
                MetaState::Unavailable(format!(
                    "the bucket holds no meta.json for {}",
                    located.dump.display()
                )),
                None,
            );
        }
        return (
            MetaState::Unavailable(format!(
                "{} has no meta.json beside it (its name does not end in .dump)",
                located.dump.display()
            )),
            None,
        );
    };
    if !path.exists() {
        return (
            MetaState::Unavailable(format!("{} is missing", path.display())),
            None,
        );
    }
    match Meta::read_with_text(path) {
        Ok((meta, text)) => (MetaState::Read(Box::new(meta)), Some(text)),
        Err(err) => (MetaState::Unavailable(one_line(&err)), None),
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
        let (mut meta_state, meta_text) = read_meta_and_text(&located);
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
        signals
            .guard(check_checksum(&self.located.dump, meta))
            .await
            .map(Some)
    }

    /// The archive header, through the decryption; a Finding when it is not
    /// a custom archive's.
    pub fn header(&self) -> Result<Header> {
        self.source.header()
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
        match (listed, finished) {
            (Ok(_), Err(err)) => Err(finding(one_line(&err))),
            (listed, _) => listed,
        }
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
