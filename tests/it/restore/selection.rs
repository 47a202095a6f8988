//! Which backup restore and verify take when no file is named: the target database's newest
//! complete backup of the mode asked, never one whose verification failed, never another
//! database's (also on S3, also by an s3:// URI); nothing found says so.

use serde_json::Value;

use crate::support::bucket::pgbak_s3;
use crate::support::names::{backup_json, colliding_pair, file_name, pgbak_for};
use crate::support::verify::{read_meta, write_meta, Dir};
use crate::support::{output_text, pg16, pgbak, run, s3};

#[test]
fn s3_without_a_file_picks_the_target_databases_backup() {
    let pg = pg16();
    let (spaced, dashed) = colliding_pair(pg);
    let server = s3();
    let bucket = server.fresh_bucket("trust-pick");
    let prefix = "pick/";
    let dir = Dir::new("trust-s3-pick");
    let mine = backup_json(&mut pgbak_s3(&spaced, server, &bucket, prefix), &dir, &[]);
    // Newer, and named like `x`'s backups used to be.
    backup_json(&mut pgbak_s3(&dashed, server, &bucket, prefix), &dir, &[]);
    let out = run(pgbak_s3(&spaced, server, &bucket, prefix).args([
        "verify",
        "--from-s3",
        "--json",
        "--expect-table",
        "public.t",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verified = report["backup"].as_str().unwrap();
    assert!(verified.ends_with(&file_name(&mine)), "{verified}");
}

#[test]
fn restore_and_verify_without_a_file_pick_the_targets_newest_full_backup() {
    let pg = pg16();
    let target = pg.db_with(
        "trust target",
        "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)",
    );
    let other = pg.db_with(
        "trust other",
        "CREATE TABLE theirs (x int); INSERT INTO theirs VALUES (1)",
    );
    let dir = Dir::new("trust-pick");
    let full = backup_json(&mut pgbak_for(&target), &dir, &["--no-s3"]);
    let data = backup_json(
        &mut pgbak_for(&target),
        &dir,
        &["--no-s3", "--mode", "data"],
    );
    let others = backup_json(&mut pgbak_for(&other), &dir, &["--no-s3"]);

    let out = run(pgbak_for(&target)
        .args([
            "verify",
            "--json",
            "--expect-table",
            "public.mine",
            "--backup-dir",
        ])
        .arg(&*dir));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    assert_eq!(report["backup"], full.display().to_string(), "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(pgbak_for(&target)
        .args(["verify", "--json", "--mode", "data", "--backup-dir"])
        .arg(&*dir));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backup"], data.display().to_string(), "{report:#}");

    target.psql("DROP TABLE mine");
    let out = run(pgbak_for(&target)
        .args(["restore", "--create-db", "--no-confirm", "--backup-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(target.psql("SELECT count(*) FROM mine"), "1");
    assert_eq!(
        target.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'theirs'"),
        "0"
    );

    // Another database's backup, named explicitly: refused before anything is touched.
    let out = run(pgbak_for(&target)
        .args(["restore", "--create-db", "--no-confirm"])
        .arg(&others));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains(&other.name) && text.contains("--allow-other-database"),
        "{text}"
    );
    assert_eq!(target.psql("SELECT count(*) FROM mine"), "1", "untouched");
    let out = run(pgbak_for(&target)
        .args([
            "restore",
            "--create-db",
            "--no-confirm",
            "--allow-other-database",
        ])
        .arg(&others));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(target.psql("SELECT count(*) FROM theirs"), "1");
}

#[test]
fn restore_and_verify_skip_backups_whose_verification_failed() {
    let pg = pg16();
    let db = pg.db_with(
        "trust failed",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    let dir = Dir::new("trust-failed");
    let good = backup_json(&mut pgbak_for(&db), &dir, &["--no-s3"]);
    db.psql("INSERT INTO t VALUES (2)");
    let bad = backup_json(&mut pgbak_for(&db), &dir, &["--no-s3"]);
    let mut meta = read_meta(&bad);
    meta["verification"] = serde_json::json!({
        "verified_at": "2026-11-25T03:00:00Z", "passed": false, "pgbak_version": "0.1.0"
    });
    write_meta(&bad, &meta);
    let bad_stem = file_name(&bad).trim_end_matches(".dump").to_owned();

    let restore = |extra: &[&str]| {
        run(pgbak_for(&db)
            .args(["restore", "--create-db", "--no-confirm", "--backup-dir"])
            .arg(&*dir)
            .args(extra))
    };
    let out = restore(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&bad_stem),
        "names the skipped one"
    );
    assert_eq!(
        db.psql("SELECT count(*) FROM t"),
        "1",
        "the older good backup"
    );
    let out = restore(&["--include-failed"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(db.psql("SELECT count(*) FROM t"), "2");

    let out = run(pgbak_for(&db)
        .args([
            "verify",
            "--json",
            "--expect-table",
            "public.t",
            "--backup-dir",
        ])
        .arg(&*dir));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    assert_eq!(report["backup"], good.display().to_string());

    // Every backup failed: nothing is picked, exit 2, both named. (The verify
    // above recorded its pass beside the backup too; this stands in for an
    // older pgbak's failed result in meta.json alone.)
    let verdict = good.with_file_name(file_name(&good).replace(".dump", ".verify.json"));
    std::fs::remove_file(&verdict).unwrap();
    let mut meta = read_meta(&good);
    meta["verification"] = serde_json::json!({
        "verified_at": "2026-11-25T03:00:00Z", "passed": false, "pgbak_version": "0.1.0"
    });
    write_meta(&good, &meta);
    db.psql("INSERT INTO t VALUES (3)");
    let out = restore(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(output_text(&out).contains(&bad_stem));
    assert_eq!(db.psql("SELECT count(*) FROM t"), "3", "untouched");
}

/// A restore of an `s3://` object that is another database's backup reads
/// its meta.json and refuses (exit 2) before downloading the dump: moto's
/// request log shows no GET of the dump (on main the dump was downloaded first).
#[test]
fn restore_of_another_databases_s3_object_refuses_before_the_download() {
    let pg = pg16();
    let db = pg.db_with(
        "other s3 source",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)",
    );
    let target = pg.fresh_db("other s3 target");
    let server = s3();
    let bucket = server.fresh_bucket("other");
    let dir = Dir::new("other-s3");
    let out = run(crate::support::bucket::pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--json", "--output-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = format!("p/{}", summary["meta"]["file"].as_str().unwrap());
    let out = run(
        crate::support::bucket::pgbak_s3(&target, server, &bucket, "p/").args([
            "restore",
            &format!("s3://{bucket}/{key}"),
            "--no-confirm",
        ]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-other-database"),
        "{}",
        output_text(&out)
    );
    let log = server.log();
    assert!(
        log.contains(&format!("/{bucket}/p/")),
        "moto logs requests: {log}"
    );
    let fetched: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("\"GET /{bucket}/{key}")))
        .filter(|l| !l.contains(".meta.json"))
        .collect();
    assert!(fetched.is_empty(), "the dump was downloaded: {fetched:?}");
}

/// With --backup-dir given, the "nothing found" error does not tell the
/// operator to pass --backup-dir; it names the directory searched.
#[test]
fn nothing_found_in_the_given_backup_dir_says_so() {
    let pg = pg16();
    let db = pg.fresh_db("empty dir");
    let dir = Dir::new("empty-dir");
    let out = run(pgbak(pg)
        .args(["verify", "--backup-dir"])
        .arg(&*dir)
        .env("DATABASE_URL", db.url()));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(!stderr.contains("pass --backup-dir"), "{stderr}");
}
