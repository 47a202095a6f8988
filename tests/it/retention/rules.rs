//! The rules and the invariants: BACKUP_KEEP and the calendar rules from the environment, the
//! newest verified backup and a dump without meta.json are never deleted, `prune --dry-run` shows
//! each decision, prune applies the rules to an S3 prefix, a killed retention's leftover goes.

use std::process::Output;

use super::{backed_up, ok, pgbak_in, s3_backup, small_db, small_s3_case, three_backups};
use crate::support::bucket::pgbak_s3;
use crate::support::{
    self, backup, dumps, earlier_backup, files, output_text, pg16, read_meta, run, stdout_json,
};

/// Lines of stderr that warn about `needle`.
fn warnings_naming(out: &Output, needle: &str) -> usize {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("no meta.json") && l.contains(needle))
        .count()
}

/// A `.dump` of the group of `made` (a backup's file name: same database and
/// server), older than any backup, with no meta.json.
fn orphan_name(made: &str) -> String {
    let stem = made.trim_end_matches(".dump");
    let group = stem.rsplit_once('_').map_or(stem, |(group, _)| group);
    format!("{group}_20200101T000000.dump")
}

#[test]
fn backup_reads_backup_keep_from_the_environment() {
    let pg = pg16();
    let db = small_db(pg, "env keep", 10);
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let out = support::pgbak(pg)
            .env("DATABASE_URL", db.url())
            .env("BACKUP_KEEP", "1")
            .args(["backup", "--output-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        ok(&out);
    }
    assert_eq!(dumps(dir.path()).len(), 1, "{:?}", files(dir.path()));
}

#[test]
fn retention_never_deletes_the_newest_verified_backup() {
    let pg = pg16();
    let db = small_db(pg, "keep verified", 50);
    let dir = tempfile::tempdir().unwrap();
    let first = backed_up(pg, &db, dir.path(), "1");
    let verified = support::pgbak(pg)
        .env("DATABASE_URL", db.url())
        .arg("verify")
        .arg(dir.path().join(&first))
        .args(["--expect-table", "public.t"])
        .output()
        .unwrap();
    ok(&verified);
    let second = backed_up(pg, &db, dir.path(), "1");
    let third = backed_up(pg, &db, dir.path(), "1");
    let left = dumps(dir.path());
    assert!(left.contains(&first), "the verified one stays: {left:?}");
    assert!(
        !left.contains(&second),
        "the unverified older one goes: {left:?}"
    );
    assert!(left.contains(&third), "{left:?}");
    let meta = read_meta(&dir.path().join(first.replace(".dump", ".meta.json")));
    assert_eq!(meta["verification"]["passed"], true);
}

#[test]
fn retention_reports_a_dump_without_meta_once_and_keeps_it() {
    let pg = pg16();
    let db = small_db(pg, "orphan dump", 10);
    let dir = tempfile::tempdir().unwrap();
    ok(&backup(pg, &db.name, dir.path(), &["--keep", "1"]));
    let orphan = orphan_name(&dumps(dir.path())[0]);
    std::fs::write(dir.path().join(&orphan), b"PGDMP not really").unwrap();
    for _ in 0..2 {
        let out = backup(pg, &db.name, dir.path(), &["--keep", "1"]);
        ok(&out);
        assert_eq!(warnings_naming(&out, &orphan), 1, "{}", output_text(&out));
    }
    assert!(dir.path().join(&orphan).exists());
    assert_eq!(dumps(dir.path()).len(), 2, "the orphan and the newest");
}

#[test]
fn s3_retention_reports_a_dump_without_meta_once_and_keeps_it() {
    let (db, server, bucket, dir) = small_s3_case("s3 orphan dump", "orphan");
    s3_backup(&db, server, &bucket, dir.path(), "1");
    let orphan_key = format!("p/{}", orphan_name(&dumps(dir.path())[0]));
    server.put_object(&bucket, &orphan_key, b"PGDMP not really".to_vec(), None);
    for _ in 0..2 {
        let out = s3_backup(&db, server, &bucket, dir.path(), "1");
        assert_eq!(
            warnings_naming(&out, &format!("s3://{bucket}/{orphan_key}")),
            1,
            "{}",
            output_text(&out)
        );
    }
    let keys: Vec<String> = server
        .list_objects(&bucket, "p/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(keys.contains(&orphan_key), "{keys:?}");
    assert_eq!(
        keys.len(),
        3,
        "the orphan, the newest dump and its meta.json: {keys:?}"
    );
}

#[test]
fn prune_dry_run_shows_each_decision_and_deletes_nothing_then_prunes() {
    let pg = pg16();
    let (db, dir, made) = three_backups(pg, "prune");
    let plan = stdout_json(&pgbak_in(
        pg,
        &db,
        dir.path(),
        &["prune", "--keep-last", "2", "--dry-run", "--json"],
    ));
    let plan = plan.as_array().unwrap();
    assert_eq!(plan.len(), 3, "{plan:?}");
    let action = |file: &str| {
        let stem = file.trim_end_matches(".dump");
        plan.iter().find(|o| o["name"] == stem).unwrap().clone()
    };
    assert_eq!(action(&made[0])["action"], "delete");
    assert_eq!(action(&made[1])["action"], "keep");
    assert_eq!(action(&made[1])["reasons"], serde_json::json!(["last 2"]));
    assert_eq!(
        action(&made[2])["reasons"],
        serde_json::json!(["newest", "last 2"])
    );
    assert_eq!(dumps(dir.path()).len(), 3, "a dry run deletes nothing");

    let text = pgbak_in(
        pg,
        &db,
        dir.path(),
        &["prune", "--keep-last", "2", "--dry-run"],
    );
    let stdout = String::from_utf8_lossy(&ok(&text).stdout).into_owned();
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("delete")).count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("keep")).count(),
        2,
        "{stdout}"
    );

    ok(&pgbak_in(
        pg,
        &db,
        dir.path(),
        &["prune", "--keep-last", "2"],
    ));
    assert_eq!(dumps(dir.path()), made[1..].to_vec());
}

