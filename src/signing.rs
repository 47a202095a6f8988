//! Backup signatures: proof that a backup was written by our own backup host.
//!
//! age encrypts to public keys, so anyone can write a `.dump.age` that a
//! restore decrypts; and meta.json's checksum sits beside the dump, so
//! whoever can write to the bucket can replace both. A signature closes that:
//! the backup host holds an ed25519 signing key (`pgbak keygen --sign`,
//! `PGBAK_SIGNING_KEY_FILE`), and verify and restore accept only backups
//! whose meta.json carries a valid signature by one of the public keys
//! configured as trusted (`PGBAK_TRUSTED_KEYS`).
//!
//! What is signed: meta.json's *canonical form*, which covers the dump
//! (its SHA-256 and size, of the stored bytes), its file name (so a signed
//! backup cannot be renamed into a newer one), its run, its database and
//! every recorded property. The canonical form is the document without the
//! fields written after the backup was committed ([`UNSIGNED_FIELDS`]), as
//! compact JSON with object keys sorted (by code point) at every level; the
//! same bytes `jq -cjS 'del(.signature, .verification, .pinned, .s3)'` prints.
//!
//! The format is OpenSSH's (`sshsig`, namespace [`NAMESPACE`]): the key is a
//! plain OpenSSH ed25519 key, the signature (meta.json's `signature` field) an
//! armored `SSH SIGNATURE`, so an operator can audit a backup with
//! `ssh-keygen -Y verify` alone (docs/encryption.md, "Signed backups").

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::error::usage;
use crate::meta::Meta;

/// The sshsig namespace of pgbak's signatures: a signature made for another
/// purpose (a git commit, a file) with the same key is not one of these.
pub const NAMESPACE: &str = "pgbak-backup@v1";

/// The top-level meta.json fields the signature does not cover, because they
/// are written after the backup was committed and signed: the signature
/// itself, verify's verdict, a retention pin, and the S3 location (known
/// once the upload is checked). Nothing in them decides what a restore runs.
pub const UNSIGNED_FIELDS: [&str; 4] = ["signature", "verification", "pinned", "s3"];

/// meta.json's canonical form: without [`UNSIGNED_FIELDS`], compact, keys sorted.
pub fn signed_message(document: &Value) -> Result<Vec<u8>> {
    let Value::Object(fields) = document else {
        anyhow::bail!("meta.json is not a JSON object");
    };
    let mut signed = fields.clone();
    for field in UNSIGNED_FIELDS {
        signed.remove(field);
    }
    let mut out = Vec::new();
    canonical(&Value::Object(signed), &mut out)?;
    Ok(out)
}

fn canonical(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).context("encoding meta.json")?;
                out.push(b':');
                canonical(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).context("encoding meta.json")?,
    }
    Ok(())
}

/// `SHA256:...` of a public key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &ssh_key::public::KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The backup host's signing key, loaded once at dispatch.
pub struct SigningKey {
    key: PrivateKey,
    /// Where it was read from, for messages.
    pub path: PathBuf,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        write!(f, "SigningKey({})", self.path.display())
    }
}

impl SigningKey {
    /// Reads an unencrypted OpenSSH ed25519 private key (`pgbak keygen
    /// --sign`, or `ssh-keygen -t ed25519 -N ''`); anything else is a usage
    /// error (exit 2) saying what to do.
    pub fn load(path: &Path) -> Result<SigningKey> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "cannot read the signing key {}: {e}",
                path.display()
            ))
        })?;
        if !crate::storage::fsio::is_private(path) {
            crate::ui::warn(&format!(
                "the signing key {} is readable by other users: chmod 600 it",
                path.display()
            ));
        }
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| {
            usage(format!(
                "{} is not an OpenSSH private key ({e}); make one with `pgbak keygen --sign -o FILE`",
                path.display()
            ))
        })?;
        if key.is_encrypted() {
            return Err(usage(format!(
                "the signing key {} is protected by a passphrase, which an unattended backup \
                 cannot type; use a key without one, kept readable by the backup user only",
                path.display()
            )));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(usage(format!(
                "the signing key {} is {}; pgbak signs with ed25519 keys only \
                 (`pgbak keygen --sign -o FILE`)",
                path.display(),
                key.algorithm()
            )));
        }
        Ok(SigningKey {
            key,
            path: path.to_path_buf(),
        })
    }

    /// A new ed25519 key with `comment`.
    pub fn generate(comment: &str) -> Result<PrivateKey> {
        let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
            .context("generating an ed25519 key")?;
        key.set_comment(comment);
        Ok(key)
    }

    /// The public key, in OpenSSH's one-line form (`ssh-ed25519 AAAA... comment`).
    pub fn public(&self) -> Result<String> {
        self.key
            .public_key()
            .to_openssh()
            .context("encoding the public key")
    }

    /// The armored signature of `meta`'s canonical form.
    pub fn sign(&self, meta: &Meta) -> Result<String> {
        let document = serde_json::to_value(meta).context("encoding meta.json")?;
        let message = signed_message(&document)?;
        let signature = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, &message)
            .with_context(|| format!("signing with {}", self.path.display()))?;
        signature
            .to_pem(LineEnding::LF)
            .context("encoding the signature")
    }
}

