//! What `pgbak check` prints and writes: the table, and the node_exporter
//! textfile (one series per group, written atomically and readable by node_exporter).

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::verdict::{BackupRef, GroupReport};
use crate::ui;

/// The table, header first, columns padded to their widest cell.
pub fn table(reports: &[GroupReport]) -> Vec<String> {
    let header = [
        "DATABASE",
        "SERVER",
        "MODE",
        "LABEL",
        "BACKUPS",
        "NEWEST",
        "VERIFIED",
        "LAST VERIFY",
        "SIZE",
        "ROWS",
        "PINNED",
        "LOCKED UNTIL",
        "STATUS",
    ];
    let rows: Vec<[String; 13]> = reports
        .iter()
        .map(|r| {
            let previous = r.trend.get(1);
            let newest = r.newest.as_ref();
            [
                r.database.clone(),
                r.server.clone().unwrap_or_else(|| "?".into()),
                r.mode.clone(),
                r.label.clone().unwrap_or_else(|| "-".into()),
                r.backups.to_string(),
                newest.map_or("-".into(), |n| crate::commands::list::age(n.age_seconds)),
                r.newest_verified.as_ref().map_or("never".into(), |v| {
                    crate::commands::list::age(v.age_seconds)
                }),
                r.last_verify.as_ref().map_or("-".into(), |v| {
                    if v.passed { "passed" } else { "FAILED" }.to_owned()
                }),
                newest.map_or("-".into(), |n| {
                    let change = previous.map(|p| change(n.size_bytes, p.size_bytes));
                    format!("{}{}", ui::bytes(n.size_bytes), change.unwrap_or_default())
                }),
                newest.and_then(|n| n.rows).map_or("-".into(), |rows| {
                    let change = previous.and_then(|p| p.rows).map(|p| change(rows, p));
                    format!("{rows}{}", change.unwrap_or_default())
                }),
                match r.pinned.len() {
                    0 => "-".to_owned(),
                    n => n.to_string(),
                },
                r.locked_until.as_deref().map_or("-".into(), |until| {
                    until.get(..10).unwrap_or(until).to_owned()
                }),
                if r.ok {
                    // `ok`, or `superseded` (reported, not judged).
                    r.status.to_owned()
                } else {
                    r.status.to_uppercase()
                },
            ]
        })
        .collect();
    crate::ui::columns(header, &rows)
}

/// ` (+2%)`, ` (-51%)`: the change from the previous run.
fn change(now: u64, before: u64) -> String {
    if before == 0 {
        return String::new();
    }
    let percent = (now as f64 - before as f64) / before as f64 * 100.0;
    format!(" ({percent:+.0}%)")
}

