//! `pgbak verify` against real clusters: good dumps pass; corrupt, truncated or mismatching
//! backups fail with exit 1; the clear errors for a non-archive, missing pgvector and zstd.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::verify::{
    assert_all_pass, backup, backup_with, detail, fixture_backup, meta_path, read_meta, run_json,
    status, verify_cmd, verify_dbs, write_meta, Dir,
};
use crate::support::{self, output_text, paths, pg16};

#[test]
fn verify_passes_a_good_dump_and_leaves_no_temp_db() {
    let pg = pg16();
    let (db, dir, _older) = fixture_backup(pg, "verify good", 0.05);
    std::thread::sleep(Duration::from_millis(1100));
    let newest = backup(&db, &dir);
    // No file named: the newest complete backup in --backup-dir.
    let mut cmd = support::pgbak(pg);
    cmd.args(["verify", "--json", "--backup-dir"])
        .arg(&dir)
        .env("DATABASE_URL", db.url());
    let (out, report) = run_json(&mut cmd);
    assert_all_pass(&out, &report);
    assert_eq!(report["backup"], newest.display().to_string());
    assert!(detail(&report, "row counts match").contains("14 tables"));
    assert!(detail(&report, "extensions present").contains("vector"));
    assert!(detail(&report, "alembic revision matches").contains("013"));
    let temp = report["temp_database"].as_str().unwrap();
    assert!(temp.starts_with(&format!("{}_verify_", db.name)), "{temp}");
    assert!(verify_dbs(pg, &db.name).is_empty());
    let meta = read_meta(&newest);
    assert_eq!(meta["verification"]["passed"], true);
    assert_eq!(meta["alembic_revision"], "013", "other keys unchanged");
    let mode = std::fs::metadata(meta_path(&newest))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "meta.json stays private");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("PASS  ").count(), 14, "{stderr}");
}

#[test]
fn verify_fails_on_one_flipped_byte() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify flip", 0.05);
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, &bytes).unwrap();
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(report["passed"], false);
    assert_eq!(status(&report, "checksum"), "fail");
    assert_eq!(status(&report, "restore succeeded"), "skip");
    assert!(verify_dbs(pg, &db.name).is_empty());
    assert_eq!(read_meta(&dump)["verification"]["passed"], false);
}

#[test]
fn verify_fails_on_a_dump_truncated_to_60_percent() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify trunc", 0.05);
    let len = std::fs::metadata(&dump).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&dump).unwrap();
    file.set_len(len * 60 / 100).unwrap();
    drop(file);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "fail");
    assert!(detail(&report, "checksum").contains("truncated"));
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_fails_when_an_expected_table_was_dropped() {
    let pg = pg16();
    let db = pg.fixture_db("verify dropped", 0.05);
    db.psql("DROP TABLE feedback CASCADE");
    let dir = Dir::new("verify-dropped");
    let dump = backup(&db, &dir);
    // No built-in list: the backup's own tables are expected, and all are there
    // (the application's 13 are one line of contrib/pgbak.env.example:
    // tests/it/verify/expected_tables.rs).
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_all_pass(&out, &report);
    assert!(verify_dbs(pg, &db.name).is_empty());
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &["--expect-table", "feedback"]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "expected tables present"), "fail");
    assert!(detail(&report, "expected tables present").contains("public.feedback"));
    // Everything else about the backup is fine.
    assert_eq!(status(&report, "restore succeeded"), "pass");
    assert_eq!(status(&report, "row counts match"), "pass");
    assert!(verify_dbs(pg, &db.name).is_empty());

    // An explicit list adds to meta.json's tables.
    let list = dir.join("tables.txt");
    std::fs::write(
        &list,
        "# the tables this app needs\npublic.users\nvector_chunks\n",
    )
    .unwrap();
    let (out, report) = run_json(&mut verify_cmd(
        &db,
        &dump,
        &["--expect-tables-file", list.to_str().unwrap()],
    ));
    assert_all_pass(&out, &report);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &["--expect-table", "app.nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(detail(&report, "expected tables present").contains("app.nope"));
}

