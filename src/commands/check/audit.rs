//! `pgbak check --report markdown|json`: the evidence an auditor asks for
//! (ISO 27001 A.8.13, SOC 2: "show me the last time you restored, and how
//! long it took"), per server and database, from the same reading of the
//! store as the check itself: the last successful restore test and the
//! restore time it measured, the retained backups (how many, the oldest,
//! the newest), pins and Object Lock, and the check's verdict. Pure: the
//! groups in, the page out.

use std::collections::BTreeMap;

use serde::Serialize;

use super::verdict::{GroupReport, PinnedRef, RestoreTest};

/// The report's JSON document (the Markdown page says the same).
#[derive(Debug, Serialize)]
pub struct Audit<'a> {
    pub generated_at: String,
    /// Where the backups were read: the directory, and the bucket with `--s3`.
    pub source: String,
    pub ok: bool,
    pub servers: Vec<ServerAudit<'a>>,
}

/// One server's databases (`server` null: backups that do not name it).
#[derive(Debug, Serialize)]
pub struct ServerAudit<'a> {
    pub server: Option<String>,
    pub databases: Vec<DatabaseAudit<'a>>,
}

/// One group: a database's backups of one mode and label.
#[derive(Debug, Serialize)]
pub struct DatabaseAudit<'a> {
    pub database: &'a str,
    pub mode: &'a str,
    pub label: Option<&'a str>,
    /// The newest backup that passed a restore test (verify), when, and its restore time.
    pub last_restore_test: Option<&'a RestoreTest>,
    pub retained_backups: usize,
    pub oldest: Option<&'a str>,
    pub newest: Option<&'a str>,
    pub pinned: &'a [PinnedRef],
    pub locked_until: Option<&'a str>,
    /// The check's status (`ok`, `stale`, `slow restore`, ...) and why.
    pub status: &'a str,
    pub problems: &'a [String],
}

/// The groups, by server.
pub fn audit<'a>(reports: &'a [GroupReport], generated_at: String, source: String) -> Audit<'a> {
    let mut servers: BTreeMap<Option<String>, Vec<DatabaseAudit<'a>>> = BTreeMap::new();
    for r in reports {
        servers
            .entry(r.server.clone())
            .or_default()
            .push(DatabaseAudit {
                database: &r.database,
                mode: &r.mode,
                label: r.label.as_deref(),
                last_restore_test: r.last_restore_test.as_ref(),
                retained_backups: r.backups,
                oldest: r.oldest.as_ref().map(|b| b.created_at.as_str()),
                newest: r.newest.as_ref().map(|b| b.created_at.as_str()),
                pinned: &r.pinned,
                locked_until: r.locked_until.as_deref(),
                status: r.status,
                problems: &r.problems,
            });
    }
    Audit {
        generated_at,
        source,
        ok: reports.iter().all(|r| r.ok),
        servers: servers
            .into_iter()
            .map(|(server, databases)| ServerAudit { server, databases })
            .collect(),
    }
}

/// The Markdown page: a heading, where and when, then a table per server.
pub fn markdown(audit: &Audit<'_>) -> String {
    let mut out = format!(
        "# Backup and restore-test report\n\nGenerated {} by pgbak {} from {}. Every restore \
         test restored the backup into a fresh database and compared it with what was recorded \
         at backup time (tables, rows, extensions, schema objects); the restore time is \
         pg_restore's wall time in that test.\n",
        audit.generated_at,
        env!("CARGO_PKG_VERSION"),
        cell(&audit.source)
    );
    for server in &audit.servers {
        out.push_str(&format!(
            "\n## Server {}\n\n| Database | Mode | Last successful restore test | Restore time \
             | Backups | Oldest | Newest | Pinned | Locked until | Status |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
            cell(server.server.as_deref().unwrap_or("unknown"))
        ));
        for d in &server.databases {
            out.push_str(&row(d));
        }
    }
    out
}

/// One database's table row.
fn row(d: &DatabaseAudit<'_>) -> String {
    let test = d.last_restore_test;
    let tested = test.map_or_else(
        || "never".to_owned(),
        |t| {
            format!(
                "{} ({})",
                t.verified_at.as_deref().unwrap_or("unknown time"),
                t.name
            )
        },
    );
    let rto = match test.and_then(|t| t.restore_seconds.map(|s| (s, t.jobs))) {
        Some((seconds, jobs)) => format!("{seconds:.1} s ({} job(s))", jobs.unwrap_or(1)),
        None => "not measured".to_owned(),
    };
    let mode = match d.label {
        Some(label) => format!("{}, {label}", d.mode),
        None => d.mode.to_owned(),
    };
    let pinned = if d.pinned.is_empty() {
        "-".to_owned()
    } else {
        d.pinned
            .iter()
            .map(|p| format!("{} ({})", p.name, p.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let status = if d.problems.is_empty() {
        d.status.to_owned()
    } else {
        format!("{}: {}", d.status, d.problems.join("; "))
    };
    let cells = [
        d.database.to_owned(),
        mode,
        tested,
        rto,
        d.retained_backups.to_string(),
        d.oldest.unwrap_or("-").to_owned(),
        d.newest.unwrap_or("-").to_owned(),
        pinned,
        d.locked_until.unwrap_or("-").to_owned(),
        status,
    ];
    let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// A table cell: no line break, no column separator.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check::verdict::assess;
    use crate::commands::check::verdict::tests::{group, limits, now, seen};

    #[test]
    fn the_page_has_a_row_per_group_with_its_restore_test() {
        let mut verified = seen(5, Some(true));
        verified.timing = Some(crate::meta::VerifyTiming {
            restore_seconds: 42.31,
            verify_seconds: 3.0,
            jobs: 4,
            bytes: 1000,
        });
        let mut never = assess(&group(), &[seen(5, None)], 1, 0, limits(), now());
        never.database = "a|b".into();
        let reports = [
            assess(&group(), &[verified, seen(29, None)], 2, 0, limits(), now()),
            never,
        ];
        let audit = audit(&reports, "2026-11-25T12:00:00Z".into(), "/b".into());
        let json = serde_json::to_value(&audit).unwrap();
        let first = &json["servers"][0]["databases"][0];
        assert_eq!(first["last_restore_test"]["restore_seconds"], 42.31);
        assert_eq!(first["retained_backups"], 2);
        assert_eq!(first["oldest"], "2026-11-24T07:00:00Z");
        let page = markdown(&audit);
        assert!(
            page.contains("| 42.3 s (4 job(s)) | 2 | 2026-11-24T07:00:00Z |"),
            "{page}"
        );
        assert!(
            page.contains("| a\\|b | full | never | not measured | 1 |"),
            "{page}"
        );
    }
}
