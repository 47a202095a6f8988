//! What pgbak prints: timestamped lines on stderr (and into the cron log file),
//! scrubbed of the run's secrets, and a progress bar only on a terminal.
//!
//! The output is set up once, at dispatch ([`init`]): the verbosity and the
//! [`Redactor`] built from the settings; cron then hands it the run's log
//! file, once ([`log_to`]). Neither can be changed or added to afterwards.
//! Results meant for scripts (`--json`) go to stdout through [`stdout_line`].

mod redact;

pub use redact::{Redactor, MASK};

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

/// How much pgbak prints on stderr: `--quiet`, the default, `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Only warnings and errors.
    Quiet,
    Normal,
    /// Also debug lines (the child commands run).
    Verbose,
}

/// The run's output: how much it prints, what it hides, where lines also go.
struct Ui {
    verbosity: Verbosity,
    redactor: Redactor,
    /// cron's per-run log file: set once, by [`log_to`].
    log: OnceLock<Mutex<File>>,
}

/// The output [`init`] installed; [`FALLBACK`] until then.
static UI: OnceLock<Ui> = OnceLock::new();
/// Before the settings are read (or in unit tests): normal lines, nothing to hide, no log.
static FALLBACK: Ui = Ui {
    verbosity: Verbosity::Normal,
    redactor: Redactor::none(),
    log: OnceLock::new(),
};
static TERMINAL: OnceLock<bool> = OnceLock::new();

fn ui() -> &'static Ui {
    UI.get().unwrap_or(&FALLBACK)
}

/// Sets up the run's output, once, with the secrets every line is scrubbed of.
pub fn init(verbosity: Verbosity, redactor: Redactor) -> Result<()> {
    let ui = Ui {
        verbosity,
        redactor,
        log: OnceLock::new(),
    };
    UI.set(ui)
        .map_err(|_| anyhow!("the output was already set up for this run"))
}

/// Sends every line printed from now on into `file` as well (cron's per-run
/// log). Once per run, after [`init`].
pub fn log_to(file: File) -> Result<()> {
    let ui = UI
        .get()
        .ok_or_else(|| anyhow!("the run's log file opened before its output was set up"))?;
    ui.log
        .set(Mutex::new(file))
        .map_err(|_| anyhow!("the run already has a log file"))
}

/// True when stderr is a terminal (and so progress bars are shown).
pub fn is_terminal() -> bool {
    *TERMINAL.get_or_init(|| std::io::stderr().is_terminal())
}

impl Ui {
    /// Writes `line` into the log file, if the run has one.
    fn log_line(&self, line: &str) {
        if let Some(file) = self.log.get() {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(file, "{line}");
        }
    }

    fn emit(&self, tag: &str, message: &str) {
        let message = self.redactor.scrub(message);
        let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        let line = format!("{stamp} {tag:<5} {message}");
        self.log_line(&line);
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
}

pub fn debug(message: &str) {
    let ui = ui();
    if ui.verbosity >= Verbosity::Verbose {
        ui.emit("DEBUG", message);
    }
}

pub fn info(message: &str) {
    let ui = ui();
    if ui.verbosity >= Verbosity::Normal {
        ui.emit("INFO", message);
    }
}

pub fn warn(message: &str) {
    ui().emit("WARN", message);
}

pub fn error(message: &str) {
    ui().emit("ERROR", message);
}

/// A result line for scripts, on stdout (also scrubbed, also logged).
pub fn stdout_line(text: &str) {
    let ui = ui();
    let text = ui.redactor.scrub(text);
    ui.log_line(&text);
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
        let quiet = ui().verbosity == Verbosity::Quiet;
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
    fn bytes_are_human_readable() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