#[test]
fn verify_fails_on_a_wrong_alembic_revision_in_meta() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify alembic", 0.05);
    let mut meta = read_meta(&dump);
    meta["alembic_revision"] = "012".into();
    write_meta(&dump, &meta);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "alembic revision matches"), "fail");
    assert!(detail(&report, "alembic revision matches").contains("012"));
    assert_eq!(status(&report, "row counts match"), "pass");
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_fails_on_a_row_count_changed_in_meta() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify rows", 0.05);
    let mut meta = read_meta(&dump);
    let tables = meta["tables"].as_array_mut().unwrap();
    let users = tables.iter_mut().find(|t| t["name"] == "users").unwrap();
    let rows = users["rows"].as_u64().unwrap();
    users["rows"] = (rows + 1).into();
    write_meta(&dump, &meta);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "row counts match"), "fail");
    assert!(
        detail(&report, "row counts match").contains(&format!("public.users: {}", rows + 1)),
        "{report:#}"
    );
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_without_meta_runs_what_it_can_and_fails() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify nometa", 0.05);
    std::fs::remove_file(meta_path(&dump)).unwrap();
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "meta.json"), "fail");
    assert!(detail(&report, "meta.json").contains("skipped"));
    assert_eq!(status(&report, "checksum"), "skip");
    assert_eq!(status(&report, "restore succeeded"), "pass");
    assert_eq!(
        status(&report, "expected tables present"),
        "skip",
        "nothing says which tables: no meta.json, no --expect-table"
    );
    assert_eq!(status(&report, "extensions present"), "pass");
    assert_eq!(status(&report, "row counts match"), "skip");
    assert_eq!(status(&report, "alembic revision matches"), "skip");
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_says_a_plain_sql_file_is_not_a_custom_dump() {
    let pg = pg16();
    let db = pg.fresh_db("verify plain");
    let dir = Dir::new("verify-plain");
    let file = dir.join("backup.sql");
    std::fs::write(&file, "--\n-- PostgreSQL database dump\n--\nSET x = 1;\n").unwrap();
    let (out, report) = run_json(&mut verify_cmd(&db, &file, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "archive readable"), "fail");
    assert!(detail(&report, "archive readable").contains("PGDMP"));
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_names_the_pgvector_package_when_the_server_lacks_it() {
    let Some(pg17) = support::pg17() else {
        eprintln!("skipped: PostgreSQL 17 not installed");
        return;
    };
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify novector", 0.05);
    let (out, report) = run_json(&mut verify_cmd(
        &db,
        &dump,
        &["--target-url", &pg17.url("postgres")],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "restore succeeded"), "fail");
    assert!(
        detail(&report, "restore succeeded").contains("postgresql-17-pgvector"),
        "{report:#}"
    );
    assert!(verify_dbs(pg17, &db.name).is_empty());
}

#[test]
fn verify_explains_a_zstd_archive_the_local_pg_restore_cannot_read() {
    let Some(pg17_bin) = paths().pg17_bin.clone() else {
        eprintln!("skipped: PostgreSQL 17 not installed");
        return;
    };
    let pg = pg16();
    let db = pg.fixture_db("verify zstd", 0.05);
    let dir = Dir::new("verify-zstd");
    let dump = backup_with(&db, &dir, Some(&pg17_bin));
    assert_eq!(read_meta(&dump)["compression"], "zstd:1");
    // PostgreSQL 16's wheel: pg_restore without zstd (and too old for pg_dump 17's format).
    let (out, report) =
        run_json(verify_cmd(&db, &dump, &[]).env("PGBAK_PG_BIN_DIR", &paths().pg16_bin));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "pass");
    assert_eq!(status(&report, "archive readable"), "fail");
    let why = detail(&report, "archive readable");
    assert!(
        why.contains("zstd") && why.contains("pg_restore 17"),
        "{why}"
    );
    assert!(verify_dbs(pg, &db.name).is_empty());
}

#[test]
fn verify_with_the_server_down_fails_naming_it() {
    let pg = pg16();
    let (db, _dir, dump) = fixture_backup(pg, "verify down", 0.05);
    let port = support::free_port();
    let (out, report) = run_json(verify_cmd(&db, &dump, &[]).env(
        "DATABASE_URL",
        format!("postgresql://postgres:x@127.0.0.1:{port}/app"),
    ));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "pass");
    assert_eq!(status(&report, "temp database created"), "fail");
    assert!(detail(&report, "temp database created").contains(&format!("127.0.0.1:{port}")));
    assert_eq!(status(&report, "restore succeeded"), "skip");
}

#[test]
fn verify_schema_and_data_backups_skip_what_they_cannot_hold() {
    let pg = pg16();
    let db = pg.fixture_db("verify modes", 0.05);
    let dir = Dir::new("verify-modes");
    let backup_mode = |mode: &str| crate::support::verify::backup_in_mode(&db, &dir, mode);
    let schema = backup_mode("schema");
    let (out, report) = run_json(&mut verify_cmd(&db, &schema, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(status(&report, "restore succeeded"), "pass");
    assert_eq!(status(&report, "expected tables present"), "pass");
    assert_eq!(status(&report, "row counts match"), "skip");
    assert_eq!(status(&report, "alembic revision matches"), "skip");

    let data = backup_mode("data");
    let (out, report) = run_json(&mut verify_cmd(&db, &data, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(status(&report, "checksum"), "pass");
    assert_eq!(status(&report, "archive readable"), "pass");
    assert_eq!(status(&report, "restore succeeded"), "skip");
    assert!(verify_dbs(pg, &db.name).is_empty());
}
