//! meta.json's `format_version`: which formats this pgbak reads, checked
//! before any other key, and the mark ([`NewerFormat`]) on the error of one
//! written by a newer pgbak, which verify, restore, list and check branch on
//! (exit 2 naming both versions; never a misread).

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::{FORMAT_VERSION, OLDEST_READABLE_FORMAT};

/// The mark on the error of a meta.json written in a newer format than this
/// pgbak reads (under it, the usage error that makes it exit 2): verify,
/// restore, list and check branch on it with [`is_newer_format`].
#[derive(Debug)]
pub struct NewerFormat;

impl std::fmt::Display for NewerFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a backup written by a newer pgbak")
    }
}

/// The error (under any context) is a meta.json in a newer format.
pub fn is_newer_format(err: &anyhow::Error) -> bool {
    err.downcast_ref::<NewerFormat>().is_some()
}

/// Only the version, read before the rest: a newer format's other fields
/// are never interpreted.
#[derive(Deserialize)]
struct Format {
    format_version: u64,
}

/// The meta.json's `format_version` is one this pgbak reads; a newer one is
/// a usage error (exit 2) naming both.
pub(super) fn check_format(text: &str) -> Result<()> {
    let Format { format_version } =
        serde_json::from_str(text).context("not a pgbak meta.json (no format_version)")?;
    let reads = if OLDEST_READABLE_FORMAT == FORMAT_VERSION {
        format!("format {FORMAT_VERSION}")
    } else {
        format!("formats {OLDEST_READABLE_FORMAT} to {FORMAT_VERSION}")
    };
    if format_version > u64::from(FORMAT_VERSION) {
        return Err(crate::error::usage(format!(
            "meta.json format_version {format_version} is newer than this pgbak {} reads \
             ({reads}): upgrade pgbak to read this backup",
            env!("CARGO_PKG_VERSION")
        )))
        .context(NewerFormat);
    }
    if format_version < u64::from(OLDEST_READABLE_FORMAT) {
        bail!("meta.json format_version {format_version} was never written by pgbak (it reads {reads})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::meta::Meta;
    use crate::mode::Mode;

    /// The meta.json files released pgbak versions wrote (fixtures/meta-format-1/).
    fn released_format_1() -> Vec<(&'static str, serde_json::Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/meta-format-1");
        ["full", "globals", "encrypted"]
            .into_iter()
            .map(|kind| {
                let file = std::fs::read_dir(dir.join(kind))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_string_lossy().ends_with(".meta.json"))
                    .unwrap();
                let text = std::fs::read_to_string(file).unwrap();
                (kind, serde_json::from_str(&text).unwrap())
            })
            .collect()
    }

    #[test]
    fn released_format_1_files_read_and_round_trip() {
        for (kind, json) in released_format_1() {
            let meta = Meta::parse(&json.to_string()).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(meta.format_version, 1);
            match kind {
                "full" => {
                    assert_eq!(meta.mode, Mode::Full);
                    assert_eq!(
                        meta.tables.len(),
                        14,
                        "13 application tables and alembic_version"
                    );
                    assert!(meta.verification.as_ref().is_some_and(|v| v.passed));
                    assert!(meta.schema_objects.is_some() && meta.database_properties.is_some());
                }
                "globals" => {
                    assert_eq!(meta.mode, Mode::Globals);
                    assert!(meta.globals.as_ref().is_some_and(|g| g.role_passwords));
                }
                _ => {
                    let enc = meta.encryption.as_ref().expect("encryption section");
                    assert_eq!(enc.format, "age");
                    assert!(meta.file.ends_with(".dump.age"));
                }
            }
            // verify rewrites meta.json with its result: nothing of the file may be lost.
            let mut written: serde_json::Value =
                serde_json::from_slice(&meta.to_json().unwrap()).unwrap();
            let mut json = json;
            if kind == "encrypted" {
                // Format 1 as released kept an encrypted backup's private
                // fields in plaintext; a rewrite moves them into `sealed`.
                let sealed = written["sealed"].as_str().unwrap_or_default();
                assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
                for key in ["database_properties", "roles", "schema_objects", "sealed"] {
                    json.as_object_mut().unwrap().remove(key);
                    written.as_object_mut().unwrap().remove(key);
                }
                assert_eq!(written["extensions"], serde_json::json!({}));
                json["extensions"] = serde_json::json!({});
            }
            assert_eq!(
                written, json,
                "{kind}: a field was lost or changed on rewrite"
            );
        }
    }

    #[test]
    fn a_newer_format_is_a_usage_error_naming_both_versions() {
        let (_, mut json) = released_format_1().remove(0);
        json["format_version"] = 2.into();
        // A newer format may change what a field means: it must not reach the fields.
        json["tables"] = "renamed in format 2".into();
        let err = Meta::parse(&json.to_string())
            .context("reading x.meta.json")
            .unwrap_err();
        assert_eq!(
            crate::error::exit_code(&err),
            crate::error::USAGE,
            "{err:#}"
        );
        assert!(is_newer_format(&err), "{err:#}");
        assert!(!is_newer_format(&crate::error::usage(
            "another usage error"
        )));
        let text = format!("{err:#}");
        assert!(
            text.contains("format_version 2") && text.contains("(format 1)"),
            "{text}"
        );
        for (version, readable) in [(0, false), (1, true), (u64::MAX, false)] {
            json["format_version"] = version.into();
            json["tables"] = serde_json::json!([]);
            let read = Meta::parse(&json.to_string());
            assert_eq!(read.is_ok(), readable, "{version}: {read:?}");
        }
        for bad in [r#"{"format_version":"1"}"#, r#"{"database":"x"}"#] {
            let err = Meta::parse(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), crate::error::FAILED, "{bad}");
            assert!(!is_newer_format(&err), "{bad}");
        }
    }
}
