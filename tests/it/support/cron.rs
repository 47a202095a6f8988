//! `pgbak cron` as the tests run it: the directories of one run (backups, logs, metrics),
//! the command with the scripts' environment, a server that is down, the host name alerts
//! carry, the Prometheus textfile parsed strictly, and older backups for retention to find.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, pgbak, run, scratch_dir, Pg, TestDb, PASSWORD};

/// The directories one cron run uses, removed on Drop.
pub(crate) struct Dirs {
    pub(crate) root: PathBuf,
    pub(crate) backups: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) metrics: PathBuf,
}

/// A cron case: the fixture (scale 0.05) in a fresh database named after `hint`, and the
/// directories of the run ([`Dirs::new`] of `dirs`).
pub(crate) fn cron_case<'a>(pg: &'a Pg, hint: &str, dirs: &str) -> (TestDb<'a>, Dirs) {
    (pg.fixture_db(hint, 0.05), Dirs::new(dirs))
}

impl Dirs {
    pub(crate) fn new(hint: &str) -> Dirs {
        let root = scratch_dir(&format!("cron-{hint}"));
        Dirs {
            backups: root.join("backups"),
            logs: root.join("logs"),
            metrics: root.join("metrics/pgbak.prom"),
            root,
        }
    }

    /// Names of the files in `dir` ending in `suffix`, sorted.
    pub(crate) fn files(dir: &Path, suffix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    }

    pub(crate) fn dumps(&self) -> Vec<String> {
        Self::files(&self.backups, ".dump")
    }

    pub(crate) fn metas(&self) -> Vec<String> {
        Self::files(&self.backups, ".meta.json")
    }

    pub(crate) fn partials(&self) -> Vec<String> {
        Self::files(&self.backups, ".partial")
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        Self::files(&self.logs, ".log")
    }

    /// The samples of the run's metrics file.
    pub(crate) fn samples(&self) -> BTreeMap<String, f64> {
        parse_metrics(&std::fs::read_to_string(&self.metrics).expect("metrics file"))
    }

    /// The only log file of the run, with its contents.
    pub(crate) fn only_log(&self) -> (PathBuf, String) {
        let logs = self.logs();
        assert_eq!(logs.len(), 1, "one log file per run: {logs:?}");
        let path = self.logs.join(&logs[0]);
        let text = std::fs::read_to_string(&path).expect("reading the run log");
        (path, text)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `pgbak cron` with the scripts' environment pointing into `dirs`.
pub(crate) fn cron(base: Command, dirs: &Dirs, database_url: &str) -> Command {
    let mut cmd = base;
    cmd.arg("cron")
        .env("DATABASE_URL", database_url)
        .env("BACKUP_DIR", &dirs.backups)
        .env("LOG_DIR", &dirs.logs)
        .env("METRICS_FILE", &dirs.metrics);
    cmd
}

/// Points `cmd` at the bucket `bucket` on an S3 endpoint nobody listens on (the store is
/// down), with the secret key `secret_key`.
pub(crate) fn s3_down<'a>(cmd: &'a mut Command, bucket: &str, secret_key: &str) -> &'a mut Command {
    cmd.env("S3_BUCKET", bucket)
        .env(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// A URL on a port nobody listens on: the server is down.
pub(crate) fn down_url() -> String {
    format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{}/enterprise_agents",
        free_port()
    )
}

pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Parses a Prometheus textfile: every line is `# HELP`, `# TYPE`, or
/// `name{labels} value`; returns `name{labels}` -> value.
pub(crate) fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                rest.split_once(' ').is_some(),
                "HELP needs name and text: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["gauge", "counter", "untyped", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_owned()), "TYPE given twice: {line}");
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "labels {labels}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (key, val) = pair.split_once('=').expect("label key=value");
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(
                    val.starts_with('"') && val.ends_with('"'),
                    "label value {val}"
                );
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate {series}"
        );
    }
    samples
}

/// The value of the one sample of `name` whose labels contain all of `labels`.
/// `pgbak_step_success` of the step `step`: 1 when it succeeded, 0 when it failed.
pub(crate) fn step_success(samples: &BTreeMap<String, f64>, step: &str) -> f64 {
    metric(
        samples,
        "pgbak_step_success",
        &[&format!("step=\"{step}\"")],
    )
}

pub(crate) fn metric(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<_> = samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in {samples:?}");
    *found[0].1
}
