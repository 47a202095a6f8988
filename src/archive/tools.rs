//! The pg_restore that can read an archive (new enough for its format, and
//! for the server it restores into), and the line that describes what it read.

use std::path::Path;

use anyhow::Result;

use super::header::{Compression, Header};
use crate::error::{finding, one_line};
use crate::meta::Meta;
use crate::pg::client::ServerVersion;
use crate::pg::restore::Listing;
use crate::pg::tools::{self, PgTools};

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

/// The tools: new enough for the archive (and for the server, when there
/// is one). None fitting is a [`crate::error::Finding`] that says which
/// version is needed and where pgbak looked.
pub fn pick_tools(
    pg_bin_dir: Option<&Path>,
    header: &Header,
    meta: Option<&Meta>,
    server: Option<&ServerVersion>,
) -> Result<PgTools> {
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
            let tools = tools::find(Some(dir), 0, "").map_err(|e| finding(one_line(&e)))?;
            if tools.major < archive_need {
                return Err(finding(too_old(&tools)));
            }
            if tools.major < need {
                return Err(finding(format!(
                    "{} is PostgreSQL {} and the server runs {}: use a pg_restore at least as new as the server",
                    tools.tool("pg_restore").display(),
                    tools.version,
                    server.map_or_else(String::new, |s| s.text.clone())
                )));
            }
            Ok(tools)
        }
        None => {
            let what = server.map_or_else(|| archive_need.to_string(), |s| s.text.clone());
            tools::find(None, need, &what).map_err(|e| {
                let found = one_line(&e);
                finding(
                    if server.is_none() || archive_need > server.map_or(0, ServerVersion::major) {
                        format!(
                            "the archive (format {}) was written by {written_by} and needs \
                             pg_restore {archive_need} or newer{compression}. Looked for one: {found}",
                            header.version_text()
                        )
                    } else {
                        found
                    },
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_of_version_texts() {
        assert_eq!(major_of("17.10"), Some(17));
        assert_eq!(major_of("18devel"), Some(18));
        assert_eq!(major_of("devel"), None);
    }
}
