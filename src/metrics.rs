//! Prometheus metrics of pgbak cron runs, as a node_exporter textfile-collector
//! file (`METRICS_FILE`, e.g. `/var/lib/node_exporter/textfile_collector/pgbak.prom`),
//! so dashboards and alert rules see failures *and* silence
//! (`time() - pgbak_last_success_timestamp_seconds > 26*3600`).
//!
//! One file serves every backup group (server, database, mode, label; an
//! `--all-databases` run writes one per database of the server): the daily full
//! and the weekly schema run share it, so each run rewrites only its own
//! group's series and carries every other group's forward. A failed run keeps
//! its group's last success time; a run skipped because the lock was held
//! only counts the skip.
//!
//! Written atomically (a scrape never sees half a file) and readable by others
//! (node_exporter runs as its own user; the file holds no secrets).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

mod destinations;
pub use destinations::{of_run as destinations_of_run, DestinationMetric};

const LAST_SUCCESS: &str = "pgbak_last_success_timestamp_seconds";
const SKIPPED: &str = "pgbak_runs_skipped_total";
const LAST_SKIP: &str = "pgbak_last_skip_timestamp_seconds";
const RESTORE: &str = "pgbak_restore_duration_seconds";

/// Every metric pgbak writes: name, type, help. Samples of other names found
/// in an old file are dropped.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "pgbak_last_run_start_timestamp_seconds",
        "gauge",
        "Unix time the last pgbak cron run of this backup group started.",
    ),
    (
        "pgbak_last_run_success",
        "gauge",
        "1 when every step of the last pgbak cron run of this group succeeded, else 0.",
    ),
    (
        "pgbak_last_run_exit_code",
        "gauge",
        "Exit code of the last pgbak cron run of this group (0 ok, 1 failed, 2 configuration, 130/143 interrupted).",
    ),
    (
        "pgbak_last_run_duration_seconds",
        "gauge",
        "Wall time of the last pgbak cron run of this group.",
    ),
    (
        LAST_SUCCESS,
        "gauge",
        "Unix time the newest fully successful pgbak cron run of this group started.",
    ),
    (
        "pgbak_last_backup_size_bytes",
        "gauge",
        "Size of the dump the last pgbak cron run of this group wrote.",
    ),
    (
        SKIPPED,
        "counter",
        "pgbak cron runs of this group skipped because another run held its lock.",
    ),
    (
        LAST_SKIP,
        "gauge",
        "Unix time a pgbak cron run of this group was last skipped (lock held).",
    ),
    (
        "pgbak_step_success",
        "gauge",
        "1 when the step succeeded in the last pgbak cron run of this group, 0 when it failed (steps not reached are absent).",
    ),
    (
        "pgbak_step_duration_seconds",
        "gauge",
        "Wall time of each step of the last pgbak cron run of this group.",
    ),
    (
        RESTORE,
        "gauge",
        "pg_restore's wall time in the newest verify of this group (pgbak cron --verify, pgbak verify): the restore time (RTO) it measured.",
    ),
];

/// Every metric pgbak writes: the group's, then the per-destination ones.
fn all_metrics() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    METRICS.iter().chain(destinations::METRICS.iter())
}

/// The series of one backup group: what its labels say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupLabels {
    pub database: String,
    pub mode: String,
    /// Empty when the backups have no label.
    pub label: String,
    /// The server's name (`--server-name`, by default host:port); empty
    /// when it could not be told (and in files written before the label).
    pub server: String,
}

/// One step of the run as the metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetric {
    pub step: &'static str,
    pub success: bool,
    pub duration: Duration,
}

/// Everything the metrics file says about one finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    pub group: GroupLabels,
    pub started: DateTime<Utc>,
    pub duration: Duration,
    pub success: bool,
    pub exit_code: u8,
    /// Size of the dump this run wrote, when it wrote one.
    pub backup_size: Option<u64>,
    /// pg_restore's wall time in this run's verify, when it verified (else the
    /// group's last measured restore time is kept).
    pub restore_seconds: Option<f64>,
    pub steps: Vec<StepMetric>,
    /// Every destination of the run and whether its backup reached it
    /// (empty: the run never got as far as its destinations).
    pub destinations: Vec<DestinationMetric>,
}

/// What one run changes in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The run went through its steps (or failed in one).
    Finished(RunMetrics),
    /// The run found its group's lock held and did nothing.
    Skipped {
        group: GroupLabels,
        at: DateTime<Utc>,
    },
    /// `pgbak verify` measured the group's restore time: only that series changes.
    Restored { group: GroupLabels, seconds: f64 },
}

impl Update {
    fn group(&self) -> &GroupLabels {
        match self {
            Update::Finished(run) => &run.group,
            Update::Skipped { group, .. } | Update::Restored { group, .. } => group,
        }
    }
}

