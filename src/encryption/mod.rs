//! Client-side encryption at rest with age (<https://age-encryption.org/v1>),
//! through the `age` crate: no cryptography is written here.
//!
//! Backups are encrypted to *recipients* (public keys: `age1...` from
//! `age-keygen` or `pgbak keygen`, `ssh-ed25519`/`ssh-rsa` public keys) while
//! they stream (see [`crate::pipeline::Encrypt`]); verify and restore decrypt
//! with an *identity file* (the private keys), see [`decrypt`]. This module
//! parses both, and says which keys a file was made for when an identity does
//! not fit.

pub mod decrypt;
pub mod seal;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::usage;

/// The first bytes of every age file.
pub const MAGIC: &[u8] = b"age-encryption.org/v1";

/// One public key a backup is encrypted to.
#[derive(Clone)]
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    /// The canonical text (`age1...`, or `ssh-ed25519 AAAA...` without the comment):
    /// what meta.json records and error messages name.
    pub fn text(&self) -> String {
        match self {
            Recipient::X25519(r) => r.to_string(),
            Recipient::Ssh(r) => r.to_string(),
        }
    }

    fn as_dyn(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }
}

/// Parses one recipient. The error never repeats a secret key given by mistake.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    let text = text.trim();
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err(
            "a secret key (identity) was given where a recipient (public key) belongs; \
             give its public key instead (`age-keygen -y KEYFILE`), and keep the secret key off this host"
                .to_owned(),
        );
    }
    if text.starts_with("age1") {
        return text
            .parse::<age::x25519::Recipient>()
            .map(Recipient::X25519)
            .map_err(|e| format!("invalid age recipient {}: {e}", shorten(text)));
    }
    if text.starts_with("ssh-") {
        return text
            .parse::<age::ssh::Recipient>()
            .map(Recipient::Ssh)
            .map_err(|e| {
                let why = match e {
                    age::ssh::ParseRecipientKeyError::Unsupported(kind) => {
                        format!("the key type {kind} is not supported (use ssh-ed25519 or ssh-rsa)")
                    }
                    age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                        "the RSA key is shorter than 2048 bits".to_owned()
                    }
                    _ => "not a valid SSH public key".to_owned(),
                };
                format!("invalid SSH recipient {}: {why}", shorten(text))
            });
    }
    Err(format!(
        "invalid recipient {}: expected an age public key (age1...) or an SSH public key \
         (ssh-ed25519 ... / ssh-rsa ...)",
        shorten(text)
    ))
}

/// The first characters of a key, enough to recognise it.
fn shorten(text: &str) -> String {
    let short: String = text.chars().take(24).collect();
    if short.len() < text.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

/// The recipients of one backup run: from `--encrypt-to` / `PGBAK_AGE_RECIPIENTS`
/// and `--encrypt-to-file` / `PGBAK_AGE_RECIPIENTS_FILE`, duplicates removed.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<Recipient>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.texts()).finish()
    }
}

impl Recipients {
    /// None when no recipient is configured (encryption off). Any bad entry is a
    /// usage error naming it.
    pub fn resolve(given: &[String], file: Option<&Path>) -> Result<Option<Recipients>> {
        let mut lines: Vec<(String, String)> = given
            .iter()
            .flat_map(|g| split_recipients(g))
            .map(|g| {
                (
                    "--encrypt-to / PGBAK_AGE_RECIPIENTS".to_owned(),
                    g.to_owned(),
                )
            })
            .collect();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                usage(format!(
                    "cannot read the recipients file {}: {e}",
                    file.display()
                ))
            })?;
            let from = file.display().to_string();
            lines.extend(recipient_lines(&text).map(|l| (from.clone(), l.to_owned())));
            if recipient_lines(&text).next().is_none() {
                return Err(usage(format!(
                    "the recipients file {} names no recipient",
                    file.display()
                )));
            }
        }
        let mut keys: Vec<Recipient> = Vec::new();
        for (from, line) in lines {
            let key = parse_recipient(&line).map_err(|e| usage(format!("{e} (from {from})")))?;
            if !keys.iter().any(|k| k.text() == key.text()) {
                keys.push(key);
            }
        }
        Ok((!keys.is_empty()).then_some(Recipients { keys }))
    }

    pub fn texts(&self) -> Vec<String> {
        self.keys.iter().map(Recipient::text).collect()
    }

    /// A fresh encryptor (a new file key) for one stream.
    pub fn encryptor(&self) -> Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.keys.iter().map(Recipient::as_dyn))
            .map_err(|e| anyhow::anyhow!("setting up age encryption: {e}"))
    }
}

