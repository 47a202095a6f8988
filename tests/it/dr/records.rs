//! Issue 24 item 2: an `--all-databases` run leaves a record when it starts and when it ends,
//! so a failed or killed run is visible: `list --runs` shows each run's completeness, `check`
//! fails naming a server whose newest run is incomplete (also with `--mode globals`), and
//! retention never breaks up the newest complete run.

use std::time::Duration;

use serde_json::Value;

use crate::support::runs::{pgbak_on, rls_server, signal_when};
use crate::support::verify::Dir;
use crate::support::{self, output_text, private_cluster, run, Pg};

fn as_agent(pg: &Pg, dir: &std::path::Path, extra: &[&str]) -> (std::process::Output, Value) {
    std::thread::sleep(Duration::from_millis(1100));
    let url = format!("postgresql://agent:agent-pw@127.0.0.1:{}/postgres", pg.port);
    let out = support::pgbak(pg)
        .env("DATABASE_URL", url)
        .args([
            "backup",
            "--all-databases",
            "--no-s3",
            "--json",
            "--keep-last",
            "1",
            "--output-dir",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

fn check(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    run(support::pgbak_bare()
        .args(["check", "--max-verified-age", "0", "--backup-dir"])
        .arg(dir)
        .args(extra))
}

fn runs_json(dir: &std::path::Path) -> Vec<Value> {
    let out = run(support::pgbak_bare()
        .args(["list", "--runs", "--json", "--backup-dir"])
        .arg(dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn dump_of(json: &Value, db: &str) -> String {
    json["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == db)
        .unwrap_or_else(|| panic!("no {db} in {json:#}"))["dump"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn runs_are_recorded_listed_checked_and_kept_whole() {
    let pg = private_cluster(16);
    rls_server(&pg);
    let dir = Dir::new("runs");

    let (out, first) = as_agent(&pg, &dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let first_run = first["cluster_run"].as_str().unwrap().to_owned();
    let out = check(&dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = check(&dir, &["--mode", "globals"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // The second run fails `guarded`: visible as a run, and check fails naming it.
    pg.psql("postgres", "ALTER ROLE agent NOBYPASSRLS");
    let (out, second) = as_agent(&pg, &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let second_run = second["cluster_run"].as_str().unwrap().to_owned();
    let runs = runs_json(&dir);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["run_id"], second_run.as_str());
    assert_eq!(runs[0]["status"], "incomplete", "{runs:#?}");
    assert!(
        runs[0]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("guarded failed"),
        "{runs:#?}"
    );
    assert_eq!(runs[1]["status"], "complete", "{runs:#?}");
    // The backups' list says it too.
    let out = run(support::pgbak_bare()
        .args(["list", "--json", "--backup-dir"])
        .arg(&*dir));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let of_run = |run: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cluster_run"] == run)
            .map(|e| e["run_status"].as_str().unwrap_or("none").to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        of_run(&second_run).iter().all(|s| s == "incomplete"),
        "{listed:#}"
    );
    assert!(
        of_run(&first_run).iter().all(|s| s == "complete"),
        "{listed:#}"
    );
    for mode in [&[][..], &["--mode", "globals"][..]] {
        let out = check(&dir, mode);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{mode:?}: {}",
            output_text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("run {second_run} is incomplete: guarded failed")),
            "{stderr}"
        );
    }
    // --keep-last 1, but the first run is the newest complete one: its `plain` stays.
    let first_plain = dump_of(&first, "plain");
    assert!(
        std::path::Path::new(&first_plain).exists(),
        "retention broke up run {first_run}"
    );

    // A complete run again: check passes; once it is complete it is the newest complete run,
    // so the incomplete run's backups and the first run's go (--keep-last 1), its own stay.
    pg.psql("postgres", "ALTER ROLE agent BYPASSRLS");
    let (out, third) = as_agent(&pg, &dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(!std::path::Path::new(&dump_of(&second, "plain")).exists());
    assert!(
        !std::path::Path::new(&first_plain).exists(),
        "an older complete run goes once a newer one is complete"
    );
    assert!(std::path::Path::new(&dump_of(&third, "plain")).exists());
    let out = check(&dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // A killed run: recorded at its start, never ended.
    pg.psql("plain", "INSERT INTO t SELECT generate_series(1, 2000000)");
    let record_started = || {
        runs_json(&dir)
            .first()
            .is_some_and(|r| r["status"] == "unfinished")
    };
    let mut cmd = pgbak_on(&pg);
    cmd.args(["backup", "--all-databases", "--no-s3", "--output-dir"])
        .arg(&*dir);
    let (out, _) = signal_when(cmd, record_started, libc::SIGKILL, Duration::from_secs(60));
    assert_eq!(out.status.code(), None, "{}", output_text(&out));
    std::thread::sleep(Duration::from_millis(1100));
    let out = check(&dir, &["--max-run-duration", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never finished"),
        "{}",
        output_text(&out)
    );
}
