//! The run logs of `pgbak cron`: one file per run in LOG_DIR, the newest
//! LOG_KEEP kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::storage::fsio;
use crate::ui;

const LOG_PREFIX: &str = "backup-";
const LOG_SUFFIX: &str = ".log";
const LOG_TIMESTAMP: &str = "%Y%m%dT%H%M%S";

/// Creates LOG_DIR (0700) and the run's log file (0600), and tees output into it.
pub(super) fn open(dir: &Path, started: DateTime<Utc>) -> Result<PathBuf> {
    fsio::ensure_dir(dir)?;
    // One file per run: runs within the same second take the next free second.
    let mut at = started;
    for _ in 0..600 {
        let path = dir.join(log_name(at));
        match fsio::create_new(&path) {
            Ok(file) => {
                ui::log_to(file)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                at += chrono::Duration::seconds(1);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("creating the log file {}", path.display()))
            }
        }
    }
    anyhow::bail!("no free log file name in {}", dir.display())
}

fn log_name(started: DateTime<Utc>) -> String {
    format!("{LOG_PREFIX}{}{LOG_SUFFIX}", started.format(LOG_TIMESTAMP))
}

/// Which run logs to delete: all but the newest `keep` (by the time in their
/// name), never `current`, never a file not named like a run log. 0 keeps all.
fn logs_to_prune(names: &[String], current: &str, keep: u32) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let mut logs: Vec<(NaiveDateTime, &String)> = names
        .iter()
        .filter_map(|name| {
            let stamp = name.strip_prefix(LOG_PREFIX)?.strip_suffix(LOG_SUFFIX)?;
            let at = NaiveDateTime::parse_from_str(stamp, LOG_TIMESTAMP).ok()?;
            Some((at, name))
        })
        .collect();
    logs.sort();
    logs.reverse();
    logs.into_iter()
        .skip(keep as usize)
        .map(|(_, name)| name)
        .filter(|name| *name != current)
        .cloned()
        .collect()
}

/// Housekeeping: a failure here is a warning, not a failed run.
pub(super) fn prune(dir: &Path, current: &Path, keep: u32) {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(err) => {
            ui::warn(&format!(
                "listing {} to prune old logs: {err}",
                dir.display()
            ));
            return;
        }
    };
    let current = current
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for name in logs_to_prune(&names, &current, keep) {
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => ui::info(&format!("removed old log {}", path.display())),
            Err(err) => ui::warn(&format!("removing old log {}: {err}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn log_name_is_the_scripts_pattern() {
        let at = Utc.with_ymd_and_hms(2024, 3, 15, 2, 0, 0).unwrap();
        assert_eq!(log_name(at), "backup-20240315T020000.log");
    }

    #[test]
    fn pruning_keeps_the_newest_and_ignores_other_files() {
        let names: Vec<String> = [
            "backup-20240101T020000.log",
            "backup-20240103T020000.log",
            "backup-20240102T020000.log",
            "backup-20240104T020000.log",
            "cron.log",
            "backup-garbage.log",
            "backup-20240101T020000.log.gz",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cases: [(u32, &str, &[&str]); 4] = [
            (
                2,
                "backup-20240104T020000.log",
                &["backup-20240102T020000.log", "backup-20240101T020000.log"],
            ),
            (4, "backup-20240104T020000.log", &[]),
            (0, "backup-20240104T020000.log", &[]),
            // The current log is never deleted, even when a clock step made it look old.
            (
                1,
                "backup-20240101T020000.log",
                &["backup-20240103T020000.log", "backup-20240102T020000.log"],
            ),
        ];
        for (keep, current, want) in cases {
            assert_eq!(logs_to_prune(&names, current, keep), want, "keep {keep}");
        }
    }
}
