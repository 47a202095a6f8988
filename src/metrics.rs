//! Prometheus metrics of the last cron run, as a node_exporter textfile-collector
//! file (`METRICS_FILE`, e.g. `/var/lib/node_exporter/textfile_collector/pgbak.prom`),
//! so dashboards and alert rules see failures *and* silence
//! (`time() - pgbak_last_success_timestamp_seconds > 26*3600`).
//!
//! Written atomically (a scrape never sees half a file) and readable by others
//! (node_exporter runs as its own user; the file holds no secrets).

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::storage::fsio;

const LAST_SUCCESS: &str = "pgbak_last_success_timestamp_seconds";

/// One step of the run as the metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetric {
    pub step: &'static str,
    pub success: bool,
    pub duration: Duration,
}

/// Everything the metrics file says about one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    pub database: String,
    pub mode: String,
    pub started: DateTime<Utc>,
    pub duration: Duration,
    pub success: bool,
    /// Size of the dump this run wrote, when it wrote one.
    pub backup_size: Option<u64>,
    pub steps: Vec<StepMetric>,
    /// Start of the newest successful run: this one, or carried over from the previous file.
    pub last_success: Option<f64>,
}

/// The textfile contents: `# HELP`, `# TYPE`, then `name{labels} value` lines.
pub fn render(run: &RunMetrics) -> String {
    let labels = format!(
        "database=\"{}\",mode=\"{}\"",
        escape(&run.database),
        escape(&run.mode)
    );
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {}", number(*value));
        }
    };
    let started = run.started.timestamp_millis() as f64 / 1000.0;
    gauge(
        "pgbak_last_run_start_timestamp_seconds",
        "Unix time the last pgbak cron run started.",
        &[(labels.clone(), started)],
    );
    gauge(
        "pgbak_last_run_success",
        "1 when every step of the last pgbak cron run succeeded, else 0.",
        &[(labels.clone(), f64::from(u8::from(run.success)))],
    );
    gauge(
        "pgbak_last_run_duration_seconds",
        "Wall time of the last pgbak cron run.",
        &[(labels.clone(), run.duration.as_secs_f64())],
    );
    if let Some(at) = run.last_success {
        gauge(
            LAST_SUCCESS,
            "Unix time the newest fully successful pgbak cron run started.",
            &[(labels.clone(), at)],
        );
    }
    if let Some(size) = run.backup_size {
        gauge(
            "pgbak_last_backup_size_bytes",
            "Size of the dump the last pgbak cron run wrote.",
            &[(labels.clone(), size as f64)],
        );
    }
    let per_step = |f: &dyn Fn(&StepMetric) -> f64| -> Vec<(String, f64)> {
        run.steps
            .iter()
            .map(|s| (format!("{labels},step=\"{}\"", s.step), f(s)))
            .collect()
    };
    gauge(
        "pgbak_step_success",
        "1 when the step succeeded in the last pgbak cron run, 0 when it failed (steps not reached are absent).",
        &per_step(&|s| f64::from(u8::from(s.success))),
    );
    gauge(
        "pgbak_step_duration_seconds",
        "Wall time of each step of the last pgbak cron run.",
        &per_step(&|s| s.duration.as_secs_f64()),
    );
    out
}

/// Writes the file (atomically, mode 0644). A failed run keeps the last
/// success time of the previous file, so "no success for 26 h" still fires.
pub fn write(path: &Path, mut run: RunMetrics) -> Result<()> {
    if run.success {
        run.last_success = Some(run.started.timestamp_millis() as f64 / 1000.0);
    } else if run.last_success.is_none() {
        run.last_success = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| previous_last_success(&text));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsio::ensure_dir(dir)?;
    }
    fsio::write_atomic(path, render(&run).as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("making {} readable by node_exporter", path.display()))
}

/// The value of `pgbak_last_success_timestamp_seconds` in a previous file.
fn previous_last_success(text: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(LAST_SUCCESS)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
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
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(success: bool) -> RunMetrics {
        RunMetrics {
            database: "enterprise_agents".into(),
            mode: "full".into(),
            started: Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap(),
            duration: Duration::from_millis(12_500),
            success,
            backup_size: success.then_some(151_015_999),
            steps: vec![
                StepMetric {
                    step: "backup",
                    success: true,
                    duration: Duration::from_secs(5),
                },
                StepMetric {
                    step: "verify",
                    success,
                    duration: Duration::from_millis(7_250),
                },
            ],
            last_success: None,
        }
    }

    #[test]
    fn render_is_the_exposition_format() {
        let mut r = run(true);
        r.last_success = Some(1_795_572_000.0);
        let text = render(&r);
        let want = [
            "# TYPE pgbak_last_run_success gauge",
            "pgbak_last_run_start_timestamp_seconds{database=\"enterprise_agents\",mode=\"full\"} 1795572000",
            "pgbak_last_run_success{database=\"enterprise_agents\",mode=\"full\"} 1",
            "pgbak_last_run_duration_seconds{database=\"enterprise_agents\",mode=\"full\"} 12.500",
            "pgbak_last_backup_size_bytes{database=\"enterprise_agents\",mode=\"full\"} 151015999",
            "pgbak_step_success{database=\"enterprise_agents\",mode=\"full\",step=\"verify\"} 1",
            "pgbak_step_duration_seconds{database=\"enterprise_agents\",mode=\"full\",step=\"verify\"} 7.250",
            "pgbak_last_success_timestamp_seconds{database=\"enterprise_agents\",mode=\"full\"} 1795572000",
        ];
        for line in want {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn failed_run_carries_the_previous_success_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/pgbak.prom");
        write(&path, run(true)).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(previous_last_success(&first), Some(1_795_572_000.0));
        let mut failed = run(false);
        failed.started = Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap();
        write(&path, failed).unwrap();
        let second = std::fs::read_to_string(&path).unwrap();
        assert!(second
            .contains("pgbak_last_run_success{database=\"enterprise_agents\",mode=\"full\"} 0"));
        assert_eq!(previous_last_success(&second), Some(1_795_572_000.0));
        assert!(!second.contains("pgbak_last_backup_size_bytes"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn previous_success_parsing() {
        let cases = [
            (
                "pgbak_last_success_timestamp_seconds{a=\"b\"} 12.5\n",
                Some(12.5),
            ),
            ("pgbak_last_success_timestamp_seconds 7\n", Some(7.0)),
            ("# HELP pgbak_last_success_timestamp_seconds x 9\n", None),
            ("pgbak_last_success_timestamp_seconds_other 3\n", None),
            ("pgbak_last_success_timestamp_seconds{} NaN\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(previous_last_success(text), want, "{text:?}");
        }
    }
}
