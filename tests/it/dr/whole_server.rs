//! The whole-server drill (issue 28): `pgbak verify --all-databases` restores every database
//! of an `--all-databases` run and checks each copy, measuring the restore time of each and
//! of the whole server. With `--ephemeral` the run's globals are replayed first into one
//! throwaway cluster; on the source server no role of the backup is created. A database whose
//! dump was corrupted in the bucket fails, named, and the others are still checked. Nothing is
//! left behind: temporary databases, throwaway roles, the throwaway cluster, also on SIGTERM.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::runs::{pgbak_on, signal_when};
use crate::support::verify::Dir;
use crate::support::{output_text, private_cluster, run, s3, OwnedCluster, Pg};

/// The databases of the source server besides `postgres`.
const DATABASES: [&str; 3] = ["agents", "app", "notes"];

/// A server with three databases: `agents` (the fixture, pgvector), `app` owned by the login
/// role `drill_owner` with a row-level-security policy `TO drill_reader` (the copy needs that
/// role: only the globals make it), and `notes`.
fn source_server() -> OwnedCluster {
    let pg = private_cluster(16);
    pg.psql(
        "postgres",
        "CREATE ROLE drill_owner LOGIN PASSWORD 'owner-pw'; CREATE ROLE drill_reader",
    );
    for db in ["agents", "app OWNER drill_owner", "notes"] {
        pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    pg.load_fixture("agents", 0.02);
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, who text); \
         INSERT INTO t SELECT g, 'u' || g FROM generate_series(1, 50) g; \
         ALTER TABLE t OWNER TO drill_owner; ALTER TABLE t ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY mine ON t TO drill_reader USING (who = current_user)",
    );
    pg.psql(
        "notes",
        "CREATE TABLE note (id bigserial PRIMARY KEY, body text NOT NULL); \
         INSERT INTO note (body) SELECT md5(g::text) FROM generate_series(1, 500) g",
    );
    pg
}

/// `pgbak` on `pg` with its own client tools (PostgreSQL 16's carry pgvector, which the
/// throwaway cluster needs).
fn pgbak16(pg: &Pg) -> Command {
    let mut cmd = pgbak_on(pg);
    cmd.env("PGBAK_PG_BIN_DIR", &pg.bin);
    cmd
}

/// `backup --all-databases` of every database but `postgres`, into `dir` (and the bucket
/// when `bucket` is given).
fn backup_run(pg: &Pg, dir: &Path, bucket: Option<&str>) {
    let mut cmd = pgbak16(pg);
    cmd.args([
        "backup",
        "--all-databases",
        "--exclude-database",
        "postgres",
    ])
    .arg("--output-dir")
    .arg(dir);
    match bucket {
        Some(bucket) => {
            cmd.envs(s3().env())
                .env("S3_BUCKET", bucket)
                .env("S3_STORAGE_CLASS", "STANDARD");
        }
        None => {
            cmd.arg("--no-s3");
        }
    }
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// `verify --all-databases --json` with `extra`, TMPDIR in `tmp`: the output and its document.
fn drill(pg: &Pg, tmp: &Path, extra: &[&str]) -> (Output, Value) {
    let out = run(pgbak16(pg)
        .args(["verify", "--all-databases", "--json"])
        .args(extra)
        .env("TMPDIR", tmp));
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

/// The drill's row of `db`.
fn row<'a>(json: &'a Value, db: &str) -> &'a Value {
    json["databases"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["database"] == db))
        .unwrap_or_else(|| panic!("no row for {db} in {json:#}"))
}

/// The server's roles (names) and databases: what a drill must leave as it found them.
fn server_state(pg: &Pg) -> (String, Vec<String>) {
    let roles = pg.psql(
        "postgres",
        "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles",
    );
    (roles, pg.databases())
}

/// The verdicts recorded beside the backups in `dir`: database -> its `verification`.
fn verdicts(dir: &Path) -> std::collections::BTreeMap<String, Value> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".verify.json"))
        .map(|e| {
            let doc: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            let file = doc["file"].as_str().unwrap().to_owned();
            let db = file.split("_full_").next().unwrap().to_owned();
            (db, doc["verification"].clone())
        })
        .collect()
}

