//! A backup as verify and restore see it before touching any database: where
//! the `.dump` is (a path, the newest in a directory, or fetched from S3), its
//! meta.json, whether its bytes still hash to what meta.json recorded, and
//! what the archive header says about the pg_restore that can read it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::S3Args;
use crate::encryption::decrypt::Source;
use crate::error::usage;
use crate::meta::Meta;
use crate::pg::client::ServerVersion;
use crate::pg::restore::Listing;
use crate::pg::tools::{self, PgTools};
use crate::signals::Signals;
use crate::storage::local::{LocalBackup, LocalStore};
use crate::storage::s3::S3Settings;
use crate::storage::select::{Choice, Picked, Selector};
use crate::ui;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// A path or `s3://bucket/key.dump`.
    pub backup: Option<&'a str>,
    pub backup_dir: &'a Path,
    pub from_s3: bool,
    pub s3: &'a S3Args,
    /// Without a named file: which backup is "the newest" (the target
    /// database's, in the mode asked, not one that failed verification).
    pub select: &'a Selector,
}

/// A backup file ready to read. Holds the temp dir of an S3 download alive.
#[derive(Debug)]
pub struct Located {
    pub dump: PathBuf,
    pub meta_path: Option<PathBuf>,
    /// True when the dump is a temporary download (nothing is recorded in its meta.json).
    pub temporary: bool,
    _temp: Option<tempfile::TempDir>,
}

impl Located {
    /// A local dump; its meta.json is the sibling `<stem>.meta.json`.
    pub fn local(dump: &Path) -> Located {
        Located {
            dump: dump.to_path_buf(),
            meta_path: meta_path_for(dump),
            temporary: false,
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
/// dir), or the newest complete backup in the directory.
pub async fn locate(wanted: &Wanted<'_>) -> Result<Located> {
    let s3_uri = wanted.backup.filter(|b| b.starts_with("s3://"));
    if wanted.from_s3 || s3_uri.is_some() {
        let temp = tempfile::Builder::new()
            .prefix("pgbak-fetch-")
            .tempdir()
            .context("creating a temporary directory for the download")?;
        let settings_for = |bucket: Option<&str>| S3Settings::from_args(wanted.s3, bucket);
        let fetched =
            crate::storage::s3::fetch_backup(settings_for, s3_uri, wanted.select, temp.path())
                .await?;
        return Ok(Located {
            dump: fetched.dump,
            meta_path: fetched.meta,
            temporary: true,
            _temp: Some(temp),
        });
    }
    if let Some(file) = wanted.backup {
        let path = PathBuf::from(file);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(Located::local(&path)),
            Ok(_) => return Err(usage(format!("{file} is not a file"))),
            Err(e) => return Err(usage(format!("cannot read the backup {file}: {e}"))),
        }
    }
    let dump = newest_local(wanted.backup_dir, wanted.select)?;
    Ok(Located::local(&dump))
}

/// The newest backup in `dir` that `select` accepts; skipped ones are named.
fn newest_local(dir: &Path, select: &Selector) -> Result<PathBuf> {
    let backups: Vec<(LocalBackup, Option<Meta>)> = LocalStore::new(dir)
        .list()?
        .into_iter()
        .map(|b| {
            let meta = (b.is_complete() && select.may_pick(&b.name))
                .then(|| Meta::read(&b.meta).ok())
                .flatten();
            (b, meta)
        })
        .collect();
    let choices: Vec<Choice> = backups
        .iter()
        .map(|(b, meta)| Choice {
            name: &b.name,
            complete: b.is_complete(),
            meta: meta.as_ref(),
        })
        .collect();
    let picked = select.pick(&choices);
    let Some(index) = picked.index else {
        return Err(usage(format!(
            "{}; name a file or pass --backup-dir",
            select.nothing_message(&picked, &dir.display().to_string())
        )));
    };
    report_skipped(&picked);
    Ok(backups[index].0.dump.clone())
}

/// Warns about newer backups passed over because their verification failed.
pub fn report_skipped(picked: &Picked) {
    for stem in &picked.skipped_failed {
        ui::warn(&format!(
            "skipping {stem}: its last verification FAILED (pass --include-failed to use it)"
        ));
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

pub fn read_meta(located: &Located) -> MetaState {
    let Some(path) = &located.meta_path else {
        if located.temporary {
            return MetaState::Unavailable(format!(
                "the bucket holds no meta.json for {}",
                located.dump.display()
            ));
        }
        return MetaState::Unavailable(format!(
            "{} has no meta.json beside it (its name does not end in .dump)",
            located.dump.display()
        ));
    };
    if !path.exists() {
        return MetaState::Unavailable(format!("{} is missing", path.display()));
    }
    match Meta::read(path) {
        Ok(meta) => MetaState::Read(Box::new(meta)),
        Err(err) => MetaState::Unavailable(crate::error::one_line(&err)),
    }
}

/// Compares the file's SHA-256 and size with meta.json. Ok(detail) or Err(detail).
pub async fn check_checksum(dump: &Path, meta: &Meta) -> Result<Result<String, String>> {
    let path = dump.to_path_buf();
    let (sha256, size) = tokio::task::spawn_blocking(move || crate::pipeline::hash_file(&path))
        .await
        .context("hashing the dump stopped unexpectedly")??;
    if sha256 != meta.sha256 || size != meta.size_bytes {
        return Ok(Err(format!(
            "the file does not match meta.json: sha256 {}, {size} bytes; meta.json says sha256 {}, {} bytes (corrupt or truncated)",
            short(&sha256),
            short(&meta.sha256),
            meta.size_bytes
        )));
    }
    Ok(Ok(format!(
        "sha256 {} and {} equal meta.json",
        short(&sha256),
        crate::ui::bytes(size)
    )))
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Compression of the data in a custom-format archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Lz4,
    Zstd,
    Unknown(u8),
}

impl Compression {
    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Gzip => "gzip".into(),
            Compression::Lz4 => "lz4".into(),
            Compression::Zstd => "zstd".into(),
            Compression::Unknown(code) => format!("unknown method {code}"),
        }
    }
}

/// What the first bytes of a custom-format archive say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Archive format version, e.g. (1, 16, 0).
    pub version: (u8, u8, u8),
    pub compression: Compression,
}

impl Header {
    /// The oldest pg_restore major that reads this archive format: pg_restore
    /// refuses archives newer than itself.
    pub fn min_pg_restore_major(&self) -> u32 {
        match (self.version.0, self.version.1) {
            (1, 0..=13) => 10,
            (1, 14) => 12,
            (1, 15) => 16,
            (1, 16) => 17,
            // A format this pgbak does not know: newer than 17.
            _ => 18,
        }
    }

