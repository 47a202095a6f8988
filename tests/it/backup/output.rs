//! `pgbak backup` against real clusters: what it writes (a complete, described dump and its
//! meta.json, modes, labels, `--keep`, names that never collide), and the client tools it takes
//! or refuses for the server's version.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::faults::spawn_blocked_backup;
use crate::support::{
    self, backup, dumps, files, output_text, pg16, pgbak, pgbak_bare, read_meta, sha256_hex,
    TableLock, PASSWORD,
};

#[test]
fn full_backup_of_the_fixture_is_complete_and_described() {
    let pg = pg16();
    let db = pg.fixture_db("full_backup", 0.05);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let out = backup(pg, &db.name, &dir, &["--json"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let names = dumps(&dir);
    assert_eq!(names.len(), 1);
    let name = &names[0];
    let stem = name.strip_suffix(".dump").unwrap();
    let ts = stem.rsplit('_').next().unwrap();
    // The server's tag sits before the timestamp: `<db>_full_srv-<8 hex>_<ts>`.
    let server = stem
        .strip_prefix(&format!("{}_full_srv-", db.name))
        .and_then(|rest| rest.strip_suffix(&format!("_{ts}")))
        .unwrap_or_else(|| panic!("{stem}"));
    assert!(
        server.len() == 8 && server.bytes().all(|b| b.is_ascii_hexdigit()),
        "{stem}"
    );
    assert!(chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%M%S").is_ok());
    let dump = dir.join(name);
    let meta_path = dir.join(format!("{stem}.meta.json"));
    assert_eq!(files(&dir), vec![name.clone(), format!("{stem}.meta.json")]);

    let bytes = std::fs::read(&dump).unwrap();
    assert_eq!(&bytes[..5], b"PGDMP");
    let meta = read_meta(&meta_path);
    assert_eq!(meta["format_version"], 1);
    assert_eq!(meta["sha256"], sha256_hex(&dump));
    assert_eq!(meta["size_bytes"], bytes.len() as u64);
    assert_eq!(meta["file"], name.as_str());
    assert_eq!(meta["database"], db.name.as_str());
    assert_eq!(meta["mode"], "full");
    assert_eq!(meta["alembic_revision"], "013");
    assert_eq!(meta["extensions"]["vector"], "0.8.5");
    assert_eq!(meta["server_version"], "16.14");
    assert_eq!(meta["compression"], "zstd:1", "pg17's pg_dump has zstd");
    assert!(meta["s3"].is_null());
    let tables = meta["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 14, "13 application tables + alembic_version");
    for table in tables {
        let name = table["name"].as_str().unwrap();
        let count = pg.psql(&db.name, &format!("SELECT count(*) FROM public.{name}"));
        assert_eq!(table["rows"].to_string(), count, "rows of {name}");
    }
    // --json prints the same meta on stdout.
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["meta"]["sha256"], meta["sha256"]);

    assert!(restore_list(&dump).contains("TABLE DATA public vector_chunks"));
    for path in [&dump, &meta_path] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// `pg_restore --list` of a dump, with the tools that wrote it.
fn restore_list(dump: &Path) -> String {
    let bin = support::paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg16().bin.clone());
    let out = Command::new(bin.join("pg_restore"))
        .arg("--list")
        .arg(dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rows_committed_during_the_dump_are_in_neither_dump_nor_counts() {
    let pg = pg16();
    let db = pg.fixture_db("snapshot", 0.05);
    let before: u64 = db.psql("SELECT count(*) FROM messages").parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // pg_dump has imported the snapshot and then waits for the lock on audit_logs.
    let lock = TableLock::hold(pg, &db.name, "audit_logs");
    let child = spawn_blocked_backup(pg, &db.name, tmp.path(), &[]);
    db.psql(
        "INSERT INTO messages(conversation_id, role, content, created_at)
         SELECT conversation_id, role, 'inserted during the dump', now() FROM messages LIMIT 7",
    );
    lock.release();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));

    let meta_name = files(tmp.path())
        .into_iter()
        .find(|f| f.ends_with(".meta.json"))
        .unwrap();
    let meta = read_meta(&tmp.path().join(&meta_name));
    let counted = meta["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "messages")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(counted, before, "meta.json counts the snapshot");
    assert_eq!(
        db.psql("SELECT count(*) FROM messages"),
        (before + 7).to_string()
    );

    // Restore the dump and count: the inserted rows are not in it either.
    let copy = pg.fresh_db("snapshot_copy");
    let dump = tmp.path().join(meta_name.replace(".meta.json", ".dump"));
    let bin = support::paths().pg17_bin.clone().unwrap();
    // pg_restore 17 reports `SET transaction_timeout` as an error on a 16 server: harmless.
    let out = Command::new(bin.join("pg_restore"))
        .env_clear()
        .env("PGPASSWORD", PASSWORD)
        .args(["--no-owner", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(pg.port.to_string())
        .arg("-d")
        .arg(&copy.name)
        .arg(&dump)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("ERROR:"))
            .all(|l| l.contains("transaction_timeout")),
        "{stderr}"
    );
    assert_eq!(
        copy.psql("SELECT count(*) FROM messages"),
        before.to_string()
    );
}

#[test]
fn schema_and_data_modes_hold_only_their_part_and_labels_name_the_file() {
    let pg = pg16();
    let db = pg.fixture_db("modes", 0.05);
    let tmp = tempfile::tempdir().unwrap();

    let out = backup(pg, &db.name, tmp.path(), &["--mode", "schema"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = backup(
        pg,
        &db.name,
        tmp.path(),
        &["--mode", "data", "--label", "pre-migration"],
    );
    assert!(out.status.success(), "{}", output_text(&out));

    let names = dumps(tmp.path());
    let schema = names.iter().find(|n| n.contains("_schema_")).unwrap();
    let data = names.iter().find(|n| n.contains("_data_")).unwrap();
    assert!(data.starts_with(&format!("{}_data_pre-migration_", db.name)));

    let list = restore_list(&tmp.path().join(schema));
    assert!(!list.contains("TABLE DATA"), "{list}");
    assert!(list.contains("TABLE public users"));
    let list = restore_list(&tmp.path().join(data));
    assert!(list.contains("TABLE DATA public users"));
    assert!(
        !list.lines().any(|l| l.contains(" TABLE public ")),
        "data mode has no CREATE TABLE: {list}"
    );
    let meta = read_meta(&tmp.path().join(schema.replace(".dump", ".meta.json")));
    assert!(
        meta["tables"][0]["rows"].is_null(),
        "schema mode counts no rows"
    );
    let meta = read_meta(&tmp.path().join(data.replace(".dump", ".meta.json")));
    assert_eq!(meta["label"], "pre-migration");
}

#[test]
fn keep_prunes_the_group_and_spares_labelled_backups() {
    let pg = pg16();
    let db = pg.db_with("keep", "CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &["--label", "pre-migration"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut made = Vec::new();
    for _ in 0..3 {
        let out = backup(pg, &db.name, tmp.path(), &["--keep", "2", "--json"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        made.push(summary["meta"]["file"].as_str().unwrap().to_owned());
    }
    let left = dumps(tmp.path());
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().any(|n| n.contains("_pre-migration_")));
    assert!(!left.contains(&made[0]), "the oldest unlabelled one went");
    assert!(left.contains(&made[1]) && left.contains(&made[2]));
    assert_eq!(files(tmp.path()).len(), 6, "every dump keeps its meta.json");
}

#[test]
fn two_backups_in_the_same_second_do_not_overwrite_each_other() {
    let pg = pg16();
    let db = pg.db_with("same_second", "CREATE TABLE t(x int)");
    let tmp = tempfile::tempdir().unwrap();
    let spawn = || {
        pgbak(pg)
            .env("DATABASE_URL", pg.url(&db.name))
            .args(["backup", "--keep", "0", "--output-dir"])
            .arg(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..3).map(|_| spawn()).collect();
    // Each takes the group's lock (backup/lock.rs): one that finds it held
    // exits 75 and writes nothing; those that ran never share a name.
    let mut made = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => made += 1,
            Some(75) => {}
            _ => panic!("{}", output_text(&out)),
        }
    }
    let left = dumps(tmp.path());
    assert!(made >= 1);
    assert_eq!(left.len(), made, "{left:?}");
    for dump in &left {
        let meta = read_meta(&tmp.path().join(dump.replace(".dump", ".meta.json")));
        assert_eq!(meta["sha256"], sha256_hex(&tmp.path().join(dump)));
    }
}

#[test]
fn a_database_without_alembic_has_a_null_revision() {
    let pg = pg16();
    let db = pg.db_with("no_alembic", "CREATE TABLE t(x int)");
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &["--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["meta"]["alembic_revision"].is_null());
    assert_eq!(summary["meta"]["tables"][0]["rows"], 0);
}

#[test]
fn older_pg_dump_than_the_server_is_refused_with_versions_and_paths() {
    let Some(pg15_bin) = support::paths().pg15_bin.clone() else {
        eprintln!("skipped: PostgreSQL 15 client tools are not installed");
        return;
    };
    let pg = pg16();
    let db = pg.fresh_db("too_old");
    let tmp = tempfile::tempdir().unwrap();
    // Explicit bin dir: only it is considered.
    let out = pgbak_bare()
        .env("DATABASE_URL", pg.url(&db.name))
        .env("PGBAK_PG_BIN_DIR", &pg15_bin)
        .args(["backup", "--output-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16.14"), "{err}");
    assert!(
        err.contains(&pg15_bin.join("pg_dump").display().to_string()),
        "{err}"
    );
    assert!(err.contains("postgresql-client-16"), "{err}");
    // Discovery on PATH and the install roots finds only 15 here.
    let out = pgbak_bare()
        .env("DATABASE_URL", pg.url(&db.name))
        .env("PATH", format!("{}:/usr/bin:/bin", pg15_bin.display()))
        .args(["backup", "--output-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    if Path::new("/usr/lib/postgresql/16/bin/pg_dump").exists() {
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("15.18"));
    assert!(dumps(tmp.path()).is_empty());
}

#[test]
fn other_server_versions_back_up_with_their_own_tools() {
    for pg in [support::pg15(), support::pg17()].into_iter().flatten() {
        let db = pg.db_with_rows("matrix", 100);
        let tmp = tempfile::tempdir().unwrap();
        let out = pgbak_bare()
            .env("DATABASE_URL", pg.url(&db.name))
            .env("PGBAK_PG_BIN_DIR", &pg.bin)
            .args(["backup", "--json", "--output-dir"])
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PG {}: {}",
            pg.major,
            output_text(&out)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        let expected = if pg.major >= 16 { "zstd:1" } else { "4" };
        assert_eq!(summary["meta"]["compression"], expected, "PG {}", pg.major);
        assert_eq!(summary["meta"]["tables"][0]["rows"], 100);
    }
}