/// The node_exporter textfile: one series per group, labelled
/// `database`, `mode`, `label`, `server` (empty for an unknown server).
pub fn render_prometheus(reports: &[GroupReport], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let labels = |r: &GroupReport| {
        // A `--to` destination's series carry its name (the others keep
        // the labels they always had).
        let destination = r
            .destination
            .as_ref()
            .map_or_else(String::new, |d| format!(",destination=\"{}\"", escape(d)));
        format!(
            "database=\"{}\",mode=\"{}\",label=\"{}\",server=\"{}\"{destination}",
            escape(&r.database),
            escape(&r.mode),
            escape(r.label.as_deref().unwrap_or("")),
            escape(r.server.as_deref().unwrap_or(""))
        )
    };
    let timestamp =
        |b: &BackupRef| DateTime::parse_from_rfc3339(&b.created_at).map_or(0, |t| t.timestamp());
    type Value = fn(&GroupReport, &dyn Fn(&BackupRef) -> i64) -> Option<i64>;
    let families: [(&str, &str, Value); 8] = [
        (
            "pgbak_last_backup_timestamp_seconds",
            "Unix time of the newest complete backup of the group (0: none).",
            |r, ts| Some(r.newest.as_ref().map_or(0, ts)),
        ),
        (
            "pgbak_last_verified_backup_timestamp_seconds",
            "Unix time of the newest backup of the group that passed pgbak verify (0: none).",
            |r, ts| Some(r.newest_verified.as_ref().map_or(0, ts)),
        ),
        (
            "pgbak_last_verify_success",
            "1 when the group's last verify passed, 0 when it failed (absent: never verified).",
            |r, _| r.last_verify.as_ref().map(|v| i64::from(v.passed)),
        ),
        (
            "pgbak_check_backup_size_bytes",
            "Size of the group's newest backup.",
            |r, _| r.newest.as_ref().map(|n| n.size_bytes as i64),
        ),
        (
            "pgbak_check_backup_rows",
            "Total row count of the group's newest backup (absent for schema-only).",
            |r, _| r.newest.as_ref().and_then(|n| n.rows).map(|n| n as i64),
        ),
        (
            "pgbak_check_pinned_backups",
            "Pinned backups of the group among those pgbak check read (pgbak unpin lifts a pin).",
            |r, _| Some(r.pinned.len() as i64),
        ),
        (
            "pgbak_check_locked_until_timestamp_seconds",
            "S3 Object Lock retain-until of the group's newest backup (absent: not locked).",
            |r, _| {
                r.locked_until
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp())
            },
        ),
        (
            "pgbak_check_ok",
            "1 when the group is within pgbak check's limits, else 0.",
            |r, _| Some(i64::from(r.ok)),
        ),
    ];
    for (name, help, value) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for r in reports {
            if let Some(v) = value(r, &timestamp) {
                out.push_str(&format!("{name}{{{}}} {v}\n", labels(r)));
            }
        }
    }
    out.push_str(&format!(
        "# HELP pgbak_check_timestamp_seconds Unix time of this pgbak check run.\n\
         # TYPE pgbak_check_timestamp_seconds gauge\npgbak_check_timestamp_seconds {}\n",
        now.timestamp()
    ));
    out
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the textfile atomically and readable by node_exporter (0644 before
/// the rename, so a scrape never sees half a file or a file it cannot read).
pub fn write_prometheus(path: &Path, reports: &[GroupReport], now: DateTime<Utc>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let write = || -> std::io::Result<()> {
        let mut file = tempfile::Builder::new()
            .prefix(".pgbak-check")
            .suffix(".partial")
            .tempfile_in(dir)?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(render_prometheus(reports, now).as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().with_context(|| format!("writing the metrics file {}", path.display()))?;
    crate::storage::fsio::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check::verdict::assess;
    use crate::commands::check::verdict::tests::{group, limits, now, seen};

    #[test]
    fn prometheus_has_one_series_per_group() {
        let mut failed = assess(&group(), &[seen(5, Some(false))], 1, 0, limits(), now());
        failed.database = "we\"ird".into();
        failed.locked_until = Some("2026-12-25T12:00:00Z".into());
        let reports = [
            assess(&group(), &[seen(5, Some(true))], 1, 0, limits(), now()),
            failed,
        ];
        let text = render_prometheus(&reports, now());
        let at = (now() - chrono::TimeDelta::hours(5)).timestamp();
        for line in [
            format!("pgbak_last_backup_timestamp_seconds{{database=\"app\",mode=\"full\",label=\"\",server=\"\"}} {at}"),
            format!("pgbak_last_verified_backup_timestamp_seconds{{database=\"app\",mode=\"full\",label=\"\",server=\"\"}} {at}"),
            "pgbak_last_verified_backup_timestamp_seconds{database=\"we\\\"ird\",mode=\"full\",label=\"\",server=\"\"} 0".into(),
            "pgbak_last_verify_success{database=\"we\\\"ird\",mode=\"full\",label=\"\",server=\"\"} 0".into(),
            "pgbak_check_backup_rows{database=\"app\",mode=\"full\",label=\"\",server=\"\"} 50".into(),
            "pgbak_check_ok{database=\"app\",mode=\"full\",label=\"\",server=\"\"} 1".into(),
            "pgbak_check_pinned_backups{database=\"app\",mode=\"full\",label=\"\",server=\"\"} 0".into(),
            "pgbak_check_locked_until_timestamp_seconds{database=\"we\\\"ird\",mode=\"full\",label=\"\",server=\"\"} 1798200000".into(),
            "# TYPE pgbak_check_ok gauge".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn changes_are_percentages() {
        assert_eq!(change(150, 100), " (+50%)");
        assert_eq!(change(49, 100), " (-51%)");
        assert_eq!(change(5, 0), "");
    }
}