    pub fn version_text(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }
}

/// Reads the header: `PGDMP`, version (3 bytes), int size, offset size,
/// format (1 = custom), then the compression: one algorithm byte from format
/// 1.15 on, before that a gzip level as a signed int.
pub fn read_header(path: &Path) -> Result<Result<Header, String>> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = [0u8; 32];
    let mut len = 0;
    while len < buf.len() {
        let n = file
            .read(&mut buf[len..])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    Ok(parse_header(&buf[..len]))
}

pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if !bytes.starts_with(b"PGDMP") {
        let looks_like_sql = bytes.starts_with(b"--") || bytes.starts_with(b"SET ");
        let start: String = bytes
            .iter()
            .take(8)
            .map(|b| {
                if b.is_ascii_graphic() {
                    *b as char
                } else {
                    '.'
                }
            })
            .collect();
        return Err(if looks_like_sql {
            format!(
                "not a custom-format dump: custom archives begin with the bytes PGDMP, this file begins with {start:?} and looks like a plain SQL dump (restore that with psql)"
            )
        } else {
            format!(
                "not a custom-format dump: custom archives begin with the bytes PGDMP, this file begins with {start:?} (corrupt, or not a pg_dump --format=custom file)"
            )
        });
    }
    let short = || "the archive header is truncated".to_owned();
    let version = (
        *bytes.get(5).ok_or_else(short)?,
        *bytes.get(6).ok_or_else(short)?,
        *bytes.get(7).ok_or_else(short)?,
    );
    let int_size = *bytes.get(8).ok_or_else(short)? as usize;
    let format = *bytes.get(10).ok_or_else(short)?;
    if format != 1 {
        return Err(format!(
            "the archive is not in custom format (format code {format}): pgbak reads pg_dump --format=custom files"
        ));
    }
    let compression = if (version.0, version.1) >= (1, 15) {
        match *bytes.get(11).ok_or_else(short)? {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Lz4,
            3 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    } else {
        // A sign byte, then `int_size` little-endian bytes of the gzip level.
        let level = bytes
            .get(12..12 + int_size.min(8))
            .ok_or_else(short)?
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if level == 0 {
            Compression::None
        } else {
            Compression::Gzip
        }
    };
    Ok(Header {
        version,
        compression,
    })
}

/// `pg_restore --list` of the archive (decrypted on the way when encrypted).
/// Ok(Err(detail)) when pg_restore cannot read it or the decryption failed.
pub async fn list(
    source: &Source,
    tools: &PgTools,
    signals: &mut Signals,
) -> Result<Result<Listing, String>> {
    let plain = source.for_list()?;
    let listed = signals
        .guard(crate::pg::restore::list(tools, plain.input()))
        .await?;
    let finished = plain.finish();
    Ok(match (listed, finished) {
        (Ok(_), Err(err)) => Err(crate::error::one_line(&err)),
        (listed, _) => listed,
    })
}

/// One line about a readable archive, as verify and restore print it.
pub fn describe(header: &Header, listing: &Listing, tools: &PgTools, encrypted: bool) -> String {
    format!(
        "pg_restore --list reads {} entries ({} with table data); archive format {}, {} \
         compression, pg_restore {}{}",
        listing.entries,
        listing.table_data,
        header.version_text(),
        header.compression.name(),
        tools.version,
        if encrypted {
            "; age-encrypted, decrypted on the way"
        } else {
            ""
        }
    )
}

/// The major version in a pg_dump version text ("17.10" -> 17).
pub fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The tools: new enough for the archive (and for the server, when there is one).
pub fn pick_tools(
    pg_bin_dir: Option<&Path>,
    header: &Header,
    meta: Option<&Meta>,
    server: Option<&ServerVersion>,
) -> Result<PgTools, String> {
    let meta_major = meta.and_then(|m| major_of(&m.pg_dump_version));
    let archive_need = header
        .min_pg_restore_major()
        .max(meta_major.unwrap_or_default());
    let written_by = match meta {
        Some(m) => format!("pg_dump {}", m.pg_dump_version),
        None => format!("a pg_dump {archive_need} or newer"),
    };
    let compression = match header.compression {
        Compression::None | Compression::Gzip => String::new(),
        other => format!(
            "; its data is {}-compressed, so that pg_restore must be built with {}",
            other.name(),
            other.name()
        ),
    };
    let too_old = |tools: &PgTools| {
        format!(
            "the archive (format {}) was written by {written_by} and needs pg_restore {archive_need} or newer{compression}; \
             {} is PostgreSQL {}. Point --pg-bin-dir / PGBAK_PG_BIN_DIR at PostgreSQL {archive_need}'s bin directory",
            header.version_text(),
            tools.tool("pg_restore").display(),
            tools.version
        )
    };
    let need = archive_need.max(server.map_or(0, ServerVersion::major));
    match pg_bin_dir {
        Some(dir) => {
            let tools = tools::find(Some(dir), 0, "").map_err(|e| crate::error::one_line(&e))?;
            if tools.major < archive_need {
                return Err(too_old(&tools));
            }
            if tools.major < need {
                return Err(format!(
                    "{} is PostgreSQL {} and the server runs {}: use a pg_restore at least as new as the server",
                    tools.tool("pg_restore").display(),
                    tools.version,
                    server.map_or_else(String::new, |s| s.text.clone())
                ));
            }
            Ok(tools)
        }
        None => {
            let what = server.map_or_else(|| archive_need.to_string(), |s| s.text.clone());
            tools::find(None, need, &what).map_err(|e| {
                let found = crate::error::one_line(&e);
                if server.is_none() || archive_need > server.map_or(0, ServerVersion::major) {
                    format!(
                        "the archive (format {}) was written by {written_by} and needs pg_restore \
                         {archive_need} or newer{compression}. Looked for one: {found}",
                        header.version_text()
                    )
                } else {
                    found
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_real_archives() {
        // pg_dump 17, zstd.
        let z17 = [
            0x50, 0x47, 0x44, 0x4d, 0x50, 0x01, 0x10, 0x00, 0x04, 0x08, 0x01, 0x03, 0x00, 0x22,
        ];
        let h = parse_header(&z17).unwrap();
        assert_eq!(h.version, (1, 16, 0));
        assert_eq!(h.compression, Compression::Zstd);
        assert_eq!(h.min_pg_restore_major(), 17);
        // pg_dump 16, gzip.
        let g16 = [
            0x50, 0x47, 0x44, 0x4d, 0x50, 0x01, 0x0f, 0x00, 0x04, 0x08, 0x01, 0x01, 0x00, 0x22,
        ];
        let h = parse_header(&g16).unwrap();
        assert_eq!(h.compression, Compression::Gzip);
        assert_eq!(h.min_pg_restore_major(), 16);
        // pg_dump 15: level as an int (sign byte, 4 bytes little-endian).
        let g15 = [
            0x50, 0x47, 0x44, 0x4d, 0x50, 0x01, 0x0e, 0x00, 0x04, 0x08, 0x01, 0x00, 0x06, 0x00,
            0x00, 0x00,
        ];
        let h = parse_header(&g15).unwrap();
        assert_eq!(h.compression, Compression::Gzip);
        assert_eq!(h.min_pg_restore_major(), 12);
    }

    #[test]
    fn other_files_are_named_for_what_they_are() {
        let err = parse_header(b"--\n-- PostgreSQL database dump\n").unwrap_err();
        assert!(err.contains("PGDMP") && err.contains("plain SQL"), "{err}");
        let err = parse_header(b"\x1f\x8b\x08\x00garbage").unwrap_err();
        assert!(err.contains("PGDMP"), "{err}");
        assert!(parse_header(b"PGDMP\x01").is_err());
        assert!(parse_header(b"").is_err());
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
        assert_eq!(major_of("17.10"), Some(17));
        assert_eq!(major_of("18devel"), Some(18));
    }
}