/// The public keys whose signatures verify and restore accept.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
    /// Where they were read from, for messages.
    pub source: PathBuf,
}

/// What a backup's signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by this trusted key (fingerprint and comment).
    Trusted(String),
    /// Refused, and why, in words.
    Refused(String),
}

impl TrustedKeys {
    /// Reads a file of OpenSSH public keys, one a line: `.pub` lines
    /// (`ssh-ed25519 AAAA... comment`) or `allowed_signers` lines (principals
    /// and options first, as `ssh-keygen -Y verify` reads them); `#` comments
    /// and blank lines are skipped. No key, or a line that is not a key, is a
    /// usage error (exit 2).
    pub fn load(path: &Path) -> Result<TrustedKeys> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "cannot read the trusted keys {}: {e}",
                path.display()
            ))
        })?;
        let keys = parse_keys(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        Ok(TrustedKeys {
            keys,
            source: path.to_path_buf(),
        })
    }

    /// Checks the `signature` field of meta.json `text` against its canonical form.
    pub fn check(&self, text: &str) -> Verdict {
        let refused = |why: String| Verdict::Refused(why);
        let document: Value = match serde_json::from_str(text) {
            Ok(doc) => doc,
            Err(e) => return refused(format!("meta.json is not JSON ({e})")),
        };
        let Some(armored) = document.get("signature").and_then(Value::as_str) else {
            return refused(format!(
                "meta.json is not signed, and signatures are required (trusted keys: {})",
                self.source.display()
            ));
        };
        let signature = match SshSig::from_pem(armored) {
            Ok(sig) => sig,
            Err(e) => return refused(format!("meta.json's signature is malformed ({e})")),
        };
        let signer = signature.public_key();
        let Some(key) = self.keys.iter().find(|k| k.key_data() == signer) else {
            return refused(format!(
                "meta.json is signed by {}, which is not a trusted key (not in {})",
                fingerprint(signer),
                self.source.display()
            ));
        };
        let message = match signed_message(&document) {
            Ok(m) => m,
            Err(e) => return refused(format!("{e:#}")),
        };
        match key.verify(NAMESPACE, &message, &signature) {
            Ok(()) => {
                let comment = key.comment();
                Verdict::Trusted(if comment.is_empty() {
                    fingerprint(signer)
                } else {
                    format!("{} ({comment})", fingerprint(signer))
                })
            }
            Err(_) => refused(format!(
                "meta.json's signature by {} does not match its contents: it was changed \
                 after it was signed",
                fingerprint(signer)
            )),
        }
    }
}

