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
//!   libpq `PG*` variables), the one boolean parser ([`parse_bool`], which
//!   clap uses for every boolean flag's variable) and the host name;
//! - [`defaults`] holds the defaults clap and the code without a command
//!   line share;
//! - [`commands`] turns each command's parsed arguments into the typed
//!   settings the command runs with (`XxxSettings::resolve`), at dispatch;
//!   the larger ones have their own file ([`verify`], [`restore`], [`check`]).
//! - [`secrets`] gathers every secret of the run into the redactor the
//!   output and the alert and heartbeat bodies are scrubbed with, at dispatch.

pub mod aws;
pub mod backup;
pub mod check;
pub mod choices;
pub mod command_line;
pub mod commands;
pub mod cron;
pub mod defaults;
pub mod destinations;
mod env;
mod env_file;
pub mod expect;
pub mod groups;
pub mod refusal;
pub mod reprove;
pub mod restore;
pub mod s3;
pub mod secrets;
pub mod sync;
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
    // What gethostname(2) returns: the kernel's node name (uname(2) cannot fail).
    let uname = rustix::system::uname();
    let name = String::from_utf8_lossy(uname.nodename().to_bytes()).into_owned();
    if name.is_empty() {
        return "unknown-host".to_owned();
    }
    name
}

/// The one reading of a boolean setting, whether clap reads it (a flag's
/// environment variable, `value_parser = parse_bool`) or [`Env::bool`] does:
/// true/false, 1/0, yes/no, on/off, in any case. Anything else is refused
/// (exit 2), never read as "off": `VERIFY_ON_BACKUP=yes-please` or
/// `PGBAK_ALL_DATABASES=ture` must not quietly do less than was asked.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean: use true or false (also 1/0, yes/no, on/off)".to_owned()),
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
            (" On ", Some(true)),
            ("yes-please", None),
            ("2", None),
            ("enabled", None),
            // clap's BoolishValueParser took these; the one parser does not.
            ("y", None),
            ("t", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bool(text).ok(), want, "{text}");
        }
    }
}
