//! Proves the test harness itself: the servers the other tests rely on start and answer.

use std::time::Duration;

use crate::support::{self, pg16, s3, HttpListener};

#[test]
fn harness_starts_pg16_and_creates_db() {
    let pg = pg16();
    assert_eq!(pg.major, 16);
    let version = pg.psql("postgres", "SHOW server_version");
    assert!(version.starts_with("16."), "server_version {version}");

    let db = pg.fresh_db("harness smoke");
    assert!(pg.databases().contains(&db.name));
    db.load_fixture(0.05);
    assert_eq!(
        db.psql("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
        "0.8.5"
    );
    assert_eq!(db.psql("SELECT version_num FROM alembic_version"), "013");
    let counts = pg.row_counts(&db.name);
    assert_eq!(
        counts.len(),
        14,
        "13 application tables + alembic_version: {counts:?}"
    );
    assert_eq!(counts["vector_chunks"], 250);
    let digests = pg.table_digests(&db.name);
    assert_eq!(digests.len(), 14);
    assert_eq!(digests, pg.table_digests(&db.name), "digests are stable");

    // The password path over TCP is real (scram-sha-256).
    let url = db.url();
    assert!(
        url.starts_with("postgresql://postgres:s3cr3t-Pa55word@127.0.0.1:"),
        "{url}"
    );

    let name = db.name.clone();
    drop(db);
    assert!(!pg.databases().contains(&name), "TestDb drops its database");

    let odd = pg.create_db_named("odd db \"name\" é");
    assert_eq!(odd.psql("SELECT current_database()"), "odd db \"name\" é");
    assert!(
        odd.url().ends_with("/odd%20db%20%22name%22%20%C3%A9"),
        "{}",
        odd.url()
    );
}

#[test]
fn harness_s3_server_answers() {
    let s3 = s3();
    let bucket = s3.fresh_bucket("harness");
    s3.put_object(
        &bucket,
        "a/b.dump",
        b"PGDMP-not-really".to_vec(),
        Some("STANDARD_IA"),
    );
    let objects = s3.list_objects(&bucket, "a/");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].size, 16);
    assert_eq!(objects[0].storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(s3.get_object(&bucket, "a/b.dump"), b"PGDMP-not-really");
    assert!(s3.multipart_uploads(&bucket).is_empty());
}

#[test]
fn harness_http_listener_records_a_post() {
    let hook = HttpListener::new(&[500, 200]);
    let post = |body: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ])
            .arg(hook.url())
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(post(r#"{"status":"failure"}"#), "500");
    assert_eq!(post(r#"{"status":"again"}"#), "200");
    let requests = hook.wait_for(2, Duration::from_secs(5));
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/hook");
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(requests[0].json()["status"], "failure");
    assert_eq!(requests[1].json()["status"], "again");
}

#[test]
fn harness_pgbak_env_is_clean() {
    let cmd = support::pgbak(pg16());
    let envs: Vec<_> = cmd.get_envs().collect();
    assert!(envs
        .iter()
        .any(|(k, v)| *k == "PGBAK_PG_BIN_DIR" && v.is_some()));
}

#[test]
fn harness_other_versions_and_private_clusters_stop_start_and_clean_up() {
    for (major, pg) in [(15, support::pg15()), (17, support::pg17())] {
        if let Some(pg) = pg {
            let version = pg.psql("postgres", "SHOW server_version");
            assert!(version.starts_with(&format!("{major}.")), "{version}");
        }
    }
    let pg = support::private_cluster(16);
    let root = pg.data_dir.parent().expect("cluster root").to_path_buf();
    let db = pg.db_with("private", "CREATE TABLE t AS SELECT 1 AS x");
    pg.stop();
    assert!(
        pg.try_psql(&db.name, "SELECT 1").is_err(),
        "stopped server answers"
    );
    pg.start();
    assert_eq!(db.psql("SELECT x FROM t"), "1");
    drop(db);
    drop(pg);
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn harness_private_s3_can_be_killed() {
    let s3 = support::private_s3();
    let bucket = s3.fresh_bucket("kill");
    assert!(s3.list_objects(&bucket, "").is_empty());
    s3.kill();
    assert!(std::net::TcpStream::connect(("127.0.0.1", s3.port)).is_err());
}

#[test]
fn harness_hanging_listener_records_and_never_answers() {
    let hook = HttpListener::hang();
    let started = std::time::Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "1", "-d", "{}"])
        .arg(hook.url())
        .output()
        .expect("curl");
    assert_eq!(out.status.code(), Some(28), "curl timed out");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(hook.wait_for(1, Duration::from_secs(5))[0].method, "POST");
}
