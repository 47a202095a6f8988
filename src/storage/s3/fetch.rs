//! Fetching a backup back from S3 for restore and verify: `s3://` URIs
//! checked against hostile keys, and a download whose SHA-256 and size must
//! match the backup's meta.json.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{needs, sdk_error, Store};
use crate::error::usage;
use crate::storage::is_plain_file_name;
use crate::ui;

impl Store {
    /// An object's body as a stream (one GetObject; only the version of
    /// `etag` when given), for a reader that only looks at the bytes
    /// (`verify --checksum-only`) and for a download in one piece.
    pub async fn open_read(
        &self,
        key: &str,
        etag: Option<String>,
    ) -> Result<aws_sdk_s3::primitives::ByteStream> {
        let out = self
            .client()
            .await
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .set_if_match(etag)
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:GetObject"))
            .with_context(|| format!("reading {}", self.uri(key)))?;
        Ok(out.body)
    }

    /// Streams an object into `dest` (created 0600, must not exist), returning
    /// its SHA-256 and size. A failed download removes `dest`.
    pub async fn download(&self, key: &str, dest: &Path) -> Result<(String, u64)> {
        let result = self.download_inner(key, dest).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn download_inner(&self, key: &str, dest: &Path) -> Result<(String, u64)> {
        let head = self.head_object(key).await?;
        let file = create_private(dest).await?;
        let mut out = Digesting {
            file,
            dest,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let (part, concurrency) = (
            self.settings.download_part_size,
            self.settings.download_concurrency,
        );
        if concurrency > 1 && head.size > part {
            ui::info(&format!(
                "downloading {} in {} ranges of {}, {concurrency} at once (at most {} in memory)",
                ui::bytes(head.size),
                head.size.div_ceil(part),
                ui::bytes(part),
                ui::bytes(part.saturating_mul(concurrency as u64))
            ));
            let mut parts = self.ranged(key, &head, part, concurrency).await;
            while let Some(chunk) = parts.next().await? {
                out.add(&chunk).await?;
            }
        } else {
            let mut body = self.open_read(key, head.etag.clone()).await?;
            while let Some(chunk) = body
                .try_next()
                .await
                .with_context(|| format!("downloading {}", self.uri(key)))?
            {
                out.add(&chunk).await?;
            }
        }
        out.file
            .sync_all()
            .await
            .with_context(|| format!("syncing {}", dest.display()))?;
        Ok((hex::encode(out.hasher.finalize()), out.bytes))
    }
}

/// A new file for a download at `dest`, readable by its owner only (0600).
pub(super) async fn create_private(dest: &Path) -> Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .await
        .with_context(|| format!("creating {}", dest.display()))
}

/// A download's file, hashed as it is written.
struct Digesting<'a> {
    file: tokio::fs::File,
    dest: &'a Path,
    hasher: Sha256,
    bytes: u64,
}

impl Digesting<'_> {
    async fn add(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .await
            .with_context(|| format!("writing {}", self.dest.display()))
    }
}

/// A backup fetched from S3 into a local directory.
#[derive(Debug)]
pub struct Fetched {
    pub dump: PathBuf,
    /// None when the bucket holds no meta.json for it.
    pub meta: Option<PathBuf>,
    /// Set when only the dump's head was downloaded: the whole dump is read from here.
    pub stream: Option<super::stream::Streamed>,
}