/// The recipients of one value: a key as it is, or several separated by
/// commas or newlines (`PGBAK_AGE_RECIPIENTS=age1...,age1...`). A comma
/// splits only where a key starts after it, so an SSH key whose comment
/// holds a comma (`ssh-ed25519 AAAA... ops, backups`) stays one key.
pub fn split_recipients(value: &str) -> Vec<String> {
    const STARTS: &[&str] = &["age1", "ssh-", "sk-ssh-", "AGE-SECRET-KEY-"];
    let mut keys: Vec<String> = Vec::new();
    for piece in value.split([',', '\n']) {
        let trimmed = piece.trim();
        let starts_key = STARTS.iter().any(|s| {
            trimmed
                .to_ascii_uppercase()
                .starts_with(&s.to_ascii_uppercase())
        });
        match keys.last_mut() {
            Some(last) if !starts_key && !trimmed.is_empty() => {
                last.push(',');
                last.push_str(piece);
            }
            _ if trimmed.is_empty() => {}
            _ => keys.push(trimmed.to_owned()),
        }
    }
    keys.iter().map(|k| k.trim().to_owned()).collect()
}

/// The meaningful lines of a recipients file: trimmed, no blanks, no `#` comments.
pub fn recipient_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// The private keys of an identity file, loaded for verify and restore.
pub struct Identities {
    pub file: PathBuf,
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Their public keys, in the recipients' text form.
    pub publics: Vec<String>,
}