/// One line of the exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written; `database`, `mode`, `label`, `server` first.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn new(name: &str, group: &GroupLabels, extra: Option<(&str, &str)>, value: f64) -> Sample {
        let mut labels = vec![
            ("database".to_owned(), group.database.clone()),
            ("mode".to_owned(), group.mode.clone()),
            ("label".to_owned(), group.label.clone()),
            ("server".to_owned(), group.server.clone()),
        ];
        if let Some((key, val)) = extra {
            labels.push((key.to_owned(), val.to_owned()));
        }
        Sample {
            name: name.to_owned(),
            labels,
            value,
        }
    }

    fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The group a sample belongs to (a missing label is the empty one).
    fn group(&self) -> GroupLabels {
        GroupLabels {
            database: self.label("database").to_owned(),
            mode: self.label("mode").to_owned(),
            label: self.label("label").to_owned(),
            server: self.label("server").to_owned(),
        }
    }
}

/// The file after `update`, given the samples of the previous file: the
/// group's own series replaced (or, for a skip, its skip count raised), every
/// other group's carried forward as it was.
pub fn merge(previous: Vec<Sample>, update: &Update) -> Vec<Sample> {
    let group = update.group();
    let known = |s: &Sample| all_metrics().any(|(name, _, _)| *name == s.name);
    // The same group without a server (written before the label existed, or
    // by a run whose server could not be told) is this group: carried on
    // under the server's name, not left behind as a series that never updates.
    let same = |s: &Sample| {
        let theirs = s.group();
        theirs == *group
            || (theirs.server.is_empty()
                && GroupLabels {
                    server: String::new(),
                    ..group.clone()
                } == theirs)
    };
    let (mine, mut out): (Vec<Sample>, Vec<Sample>) =
        previous.into_iter().filter(known).partition(same);
    let previous_value = |name: &str| mine.iter().find(|s| s.name == name).map(|s| s.value);
    match update {
        Update::Skipped { at, .. } => {
            let count = previous_value(SKIPPED).unwrap_or(0.0) + 1.0;
            out.extend(
                mine.iter()
                    .filter(|s| s.name != SKIPPED && s.name != LAST_SKIP)
                    .cloned(),
            );
            out.push(Sample::new(SKIPPED, group, None, count));
            out.push(Sample::new(LAST_SKIP, group, None, seconds(*at)));
        }
        Update::Restored { seconds, .. } => {
            out.extend(mine.iter().filter(|s| s.name != RESTORE).cloned());
            out.push(Sample::new(RESTORE, group, None, *seconds));
        }
        Update::Finished(run) => {
            let started = seconds(run.started);
            let mut add = |name: &str, value: f64| out.push(Sample::new(name, group, None, value));
            add("pgbak_last_run_start_timestamp_seconds", started);
            add("pgbak_last_run_success", f64::from(u8::from(run.success)));
            add("pgbak_last_run_exit_code", f64::from(run.exit_code));
            add(
                "pgbak_last_run_duration_seconds",
                run.duration.as_secs_f64(),
            );
            let last_success = if run.success {
                Some(started)
            } else {
                previous_value(LAST_SUCCESS)
            };
            if let Some(at) = last_success {
                add(LAST_SUCCESS, at);
            }
            if let Some(size) = run.backup_size {
                add("pgbak_last_backup_size_bytes", size as f64);
            }
            if let Some(restore) = run.restore_seconds {
                add(RESTORE, restore);
            }
            for name in [SKIPPED, LAST_SKIP, RESTORE] {
                if name == RESTORE && run.restore_seconds.is_some() {
                    continue;
                }
                if let Some(value) = previous_value(name) {
                    add(name, value);
                }
            }
            out.extend(destinations::after_run(
                &mine,
                group,
                started,
                &run.destinations,
            ));
            for step in &run.steps {
                let label = Some(("step", step.step));
                out.push(Sample::new(
                    "pgbak_step_success",
                    group,
                    label,
                    f64::from(u8::from(step.success)),
                ));
                out.push(Sample::new(
                    "pgbak_step_duration_seconds",
                    group,
                    label,
                    step.duration.as_secs_f64(),
                ));
            }
        }
    }
    out
}

/// The textfile contents: per metric `# HELP`, `# TYPE`, then its samples
/// sorted by their labels.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for (name, kind, help) in all_metrics() {
        let mut lines: Vec<String> = samples
            .iter()
            .filter(|s| s.name == *name)
            .map(|s| {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                format!("{name}{{{}}} {}", labels.join(","), number(s.value))
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        lines.sort();
        lines.dedup();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Applies `update` to the file at `path` (the previous file's other groups
/// carried forward) and replaces it atomically. The file is 0644 before it
/// is renamed into place, and a missing directory is created 0755, so
/// node_exporter (another user) can read both.
pub fn write(path: &Path, update: &Update) -> Result<()> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let text = render(&merge(previous, update));
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating the metrics directory {}", dir.display()))?;
    }
    let mut file = tempfile::Builder::new()
        .prefix(".pgbak-metrics")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", file.path().display()))?;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the metrics into {}", path.display()))?;
    Ok(())
}

/// The samples of a textfile pgbak wrote; comments and lines it cannot read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '}' => break at,
                ',' | ' ' => continue,
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        };
        rest = &inner[end + 1..];
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then(|| Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests;