/// `s3://bucket/key` split and checked: the key must end in a plain `.dump`
/// file name and hold no `.` or `..` segment.
pub fn parse_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| usage(format!("{uri:?} is not an s3://bucket/key URI")))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| usage(format!("{uri:?} names no key: use s3://bucket/key.dump")))?;
    if bucket.is_empty() || key.is_empty() {
        return Err(usage(format!("{uri:?}: use s3://bucket/key.dump")));
    }
    if key
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.contains('\0'))
    {
        return Err(usage(format!(
            "{uri:?}: the key may not hold `.` or `..` segments"
        )));
    }
    let file = key.rsplit('/').next().unwrap_or(key);
    if !is_plain_file_name(file) || crate::storage::meta_file_for(file).is_none() {
        return Err(usage(format!(
            "{uri:?} does not name a .dump or .dump.age file"
        )));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Downloads the backup whose dump is `dump_key`, with its meta.json, into
/// `dest_dir`. The dump's SHA-256 and size are checked against the
/// meta.json before this returns; a mismatch is an error and leaves nothing.
pub async fn fetch_backup(store: &Store, dump_key: &str, dest_dir: &Path) -> Result<Fetched> {
    fetch_backup_checked(store, dump_key, dest_dir, &|_| Ok(())).await
}

/// What the caller asks of a backup's meta.json (None: the bucket holds
/// none) before its dump is downloaded: restore refuses another database's
/// backup without fetching what may be many gigabytes.
pub type MetaCheck<'a> = &'a (dyn Fn(Option<&crate::meta::Meta>) -> Result<()> + Sync);

/// [`fetch_backup`], asking `check` about the meta.json before the download.
pub async fn fetch_backup_checked(
    store: &Store,
    dump_key: &str,
    dest_dir: &Path,
    check: MetaCheck<'_>,
) -> Result<Fetched> {
    fetch_backup_as(store, dump_key, dest_dir, check, false).await
}

/// [`fetch_backup_checked`], with `stream`: a dump larger than one range
/// that has a meta.json is not downloaded, only its head
/// ([`Store::download_head`]); [`Fetched::stream`] then reads it whole.
pub async fn fetch_backup_as(
    store: &Store,
    dump_key: &str,
    dest_dir: &Path,
    check: MetaCheck<'_>,
    stream: bool,
) -> Result<Fetched> {
    let (stem, _) = crate::storage::split_dump_file(dump_key)
        .ok_or_else(|| anyhow!("{} does not name a .dump file", store.uri(dump_key)))?;
    let meta_key = format!("{stem}.meta.json");
    let file = dump_key.rsplit('/').next().unwrap_or(dump_key).to_owned();
    if !is_plain_file_name(&file) {
        bail!("{} does not name a plain file", store.uri(dump_key));
    }
    let dump = dest_dir.join(&file);
    let meta_file = crate::storage::meta_file_for(&file)
        .ok_or_else(|| anyhow!("{} does not name a .dump file", store.uri(dump_key)))?;
    let meta_path = dest_dir.join(meta_file);
    if dump.parent() != Some(dest_dir) || meta_path.parent() != Some(dest_dir) {
        bail!("{} would be written outside {}", file, dest_dir.display());
    }

    let meta = store.read_meta_text(&meta_key).await?;
    check(meta.as_ref().map(|(meta, _)| meta))?;
    if meta.is_none() {
        ui::warn(&format!(
            "{} has no meta.json beside it: its checksum cannot be checked",
            store.uri(dump_key)
        ));
    }
    if let (Some((meta, text)), true) = (&meta, stream) {
        if let Some(streamed) = head_only(store, dump_key, &dump, meta, dest_dir).await? {
            crate::storage::fsio::write_atomic(&meta_path, text.as_bytes())?;
            return Ok(Fetched {
                dump,
                meta: Some(meta_path),
                stream: Some(streamed),
            });
        }
    }
    if let Some((meta, _)) = &meta {
        room_for(meta.size_bytes, dest_dir)?;
    }
    ui::info(&format!(
        "downloading {} to {}",
        store.uri(dump_key),
        dump.display()
    ));
    let (sha256, size) = store.download(dump_key, &dump).await?;
    if let Some((meta, text)) = &meta {
        if meta.size_bytes != size || meta.sha256 != sha256 {
            let _ = tokio::fs::remove_file(&dump).await;
            // The bytes are bad (a Finding), not the download: another destination may hold good ones.
            return Err(crate::error::finding(format!(
                "{} does not match its meta.json: {} bytes with sha256 {}, expected {} bytes \
                 with sha256 {}",
                store.uri(dump_key),
                size,
                sha256,
                meta.size_bytes,
                meta.sha256
            )));
        }
        // As stored, byte for byte: its signature covers the text.
        crate::storage::fsio::write_atomic(&meta_path, text.as_bytes())?;
        ui::info(&format!(
            "downloaded {} ({}), sha256 matches meta.json",
            file,
            ui::bytes(size)
        ));
    }
    Ok(Fetched {
        dump,
        meta: meta.map(|_| meta_path),
        stream: None,
    })
}

/// The head of the dump into `dump` when it is worth streaming, saying so
/// and what local disk that takes (one range).
async fn head_only(
    store: &Store,
    dump_key: &str,
    dump: &Path,
    meta: &crate::meta::Meta,
    dest_dir: &Path,
) -> Result<Option<super::stream::Streamed>> {
    let part = super::stream::head_len(store.settings.download_part_size);
    if meta.size_bytes <= part {
        return Ok(None);
    }
    room_for(part, dest_dir)?;
    let streamed = store
        .download_head(dump_key, dump, &meta.sha256, meta.size_bytes)
        .await;
    if streamed.is_err() {
        let _ = tokio::fs::remove_file(dump).await;
    }
    if let Some(streamed) = streamed? {
        ui::info(&format!(
            "streaming {} ({}) into pg_restore as it downloads: only its head ({}) is written \
             to {}; its sha256 is checked against meta.json at the end, and a restore from \
             bytes that differ fails and is removed",
            streamed.uri(),
            ui::bytes(meta.size_bytes),
            ui::bytes(part),
            dest_dir.display()
        ));
        return Ok(Some(streamed));
    }
    Ok(None)
}

/// Says how much disk the download needs and where, and refuses one that
/// cannot fit (before a byte is fetched, exit 1): the dump goes whole into
/// `dir` (in `--scratch-dir`, else $TMPDIR), and a parallel restore of an
/// encrypted backup needs its plaintext once more in the scratch directory.
fn room_for(size: u64, dir: &Path) -> Result<()> {
    let place = dir.parent().unwrap_or(dir);
    let free = crate::encryption::decrypt::free_bytes(dir);
    ui::info(&format!(
        "the restore needs {} of local disk in {} for the download ({} free; --scratch-dir or \
         PGBAK_SCRATCH_DIR puts it elsewhere)",
        ui::bytes(size),
        place.display(),
        free.map_or_else(|| "unknown".to_owned(), ui::bytes)
    ));
    match free {
        Some(free) if free < size => bail!(
            "not downloading: {} has {} free, the backup needs {}: point --scratch-dir (or \
             PGBAK_SCRATCH_DIR) at a directory with room",
            place.display(),
            ui::bytes(free),
            ui::bytes(size)
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_uris_are_refused() {
        assert_eq!(
            parse_uri("s3://b/p/x_full_20261125T020000.dump").unwrap(),
            ("b".into(), "p/x_full_20261125T020000.dump".into())
        );
        for bad in [
            "s3://b/../x.dump",
            "s3://b/p/../../x.dump",
            "s3://b/./x.dump",
            "s3://b/x.dump/..",
            "s3://b/",
            "s3://b",
            "s3:///x.dump",
            "http://b/x.dump",
            "s3://b/x.sql",
            "s3://b/p/.dump",
            "s3://b/p/.dump.age",
            "s3://b/p/x.age",
            "s3://b/p/",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }
}