#[test]
fn prune_applies_the_rules_to_the_s3_prefix() {
    let (db, server, bucket, dir) = small_s3_case("s3 prune", "prune");
    for _ in 0..3 {
        s3_backup(&db, server, &bucket, dir.path(), "0");
    }
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .env("BACKUP_DIR", dir.path())
        .args(["prune", "--s3", "--no-local", "--keep-last", "1", "--json"]));
    let plan = stdout_json(&out);
    assert_eq!(
        plan.as_array().unwrap().len(),
        3,
        "only S3 is decided: {plan}"
    );
    assert!(plan.as_array().unwrap().iter().all(|o| o["where"] == "s3"));
    assert_eq!(
        server.list_objects(&bucket, "p/").len(),
        2,
        "one dump and its meta.json"
    );
    assert_eq!(
        dumps(dir.path()).len(),
        3,
        "--no-local leaves the directory alone"
    );
}

#[test]
fn calendar_rules_come_from_the_environment_and_name_their_bucket() {
    let pg = pg16();
    let (_db, dir, made) = three_backups(pg, "gfs env");
    let out = support::pgbak(pg)
        .env("BACKUP_DIR", dir.path())
        .env("BACKUP_KEEP_DAILY", "1")
        .args(["prune", "--dry-run", "--json"])
        .output()
        .unwrap();
    let plan = stdout_json(&out);
    let plan = plan.as_array().unwrap();
    let newest = plan
        .iter()
        .find(|o| o["name"] == made[2].trim_end_matches(".dump"))
        .unwrap();
    // The bucket is the backup's own UTC day, from its name.
    let stamp = made[2].rsplit('_').next().unwrap();
    let day = format!("{}-{}-{}", &stamp[0..4], &stamp[4..6], &stamp[6..8]);
    assert_eq!(
        newest["reasons"],
        serde_json::json!(["newest", format!("daily {day}")])
    );
    assert_eq!(
        plan.iter().filter(|o| o["action"] == "delete").count(),
        2,
        "no --keep-last default once a calendar rule is set: {plan:?}"
    );
    assert_eq!(dumps(dir.path()).len(), 3);
}

#[test]
fn a_meta_json_left_by_a_killed_retention_is_removed_by_the_next_run() {
    let pg = pg16();
    let db = pg.db_with("orphan_meta", "CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().unwrap();
    let earlier = earlier_backup(pg, &db.name, tmp.path());
    // Retention deletes the dump first, then its meta.json: a kill in between leaves this.
    std::fs::remove_file(tmp.path().join(&earlier)).unwrap();
    let orphan = earlier.replace(".dump", ".meta.json");
    assert!(tmp.path().join(&orphan).exists());
    let out = backup(pg, &db.name, tmp.path(), &["--keep", "3"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let left = files(tmp.path());
    assert!(!left.contains(&orphan), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
}

/// A backup's name never sorts before one already in its group: three runs within
/// one second once took T, T+1 and then T again (freed by retention), so "the
/// newest" and `--keep 1` kept the wrong one. Here a group's newest name is a few
/// seconds ahead of the clock (a run that had to move on), and the next backup
/// is named after it.
#[test]
fn a_new_backup_is_named_after_the_newest_of_its_group() {
    let pg = pg16();
    let db = small_db(pg, "names ahead", 10);
    let dir = tempfile::tempdir().unwrap();
    ok(&backup(pg, &db.name, dir.path(), &[]));
    let made = dumps(dir.path()).pop().unwrap();
    let group = made
        .trim_end_matches(".dump")
        .rsplit_once('_')
        .unwrap()
        .0
        .to_owned();
    let ahead = (chrono::Utc::now() + chrono::Duration::seconds(30)).format("%Y%m%dT%H%M%S");
    let ahead_name = format!("{group}_{ahead}.dump");
    std::fs::write(dir.path().join(&ahead_name), b"PGDMP not really").unwrap();
    ok(&backup(pg, &db.name, dir.path(), &[]));
    let newest = dumps(dir.path()).pop().unwrap();
    assert_ne!(newest, ahead_name, "{:?}", dumps(dir.path()));
    assert!(newest > ahead_name, "{:?}", dumps(dir.path()));
}
