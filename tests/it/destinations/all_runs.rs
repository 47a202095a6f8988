//! `backup --all-databases` with a `--to` bucket: the run's record goes there too, so the
//! newest complete run is kept whole there while a newer run is incomplete, and once a newer
//! run completes, that destination's own keep-last leaves one run; a host reading only that
//! bucket lists and checks its runs.

use std::time::Duration;

use serde_json::Value;

use super::to_bucket;
use crate::support::bucket::{backup_dir, keys};
use crate::support::runs::rls_server;
use crate::support::{self, output_text, private_cluster, run, s3, Pg, S3Server};

/// One `--all-databases` run as `agent`, the directory keeping everything, the `--to` bucket
/// keeping one.
fn all_run(pg: &Pg, server: &S3Server, dir: &std::path::Path, to: &str) -> std::process::Output {
    std::thread::sleep(Duration::from_millis(1100));
    let mut cmd = support::pgbak(pg);
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    let url = format!("postgresql://agent:agent-pw@127.0.0.1:{}/postgres", pg.port);
    run(cmd
        .env("DATABASE_URL", url)
        .args(["backup", "--all-databases", "--no-s3", "--keep-last", "9"])
        .args(["--output-dir"])
        .arg(dir)
        .args(["--to", to]))
}

#[test]
fn destinations_all_databases_runs_are_kept_whole_and_pruned_at_a_to_bucket() {
    let pg = private_cluster(16);
    rls_server(&pg);
    let s3 = s3();
    let bucket = s3.fresh_bucket("dest-all-runs");
    let to = to_bucket(s3, &bucket, "all/", "name=offsite&keep-last=1");
    let dir = backup_dir("dest-all-runs");
    let plain_dumps = || {
        keys(s3, &bucket, "all/", ".dump")
            .into_iter()
            .filter(|k| k.starts_with("plain_"))
            .collect::<Vec<_>>()
    };

    let out = all_run(&pg, s3, &dir, &to);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let first = plain_dumps();
    assert_eq!(first.len(), 1, "{first:?}");
    let records = keys(s3, &bucket, "all/", ".json")
        .into_iter()
        .filter(|k| k.starts_with("pgbak-run_"))
        .count();
    assert_eq!(records, 1, "the run's record is at the destination");

    // An incomplete run: the first run is still the newest complete one there, kept whole.
    pg.psql("postgres", "ALTER ROLE agent NOBYPASSRLS");
    let out = all_run(&pg, s3, &dir, &to);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let after_incomplete = plain_dumps();
    assert!(
        after_incomplete.contains(&first[0]),
        "retention broke up the complete run at the destination: {after_incomplete:?}"
    );

    // A host that reads only that bucket (an empty directory, no S3_*) sees both runs there,
    // the newest incomplete, and its check fails on it.
    let monitor = backup_dir("dest-all-runs-monitor");
    let from_bucket_only = |args: &[&str]| {
        let mut cmd = support::pgbak_bare();
        for (key, value) in s3.env() {
            cmd.env(key, value);
        }
        run(cmd
            .args(args)
            .arg("--backup-dir")
            .arg(&monitor)
            .args(["--to", &to]))
    };
    let out = from_bucket_only(&["list", "--runs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["incomplete", "complete"], "{listed:#}");
    let newest = listed[0]["run_id"].as_str().unwrap().to_owned();
    let out = from_bucket_only(&["check", "--json", "--max-verified-age", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = checked["runs"].as_array().expect("run problems");
    assert!(
        problems.len() == 1 && problems[0].as_str().unwrap().contains(&newest),
        "{checked:#}"
    );
    let _ = std::fs::remove_dir_all(&monitor);

    // A complete run again: keep-last 1 there leaves this run alone.
    pg.psql("postgres", "ALTER ROLE agent BYPASSRLS");
    let out = all_run(&pg, s3, &dir, &to);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let last = plain_dumps();
    assert_eq!(last.len(), 1, "{last:?}");
    assert!(!first.contains(&last[0]));
    let globals = keys(s3, &bucket, "all/", ".dump")
        .into_iter()
        .filter(|k| k.contains("_globals_"))
        .count();
    assert_eq!(globals, 1, "one run's globals at the destination");
    // The directory kept everything (keep-last 9).
    let local_plain = support::files(&dir)
        .into_iter()
        .filter(|f| f.starts_with("plain_") && f.ends_with(".dump"))
        .count();
    assert_eq!(local_plain, 3);
    let _ = std::fs::remove_dir_all(&dir);
}
