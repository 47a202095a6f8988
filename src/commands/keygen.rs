//! `pgbak keygen`: a new age identity for encrypted backups, so operators need
//! no second tool. The file is the same format `age-keygen` writes (the stock
//! `age -d -i FILE` reads it); the public key goes to stderr, and to stdout
//! too when the identity goes to a file, ready for `PGBAK_AGE_RECIPIENTS`.
//! With `--sign`, an ed25519 signing key in OpenSSH's format instead
//! ([`crate::signing`]), its public key printed the same way, ready for the
//! readers' `PGBAK_TRUSTED_KEYS` file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};

use crate::error::usage;
use crate::settings::commands::KeygenSettings;
use crate::storage::fsio;
use crate::ui;

pub fn run(settings: KeygenSettings) -> Result<ExitCode> {
    if settings.sign {
        return signing_key(&settings);
    }
    let (secret, public) = crate::encryption::generate();
    let text = format!(
        "# created: {}\n# public key: {public}\n{secret}\n",
        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let advice = "wrote the identity (private key) to {}: keep it off the database host, \
                  with a copy somewhere safe; without it the backups cannot be restored";
    write_key(&settings, &text, &public, advice)
}

/// `--sign`: an ed25519 key in OpenSSH's format (`ssh-keygen -Y sign` takes
/// it too); its public key is what readers put in PGBAK_TRUSTED_KEYS.
fn signing_key(settings: &KeygenSettings) -> Result<ExitCode> {
    let comment = format!("pgbak-signing@{}", crate::settings::host_name());
    let key = crate::signing::SigningKey::generate(&comment)?;
    let text = key
        .to_openssh(ssh_key::LineEnding::LF)
        .context("encoding the signing key")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the public key")?;
    let advice = "wrote the signing key (private) to {}: only the backup host needs it, \
                  readable by the backup user alone; verify and restore trust its public key \
                  (PGBAK_TRUSTED_KEYS)";
    write_key(settings, &text, &public, advice)
}

/// The private `text` to `--output` (created 0600, never overwritten) and
/// the public key to stdout, or both to stdout.
fn write_key(
    settings: &KeygenSettings,
    text: &str,
    public: &str,
    advice: &str,
) -> Result<ExitCode> {
    match &settings.output {
        Some(path) => {
            let mut file = fsio::create_new(path).map_err(|e| {
                usage(format!(
                    "cannot create {} (it is never overwritten): {e}",
                    path.display()
                ))
            })?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            ui::info(&advice.replace("{}", &path.display().to_string()));
            eprintln!("Public key: {public}");
            ui::stdout_line(public);
        }
        None => {
            eprintln!("Public key: {public}");
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
