//! Retention groups: names that sanitising used to collapse (`a b` / `a-b`) keep separate groups
//! locally and on S3, and prune groups by meta.json's database, not the file name.

use std::time::Duration;

use serde_json::Value;

use super::to_legacy_name;
use crate::support::bucket::{backup_dir, pgbak_s3, SECRET};
use crate::support::names::{
    backup_json, colliding_pair, dumps_of, file_name, local_dumps, pgbak_for,
};
use crate::support::verify::{meta_path, read_meta, write_meta, Dir};
use crate::support::{self, backup, dumps, output_text, pg16, run, s3};

#[test]
fn names_that_sanitise_alike_never_prune_each_other_locally_or_on_s3() {
    let pg = pg16();
    let (spaced, dashed) = colliding_pair(pg);
    let server = s3();
    let bucket = server.fresh_bucket("trust-names");
    let prefix = "names/";
    let dir = Dir::new("trust-names");
    let first = backup_json(
        &mut pgbak_s3(&spaced, server, &bucket, prefix),
        &dir,
        &["--keep", "1"],
    );
    let second = backup_json(
        &mut pgbak_s3(&dashed, server, &bucket, prefix),
        &dir,
        &["--keep", "1"],
    );
    // The changed name carries a suffix from the real name; the unchanged one is as before.
    assert!(file_name(&second).starts_with(&format!("{}_full_", dashed.name)));
    assert!(!file_name(&first).starts_with(&format!("{}_full_", dashed.name)));
    assert_eq!(read_meta(&first)["database"], spaced.name.as_str());
    let both = dumps_of([file_name(&first), file_name(&second)]);
    assert_eq!(local_dumps(&dir), both, "local retention kept both");
    let remote = dumps_of(
        server
            .list_objects(&bucket, prefix)
            .into_iter()
            .map(|o| o.key.trim_start_matches(prefix).to_owned()),
    );
    assert_eq!(remote, both, "S3 retention kept both");

    // A backup of `x` written under the old lossy name (its meta.json says `x`) is
    // `x`'s: `x-` retention leaves it, and restore without a file finds it.
    let stamp = file_name(&second)
        .trim_end_matches(".dump")
        .rsplit('_')
        .next()
        .unwrap()
        .to_owned();
    let old_stamp = format!("{}T000000", &stamp[..8]);
    let legacy = dir.join(format!("{}_full_{old_stamp}.dump", dashed.name));
    std::fs::copy(&first, &legacy).unwrap();
    let mut meta = read_meta(&first);
    meta["file"] = Value::String(file_name(&legacy));
    meta["s3"] = Value::Null;
    write_meta(&legacy, &meta);
    std::fs::remove_file(&first).unwrap();
    std::fs::remove_file(meta_path(&first)).unwrap();
    let third = backup_json(&mut pgbak_for(&dashed), &dir, &["--keep", "1", "--no-s3"]);
    let left = local_dumps(&dir);
    assert!(left.contains(&file_name(&legacy)), "{left:?}");
    assert!(left.contains(&file_name(&third)), "{left:?}");
    spaced.psql("DROP TABLE t");
    let out = run(pgbak_for(&spaced)
        .args(["restore", "--create-db", "--no-confirm", "--backup-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&file_name(&legacy)),
        "{}",
        output_text(&out)
    );
    assert_eq!(spaced.psql("SELECT count(*) FROM t"), "1");
    assert!(!output_text(&out).contains(SECRET));
}

#[test]
fn fleet_prune_groups_by_the_database_in_meta_json_not_the_file_name() {
    let pg = pg16();
    let tag = format!("fp{}", std::process::id());
    let spaced = pg.create_db_named(&format!("{tag} x"));
    let dashed = pg.create_db_named(&format!("{tag}-x"));
    let dir = backup_dir("fleet-prune");
    let mut legacy = Vec::new();
    for db in [&spaced, &dashed] {
        db.psql("CREATE TABLE t AS SELECT 1 AS x");
        let before = dumps(&dir);
        let out = backup(pg, &db.name, &dir, &["--keep", "0"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let made = dumps(&dir)
            .into_iter()
            .find(|d| !before.contains(d))
            .unwrap();
        legacy.push(to_legacy_name(&dir, &made, &format!("{tag}-x")));
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(dumps(&dir).len(), 2, "one file-name group, two databases");
    let out = run(support::pgbak(pg)
        .args(["prune", "--keep-last", "1", "--json", "--backup-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    legacy.sort();
    assert_eq!(dumps(&dir), legacy, "each database keeps its only backup");
    let _ = std::fs::remove_dir_all(&dir);
}
