//! Issue 10 ("Trust I"), names and selection: pgbak never touches another database's backups and never
//! calls a restore good that restored nothing. Names that sanitising used to collapse
//! (`a b` / `a-b`) keep separate retention groups locally and on S3; "the newest
//! backup" is the target database's, in the mode asked, and not one whose
//! verification failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::s3::{pgbak_s3, SECRET};
use crate::support::{self, output_text, pg16, run, s3, Pg, TestDb};
use crate::verify::{meta_path, read_meta, write_meta, Dir};

/// Two databases whose names the old sanitising mapped to one file name:
/// `trust<N> x` and `trust<N>-x` (both were `trust<N>-x`).
fn colliding_pair(pg: &Pg) -> (TestDb<'_>, TestDb<'_>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = format!(
        "trust{}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let spaced = pg.create_db_named(&format!("{base} x"));
    let dashed = pg.create_db_named(&format!("{base}-x"));
    for db in [&spaced, &dashed] {
        db.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    }
    (spaced, dashed)
}

fn pgbak_for(db: &TestDb<'_>) -> Command {
    let mut cmd = support::pgbak(db.pg());
    cmd.env("DATABASE_URL", db.url());
    cmd
}

/// `pgbak backup --json` with extra arguments; the dump path.
fn backup(cmd: &mut Command, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = run(cmd
        .args(["backup", "--json", "--output-dir"])
        .arg(dir)
        .args(extra));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    PathBuf::from(summary["dump"].as_str().expect("dump path"))
}

fn dumps_of(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut dumps: Vec<String> = names.into_iter().filter(|n| n.ends_with(".dump")).collect();
    dumps.sort();
    dumps
}

fn local_dumps(dir: &Path) -> Vec<String> {
    dumps_of(
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()),
    )
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn names_that_sanitise_alike_never_prune_each_other_locally_or_on_s3() {
    let pg = pg16();
    let (spaced, dashed) = colliding_pair(pg);
    let server = s3();
    let bucket = server.fresh_bucket("trust-names");
    let prefix = "names/";
    let dir = Dir::new("trust-names");
    let first = backup(
        &mut pgbak_s3(&spaced, server, &bucket, prefix),
        &dir,
        &["--keep", "1"],
    );
    let second = backup(
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
    let third = backup(&mut pgbak_for(&dashed), &dir, &["--keep", "1", "--no-s3"]);
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
fn s3_without_a_file_picks_the_target_databases_backup() {
    let pg = pg16();
    let (spaced, dashed) = colliding_pair(pg);
    let server = s3();
    let bucket = server.fresh_bucket("trust-pick");
    let prefix = "pick/";
    let dir = Dir::new("trust-s3-pick");
    let mine = backup(&mut pgbak_s3(&spaced, server, &bucket, prefix), &dir, &[]);
    // Newer, and named like `x`'s backups used to be.
    backup(&mut pgbak_s3(&dashed, server, &bucket, prefix), &dir, &[]);
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
    let target = pg.fresh_db("trust target");
    target.psql("CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)");
    let other = pg.fresh_db("trust other");
    other.psql("CREATE TABLE theirs (x int); INSERT INTO theirs VALUES (1)");
    let dir = Dir::new("trust-pick");
    let full = backup(&mut pgbak_for(&target), &dir, &["--no-s3"]);
    let data = backup(
        &mut pgbak_for(&target),
        &dir,
        &["--no-s3", "--mode", "data"],
    );
    let others = backup(&mut pgbak_for(&other), &dir, &["--no-s3"]);

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
    let db = pg.fresh_db("trust failed");
    db.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let dir = Dir::new("trust-failed");
    let good = backup(&mut pgbak_for(&db), &dir, &["--no-s3"]);
    db.psql("INSERT INTO t VALUES (2)");
    let bad = backup(&mut pgbak_for(&db), &dir, &["--no-s3"]);
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

#[test]
fn restore_table_selection_is_exact_and_a_miss_touches_nothing() {
    let pg = pg16();
    let source = pg.fresh_db("trust select");
    source.psql(
        "CREATE SCHEMA audit;
         CREATE TABLE public.users (id int PRIMARY KEY); INSERT INTO public.users VALUES (1), (2);
         CREATE TABLE audit.users (id int); INSERT INTO audit.users VALUES (1), (2), (3);
         CREATE TABLE public.other (id int); INSERT INTO public.other VALUES (1);",
    );
    let dir = Dir::new("trust-select");
    let dump = backup(&mut pgbak_for(&source), &dir, &["--no-s3"]);
    let target = pg.fresh_db("trust select target");
    target.psql("CREATE TABLE leftover (x int)");
    let restore = |extra: &[&str]| {
        run(pgbak_for(&target)
            .args([
                "restore",
                "--create-db",
                "--no-confirm",
                "--allow-other-database",
            ])
            .args(extra)
            .arg(&dump))
    };
    for (selection, says) in [
        (vec!["--table", "public.nope"], "public.nope"),
        (vec!["--table", "nope.users"], "nope.users"),
        (vec!["--table", "users"], "ambiguous"),
        (vec!["--schema", "nope"], "--schema nope"),
        (
            vec!["--schema", "audit", "--table", "other"],
            "within --schema audit",
        ),
    ] {
        let out = restore(&selection);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{selection:?}: {}",
            output_text(&out)
        );
        assert!(output_text(&out).contains(says), "{}", output_text(&out));
        assert_eq!(
            target.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'"),
            "1",
            "{selection:?}: the target was not dropped"
        );
    }
    let tables = |db: &TestDb<'_>| {
        db.psql(
            "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY 1) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
    };
    let out = restore(&["--table", "public.users"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(tables(&target), "public.users");
    assert_eq!(target.psql("SELECT count(*) FROM public.users"), "2");
    let out = restore(&["--table", "audit.users"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(tables(&target), "audit.users", "its schema is created too");
    assert_eq!(target.psql("SELECT count(*) FROM audit.users"), "3");
    let out = restore(&["--schema", "audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(tables(&target), "audit.users");
}
