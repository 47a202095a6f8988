//! `pgbak keygen`: a new age identity for encrypted backups, so operators need
//! no second tool. The file is the same format `age-keygen` writes (the stock
//! `age -d -i FILE` reads it); the public key goes to stderr, and to stdout
//! too when the identity goes to a file, ready for `PGBAK_AGE_RECIPIENTS`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};

use crate::error::usage;
use crate::settings::commands::KeygenSettings;
use crate::storage::fsio;
use crate::ui;

pub fn run(settings: KeygenSettings) -> Result<ExitCode> {
    let (secret, public) = crate::encryption::generate();
    let text = format!(
        "# created: {}\n# public key: {public}\n{secret}\n",
        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
    );
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
            ui::info(&format!(
                "wrote the identity (private key) to {}: keep it off the database host, \
                 with a copy somewhere safe; without it the backups cannot be restored",
                path.display()
            ));
            eprintln!("Public key: {public}");
            ui::stdout_line(&public);
        }
        None => {
            eprintln!("Public key: {public}");
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
