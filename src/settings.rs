//! Settings resolved once per run. Precedence, highest first: command-line
//! flag, environment variable, environment file (`pgbak cron --env-file`),
//! default. clap applies flag > environment > default for every flag that
//! names an `env`; this module adds what clap cannot: the environment file,
//! the connection (`DATABASE_URL`, else the libpq `PG*` variables), strict
//! booleans and the host name.

pub mod s3;

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::error::usage;
use crate::pg::url::{process_env, ConnSettings};

/// The connection every command uses: `DATABASE_URL`, else `PG*`.
pub fn connection() -> Result<ConnSettings> {
    ConnSettings::resolve(&process_env)
}

/// The connection for an unattended run: like [`connection`], but refusing
/// libpq's defaults (the local socket, the OS user's database) when nothing
/// names a database: an environment file that failed to load must not turn
/// into a backup of the wrong database, or none.
pub fn explicit_connection() -> Result<ConnSettings> {
    let set = |name: &str| process_env(name).is_some_and(|v| !v.is_empty());
    if !set("DATABASE_URL") && !set("PGHOST") && !set("PGDATABASE") {
        return Err(usage(
            "no database configured: set DATABASE_URL (or PGHOST and PGDATABASE) in the \
             environment or the --env-file; pgbak cron does not fall back to libpq's defaults",
        ));
    }
    connection()
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
    match process_env(name).filter(|v| !v.trim().is_empty()) {
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
    process_env(name).is_some_and(|v| parse_bool(&v) == Some(true))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a systemd `EnvironmentFile=`: `KEY=value` lines; `#` and `;`
/// comments; values taken literally (`&`, `$`, `;` are not special) unless
/// wholly quoted in '...' or "..." (where `\"`, `\\` are escapes); a trailing
/// backslash continues the line. Returns the pairs, and the line numbers
/// that are not assignments (never their text: it may hold a password).
pub fn parse_env_file(text: &str) -> (Vec<(String, String)>, Vec<usize>) {
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let mut line = line.to_owned();
        while line.ends_with('\\') && !line.ends_with("\\\\") {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next),
                None => break,
            }
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            bad.push(index + 1);
            continue;
        };
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            bad.push(index + 1);
            continue;
        }
        pairs.push((key.to_owned(), unquote(value.trim())));
    }
    (pairs, bad)
}

fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') {
        return value[1..value.len() - 1].to_owned();
    }
    if quoted('"') {
        let mut out = String::new();
        let mut chars = value[1..value.len() - 1].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                other => out.push(other),
            }
        }
        return out;
    }
    value.to_owned()
}

/// What went wrong loading the environment file; reported by `pgbak cron`
/// as a configuration error once it can log and alert.
static ENV_FILE_ERROR: OnceLock<String> = OnceLock::new();

/// Loads `path` into the process environment, leaving variables that are
/// already set alone (the environment wins over the file). Call before
/// parsing the command line, while the process is still single-threaded.
/// Lines that do not parse are skipped and reported (by number).
pub fn load_env_file(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the environment file {}", path.display()))?;
    let (pairs, bad) = parse_env_file(&text);
    for (key, value) in pairs {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(&key, value);
        }
    }
    if !bad.is_empty() {
        let lines: Vec<String> = bad.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "the environment file {} has lines that are not KEY=value: line {} \
             (systemd EnvironmentFile= syntax; no `export`)",
            path.display(),
            lines.join(", ")
        );
    }
    Ok(())
}

/// Remembers a failure of [`load_env_file`] for [`env_file_error`].
pub fn set_env_file_error(err: &anyhow::Error) {
    let _ = ENV_FILE_ERROR.set(crate::error::one_line(err));
}

/// The environment file's load failure, if any.
pub fn env_file_error() -> Option<&'static str> {
    ENV_FILE_ERROR.get().map(String::as_str)
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

    #[test]
    fn env_file_is_systemd_syntax_not_shell() {
        let text = "# comment\n; also a comment\n\nDATABASE_URL=postgresql://app:p&ss$word@db:5432/app?sslmode=require&application_name=x\n\
                    BACKUP_KEEP = 14\nQUOTED=\"a \\\"b\\\" c\"\nSINGLE='x y $z'\nEMPTY=\n\
                    LONG=one \\\ntwo\nexport BAD=1\nnot an assignment\n";
        let (pairs, bad) = parse_env_file(text);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("DATABASE_URL"),
            Some("postgresql://app:p&ss$word@db:5432/app?sslmode=require&application_name=x")
        );
        assert_eq!(get("BACKUP_KEEP"), Some("14"));
        assert_eq!(get("QUOTED"), Some("a \"b\" c"));
        assert_eq!(get("SINGLE"), Some("x y $z"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("LONG"), Some("one two"));
        assert_eq!(bad, vec![11, 12]);
    }
}
