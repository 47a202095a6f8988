//! A store's files as files: a backup made readable locally (in place, or
//! downloaded and checked), and the small files beside the backups
//! (verdicts, run records, markers) read, written, listed and deleted.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Fetched, Store};
use crate::storage::s3::{self, MetaCheck};
use crate::storage::BackupName;

/// A stored file's bytes, chunk by chunk, for a reader that only looks at
/// them: memory stays at one chunk whatever the file's size.
pub enum Chunks {
    File(tokio::fs::File),
    Object(aws_sdk_s3::primitives::ByteStream),
}

impl Chunks {
    /// The next chunk; None at the end.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>> {
        use tokio::io::AsyncReadExt;
        match self {
            Chunks::File(file) => {
                let mut buf = vec![0u8; 1 << 20];
                let n = file.read(&mut buf).await.context("reading the file")?;
                buf.truncate(n);
                Ok((n > 0).then(|| bytes::Bytes::from(buf)))
            }
            Chunks::Object(body) => body.try_next().await.context("reading the object"),
        }
    }
}

impl Store {
    /// The bytes of `file` here, streamed from where they are stored (the
    /// directory's file, the bucket's object): never a local copy.
    pub async fn read_chunks(&self, file: &str) -> Result<Chunks> {
        match self {
            Store::Local(local) => {
                let path = local.dir.join(file);
                let opened = tokio::fs::File::open(&path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                Ok(Chunks::File(opened))
            }
            Store::S3(s3) => Ok(Chunks::Object(s3.open_read(&s3.key_for(file), None).await?)),
            #[cfg(test)]
            Store::Memory(_) => bail!("the memory store holds no files"),
        }
    }

    /// Makes the backup whose dump is `file` here readable as local files:
    /// a directory's in place (the caller checks them); a bucket's
    /// downloaded ([`Store::download`]) into a directory `scratch` makes.
    pub async fn fetch(
        &self,
        file: &str,
        scratch: impl FnOnce() -> Result<tempfile::TempDir>,
        check: MetaCheck<'_>,
    ) -> Result<Fetched> {
        self.fetch_as(file, scratch, check, false).await
    }

    /// [`Store::fetch`]; with `stream`, a bucket's dump with a meta.json is
    /// only fetched as its head ([`s3::fetch::fetch_backup_as`]) when it is larger than one range.
    pub async fn fetch_as(
        &self,
        file: &str,
        scratch: impl FnOnce() -> Result<tempfile::TempDir>,
        check: MetaCheck<'_>,
        stream: bool,
    ) -> Result<Fetched> {
        if let Store::Local(local) = self {
            let dump = local.dir.join(file);
            let meta = crate::storage::meta_file_for(file).map(|m| local.dir.join(m));
            return Ok(Fetched {
                dump,
                meta,
                temp: None,
                stream: None,
            });
        }
        let temp = scratch()?;
        let fetched = match (self, stream) {
            (Store::S3(s3), true) => {
                let fetched =
                    s3::fetch::fetch_backup_as(s3, &s3.key_for(file), temp.path(), check, true)
                        .await?;
                Fetched {
                    dump: fetched.dump,
                    meta: fetched.meta,
                    temp: None,
                    stream: fetched.stream,
                }
            }
            _ => self.download(file, temp.path(), check).await?,
        };
        Ok(Fetched {
            temp: Some(temp),
            ..fetched
        })
    }

    /// Copies the backup whose dump is `file` here into `dest` (its dump
    /// and its meta.json as stored, 0600): `check` is asked about its
    /// meta.json first (None: there is none), and the dump's SHA-256 and
    /// size must match it (a mismatch leaves nothing behind).
    pub async fn download(&self, file: &str, dest: &Path, check: MetaCheck<'_>) -> Result<Fetched> {
        match self {
            Store::Local(local) => {
                let name = BackupName::parse(file);
                let meta = match &name {
                    Some(name) => self.load_meta_text(name).await?,
                    None => None,
                };
                check(meta.as_ref().map(|(meta, _)| meta))?;
                let dump = dest.join(file);
                let source = local.dir.join(file);
                let copied = crate::storage::fsio::create_new(&dump)
                    .and_then(|mut out| {
                        std::io::copy(&mut std::fs::File::open(&source)?, &mut out)?;
                        out.sync_all()
                    })
                    .with_context(|| format!("copying {} to {}", source.display(), dest.display()));
                let verified = copied.and_then(|()| match &meta {
                    Some((meta, _)) => {
                        let (sha256, size) = crate::pipeline::hash_file(&dump)?;
                        if sha256 != meta.sha256 || size != meta.size_bytes {
                            bail!("{} does not match its meta.json", source.display());
                        }
                        Ok(())
                    }
                    None => Ok(()),
                });
                if let Err(err) = verified {
                    let _ = std::fs::remove_file(&dump);
                    return Err(err);
                }
                let meta_path = match (&meta, crate::storage::meta_file_for(file)) {
                    (Some((_, text)), Some(meta_file)) => {
                        let path = dest.join(meta_file);
                        crate::storage::fsio::write_atomic(&path, text.as_bytes())?;
                        Some(path)
                    }
                    _ => None,
                };
                Ok(Fetched {
                    dump,
                    meta: meta_path,
                    temp: None,
                    stream: None,
                })
            }
            Store::S3(s3) => {
                let fetched = s3::fetch_backup_checked(s3, &s3.key_for(file), dest, check).await?;
                Ok(Fetched {
                    dump: fetched.dump,
                    meta: fetched.meta,
                    temp: None,
                    stream: None,
                })
            }
            #[cfg(test)]
            Store::Memory(_) => bail!("the memory store holds no files"),
        }
    }

    /// Checks that `file` is here with `size` bytes.
    pub async fn check_size(&self, file: &str, size: u64) -> Result<()> {
        match self {
            Store::Local(local) => {
                let path = local.dir.join(file);
                let found = std::fs::metadata(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .len();
                if found != size {
                    bail!("{found} bytes, meta.json says {size}");
                }
                Ok(())
            }
            Store::S3(s3) => s3.check_small(&s3.key_for(file), size).await,
            #[cfg(test)]
            Store::Memory(_) => Ok(()),
        }
    }

    /// A small file's bytes (at most 16 MiB: `what` it should be); None when
    /// it does not exist.
    pub async fn get(&self, file: &str, what: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Local(local) => {
                let path = local.dir.join(file);
                match std::fs::metadata(&path) {
                    Ok(m) if m.len() > 16 << 20 => {
                        bail!("{} is too large to be {what}", path.display())
                    }
                    Ok(_) => std::fs::read(&path)
                        .map(Some)
                        .with_context(|| format!("reading {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
            Store::S3(s3) => Ok(s3
                .get_small(&s3.key_for(file), what)
                .await?
                .map(|b| b.to_vec())),
            #[cfg(test)]
            Store::Memory(_) => Ok(None),
        }
    }

    /// Writes a small file (meta.json, a verdict, a run record, a marker),
    /// replacing one of that name: atomically in a directory (0600).
    pub async fn put(&self, file: &str, body: Vec<u8>) -> Result<()> {
        match self {
            Store::Local(local) => {
                crate::storage::fsio::ensure_dir(&local.dir)?;
                crate::storage::fsio::write_atomic(&local.dir.join(file), &body)
            }
            Store::S3(s3) => s3.put_small(&s3.key_for(file), body).await,
            #[cfg(test)]
            Store::Memory(_) => bail!("the memory store keeps no files"),
        }
    }

    /// The names of the files here that start with `prefix`.
    pub async fn files_with(&self, prefix: &str) -> Result<Vec<String>> {
        match self {
            Store::Local(local) => local.files_with(prefix),
            Store::S3(s3) => {
                let keys = s3.keys_with(&s3.key_for(prefix)).await?;
                let folder = &s3.settings.prefix;
                Ok(keys
                    .iter()
                    .filter_map(|k| k.strip_prefix(folder.as_str()))
                    .filter(|f| crate::storage::is_plain_file_name(f))
                    .map(str::to_owned)
                    .collect())
            }
            #[cfg(test)]
            Store::Memory(_) => Ok(Vec::new()),
        }
    }

    /// Deletes files (missing ones are fine).
    pub async fn delete(&self, files: &[String]) -> Result<()> {
        match self {
            Store::Local(local) => {
                for file in files {
                    let path = local.dir.join(file);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("removing {}", path.display()))
                        }
                    }
                }
                Ok(())
            }
            Store::S3(s3) => {
                let keys: Vec<String> = files.iter().map(|f| s3.key_for(f)).collect();
                s3.delete_keys(&keys).await
            }
            #[cfg(test)]
            Store::Memory(_) => bail!("the memory store keeps no files"),
        }
    }
}
