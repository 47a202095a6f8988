//! Retention against real servers: what `backup`, `cron` and `prune` keep and
//! delete, the invariants no rule overrides (newest verified, meta-less dumps,
//! pins), the anomaly pin, and S3 Object Lock on the moto server.

use std::path::Path;
use std::process::Output;

use crate::s3::pgbak_s3;
use crate::support::{
    self, backup, dumps, files, output_text, pg16, read_meta, run, s3, stdout_json, Pg, TestDb,
};

/// A small database with `rows` rows in `public.t`.
fn small_db<'a>(pg: &'a Pg, hint: &str, rows: u32) -> TestDb<'a> {
    let db = pg.fresh_db(hint);
    db.psql(&format!(
        "CREATE TABLE t(x int, pad text); \
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {rows}) g"
    ));
    db
}

fn ok(out: &Output) -> &Output {
    assert!(out.status.success(), "{}", output_text(out));
    out
}

/// Lines of stderr that warn about `needle`.
fn warnings_naming(out: &Output, needle: &str) -> usize {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("no meta.json") && l.contains(needle))
        .count()
}

/// `pgbak backup --keep KEEP --json` of `db` into `dir`; the dump's file name.
fn backed_up(pg: &Pg, db: &TestDb, dir: &Path, keep: &str) -> String {
    let out = backup(pg, &db.name, dir, &["--keep", keep, "--json"]);
    stdout_json(&out)["meta"]["file"]
        .as_str()
        .unwrap()
        .to_owned()
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

/// A `.dump` of the group of `made` (a backup's file name: same database and
/// server), older than any backup, with no meta.json.
fn orphan_name(made: &str) -> String {
    let stem = made.trim_end_matches(".dump");
    let group = stem.rsplit_once('_').map_or(stem, |(group, _)| group);
    format!("{group}_20200101T000000.dump")
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
    let pg = pg16();
    let db = small_db(pg, "s3 orphan dump", 10);
    let server = s3();
    let bucket = server.fresh_bucket("orphan");
    let dir = tempfile::tempdir().unwrap();
    let first = run(pgbak_s3(&db, server, &bucket, "p/")
        .args([
            "backup",
            "--keep",
            "1",
            "--storage-class",
            "STANDARD",
            "--output-dir",
        ])
        .arg(dir.path()));
    ok(&first);
    let orphan_key = format!("p/{}", orphan_name(&dumps(dir.path())[0]));
    server.put_object(&bucket, &orphan_key, b"PGDMP not really".to_vec(), None);
    for _ in 0..2 {
        let out = run(pgbak_s3(&db, server, &bucket, "p/")
            .args([
                "backup",
                "--keep",
                "1",
                "--storage-class",
                "STANDARD",
                "--output-dir",
            ])
            .arg(dir.path()));
        ok(&out);
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

/// `pgbak <args>` with `dir` as BACKUP_DIR.
fn pgbak_in(pg: &Pg, db: &TestDb, dir: &std::path::Path, args: &[&str]) -> Output {
    support::pgbak(pg)
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn prune_dry_run_shows_each_decision_and_deletes_nothing_then_prunes() {
    let pg = pg16();
    let db = small_db(pg, "prune", 10);
    let dir = tempfile::tempdir().unwrap();
    let made: Vec<String> = (0..3)
        .map(|_| backed_up(pg, &db, dir.path(), "0"))
        .collect();
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
    let pg = pg16();
    let db = small_db(pg, "s3 prune", 10);
    let server = s3();
    let bucket = server.fresh_bucket("prune");
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        ok(&run(pgbak_s3(&db, server, &bucket, "p/")
            .args([
                "backup",
                "--keep",
                "0",
                "--storage-class",
                "STANDARD",
                "--output-dir",
            ])
            .arg(dir.path())));
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
fn backup_after_a_mass_delete_pins_the_previous_backup_until_unpinned() {
    let pg = pg16();
    let db = small_db(pg, "anomaly", 2000);
    let dir = tempfile::tempdir().unwrap();
    let good = backed_up(pg, &db, dir.path(), "1");
    db.psql("DELETE FROM t");
    let out = backup(pg, &db.name, dir.path(), &["--keep", "1", "--json"]);
    let summary = stdout_json(&out);
    let anomaly = summary["anomaly"]
        .as_str()
        .unwrap_or_else(|| panic!("no anomaly reported: {}", output_text(&out)));
    assert!(anomaly.contains("public.t 2000 -> 0"), "{anomaly}");
    let good_meta = dir.path().join(good.replace(".dump", ".meta.json"));
    assert!(read_meta(&good_meta)["pinned"]["reason"].is_string());

    // The pin outlives later runs and shows in list.
    let later = backed_up(pg, &db, dir.path(), "1");
    assert_eq!(dumps(dir.path()), vec![good.clone(), later.clone()]);
    let list = stdout_json(&pgbak_in(
        pg,
        &db,
        dir.path(),
        &["list", "--json", "--keep", "1"],
    ));
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == good.trim_end_matches(".dump"))
        .unwrap()
        .clone();
    assert!(entry["pinned"].is_object(), "{entry}");
    assert_eq!(entry["kept_by"], serde_json::json!(["pinned"]));

    ok(&pgbak_in(
        pg,
        &db,
        dir.path(),
        &["unpin", good.trim_end_matches(".dump")],
    ));
    assert!(read_meta(&good_meta).get("pinned").is_none());
    let last = backed_up(pg, &db, dir.path(), "1");
    assert_eq!(dumps(dir.path()), vec![last], "unpinned, it goes");
}

#[test]
fn no_anomaly_check_pins_nothing() {
    let pg = pg16();
    let db = small_db(pg, "anomaly off", 2000);
    let dir = tempfile::tempdir().unwrap();
    ok(&backup(pg, &db.name, dir.path(), &["--keep", "1"]));
    db.psql("DELETE FROM t");
    let summary = stdout_json(&backup(
        pg,
        &db.name,
        dir.path(),
        &["--keep", "1", "--json", "--no-anomaly-check"],
    ));
    assert!(summary["anomaly"].is_null());
    assert_eq!(dumps(dir.path()).len(), 1);
}

#[test]
fn cron_alerts_a_warning_naming_the_collapsed_tables_and_keeps_exit_0() {
    let pg = pg16();
    let db = small_db(pg, "cron anomaly", 2000);
    let root = tempfile::tempdir().unwrap();
    let hook = support::HttpListener::ok();
    let cron = || {
        support::pgbak(pg)
            .arg("cron")
            .env("DATABASE_URL", db.url())
            .env("BACKUP_DIR", root.path().join("backups"))
            .env("LOG_DIR", root.path().join("logs"))
            .env("BACKUP_KEEP", "1")
            .env("ALERT_WEBHOOK_URL", hook.url())
            .output()
            .unwrap()
    };
    ok(&cron());
    assert!(hook.requests().is_empty(), "no alert for a normal run");
    db.psql("DELETE FROM t");
    ok(&cron());
    let alerts = hook.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(alerts.len(), 1);
    let body = alerts[0].json();
    assert_eq!(body["status"], "warning", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("public.t 2000 -> 0"), "{detail}");
    assert!(detail.contains("Step: anomaly"), "{detail}");
    assert_eq!(
        dumps(&root.path().join("backups")).len(),
        2,
        "the pinned one stays"
    );
}

#[test]
fn s3_object_lock_on_a_bucket_without_it_exits_2_before_dumping() {
    let pg = pg16();
    let db = small_db(pg, "no lock bucket", 10);
    let server = s3();
    let bucket = server.fresh_bucket("nolock");
    let dir = tempfile::tempdir().unwrap();
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--s3-object-lock-days", "7", "--output-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not have Object Lock enabled"),
        "{}",
        output_text(&out)
    );
    assert!(dumps(dir.path()).is_empty(), "nothing was dumped");
    assert!(server.list_objects(&bucket, "").is_empty());
}

/// A bucket created with Object Lock enabled (and so versioning).
fn lock_bucket(server: &support::S3Server, name: &str) {
    let client = server.client();
    support::s3::block_on(async {
        client
            .create_bucket()
            .bucket(name)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
    })
    .expect("creating a bucket with Object Lock");
}

#[test]
fn s3_locked_backup_survives_a_delete_attempt_and_prune_plans_around_it() {
    let pg = pg16();
    let db = small_db(pg, "object lock", 10);
    let server = s3();
    let bucket = format!("t-lock-{}", std::process::id());
    lock_bucket(server, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let backup_s3 = |extra: &[&str]| {
        let out = run(pgbak_s3(&db, server, &bucket, "p/")
            .args([
                "backup",
                "--keep",
                "0",
                "--storage-class",
                "STANDARD",
                "--json",
            ])
            .args(extra)
            .arg("--output-dir")
            .arg(dir.path()));
        stdout_json(&out)["meta"]["file"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let locked = backup_s3(&[
        "--s3-object-lock-days",
        "2",
        "--s3-object-lock-mode",
        "governance",
    ]);
    let newer = backup_s3(&[]);
    let locked_key = format!("p/{locked}");

    // The store itself refuses to delete the locked version.
    let client = server.client();
    let refused = support::s3::block_on(async {
        let head = client
            .head_object()
            .bucket(&bucket)
            .key(&locked_key)
            .send()
            .await?;
        let version = head.version_id().unwrap_or_default().to_owned();
        assert!(head.object_lock_retain_until_date().is_some(), "{head:?}");
        Ok::<_, aws_sdk_s3::Error>(
            client
                .delete_object()
                .bucket(&bucket)
                .key(&locked_key)
                .version_id(version)
                .send()
                .await
                .is_err(),
        )
    })
    .expect("reading the lock");
    assert!(refused, "a locked version cannot be deleted");

    // prune plans around it: kept, "locked until", and the run succeeds.
    let prune = |dry: bool| {
        let mut cmd = pgbak_s3(&db, server, &bucket, "p/");
        cmd.env("BACKUP_DIR", dir.path()).args([
            "prune",
            "--s3",
            "--no-local",
            "--keep-last",
            "1",
            "--json",
        ]);
        if dry {
            cmd.arg("--dry-run");
        }
        stdout_json(&run(&mut cmd))
    };
    let plan = prune(true);
    let entry = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == locked.trim_end_matches(".dump"))
        .unwrap()
        .clone();
    assert_eq!(entry["action"], "keep", "{plan}");
    assert!(
        entry["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("locked until"),
        "{entry}"
    );
    prune(false);
    let keys: Vec<String> = server
        .list_objects(&bucket, "p/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(keys.contains(&locked_key), "{keys:?}");
    assert!(keys.contains(&format!("p/{newer}")), "{keys:?}");

    // list shows the lock.
    let list = stdout_json(&run(pgbak_s3(&db, server, &bucket, "p/")
        .env("BACKUP_DIR", dir.path())
        .args(["list", "--s3", "--json"])));
    let shown = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == locked.trim_end_matches(".dump"))
        .unwrap()
        .clone();
    assert!(shown["locked_until"].is_string(), "{shown}");
}

#[test]
fn calendar_rules_come_from_the_environment_and_name_their_bucket() {
    let pg = pg16();
    let db = small_db(pg, "gfs env", 10);
    let dir = tempfile::tempdir().unwrap();
    let made: Vec<String> = (0..3)
        .map(|_| backed_up(pg, &db, dir.path(), "0"))
        .collect();
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
