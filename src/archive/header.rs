//! What the first bytes of a custom-format archive say: its format version
//! (which decides the oldest pg_restore that reads it) and its compression.

use std::path::Path;

use anyhow::{Context, Result};

use crate::error::finding;

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

/// Reads the header of a file on disk; bytes that are not a custom
/// archive's header are a [`crate::error::Finding`].
pub fn read_header(path: &Path) -> Result<Header> {
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
    parse_header(&buf[..len]).map_err(finding)
}

/// Parses the header: `PGDMP`, version (3 bytes), int size, offset size,
/// format (1 = custom), then the compression: one algorithm byte from format
/// 1.15 on, before that a gzip level as a signed int. Err: what the bytes are instead.
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if !bytes.starts_with(b"PGDMP") {
        return Err(not_custom(bytes));
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

/// Why a file without the `PGDMP` magic is not a custom archive, naming
/// what it looks like instead.
fn not_custom(bytes: &[u8]) -> String {
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
    if looks_like_sql {
        format!(
            "not a custom-format dump: custom archives begin with the bytes PGDMP, this file begins with {start:?} and looks like a plain SQL dump (restore that with psql)"
        )
    } else {
        format!(
            "not a custom-format dump: custom archives begin with the bytes PGDMP, this file begins with {start:?} (corrupt, or not a pg_dump --format=custom file)"
        )
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
    fn a_file_that_is_no_archive_is_a_finding_not_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dump");
        std::fs::write(&path, b"--\n-- PostgreSQL database dump\n").unwrap();
        let err = read_header(&path).unwrap_err();
        assert!(crate::error::as_finding(&err).is_some(), "{err:#}");
        let err = read_header(&dir.path().join("missing.dump")).unwrap_err();
        assert!(crate::error::as_finding(&err).is_none(), "{err:#}");
    }
}
