//! A verify's verdict, recorded where the backup lives: `<stem>.verify.json`
//! beside its dump and meta.json, in the directory and under the S3 prefix.
//!
//! Why an object of its own and not meta.json's `verification`: meta.json
//! may be under S3 Object Lock (or signed, or simply immutable once
//! written), and a verify made from another host (`verify --from-s3`, a
//! monitoring host, a fresh pod) must still reach every reader: `list`,
//! `check`, retention's "newest verified", the anomaly baseline, the
//! selection of restore and verify. A new version of this small object is
//! allowed where meta.json is locked. Readers merge it with meta.json's
//! legacy field: the newer `verified_at` wins ([`newest`]). Deleting a
//! backup deletes its verdict; a verdict alone is not a backup.
//!
//! The document is `{"format_version": 1, "file": <dump file>,
//! "verification": {...}, "checksum": {...}}`; [`Verification`] is
//! meta.json's own struct, so a field added there (restore duration,
//! `--jobs`) is recorded here too. `checksum` is the last `verify
//! --checksum-only` proof ([`ChecksumProof`]: the stored bytes read back and
//! matching meta.json): kept beside the restore verdict, never replacing it,
//! each written by read-modify-write of the other. Either may be absent
//! (a backup only ever checksum-proven has no `verification`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{fsio, BackupName};
use crate::meta::Verification;

/// What a verdict's file name adds to its backup's stem.
pub const VERDICT_SUFFIX: &str = ".verify.json";
const FORMAT_VERSION: u32 = 1;
/// A verdict larger than this is not ours.
pub const MAX_VERDICT_BYTES: u64 = 1 << 20;

/// The verdict document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictFile {
    pub format_version: u32,
    /// The dump it judges (`<stem>.dump[.age]`).
    pub file: String,
    /// The last restore verify (or a failed checksum proof, recorded as a
    /// failed verify so selection and retention pass over the backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The last `verify --checksum-only` of this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ChecksumProof>,
}

/// A `verify --checksum-only` proof: the stored bytes were read back from
/// the store and their SHA-256 and size (and, encrypted, their plaintext's
/// once decrypted) matched meta.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecksumProof {
    pub checked_at: String,
    pub passed: bool,
    pub pgbak_version: String,
}

impl ChecksumProof {
    /// When it was made; None when the time cannot be read.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.checked_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl VerdictFile {
    pub fn new(name: &BackupName, verification: &Verification) -> VerdictFile {
        VerdictFile {
            format_version: FORMAT_VERSION,
            file: name.dump_file(),
            verification: Some(verification.clone()),
            checksum: None,
        }
    }

    /// An empty document for `name`, to be filled by read-modify-write.
    pub fn empty(name: &BackupName) -> VerdictFile {
        VerdictFile {
            format_version: FORMAT_VERSION,
            file: name.dump_file(),
            verification: None,
            checksum: None,
        }
    }

    /// Pretty JSON and a newline, as written to disk and to S3.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self).context("encoding a verdict")?;
        json.push(b'\n');
        Ok(json)
    }

    /// Parses a verdict of `name`: our format version, and the backup it
    /// names is `name` (a verdict copied beside another backup judges nothing).
    pub fn parse(text: &str, name: &BackupName) -> Result<VerdictFile> {
        let verdict: VerdictFile = serde_json::from_str(text).context("not a pgbak verdict")?;
        if verdict.format_version != FORMAT_VERSION {
            bail!(
                "verdict format_version {} is not supported (this pgbak reads {FORMAT_VERSION})",
                verdict.format_version
            );
        }
        let judged = super::split_dump_file(&verdict.file).map(|(stem, _)| stem);
        if judged != Some(name.stem().as_str()) {
            bail!(
                "the verdict names the file {:?}, not {}",
                verdict.file,
                name.dump_file()
            );
        }
        Ok(verdict)
    }
}

