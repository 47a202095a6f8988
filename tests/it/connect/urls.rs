//! DATABASE_URL, the PG* variables and the socket: what is accepted, what is a usage error on one
//! line, what a failed connection says, and session settings of the role that pgbak overrides.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::cluster::quote_ident;
use crate::support::roles::{drop_role, login_superuser};
use crate::support::{
    self, dumps, output_text, pg16, pgbak, pgbak_bare, read_meta, Pg, TableLock, PASSWORD,
};

/// `pgbak backup` of `url` into `dir`.
fn backup_into(pg: &Pg, url: &str, dir: &Path) -> Output {
    pgbak(pg)
        .env("DATABASE_URL", url)
        .args(["backup", "--output-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// `pgbak backup` of `url` (which logs in as `role`) into a new directory; `role` is dropped
/// after, and the backup must have succeeded.
fn backup_as(pg: &Pg, role: &str, url: &str) -> (Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let out = backup_into(pg, url, tmp.path());
    drop_role(pg, role);
    assert!(out.status.success(), "{}", output_text(&out));
    (out, tmp)
}

#[test]
fn bad_database_urls_are_usage_errors_on_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "not a url at all",
        "mysql://app:hunter2-secret@localhost/db",
        "postgresql://app:hunter2-secret@localhost:99999/db",
        "postgresql://app:hunter2-secret@localhost/db?sslmode=maybe",
    ] {
        let out = pgbak_bare()
            .env("DATABASE_URL", url)
            .args(["backup", "--output-dir"])
            .arg(tmp.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}: {}", output_text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("hunter2-secret"), "{err}");
    }
    let out = pgbak_bare()
        .env("DATABASE_URL", "postgresql://u@localhost/db")
        .args(["backup", "--label", "no/slashes", "--output-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

#[test]
fn wrong_password_and_server_down_fail_with_what_to_check() {
    let pg = pg16();
    let tmp = tempfile::tempdir().unwrap();
    let wrong = format!(
        "postgresql://postgres:not-the-password@127.0.0.1:{}/postgres",
        pg.port
    );
    let out = backup_into(pg, &wrong, tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    let port = support::free_port();
    let down = format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
    let out = backup_into(pg, &down, tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains(PASSWORD));
    assert!(dumps(tmp.path()).is_empty());
}

#[test]
fn backs_up_over_the_unix_socket_with_an_empty_host_in_the_url() {
    let pg = pg16();
    let db = pg.db_with("socket", "CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().unwrap();
    let url = format!(
        "postgresql+psycopg://postgres@/{}?host={}&port={}",
        db.name,
        pg.socket_dir.display(),
        pg.port
    );
    let out = pgbak(pg)
        .env("DATABASE_URL", url)
        .args(["backup", "--json", "--output-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["meta"]["tables"][0]["rows"], 1);
}

#[test]
fn pg_environment_variables_work_without_database_url() {
    let pg = pg16();
    let db = pg.db_with("pg_env", "CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().unwrap();
    let out = pgbak(pg)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", &db.name)
        .args(["backup", "--json", "--output-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!output_text(&out).contains(PASSWORD));
}

#[test]
fn trust_role_timeouts_of_one_millisecond_do_not_break_a_backup() {
    let pg = pg16();
    let db = pg.fixture_db("role timeouts", 0.05);
    let role = login_superuser(pg, "app", &db.name, PASSWORD);
    pg.psql(
        "postgres",
        &format!(
            "ALTER ROLE {r} SET statement_timeout = '1ms'; \
             ALTER ROLE {r} SET lock_timeout = '1ms'; \
             ALTER ROLE {r} SET idle_in_transaction_session_timeout = '1ms'",
            r = quote_ident(&role)
        ),
    );
    let url = format!(
        "postgresql://{role}:{PASSWORD}@127.0.0.1:{}/{}",
        pg.port, db.name
    );
    let (_, tmp) = backup_as(pg, &role, &url);
    let names = dumps(tmp.path());
    assert_eq!(names.len(), 1);
    let meta = read_meta(&tmp.path().join(names[0].replace(".dump", ".meta.json")));
    let counts = pg.row_counts(&db.name);
    for table in meta["tables"].as_array().unwrap() {
        let name = table["name"].as_str().unwrap();
        assert_eq!(table["rows"].as_i64(), counts.get(name).copied(), "{name}");
    }
}

#[test]
fn trust_plus_in_a_url_query_value_is_a_plus() {
    let pg = pg16();
    let db = pg.db_with_rows("plus in url", 10);
    let password = "p+ss+word";
    let role = login_superuser(pg, "plus", &db.name, password);
    let url = format!(
        "postgresql://{role}@127.0.0.1:{}/{}?password={password}&application_name=a+b",
        pg.port, db.name
    );
    let (out, tmp) = backup_as(pg, &role, &url);
    assert_eq!(dumps(tmp.path()).len(), 1);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(password));
}

/// The environment of the one live process whose command line holds every `needle`
/// (its `/proc/<pid>/environ`, as `NAME=value` strings).
fn environ_of(needles: &[&str]) -> Vec<String> {
    let pids = support::processes::processes_with(needles);
    assert_eq!(pids.len(), 1, "processes with {needles:?}: {pids:?}");
    support::processes::environ(pids[0])
}

#[test]
fn trust_pg_dump_starts_with_a_roles_timeouts_off() {
    // A role's 1 ms statement_timeout used to reach pg_dump's first query (its search_path,
    // before pg_dump turns timeouts off itself) and, on a busy machine, cancel the dump.
    let pg = pg16();
    let db = pg.db_with_rows("pg_dump startup options", 10);
    let lock = support::TableLock::hold(pg, &db.name, "t");
    let tmp = tempfile::tempdir().unwrap();
    let child = support::faults::spawn_blocked_backup(pg, &db.name, tmp.path(), &[]);
    let environ = environ_of(&["pg_dump", "--snapshot=", &db.name]);
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let options = environ
        .iter()
        .find_map(|v| v.strip_prefix("PGOPTIONS="))
        .unwrap_or_else(|| panic!("pg_dump has no PGOPTIONS: {environ:?}"));
    for off in [
        "statement_timeout=0",
        "lock_timeout=0",
        "idle_in_transaction_session_timeout=0",
    ] {
        assert!(options.contains(off), "{options}");
    }
}

#[test]
fn trust_a_roles_transaction_timeout_does_not_end_the_snapshot_on_17() {
    // PostgreSQL 17's transaction_timeout, set on the role, would end pgbak's snapshot session
    // (and with it the backup) while pg_dump waits for a table lock: pgbak turns it off in its
    // own sessions where the server has it, and names it nowhere else (15 and 16 back up).
    let Some(pg) = support::pg17() else {
        return;
    };
    let db = pg.db_with_rows("transaction timeout", 10);
    let role = login_superuser(pg, "app", &db.name, PASSWORD);
    pg.psql(
        "postgres",
        &format!(
            "ALTER ROLE {} SET transaction_timeout = '1s'",
            quote_ident(&role)
        ),
    );
    let url = format!(
        "postgresql://{role}:{PASSWORD}@127.0.0.1:{}/{}",
        pg.port, db.name
    );
    let tmp = tempfile::tempdir().unwrap();
    let lock = TableLock::hold(pg, &db.name, "t");
    let backup = pgbak_bare()
        .env("DATABASE_URL", &url)
        .env("PGBAK_PG_BIN_DIR", &pg.bin)
        .args(["backup", "--output-dir"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The snapshot transaction is open (pg_dump waits for the lock) for twice the timeout.
    std::thread::sleep(std::time::Duration::from_secs(2));
    lock.release();
    let out = backup.wait_with_output().unwrap();
    drop_role(pg, &role);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(dumps(tmp.path()).len(), 1);
}
