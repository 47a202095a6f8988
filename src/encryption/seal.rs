//! Small texts encrypted to a backup's recipients, ASCII-armored so they fit
//! in a JSON string: meta.json's `sealed` section (see [`crate::meta`]).
//! The stock CLI reads it: `jq -r .sealed x.meta.json | age -d -i key.txt`.

use std::io::{Read, Write};

use anyhow::{anyhow, Context, Result};

use super::{parse_recipient, Identities, Recipient};

/// `plaintext` encrypted to `recipients` (their texts, as meta.json records
/// them), as an armored age file (`-----BEGIN AGE ENCRYPTED FILE-----`).
pub fn seal(plaintext: &[u8], recipients: &[String]) -> Result<String> {
    let keys: Vec<Recipient> = recipients
        .iter()
        .map(|r| parse_recipient(r).map_err(|e| anyhow!(e)))
        .collect::<Result<_>>()
        .context("sealing meta.json to the backup's recipients")?;
    let encryptor = age::Encryptor::with_recipients(keys.iter().map(Recipient::as_dyn))
        .map_err(|e| anyhow!("setting up age encryption: {e}"))?;
    let mut armored = Vec::new();
    let output =
        age::armor::ArmoredWriter::wrap_output(&mut armored, age::armor::Format::AsciiArmor)
            .context("sealing meta.json")?;
    let mut writer = encryptor.wrap_output(output).context("sealing meta.json")?;
    writer.write_all(plaintext).context("sealing meta.json")?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .context("sealing meta.json")?;
    String::from_utf8(armored).context("sealing meta.json: the armor is not text")
}

/// The plaintext of an armored age text [`seal`] wrote, with `identities`.
pub fn open(armored: &str, identities: &Identities) -> Result<Vec<u8>> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader).context("not an age file")?;
    let mut plain = decryptor
        .decrypt(identities.iter())
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::new();
    plain
        .read_to_end(&mut out)
        .context("decrypting: the text is damaged")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_text_opens_with_one_of_its_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = super::super::generate();
        let (_, other) = super::super::generate();
        let key = dir.path().join("key.txt");
        std::fs::write(&key, format!("{secret}\n")).unwrap();
        let ids = Identities::load(&key).unwrap();
        let sealed = seal(b"app.jwt_secret = S3cr3t", &[other.clone(), public]).unwrap();
        assert!(
            sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{sealed}"
        );
        assert!(!sealed.contains("S3cr3t"));
        assert_eq!(open(&sealed, &ids).unwrap(), b"app.jwt_secret = S3cr3t");
        let not_ours = seal(b"x", &[other]).unwrap();
        assert!(open(&not_ours, &ids).is_err());
        assert!(open("not age", &ids).is_err());
    }
}
