//! The restore time (RTO) a real verify records in its verdict, as `pgbak check` judges it
//! (`--max-rto`: a group whose newest verified restore took longer fails, and one never
//! measured fails) and reports it (`--json`, `--report markdown|json`: the auditor's page).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::verify::{run_json, verify_cmd, Dir};
use crate::support::{backup, dumps, output_text, pg16, pgbak_bare, run, TestDb};

/// A database whose restore takes over 1.5 s for real: an index on an expression that
/// sleeps 0.1 s per row, 15 rows (built again by every restore).
fn slow_to_restore(hint: &str) -> TestDb<'static> {
    let db = pg16().fresh_db(hint);
    db.psql(
        "CREATE FUNCTION public.slow_key(i int) RETURNS int LANGUAGE sql IMMUTABLE \
           AS $$ SELECT i FROM pg_catalog.pg_sleep(0.1) $$; \
         CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 15); \
         CREATE INDEX t_slow ON t (public.slow_key(id))",
    );
    db
}

/// `pgbak check --backup-dir dir` with `args`.
fn check(dir: &Path, args: &[&str]) -> Output {
    run(pgbak_bare()
        .args(["check", "--backup-dir"])
        .arg(dir)
        .args(args))
}

/// The group of `db` in `check --json`'s document.
fn group<'a>(json: &'a Value, db: &str) -> &'a Value {
    json["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["database"] == db))
        .unwrap_or_else(|| panic!("no group {db} in {json:#}"))
}

/// `2026-12-07T15:01:17Z` from a backup's file name (its stem ends with the UTC time).
fn time_of(dump: &str) -> String {
    let ts = &dump.trim_end_matches(".dump")[dump.trim_end_matches(".dump").len() - 15..];
    chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%M%S")
        .unwrap()
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Two backups of a slow-to-restore database in `dir`, the newest verified for real: the
/// database, the dumps (oldest first) and the verdict's `verification`.
fn verified_twice(hint: &str, dir: &Path) -> (TestDb<'static>, Vec<String>, Value) {
    let db = slow_to_restore(hint);
    for _ in 0..2 {
        let out = backup(db.pg(), &db.name, dir, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let mut mine: Vec<String> = dumps(dir)
        .into_iter()
        .filter(|d| d.starts_with(&format!("{}_full_", db.name)))
        .collect();
    mine.sort();
    assert_eq!(mine.len(), 2, "{mine:?}");
    let (out, report) = run_json(&mut verify_cmd(&db, &dir.join(&mine[1]), &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // The verify's own report says how long its restore took, and so does its verdict.
    let seconds = report["timing"]["restore_seconds"].as_f64().unwrap();
    assert!(seconds >= 1.5, "{report:#}");
    let verdict = dir.join(mine[1].replace(".dump", ".verify.json"));
    let verdict: Value = serde_json::from_slice(&std::fs::read(verdict).unwrap()).unwrap();
    let verification = verdict["verification"].clone();
    assert_eq!(
        verification["timing"]["restore_seconds"].as_f64(),
        Some(seconds)
    );
    assert_eq!(verification["timing"]["jobs"], 4, "{verification:#}");
    assert!(verification["timing"]["bytes"].as_u64().unwrap() > 0);
    (db, mine, verification)
}

#[test]
fn check_max_rto_fails_a_slower_restore_passes_a_generous_limit_and_fails_the_unmeasured() {
    let dir = Dir::new("check-rto");
    let (db, _, verification) = verified_twice("check rto", &dir);
    let measured = verification["timing"]["restore_seconds"].as_f64().unwrap();

    let out = check(&dir, &["--database", &db.name, "--max-rto", "1s", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = group(&json, &db.name);
    assert_eq!(g["status"], "slow restore", "{g:#}");
    assert_eq!(
        g["last_restore_test"]["restore_seconds"].as_f64(),
        Some(measured)
    );
    assert_eq!(json["max_rto_seconds"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&db.name) && stderr.contains("limit 1s"),
        "{stderr}"
    );

    let out = check(&dir, &["--database", &db.name, "--max-rto", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // A second database, backed up, never verified: never measured (with the verified-age
    // limit off, that alone fails it), named; the measured one stays within the limit.
    let other = pg16().fresh_db("check rto never");
    other.psql("CREATE TABLE t (id int)");
    let out = backup(other.pg(), &other.name, &dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(pgbak_bare()
        .args(["check", "--backup-dir"])
        .arg(&*dir)
        .args(["--database", &db.name, "--database", &other.name])
        .args(["--max-verified-age", "0", "--json"])
        .env("PGBAK_CHECK_MAX_RTO", "1h"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(group(&json, &db.name)["status"], "ok", "{json:#}");
    assert_eq!(
        group(&json, &other.name)["status"],
        "unmeasured",
        "{json:#}"
    );
    assert_eq!(group(&json, &other.name)["last_restore_test"], Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&other.name) && l.contains("never measured")),
        "{stderr}"
    );
}

#[test]
fn check_report_shows_the_last_restore_test_its_time_and_the_retained_backups() {
    let dir = Dir::new("check-report");
    let (db, dumps, verification) = verified_twice("check report", &dir);
    let measured = verification["timing"]["restore_seconds"].as_f64().unwrap();
    let verified_at = verification["verified_at"].as_str().unwrap();
    let (oldest, newest) = (time_of(&dumps[0]), time_of(&dumps[1]));

    let out = check(&dir, &["--database", &db.name, "--report", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    let servers = json["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{json:#}");
    let row = &servers[0]["databases"][0];
    assert_eq!(row["database"], db.name.as_str());
    let test = &row["last_restore_test"];
    assert_eq!(test["name"], dumps[1].trim_end_matches(".dump"));
    assert_eq!(test["verified_at"], verified_at);
    assert_eq!(test["restore_seconds"].as_f64(), Some(measured));
    assert_eq!(test["jobs"], 4);
    assert_eq!(row["retained_backups"], 2);
    assert_eq!(row["oldest"], oldest.as_str());
    assert_eq!(row["newest"], newest.as_str());
    assert_eq!(row["pinned"], serde_json::json!([]));
    assert_eq!(row["locked_until"], Value::Null);

    let out = check(&dir, &["--database", &db.name, "--report", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    let line = format!(
        "| {} | full | {verified_at} ({}) | {measured:.1} s (4 job(s)) | 2 | {oldest} | {newest} | - | - | ok |",
        db.name,
        dumps[1].trim_end_matches(".dump")
    );
    assert!(page.lines().any(|l| l == line), "{line}\nnot in\n{page}");
    assert!(page.starts_with("# "), "{page}");
}
