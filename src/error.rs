//! Exit codes and the few typed errors that choose them.
//!
//! Everything else is an `anyhow::Error` with context and exits 1. Code that
//! needs a different exit code wraps its error in [`Exit`].

use std::fmt;

/// The job failed: a dump, a check, an upload.
pub const FAILED: u8 = 1;
/// Bad usage or configuration: nothing was attempted.
pub const USAGE: u8 = 2;
/// Another run holds the lock.
pub const LOCKED: u8 = 75;
/// Interrupted by SIGINT (128 + 2).
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM (128 + 15).
pub const SIGTERM: u8 = 143;

/// Every exit code pgbak uses and what it tells the caller; the reference
/// page docs/reference/exit-codes.md is generated from this list.
pub const CODES: &[(u8, &str)] = &[
    (0, "Success: every step done, every check passed."),
    (
        FAILED,
        "The job failed: a dump, an upload, a verify check, a restore, retention; or the run \
         exceeded `--timeout`.",
    ),
    (
        USAGE,
        "Bad usage or configuration (a bad URL or flag, no new-enough pg_dump, no terminal for a \
         restore's confirmation, a meta.json written by a newer pgbak): nothing was attempted.",
    ),
    (
        LOCKED,
        "Another pgbak run holds the lock (`EX_TEMPFAIL`): cron may simply try again.",
    ),
    (
        SIGINT,
        "Interrupted by SIGINT (Ctrl-C); whatever the step had started was removed.",
    ),
    (
        SIGTERM,
        "Interrupted by SIGTERM (`systemctl stop`, a pod's end); whatever the step had started \
         was removed.",
    ),
];

/// An error that carries its own exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// A usage or configuration error (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

/// An interruption by a signal (exit 130 or 143).
pub fn interrupted(signal: crate::signals::Signal) -> anyhow::Error {
    Exit {
        code: signal.exit_code(),
        message: signal.describe(),
    }
    .into()
}

/// A verdict reached while looking, not a fault of pgbak's: the backup's
/// checksum differs, its archive cannot be read, no pg_restore can read it,
/// the server refuses a temporary database. Verify reports it as a failed
/// check (and goes on to its report); restore refuses with it. Any other
/// error means pgbak could not look at all.
#[derive(Debug)]
pub struct Finding(pub String);

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Finding {}

/// A [`Finding`] as an error.
pub fn finding(detail: impl Into<String>) -> anyhow::Error {
    Finding(detail.into()).into()
}

/// The finding an error carries (under any context), if it is one.
pub fn as_finding(err: &anyhow::Error) -> Option<&str> {
    err.downcast_ref::<Finding>().map(|f| f.0.as_str())
}

/// The exit code an error maps to: the first [`Exit`] in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Exit>())
        .map_or(FAILED, |exit| exit.code)
}

/// A stop by SIGINT or SIGTERM (or `--timeout`), which ends a run that
/// otherwise goes on past one failed item.
pub fn is_interruption(err: &anyhow::Error) -> bool {
    matches!(exit_code(err), SIGINT | SIGTERM)
}

/// The whole error chain on one line, as cron logs and alerts want it.
pub fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_is_found_under_context() {
        let err = Err::<(), _>(usage("bad flag"))
            .context("parsing settings")
            .unwrap_err();
        assert_eq!(exit_code(&err), USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), FAILED);
    }

    #[test]
    fn findings_are_told_from_faults_under_context() {
        let err = Err::<(), _>(finding("sha256 differs"))
            .context("verifying x.dump")
            .unwrap_err();
        assert_eq!(as_finding(&err), Some("sha256 differs"));
        assert_eq!(exit_code(&err), FAILED);
        assert_eq!(as_finding(&anyhow::anyhow!("disk full")), None);
    }

    #[test]
    fn one_line_joins_multiline_child_stderr() {
        let err = anyhow::anyhow!("pg_dump: error: a\n\tHint: b\n").context("dumping");
        assert_eq!(one_line(&err), "dumping: pg_dump: error: a | Hint: b");
    }
}