/// The newer of two verdicts (by `verified_at`; one that cannot be read as
/// a time loses to one that can).
pub fn newest(a: Option<Verification>, b: Option<Verification>) -> Option<Verification> {
    let at = |v: &Verification| {
        DateTime::parse_from_rfc3339(&v.verified_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    match (a, b) {
        (Some(a), Some(b)) => Some(if at(&b) >= at(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Reads the verdict of `name` in `dir`; None when there is none.
pub fn read_local(dir: &Path, name: &BackupName) -> Result<Option<Verification>> {
    Ok(read_local_file(dir, name)?.and_then(|v| v.verification))
}

/// Reads the whole verdict document of `name` in `dir`; None when there is none.
pub fn read_local_file(dir: &Path, name: &BackupName) -> Result<Option<VerdictFile>> {
    let path = dir.join(name.verdict_file());
    let text = match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_VERDICT_BYTES => {
            bail!(
                "{} is {} bytes; a verdict is never that large",
                path.display(),
                m.len()
            )
        }
        Ok(_) => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    VerdictFile::parse(&text, name)
        .map(Some)
        .with_context(|| format!("reading {}", path.display()))
}

/// Writes the verdict of `name` into `dir` (atomically, 0600), keeping the
/// checksum proof of the document there.
pub fn write_local(dir: &Path, name: &BackupName, verification: &Verification) -> Result<()> {
    let mut document = read_local_file(dir, name)
        .ok()
        .flatten()
        .unwrap_or_else(|| VerdictFile::empty(name));
    document.verification = Some(verification.clone());
    write_local_file(dir, name, &document)
}

/// Writes a whole verdict document of `name` into `dir` (atomically, 0600).
pub fn write_local_file(dir: &Path, name: &BackupName, document: &VerdictFile) -> Result<()> {
    fsio::write_atomic(&dir.join(name.verdict_file()), &document.to_json()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;
    use chrono::TimeZone;

    fn verdict(at: &str, passed: bool) -> Verification {
        Verification {
            verified_at: at.into(),
            passed,
            pgbak_version: "0.1.0".into(),
            failed_checks: Vec::new(),
            timing: None,
        }
    }

    fn name() -> BackupName {
        BackupName::new(
            "app",
            Mode::Full,
            None,
            Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap(),
        )
        .with_server(Some("1a2b3c4d".into()))
    }

    #[test]
    fn the_newer_verdict_wins() {
        let old = verdict("2026-11-25T03:00:00Z", true);
        let new = verdict("2026-11-26T03:00:00+00:00", false);
        let cases = [
            (Some(old.clone()), Some(new.clone()), Some(new.clone())),
            (Some(new.clone()), Some(old.clone()), Some(new.clone())),
            (None, Some(old.clone()), Some(old.clone())),
            (Some(old.clone()), None, Some(old.clone())),
            (
                Some(verdict("garbage", false)),
                Some(old.clone()),
                Some(old.clone()),
            ),
            (None, None, None),
        ];
        for (a, b, want) in cases {
            assert_eq!(newest(a.clone(), b.clone()), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn verdicts_round_trip_and_judge_only_their_backup() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_local(dir.path(), &name()).unwrap(), None);
        let v = verdict("2026-11-25T03:00:00Z", false);
        write_local(dir.path(), &name(), &v).unwrap();
        assert_eq!(read_local(dir.path(), &name()).unwrap(), Some(v.clone()));
        let text = String::from_utf8(VerdictFile::new(&name(), &v).to_json().unwrap()).unwrap();
        let other = name().next_second();
        assert!(
            VerdictFile::parse(&text, &other).is_err(),
            "another backup's verdict"
        );
        assert!(VerdictFile::parse(
            &text.replace("\"format_version\": 1", "\"format_version\": 9"),
            &name()
        )
        .is_err());
        assert!(VerdictFile::parse("{}", &name()).is_err());
    }

    #[test]
    fn a_checksum_proof_and_a_restore_verdict_live_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let proof = ChecksumProof {
            checked_at: "2026-11-27T03:00:00Z".into(),
            passed: true,
            pgbak_version: "0.1.0".into(),
        };
        let mut document = VerdictFile::empty(&name());
        document.checksum = Some(proof.clone());
        write_local_file(dir.path(), &name(), &document).unwrap();
        assert_eq!(
            read_local(dir.path(), &name()).unwrap(),
            None,
            "no restore verdict yet"
        );
        let v = verdict("2026-11-28T03:00:00Z", true);
        write_local(dir.path(), &name(), &v).unwrap();
        let both = read_local_file(dir.path(), &name()).unwrap().unwrap();
        assert_eq!(both.verification, Some(v));
        assert_eq!(
            both.checksum,
            Some(proof),
            "a restore verify keeps the proof"
        );
        // A verdict written before the proof existed still reads.
        let old = format!(
            r#"{{"format_version": 1, "file": "{}", "verification": {{"verified_at":
            "2026-11-25T03:00:00Z", "passed": true, "pgbak_version": "0.1.0"}}}}"#,
            name().dump_file()
        );
        let parsed = VerdictFile::parse(&old, &name()).unwrap();
        assert!(parsed.verification.is_some() && parsed.checksum.is_none());
    }
}
