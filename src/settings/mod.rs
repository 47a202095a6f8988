//! Settings resolved once per run: the only module that reads the
//! environment. Precedence, highest first: command-line flag, environment
//! variable, environment file (`pgbak cron --env-file`), default.
//!
//! - [`vars`] names every environment variable pgbak reads, once;
//! - [`env`] is the environment itself: one read-only snapshot built at
//!   startup (the process environment, the environment file, the `*_FILE`
//!   secrets) in which empty means unset; the command line is parsed against
//!   it (flag > environment > environment file > default for every flag that
//!   names a variable), and children start from it. pgbak never writes its
//!   own process environment;
//! - [`aws`] reads what the AWS SDK would otherwise read from the process
//!   environment (keys, profile, checksum settings), so the SDK is told;
//! - this file adds what clap cannot: the connection (`DATABASE_URL`, else the
//!   libpq `PG*` variables), strict booleans and the host name;
//! - [`commands`] turns each command's parsed arguments into the typed
//!   settings the command runs with (`XxxSettings::resolve`), at dispatch;
//!   the larger ones have their own file ([`verify`], [`restore`], [`check`]).
//! - [`secrets`] gathers every secret of the run into the redactor the
//!   output and the alert and heartbeat bodies are scrubbed with, at dispatch.

pub mod aws;
pub mod backup;
pub mod check;
pub mod choices;
pub mod commands;
pub mod cron;
mod env;
mod env_file;
pub mod expect;
pub mod groups;
pub mod restore;
pub mod s3;
pub mod secrets;
pub mod transport;
pub mod vars;
pub mod verify;

pub use env::{
    argv, env, env_file_error, find_on_path, home_dir, parse, path_dirs, startup, temp_dir, var,
    Env,
};
pub use env_file::parse_env_file;

use anyhow::Result;

use crate::error::usage;
use crate::pg::url::ConnSettings;

/// The connection every command uses: `DATABASE_URL`, else `PG*`.
pub fn connection() -> Result<ConnSettings> {
    ConnSettings::resolve(&env().lookup())
}

/// A connection given as a URL (`--target-url`); the environment fills what
/// it leaves out, as libpq does.
pub fn connection_from_url(url: &str) -> Result<ConnSettings> {
    ConnSettings::from_url(url, &env().lookup())
}

/// The connection for an unattended run: like [`connection`], but refusing
/// libpq's defaults (the local socket, the OS user's database) when nothing
/// names a database: an environment file that failed to load must not turn
/// into a backup of the wrong database, or none.
pub fn explicit_connection() -> Result<ConnSettings> {
    explicit_connection_in(env())
}

/// [`explicit_connection`] in the environment `env`.
pub fn explicit_connection_in(env: &Env) -> Result<ConnSettings> {
    let set = |name: &str| env.get(name).is_some();
    if !set(vars::DATABASE_URL) && !set(vars::PGHOST) && !set(vars::PGDATABASE) {
        return Err(usage(
            "no database configured: set DATABASE_URL (or PGHOST and PGDATABASE) in the \
             environment or the --env-file; pgbak cron does not fall back to libpq's defaults",
        ));
    }
    ConnSettings::resolve(&env.lookup())
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

/// A boolean environment variable: None when unset or empty; an error naming
/// the variable for anything but true/false, 1/0, yes/no, on/off (any case):
/// `VERIFY_ON_BACKUP=yes-please` must not silently mean "off".
pub fn env_bool(name: &str) -> Result<Option<bool>> {
    env_bool_in(env(), name)
}

/// [`env_bool`] in the environment `env`.
pub fn env_bool_in(env: &Env, name: &str) -> Result<Option<bool>> {
    match env.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(value) => parse_bool(&value).map(Some).ok_or_else(|| {
            usage(format!(
                "{name}={value:?} is not a boolean: use true or false (also 1/0, yes/no, on/off)"
            ))
        }),
    }
}

/// A boolean environment variable read leniently, as the scripts did
/// ("true", "1", "yes", "on" enable; anything else is off). `pgbak cron`
/// uses the strict [`env_bool`] instead.
pub fn env_flag(name: &str) -> bool {
    env_flag_in(env(), name)
}

/// [`env_flag`] in the environment `env`.
pub fn env_flag_in(env: &Env, name: &str) -> bool {
    env.get(name).is_some_and(|v| parse_bool(&v) == Some(true))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_strict() {
        let cases = [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("1", Some(true)),
            ("yes", Some(true)),
            ("on", Some(true)),
            ("false", Some(false)),
            ("0", Some(false)),
            ("No", Some(false)),
            ("off", Some(false)),
            ("yes-please", None),
            ("2", None),
            ("enabled", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bool(text), want, "{text}");
        }
    }
}
