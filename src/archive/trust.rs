//! Whether a backup can be believed, decided before anything reads it: the
//! bucket is writable by more people and machines than the backup host, and
//! a restore runs what it reads as a superuser.
//!
//! - **No downgrade.** When anything says the backup is encrypted (its file
//!   name, its meta.json, the run it belongs to, or the configuration: an
//!   identity given, `--require-encryption`), a dump without the age header
//!   is refused: otherwise anyone could replace an encrypted object by a
//!   plaintext one of their own, with a matching checksum in meta.json.
//! - **Signatures.** With trusted keys configured (`--trusted-keys`), meta.json
//!   must carry a valid signature by one of them ([`crate::signing`]), and
//!   name the very file it sits beside (a signed backup renamed to look newer
//!   is refused).
//!
//! restore refuses an untrusted backup (exit 2); verify reports it as a
//! failed check.

use std::path::Path;

use super::{Backup, Decrypt};
use crate::signing::{TrustedKeys, Verdict};

/// Why a dump that is not age-encrypted may not be read as plaintext, or
/// None when nothing says it should be encrypted (pure).
pub fn downgrade(dump: &Path, meta_says: bool, decrypt: &Decrypt) -> Option<String> {
    let named = dump
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(crate::storage::AGE_SUFFIX));
    let because = if named {
        "its name ends in .dump.age"
    } else if meta_says {
        "its meta.json records an encryption"
    } else if decrypt.run_encrypted {
        "other backups of its run are encrypted"
    } else if decrypt.require_encryption {
        "encryption is required (--require-encryption / PGBAK_REQUIRE_ENCRYPTION)"
    } else if decrypt.identity_file.is_some() {
        "an identity is given (--identity-file / PGBAK_AGE_IDENTITY_FILE), so encrypted backups are expected"
    } else {
        return None;
    };
    Some(format!(
        "{} is not encrypted (no age header), but {because}: refusing a plaintext object \
         in its place (replaced in the bucket?)",
        dump.display()
    ))
}

/// Why a backup may not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// A plaintext dump where an encrypted one belongs.
    Plaintext(String),
    /// meta.json is not signed by a trusted key (or names another file).
    Signature(String),
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::Plaintext(why) | Untrusted::Signature(why) => f.write_str(why),
        }
    }
}

impl Backup {
    /// Ok(what was established, for the log) or why the backup may not be
    /// read. Checked right after [`Backup::open`], before the checksum.
    pub fn authentic(&self, decrypt: &Decrypt) -> Result<String, Untrusted> {
        let dump = &self.located.dump;
        if !self.source.encrypted() {
            let meta_says = self.meta().is_some_and(|m| m.encryption.is_some());
            if let Some(why) = downgrade(dump, meta_says, decrypt) {
                return Err(Untrusted::Plaintext(why));
            }
        }
        self.signed(decrypt).map_err(Untrusted::Signature)
    }

    /// The signature part of [`Backup::authentic`].
    fn signed(&self, decrypt: &Decrypt) -> Result<String, String> {
        let Some(keys) = &decrypt.trusted_keys else {
            return Ok("not checked for a signature: no trusted keys configured \
                       (--trusted-keys / PGBAK_TRUSTED_KEYS), the bucket is trusted"
                .to_owned());
        };
        let file = self
            .located
            .dump
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        signed_for(keys, self.meta_text.as_deref(), file)
    }
}

/// The signature verdict on meta.json `text` (None: there is none) beside
/// the dump named `file`: signed by a trusted key, and for that very file.
pub fn signed_for(keys: &TrustedKeys, text: Option<&str>, file: &str) -> Result<String, String> {
    let Some(text) = text else {
        return Err(format!(
            "{file} has no readable meta.json, so no signature; signatures are required \
             (trusted keys: {})",
            keys.source.display()
        ));
    };
    let signer = match keys.check(text) {
        Verdict::Trusted(signer) => signer,
        Verdict::Refused(why) => return Err(why),
    };
    let named = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|doc| doc.get("file")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    if named == file {
        Ok(format!("signed by {signer}, a trusted key"))
    } else {
        Err(format!(
            "meta.json is signed for the file {named:?}, not {file:?} (renamed in the bucket?)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_plaintext_dump_is_refused_whenever_anything_expects_encryption() {
        let plain = Path::new("/b/app_full_20261125T020000.dump");
        let sealed_name = Path::new("/b/app_full_20261125T020000.dump.age");
        let none = Decrypt::default();
        assert_eq!(downgrade(plain, false, &none), None);
        let reason =
            |dump: &Path, meta: bool, d: &Decrypt| downgrade(dump, meta, d).expect("refused");
        assert!(reason(sealed_name, false, &none).contains(".dump.age"));
        assert!(reason(plain, true, &none).contains("meta.json records"));
        let run = Decrypt {
            run_encrypted: true,
            ..Decrypt::default()
        };
        assert!(reason(plain, false, &run).contains("its run"));
        let required = Decrypt {
            require_encryption: true,
            ..Decrypt::default()
        };
        assert!(reason(plain, false, &required).contains("required"));
        let identity = Decrypt {
            identity_file: Some(PathBuf::from("/k")),
            ..Decrypt::default()
        };
        assert!(reason(plain, false, &identity).contains("identity is given"));
    }
}