impl Identities {
    /// Loads an age identity file (`AGE-SECRET-KEY-1...` lines, as `age-keygen` and
    /// `pgbak keygen` write) or an unencrypted OpenSSH private key. Problems are usage
    /// errors (exit 2); the file's contents never appear in them.
    pub fn load(file: &Path) -> Result<Identities> {
        if file
            .to_string_lossy()
            .to_ascii_uppercase()
            .contains("AGE-SECRET-KEY-")
        {
            return Err(usage(
                "--identity-file / PGBAK_AGE_IDENTITY_FILE takes the path of a file holding the key, \
                 never the key itself (it would show in `ps` and shell history)",
            ));
        }
        let bytes = std::fs::read(file).map_err(|e| {
            usage(format!(
                "cannot read the identity file {}: {e}",
                file.display()
            ))
        })?;
        if !crate::storage::fsio::is_private(file) {
            crate::ui::warn(&format!(
                "the identity file {} is readable by other users: chmod 600 it",
                file.display()
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        let looks_ssh = text.contains("-----BEGIN");
        if !looks_ssh {
            let parsed = age::IdentityFile::from_buffer(bytes.as_slice()).map_err(|e| {
                usage(format!(
                    "{} is not an age identity file: {e}",
                    file.display()
                ))
            })?;
            let mut publics = Vec::new();
            for line in recipient_lines(&text) {
                if let Ok(id) = line.parse::<age::x25519::Identity>() {
                    publics.push(id.to_public().to_string());
                }
            }
            let keys = parsed
                .into_identities()
                .map_err(|e| usage(format!("reading the identity file {}: {e}", file.display())))?;
            if keys.is_empty() {
                return Err(usage(format!(
                    "the identity file {} holds no key",
                    file.display()
                )));
            }
            return Ok(Identities {
                file: file.to_path_buf(),
                keys,
                publics,
            });
        }
        let identity = age::ssh::Identity::from_buffer(
            std::io::BufReader::new(bytes.as_slice()),
            Some(file.display().to_string()),
        )
        .map_err(|e| {
            usage(format!(
                "{} is neither an age identity file nor an OpenSSH private key: {e}",
                file.display()
            ))
        })?;
        match &identity {
            age::ssh::Identity::Unencrypted(_) => {}
            age::ssh::Identity::Encrypted(_) => {
                return Err(usage(format!(
                    "the SSH key {} is passphrase-protected; pgbak runs unattended and cannot ask \
                     for it: use an age identity (pgbak keygen) or an unencrypted key kept 0600",
                    file.display()
                )))
            }
            age::ssh::Identity::Unsupported(_) => {
                return Err(usage(format!(
                    "the SSH key {} is of a kind age cannot use (use ssh-ed25519 or ssh-rsa)",
                    file.display()
                )))
            }
        }
        let publics = age::ssh::Recipient::try_from(identity.clone())
            .map(|r| vec![r.to_string()])
            .unwrap_or_default();
        Ok(Identities {
            file: file.to_path_buf(),
            keys: vec![Box::new(identity)],
            publics,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> + '_ {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }

    /// True when one of these keys is the private half of one of `recipients`.
    pub fn fits_any(&self, recipients: &[String]) -> bool {
        self.publics.iter().any(|p| recipients.contains(p))
    }
}

/// Names the file and the public keys, never the private ones.
impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("file", &self.file)
            .field("publics", &self.publics)
            .finish_non_exhaustive()
    }
}

/// The identity file setting, resolved: None when not configured.
pub fn identities_from(path: Option<&Path>) -> Result<Option<Identities>> {
    path.map(Identities::load).transpose()
}

/// True when the file starts with the age magic.
pub fn is_age_file(path: &Path) -> Result<bool> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(64, file);
    let head = reader
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(head.starts_with(MAGIC))
}

/// A new X25519 identity: (secret line, public key).
pub fn generate() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    (
        identity.to_string().expose_secret().to_owned(),
        identity.to_public().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";

    #[test]
    fn recipients_are_parsed_and_secrets_never_echoed() {
        let (secret, public) = generate();
        assert!(matches!(parse_recipient(&public), Ok(Recipient::X25519(_))));
        let ssh = parse_recipient(ED25519).unwrap();
        assert!(matches!(ssh, Recipient::Ssh(_)));
        assert!(!ssh.text().contains("alice"), "the comment is dropped");
        let err = parse_recipient(&secret).unwrap_err();
        assert!(!err.contains(&secret[20..]), "{err}");
        for bad in [
            "age1notakey",
            "ssh-dss AAAA",
            "hello",
            "",
            "ssh-ed25519 AAAA",
        ] {
            assert!(parse_recipient(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_value_splits_only_where_a_key_starts() {
        let cases: [(&str, &[&str]); 6] = [
            ("age1a", &["age1a"]),
            ("age1a,age1b", &["age1a", "age1b"]),
            (" age1a ,\n age1b\n", &["age1a", "age1b"]),
            (
                "ssh-ed25519 AAAA ops, backups@x",
                &["ssh-ed25519 AAAA ops, backups@x"],
            ),
            (
                "age1a,ssh-ed25519 AAAA a,b,age1c",
                &["age1a", "ssh-ed25519 AAAA a,b", "age1c"],
            ),
            ("hello, world", &["hello, world"]),
        ];
        for (value, want) in cases {
            assert_eq!(split_recipients(value), want, "{value:?}");
        }
        assert!(split_recipients(" , ").is_empty());
    }

    #[test]
    fn recipient_lists_merge_and_deduplicate() {
        let (_, a) = generate();
        let (_, b) = generate();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recipients.txt");
        std::fs::write(&file, format!("# ops team\n{b}\n\n  {a}  \n")).unwrap();
        let r = Recipients::resolve(&[a.clone(), " ".into()], Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!(r.texts(), vec![a.clone(), b]);
        assert!(Recipients::resolve(&[], None).unwrap().is_none());
        let err = Recipients::resolve(&["age1bad".into()], None).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::USAGE);
        std::fs::write(&file, "# nobody\n").unwrap();
        assert!(Recipients::resolve(&[], Some(&file)).is_err());
    }

    #[test]
    fn identity_files_load_and_know_their_public_keys() {
        let (secret, public) = generate();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.txt");
        std::fs::write(
            &file,
            format!("# created: now\n# public key: {public}\n{secret}\n"),
        )
        .unwrap();
        let ids = Identities::load(&file).unwrap();
        assert_eq!(ids.publics, vec![public.clone()]);
        assert!(ids.fits_any(&[public]));
        std::fs::write(&file, "not a key\n").unwrap();
        let err = Identities::load(&file).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::USAGE);
        let err = Identities::load(Path::new(&secret)).unwrap_err();
        assert!(!format!("{err:#}").contains(&secret), "{err:#}");
    }
}