#[test]
fn drill_of_a_run_into_an_ephemeral_cluster_replays_the_globals_times_each_database_and_leaves_nothing(
) {
    let pg = source_server();
    let dir = Dir::new("drill-eph");
    backup_run(&pg, &dir, None);
    let before = server_state(&pg);
    let tmp = Dir::new("drill-eph-tmp");
    let backup_dir = dir.to_str().unwrap();
    let (out, json) = drill(&pg, &tmp, &["--ephemeral", "--backup-dir", backup_dir]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json["passed"], true, "{json:#}");
    assert!(json["target"]
        .as_str()
        .unwrap()
        .contains("throwaway cluster"));
    // The globals first: the roles the copies name were created in the throwaway cluster.
    assert_eq!(json["globals"]["replayed"], true, "{json:#}");
    assert!(
        json["globals"]["roles_created"].as_u64().unwrap() >= 2,
        "{json:#}"
    );
    let recorded = verdicts(&dir);
    let mut restores = 0.0;
    for db in DATABASES {
        let r = row(&json, db);
        assert_eq!(r["passed"], true, "{db}: {r:#}");
        let seconds = r["restore_seconds"].as_f64().unwrap();
        assert!(seconds > 0.0, "{db}: {r:#}");
        assert!(r["verify_seconds"].as_f64().unwrap() > 0.0, "{db}: {r:#}");
        assert!(r["bytes"].as_u64().unwrap() > 0, "{db}: {r:#}");
        restores += seconds;
        // Each database's verdict beside its backup, with the same measured restore.
        let timing = &recorded[db]["timing"];
        assert_eq!(recorded[db]["passed"], true, "{db}");
        assert_eq!(timing["restore_seconds"].as_f64(), Some(seconds), "{db}");
        assert_eq!(timing["jobs"].as_u64(), r["jobs"].as_u64(), "{db}");
    }
    assert_eq!(json["databases"].as_array().unwrap().len(), DATABASES.len());
    let totals = &json["totals"];
    assert_eq!(totals["databases"], 3);
    assert_eq!(totals["failed"], 0);
    let rebuild = totals["rebuild_seconds"].as_f64().unwrap();
    assert!(rebuild + 0.2 >= restores, "{totals:#}");
    assert!(
        totals["wall_seconds"].as_f64().unwrap() >= rebuild,
        "{totals:#}"
    );
    // Nothing left: not on the source server, not in TMPDIR (the throwaway cluster).
    assert_eq!(server_state(&pg), before);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn drill_of_a_run_with_a_dump_corrupted_in_the_bucket_fails_naming_that_database_and_checks_the_others(
) {
    let pg = source_server();
    let dir = Dir::new("drill-corrupt");
    let server = s3();
    let bucket = server.fresh_bucket("drill corrupt");
    backup_run(&pg, &dir, Some(&bucket));
    // One byte of notes' dump flipped after the upload.
    let key = server
        .list_objects(&bucket, "")
        .into_iter()
        .map(|o| o.key)
        .find(|k| k.contains("notes_full_") && k.ends_with(".dump"))
        .expect("notes' dump in the bucket");
    server.flip_byte(&bucket, &key);
    let tmp = Dir::new("drill-corrupt-tmp");
    let out = run(pgbak16(&pg)
        .args([
            "verify",
            "--all-databases",
            "--json",
            "--from-s3",
            "--ephemeral",
        ])
        .envs(server.env())
        .env("S3_BUCKET", &bucket)
        .env("TMPDIR", &tmp));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(json["passed"], false, "{json:#}");
    assert_eq!(row(&json, "notes")["passed"], false, "{json:#}");
    for db in ["agents", "app"] {
        assert_eq!(
            row(&json, db)["passed"],
            true,
            "{db} still checked: {json:#}"
        );
    }
    assert_eq!(json["totals"]["failed"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("drill FAILED") && last.contains("notes") && !last.contains("agents"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn drill_on_the_source_server_creates_no_role_and_says_the_globals_were_not_replayed() {
    let pg = source_server();
    let dir = Dir::new("drill-source");
    backup_run(&pg, &dir, None);
    pg.psql("postgres", "DROP ROLE IF EXISTS drill_extra");
    let before = server_state(&pg);
    let tmp = Dir::new("drill-source-tmp");
    let (out, json) = drill(&pg, &tmp, &["--backup-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json["globals"]["replayed"], false, "{json:#}");
    assert!(
        json["globals"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("creates no role")),
        "{json:#}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("globals not replayed"),
        "{}",
        output_text(&out)
    );
    for db in DATABASES {
        assert_eq!(row(&json, db)["passed"], true, "{db}: {json:#}");
    }
    // The same roles and databases as before: the copies went into temporary databases,
    // removed again, and no role of the backup (nor a throwaway one) is left.
    assert_eq!(server_state(&pg), before);
}

#[test]
fn drill_stopped_by_sigterm_exits_143_and_leaves_no_cluster_behind() {
    let pg = source_server();
    let dir = Dir::new("drill-term");
    backup_run(&pg, &dir, None);
    let tmp = Dir::new("drill-term-tmp");
    let mut cmd = pgbak16(&pg);
    cmd.args(["verify", "--all-databases", "--ephemeral", "--backup-dir"])
        .arg(&*dir)
        .env("TMPDIR", &tmp);
    // Once the throwaway cluster runs (its postmaster.pid is there).
    let running = || {
        std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| pid_file_under(&e.path()))
    };
    let (out, _) = signal_when(cmd, running, libc::SIGTERM, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    assert!(
        !pg.databases().iter().any(|d| d.contains("_verify_")),
        "nothing on the source server"
    );
}

/// Whether a `postmaster.pid` is at most two levels under `dir`.
fn pid_file_under(dir: &Path) -> bool {
    let entries = |d: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    entries(dir).iter().any(|p| {
        p.ends_with("postmaster.pid") || entries(p).iter().any(|q| q.ends_with("postmaster.pid"))
    })
}
