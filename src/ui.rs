//! What pgbak prints: timestamped lines on stderr (and into the cron log file),
//! scrubbed of every registered secret, and a progress bar only on a terminal.
//!
//! Results meant for scripts (`--json`) go to stdout through [`stdout_line`].

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How much pgbak prints on stderr: `--quiet`, the default, `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only warnings and errors.
    Quiet,
    Normal,
    /// Also debug lines (the child commands run).
    Verbose,
}

const QUIET: u8 = 0;
const NORMAL: u8 = 1;
const VERBOSE: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(NORMAL);
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_FILE: Mutex<Option<File>> = Mutex::new(None);
static TERMINAL: OnceLock<bool> = OnceLock::new();

pub fn init(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => QUIET,
        Verbosity::Normal => NORMAL,
        Verbosity::Verbose => VERBOSE,
    };
    LEVEL.store(level, Ordering::Relaxed);
}

/// True when stderr is a terminal (and so progress bars are shown).
pub fn is_terminal() -> bool {
    *TERMINAL.get_or_init(|| std::io::stderr().is_terminal())
}

/// Registers a value that must never be printed (passwords, keys, tokens),
/// whatever its length (see [`scrub`] for short ones).
pub fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Secrets shorter than this are replaced only where they stand as a whole
/// token: replacing every `ab` inside other words would mangle the text.
const SHORT_SECRET: usize = 4;

/// Replaces every registered secret in `text` with `***`.
pub fn scrub(text: &str) -> String {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if !out.contains(secret.as_str()) {
            continue;
        }
        out = if secret.chars().count() >= SHORT_SECRET {
            out.replace(secret.as_str(), "***")
        } else {
            replace_tokens(&out, secret)
        };
    }
    out
}

/// Replaces `secret` where neither neighbour is alphanumeric.
fn replace_tokens(text: &str, secret: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(secret) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let prev = head.chars().last().or(before);
        let after = tail[secret.len()..].chars().next();
        if is_word(prev) || is_word(after) {
            out.push_str(secret);
        } else {
            out.push_str("***");
        }
        before = secret.chars().last();
        rest = &tail[secret.len()..];
    }
    out.push_str(rest);
    out
}

/// Sends every line printed from now on into `file` as well (cron's per-run log).
pub fn tee_to(file: File) {
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
}

fn emit(tag: &str, message: &str) {
    let message = scrub(message);
    let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let line = format!("{stamp} {tag:<5} {message}");
    let mut file = LOG_FILE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = file.as_mut() {
        let _ = writeln!(file, "{line}");
    }
    if is_terminal() {
        // People at a terminal do not need the timestamp on every line.
        match tag {
            "INFO" => eprintln!("{message}"),
            _ => eprintln!("{}: {message}", tag.to_lowercase()),
        }
    } else {
        eprintln!("{line}");
    }
}

pub fn debug(message: &str) {
    if LEVEL.load(Ordering::Relaxed) >= VERBOSE {
        emit("DEBUG", message);
    }
}

pub fn info(message: &str) {
    if LEVEL.load(Ordering::Relaxed) >= NORMAL {
        emit("INFO", message);
    }
}

pub fn warn(message: &str) {
    emit("WARN", message);
}

pub fn error(message: &str) {
    emit("ERROR", message);
}

/// A result line for scripts, on stdout (also scrubbed, also logged).
pub fn stdout_line(text: &str) {
    let text = scrub(text);
    let mut file = LOG_FILE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = file.as_mut() {
        let _ = writeln!(file, "{text}");
    }
    println!("{text}");
}

/// A header and rows as lines of left-aligned columns two spaces apart, each
/// column as wide as its widest cell (`list` and `check` print tables so).
pub fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let format_row = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut lines = vec![format_row(&header.map(str::to_owned))];
    lines.extend(rows.iter().map(|r| format_row(r)));
    lines
}

/// Human-readable byte count (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress of a byte stream: a bar on a terminal, a line every 10 s otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: String,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(what: &str) -> Progress {
        let quiet = LEVEL.load(Ordering::Relaxed) == QUIET;
        let bar = (is_terminal() && !quiet).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            what: what.to_owned(),
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub fn update(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(total);
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            info(&format!(
                "{}: {} in {:.0}s ({}/s)",
                self.what,
                bytes(total),
                secs,
                bytes((total as f64 / secs.max(0.001)) as u64)
            ));
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_registered_secrets_longest_first() {
        register_secret("hunter2-long");
        register_secret("hunter2-long-er");
        assert_eq!(
            scrub("key=hunter2-long-er and hunter2-long"),
            "key=*** and ***"
        );
        register_secret("ab");
        assert_eq!(scrub("ab"), "***");
        assert_eq!(
            scrub("postgresql://app:ab@db/x"),
            "postgresql://app:***@db/x"
        );
        assert_eq!(
            scrub("PGPASSWORD=ab, tab, abc, ab"),
            "PGPASSWORD=***, tab, abc, ***"
        );
        register_secret("Zq");
        assert_eq!(
            scrub("password Zq in Zqylophone"),
            "password *** in Zqylophone"
        );
    }

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
