//! Monitoring across destinations: `list` says which destinations hold each backup, `check`
//! judges each `--to` destination and fails naming the one that missed the newest backup,
//! with a `destination` label on its metrics.

use super::{to_bucket, to_dir, with_profile};
use crate::support::bucket::backup_dir;
use crate::support::{output_text, pg16, pgbak, pgbak_bare, run, second_s3};

#[test]
fn destinations_listed_per_backup_and_a_lagging_one_fails_the_check() {
    let pg = pg16();
    let db = pg.fixture_db("dest holders", 0.01);
    let other = second_s3();
    let offsite_bucket = other.fresh_bucket("dest-holders");
    let dir = backup_dir("dest-holders-local");
    let nas = backup_dir("dest-holders-nas");
    let (nas_url, offsite) = (
        to_dir(&nas, "name=nas"),
        to_bucket(other, &offsite_bucket, "", "name=offsite&profile=offsite"),
    );
    let aws = backup_dir("dest-holders-aws");
    // The first backup reaches all three; the second one skips the bucket (it was "down").
    for to in [vec![&nas_url, &offsite], vec![&nas_url]] {
        let mut cmd = pgbak(pg);
        with_profile(&mut cmd, &aws);
        cmd.env("DATABASE_URL", db.url())
            .args(["backup", "--no-s3", "--output-dir"])
            .arg(&dir);
        for url in to {
            cmd.args(["--to", url]);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let with_all = |cmd: &mut std::process::Command| {
        with_profile(cmd, &aws);
        cmd.args(["--backup-dir"])
            .arg(&dir)
            .args(["--to", &nas_url, "--to", &offsite]);
    };
    let mut list = pgbak_bare();
    list.args(["list", "--json"]);
    with_all(&mut list);
    let out = run(&mut list);
    assert!(out.status.success(), "{}", output_text(&out));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let holders: Vec<serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["destinations"].clone())
        .collect();
    assert_eq!(
        holders,
        [
            serde_json::json!(["local", "nas"]),
            serde_json::json!(["local", "nas", "offsite"])
        ],
        "{entries:#}"
    );
    let mut table = pgbak_bare();
    table.arg("list");
    with_all(&mut table);
    let out = run(&mut table);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("local,nas,offsite"),
        "{}",
        output_text(&out)
    );

    // check: the directory and the NAS are current; the bucket lags, and is named.
    let prom = dir.join("check.prom");
    let mut check = pgbak_bare();
    check.args(["check", "--max-verified-age", "0", "--json", "--prometheus"]);
    check.arg(&prom);
    with_all(&mut check);
    let out = run(&mut check);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("destination offsite lags"), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failing: Vec<&str> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["ok"] == false)
        .map(|g| g["destination"].as_str().unwrap_or("main"))
        .collect();
    assert_eq!(failing, ["offsite"], "{report:#}");
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(metrics.contains("destination=\"offsite\""), "{metrics}");
    assert!(metrics.contains("destination=\"nas\""), "{metrics}");
    // Without the lagging destination, the check passes.
    let mut check = pgbak_bare();
    check
        .args(["check", "--max-verified-age", "0", "--backup-dir"])
        .arg(&dir)
        .args(["--to", &nas_url]);
    let out = run(&mut check);
    assert!(out.status.success(), "{}", output_text(&out));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&nas);
}