/// The keys of a trusted-keys file (pure).
fn parse_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // allowed_signers: "principals [options] keytype base64 [comment]".
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| w.starts_with("ssh-")) else {
            return Err(format!("line {} holds no OpenSSH public key", n + 1));
        };
        let key = PublicKey::from_openssh(&words[at..].join(" "))
            .map_err(|e| format!("line {} is not an OpenSSH public key ({e})", n + 1))?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(format!(
                "line {}: a {} key; pgbak signs with ed25519 keys only",
                n + 1,
                key.algorithm()
            ));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("holds no public key".to_owned());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::tests::sample;

    fn key() -> SigningKey {
        SigningKey {
            key: SigningKey::generate("backup@db-host-01").unwrap(),
            path: PathBuf::from("/k"),
        }
    }

    fn trusting(keys: &[&SigningKey]) -> TrustedKeys {
        let text: Vec<String> = keys.iter().map(|k| k.public().unwrap()).collect();
        TrustedKeys {
            keys: parse_keys(&text.join("\n")).unwrap(),
            source: PathBuf::from("/trusted"),
        }
    }

    fn signed(key: &SigningKey, meta: &Meta) -> String {
        let mut meta = meta.clone();
        meta.signature = Some(key.sign(&meta).unwrap());
        String::from_utf8(meta.to_json().unwrap()).unwrap()
    }

    #[test]
    fn canonical_form_sorts_keys_drops_unsigned_fields_and_is_compact() {
        let doc = serde_json::json!({
            "b": [1, {"z": "é\n", "a": null}], "a": 4.8, "signature": "x",
            "verification": {"passed": true}, "pinned": null, "s3": {"bucket": "b"}
        });
        assert_eq!(
            String::from_utf8(signed_message(&doc).unwrap()).unwrap(),
            r#"{"a":4.8,"b":[1,{"a":null,"z":"é\n"}]}"#
        );
        assert!(signed_message(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn a_signed_meta_is_trusted_and_survives_what_is_written_later() {
        let k = key();
        let text = signed(&k, &sample());
        let trusted = trusting(&[&k]);
        assert!(
            matches!(trusted.check(&text), Verdict::Trusted(s) if s.contains("backup@db-host-01"))
        );
        // verify's verdict, a pin and the S3 location are written after signing.
        let mut meta = Meta::parse(&text).unwrap();
        meta.verification = Some(crate::meta::Verification {
            verified_at: "now".into(),
            passed: true,
            pgbak_version: "0".into(),
            failed_checks: vec![],
            timing: None,
        });
        meta.pinned = Some(crate::meta::Pin {
            pinned_at: "now".into(),
            reason: "r".into(),
        });
        meta.s3 = Some(crate::meta::S3Location {
            bucket: "b".into(),
            key: "k".into(),
            storage_class: "STANDARD".into(),
        });
        let later = String::from_utf8(meta.to_json().unwrap()).unwrap();
        assert!(matches!(trusted.check(&later), Verdict::Trusted(_)));
    }

    #[test]
    fn unsigned_edited_and_foreign_signatures_are_refused_with_the_reason() {
        let ours = key();
        let theirs = key();
        let trusted = trusting(&[&ours]);
        let refused = |text: &str, why: &str| match trusted.check(text) {
            Verdict::Refused(reason) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{other:?}"),
        };
        let plain = String::from_utf8(sample().to_json().unwrap()).unwrap();
        refused(&plain, "not signed");
        let text = signed(&ours, &sample());
        let mut edited: Value = serde_json::from_str(&text).unwrap();
        edited["tables"][0]["rows"] = Value::from(199);
        refused(&edited.to_string(), "changed after it was signed");
        let mut renamed: Value = serde_json::from_str(&text).unwrap();
        renamed["file"] = Value::from("enterprise_agents_full_20271125T020000.dump");
        refused(&renamed.to_string(), "changed after it was signed");
        refused(&signed(&theirs, &sample()), "not a trusted key");
        let mut garbled: Value = serde_json::from_str(&text).unwrap();
        garbled["signature"] = Value::from("-----BEGIN SSH SIGNATURE-----\nxx\n");
        refused(&garbled.to_string(), "malformed");
        // Trusting both keys accepts both.
        assert!(matches!(
            trusting(&[&ours, &theirs]).check(&signed(&theirs, &sample())),
            Verdict::Trusted(_)
        ));
    }

    #[test]
    fn trusted_keys_files_take_pub_and_allowed_signers_lines() {
        let k = key();
        let public = k.public().unwrap();
        let text =
            format!("# ours\n\n{public}\nbackup@example namespaces=\"pgbak-backup@v1\" {public}\n");
        assert_eq!(parse_keys(&text).unwrap().len(), 2);
        for bad in [
            "",
            "# only a comment\n",
            "not a key\n",
            "ssh-ed25519 AAAAnotbase64\n",
        ] {
            assert!(parse_keys(bad).is_err(), "{bad:?}");
        }
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDDTdz0Xt8PpY7OV9N1ZkD8EdB9gBKPA2E3mL2lM4hBvGh7lHUd0GmnVKVXdL0ICbi3xjoXvNn3F1a5+FLjPzAmHqzE+f7Qe6N8ZyyYY3wOlv7dHwBnLrgnfI6Ia+uSpqyTiHvXYa2rLN7qh2ngFbNhiZUp3GWYYbA7AtQh2fvSBw==";
        assert!(parse_keys(rsa).is_err());
    }
}
