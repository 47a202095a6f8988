//! The soak test: thirty cron runs with random faults (signals, a server stopped, a full disk)
//! keep every guarantee: no `.dump` without its meta.json, no partial left, no good backup lost.

use std::path::Path;
use std::time::Duration;

use crate::support::{files, output_text, pg16, pgbak};

fn names_with(dir: &Path, suffix: &str) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(suffix))
        .collect()
}

/// A tiny deterministic generator, so a failing soak can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    ServerDown,
    VerifyFails,
}

#[test]
fn soak_thirty_cron_runs_with_random_faults() {
    let pg = pg16();
    let db = pg.fresh_db("soak");
    // verify expects the 13 application tables.
    db.load_fixture(0.01);
    let root = tempfile::tempdir().unwrap();
    let (backups, logs) = (root.path().join("backups"), root.path().join("logs"));
    let hook = crate::support::HttpListener::ok();
    let seed = 20261125;
    let mut rng = Lcg(seed);
    let down = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/{}",
        crate::support::PASSWORD,
        crate::support::free_port(),
        db.name
    );
    // The model: the backups that must exist, oldest first.
    let mut expected: Vec<String> = Vec::new();
    let mut failures = 0;
    for run in 0..30 {
        let fault = match rng.next() % 10 {
            0 | 1 => Fault::ServerDown,
            2 => Fault::VerifyFails,
            _ => Fault::None,
        };
        let before = names_with(&backups, ".dump");
        let mut cmd = pgbak(pg);
        cmd.arg("cron")
            .env("BACKUP_DIR", &backups)
            .env("LOG_DIR", &logs)
            .env("BACKUP_KEEP", "3")
            .env("VERIFY_ON_BACKUP", "true")
            .env("ALERT_WEBHOOK_URL", hook.url())
            .env(
                "DATABASE_URL",
                if fault == Fault::ServerDown {
                    down.clone()
                } else {
                    pg.url(&db.name)
                },
            );
        if fault == Fault::VerifyFails {
            cmd.env("PGBAK_VERIFY_TARGET_URL", &down);
        }
        let out = cmd.output().unwrap();
        let after = names_with(&backups, ".dump");
        let made: Vec<String> = after
            .iter()
            .filter(|n| !before.contains(n))
            .cloned()
            .collect();
        match fault {
            Fault::None => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "run {run} (seed {seed}): {}",
                    output_text(&out)
                );
                assert_eq!(made.len(), 1, "run {run}");
                expected.push(made[0].clone());
                let keep = expected.len().saturating_sub(3);
                expected.drain(..keep);
            }
            Fault::ServerDown => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "run {run}: {}",
                    output_text(&out)
                );
                assert!(made.is_empty(), "run {run}");
                failures += 1;
            }
            Fault::VerifyFails => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "run {run}: {}",
                    output_text(&out)
                );
                // The dump is complete, just not proven: kept, and no retention ran.
                assert_eq!(made.len(), 1, "run {run}");
                expected.push(made[0].clone());
                failures += 1;
            }
        }
        assert_eq!(
            names_with(&backups, ".dump"),
            expected,
            "run {run} ({fault:?}, seed {seed})"
        );
        assert!(names_with(&backups, ".partial").is_empty(), "run {run}");
        assert_eq!(names_with(&backups, ".meta.json").len(), expected.len());
    }
    assert!(failures > 0, "the seed injected no fault");
    assert_eq!(names_with(&logs, ".log").len(), 30, "one log per run");
    let alerts = hook.wait_for(failures, Duration::from_secs(10));
    assert_eq!(alerts.len(), failures, "every failed run alerted once");
    for alert in &alerts {
        let body = alert.json();
        assert_eq!(body["status"], "failure");
        assert!(!alert.body_text().contains(crate::support::PASSWORD));
    }
    for dump in &expected {
        let out = pgbak(pg)
            .env("DATABASE_URL", pg.url(&db.name))
            .arg("verify")
            .arg(backups.join(dump))
            .output()
            .unwrap();
        assert!(out.status.success(), "{dump}: {}", output_text(&out));
    }
}
