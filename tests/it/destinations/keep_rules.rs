//! Retention per destination: a rule in a destination's URL replaces the global one there
//! only, and each destination is pruned on its own listing.

use super::{to_bucket, to_dir};
use crate::support::bucket::{backup_dir, files, keys, pgbak_s3};
use crate::support::{output_text, pg16, run, s3, second_s3};

#[test]
fn destinations_keep_by_their_own_rules() {
    let pg = pg16();
    let db = pg.fixture_db("dest keep", 0.01);
    let (main, other) = (s3(), second_s3());
    let bucket = main.fresh_bucket("dest-keep-main");
    let offsite = other.fresh_bucket("dest-keep-off");
    let dir = backup_dir("dest-keep-local");
    let nas = backup_dir("dest-keep-nas");
    let to = format!(
        "{} {}",
        to_dir(&nas, "keep-last=3"),
        to_bucket(
            other,
            &offsite,
            "",
            "name=offsite&keep-last=0&keep-daily=30"
        )
    );
    for _ in 0..4 {
        let out = run(pgbak_s3(&db, main, &bucket, "p/")
            .args(["backup", "--keep-last", "2", "--output-dir"])
            .arg(&dir)
            .env("PGBAK_TO", &to));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // Global keep-last 2: the directory and the S3_* bucket.
    assert_eq!(files(&dir, ".dump").len(), 2);
    assert_eq!(keys(main, &bucket, "p/", ".dump").len(), 2);
    // keep-last=3 in the URL: three at the NAS.
    let at_nas = files(&nas, ".dump");
    assert_eq!(at_nas.len(), 3, "{at_nas:?}");
    assert_eq!(files(&nas, ".meta.json").len(), 3);
    // keep-daily=30 with keep-last=0: the newest of today only.
    let at_offsite = keys(other, &offsite, "", ".dump");
    assert_eq!(at_offsite.len(), 1, "{at_offsite:?}");
    // The newest backup is kept everywhere.
    let newest = files(&dir, ".dump").pop().unwrap();
    assert_eq!(at_nas.last(), Some(&newest));
    assert_eq!(at_offsite.last(), Some(&newest));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&nas);
}
