//! Settings resolved once per run. Precedence, highest first: command-line
//! flag, environment variable, default. clap applies it for every flag that
//! names an `env`; this module adds what clap cannot: the connection
//! (`DATABASE_URL`, else the libpq `PG*` variables) and the host name.

use anyhow::Result;

use crate::pg::url::{process_env, ConnSettings};

/// The connection every command uses: `DATABASE_URL`, else `PG*`.
pub fn connection() -> Result<ConnSettings> {
    ConnSettings::resolve(&process_env)
}

/// This machine's host name, for meta.json and alerts.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".to_owned();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Reads a boolean environment variable the way the scripts did ("true" enables).
pub fn env_flag(name: &str) -> bool {
    process_env(name)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
}
