//! `pgbak prune --to`: every destination pruned by its own rules (its URL's over the global
//! ones), on its own listing; nothing else removed.

use serde_json::Value;

use super::{to_bucket, to_dir};
use crate::support::bucket::{backup_dir, files, keys, pgbak_s3};
use crate::support::{output_text, pg16, run, s3, second_s3};

#[test]
fn destinations_prune_applies_each_destinations_own_rules() {
    let pg = pg16();
    let db = pg.fixture_db("dest prune", 0.01);
    let (main, other) = (s3(), second_s3());
    let bucket = main.fresh_bucket("dest-prune-main");
    let offsite = other.fresh_bucket("dest-prune-off");
    let dir = backup_dir("dest-prune-local");
    let nas = backup_dir("dest-prune-nas");
    // Four backups everywhere, nothing pruned (keep-last 9 wherever a backup goes).
    let keep_all = format!(
        "{} {}",
        to_dir(&nas, "name=nas&keep-last=9"),
        to_bucket(other, &offsite, "", "name=offsite&keep-last=9")
    );
    for _ in 0..4 {
        let out = run(pgbak_s3(&db, main, &bucket, "p/")
            .args(["backup", "--keep-last", "9", "--output-dir"])
            .arg(&dir)
            .env("PGBAK_TO", &keep_all));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let made = files(&dir, ".dump");
    assert_eq!(made.len(), 4);
    assert_eq!(files(&nas, ".dump"), made);
    assert_eq!(keys(other, &offsite, "", ".dump"), made);

    // Global keep-last 1; the NAS keeps 3, offsite 2.
    let rules = format!(
        "{} {}",
        to_dir(&nas, "name=nas&keep-last=3"),
        to_bucket(other, &offsite, "", "name=offsite&keep-last=2")
    );
    let prune = |extra: &[&str]| {
        run(pgbak_s3(&db, main, &bucket, "p/")
            .args([
                "prune",
                "--s3",
                "--keep-last",
                "1",
                "--json",
                "--backup-dir",
            ])
            .arg(&dir)
            .args(extra)
            .env("PGBAK_TO", &rules))
    };
    // A dry run says so per destination and deletes nothing.
    let out = prune(&["--dry-run"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let fates: Value = serde_json::from_slice(&out.stdout).expect("prune --json");
    let deleted_at = |name: &str| {
        fates
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["destination"] == name && f["action"] == "delete")
            .count()
    };
    assert_eq!(
        [
            deleted_at("local"),
            deleted_at("s3"),
            deleted_at("nas"),
            deleted_at("offsite")
        ],
        [3, 3, 1, 2],
        "{fates:#}"
    );
    assert_eq!(files(&nas, ".dump").len(), 4, "a dry run deletes nothing");

    let out = prune(&[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(files(&dir, ".dump"), made[3..]);
    assert_eq!(keys(main, &bucket, "p/", ".dump"), made[3..]);
    assert_eq!(files(&nas, ".dump"), made[1..]);
    assert_eq!(files(&nas, ".meta.json").len(), 3);
    assert_eq!(keys(other, &offsite, "", ".dump"), made[2..]);
    assert_eq!(keys(other, &offsite, "", ".meta.json").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&nas);
}
