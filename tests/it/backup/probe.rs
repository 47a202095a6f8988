//! Issue 26 item 8: pg_dump is asked what it is (`--version`, whether it
//! takes zstd) while pgbak connects, no longer one question after the other
//! before the dump. What the answers decide stays as it was: the tools
//! chosen, the default compression, the errors. Each test gives pgbak a bin
//! dir whose pg_dump answers one question differently from the real one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::{dumps, free_port, output_text, paths, pg16, pgbak_bare};

/// A bin dir of symlinks to the real client tools, with pg_dump replaced by
/// `script` (a shell script that gets `$REAL`, the real pg_dump).
fn bin_dir_with_pg_dump(script: &str) -> tempfile::TempDir {
    let real = paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg16().bin.clone());
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&real).unwrap().flatten() {
        std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let pg_dump = dir.path().join("pg_dump");
    std::fs::remove_file(&pg_dump).unwrap();
    let real_pg_dump = real.join("pg_dump");
    let text = format!("#!/bin/sh\nREAL='{}'\n{script}\n", real_pg_dump.display());
    std::fs::write(&pg_dump, text).unwrap();
    std::fs::set_permissions(&pg_dump, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The directory must be searchable by the postgres user the tests may drop to.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn backup(bin: &Path, db: &str, out: &Path) -> std::process::Output {
    pgbak_bare()
        .env("DATABASE_URL", pg16().url(db))
        .env("PGBAK_PG_BIN_DIR", bin)
        .args(["backup", "--json", "--output-dir"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn probe_a_pg_dump_without_zstd_backs_up_with_gzip_4() {
    let db = pg16().fresh_db("probe_no_zstd");
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 50) g");
    // As a pg_dump built without zstd answers the probe (and would fail the dump).
    let bin = bin_dir_with_pg_dump(
        "for a; do case \"$a\" in --compress=zstd*) \
         echo 'pg_dump: error: this build does not support compression with zstd' >&2; exit 1;; \
         esac; done\nexec \"$REAL\" \"$@\"",
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(bin.path(), &db.name, tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["meta"]["compression"], "gzip:4");
    assert_eq!(summary["meta"]["tables"][0]["rows"], 50);
}

#[test]
fn probe_a_pg_dump_older_than_the_server_is_refused_with_versions_and_path() {
    let db = pg16().fresh_db("probe_too_old");
    let bin = bin_dir_with_pg_dump(
        "[ \"$1\" = --version ] && { echo 'pg_dump (PostgreSQL) 15.9'; exit 0; }\nexec \"$REAL\" \"$@\"",
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(bin.path(), &db.name, tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let pg_dump = bin.path().join("pg_dump");
    assert!(
        err.contains(&format!("found: {} (15.9)", pg_dump.display())),
        "{err}"
    );
    assert!(
        err.contains("needs pg_dump/pg_restore 16 or newer"),
        "{err}"
    );
    assert!(dumps(tmp.path()).is_empty());
}

#[test]
fn probe_a_bin_dir_without_pg_dump_is_a_usage_error_and_a_dead_server_still_comes_first() {
    let db = pg16().fresh_db("probe_no_pg_dump");
    let empty = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(empty.path(), &db.name, tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "--pg-bin-dir {} holds no pg_dump",
            empty.path().display()
        )),
        "{}",
        output_text(&out)
    );
    // The connection is judged first, as before the probe ran alongside it.
    let down = format!("postgresql://postgres@127.0.0.1:{}/postgres", free_port());
    let out = pgbak_bare()
        .env("DATABASE_URL", down)
        .env("PGBAK_PG_BIN_DIR", empty.path())
        .args(["backup", "--output-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("holds no pg_dump"),
        "{}",
        output_text(&out)
    );
}
