//! pg_restore's sessions on the server: nobody sees a half-restored database during
//! `restore --create-db`, a lock wait is bounded by --lock-wait-timeout and names the blocking
//! session, SIGTERM ends pg_restore's statements on the server before pgbak exits, a server that
//! stops mid-restore fails the run, and the verdict does not depend on --jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::staging_copies;
use crate::support::processes::{cluster_with_backup, stop_server_mid_restore};
use crate::support::runs::signal_when;
use crate::support::verify::{backup, backup_with, fixture_backup, Dir};
use crate::support::{self, output_text, pg16, private_cluster, restore_cmd, run, TableLock};

#[test]
fn restore_create_db_never_shows_a_half_restored_database() {
    let pg = pg16();
    let source = pg.db_with(
        "half source",
        "CREATE TABLE items (id bigint, body text); \
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 300000) g; \
         ALTER TABLE items ADD CONSTRAINT items_pkey PRIMARY KEY (id); \
         CREATE INDEX items_body ON items (body)",
    );
    let dir = Dir::new("half");
    let dump = backup(&source, &dir);
    let target = pg.db_with(
        "half target",
        "CREATE TABLE items AS SELECT generate_series(1, 7) AS id",
    );

    // A client that reconnects in a loop and counts the rows it sees.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, name, url_pg) = (stop.clone(), target.name.clone(), pg);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(url_pg.try_psql(&name, "SELECT count(*) FROM items"));
            }
            seen
        })
    };
    let out = run(&mut restore_cmd(
        &target,
        &dump,
        &["--create-db", "--no-confirm"],
    ));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let counts: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        counts.iter().any(|c| *c == "7") && counts.iter().any(|c| *c == "300000"),
        "{seen:?}"
    );
    for result in &seen {
        match result {
            Ok(count) => assert!(
                count == "7" || count == "300000",
                "a half-restored table: {count}"
            ),
            // Between the drop and the rename the name does not exist: fine. A database
            // without its table is a half-restored one.
            Err(err) => assert!(!err.contains("relation \"items\" does not exist"), "{err}"),
        }
    }
    assert_eq!(target.psql("SELECT count(*) FROM items"), "300000");
    assert!(staging_copies(&target).is_empty(), "{:?}", pg.databases());
}

#[test]
fn restore_lock_wait_is_bounded_and_names_the_blocking_session() {
    let pg = pg16();
    let source = pg.db_with(
        "lockwait source",
        "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 1000)",
    );
    let dir = Dir::new("lockwait");
    let dump = crate::support::verify::backup_in_mode(&source, &dir, "data");
    let target = pg.db_with("lockwait target", "CREATE TABLE items (id int)");
    let lock = TableLock::hold(pg, &target.name, "items");
    let args = ["--no-confirm", "--lock-wait-timeout", "2s"];
    super::restore_past_a_lock(&target, &dump, &args, lock);
}

#[test]
fn restore_sigterm_ends_the_statements_of_pg_restore_on_the_server() {
    let pg = pg16();
    let source = pg.db_with(
        "cancel source",
        "CREATE TABLE big (x int); INSERT INTO big SELECT generate_series(1, 1500000); \
         CREATE INDEX big_slow ON big (md5(md5(md5(x::text))))",
    );
    let dir = Dir::new("cancel");
    let dump = backup(&source, &dir);
    let target = pg.fresh_db("cancel target");
    let building = || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX big_slow%' \
             AND state = 'active'",
        ) != "0"
    };
    let (out, _) = signal_when(
        restore_cmd(&target, &dump, &["--create-db", "--no-confirm"]),
        building,
        libc::SIGTERM,
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(
        !building(),
        "CREATE INDEX still runs on the server after pgbak exited"
    );
    assert!(staging_copies(&target).is_empty(), "{:?}", pg.databases());
}

#[test]
fn restore_verdict_is_the_same_with_one_job_and_four() {
    let pg = pg16();
    let source = pg.fresh_db("jobs source");
    let role = format!("jobs_reader_{}", std::process::id());
    pg.psql("postgres", &format!("CREATE ROLE {role}"));
    source.psql(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 5000) g; \
         ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON t TO {role} USING (true); \
         CREATE TABLE u AS SELECT generate_series(1, 5000) AS x"
    ));
    let dir = Dir::new("jobs");
    // pg_dump and pg_restore 16: the version whose parallel count is off.
    let dump = backup_with(&source, &dir, Some(&pg.bin));
    let target = private_cluster(16);
    for jobs in ["1", "4"] {
        let out = run(support::pgbak(&target)
            .env("PGBAK_PG_BIN_DIR", &target.bin)
            .env("DATABASE_URL", target.url("restored"))
            .args([
                "restore",
                "--create-db",
                "--no-confirm",
                "--no-owner",
                "--allow-other-database",
                "--jobs",
                jobs,
            ])
            .arg(&dump));
        assert_eq!(
            out.status.code(),
            Some(0),
            "--jobs {jobs}: {}",
            output_text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not restored: POLICY p ON public.t"),
            "--jobs {jobs}: {stderr}"
        );
    }
    let _ = pg.try_psql("postgres", &format!("DROP ROLE {role}"));
}

#[test]
fn restore_sigterm_stops_pg_restore_and_its_sessions() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "restore sigterm", 0.5);
    let target = pg.fresh_db("restore sigterm target");
    let mut child = restore_cmd(&target, &dump, &["--create-db", "--no-confirm"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // --create-db restores into a staging database named after the target.
    let sessions = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'pgbak\\_restoring\\_{}\\_%' \
         AND application_name = 'pg_restore'",
        target.name
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("postgres", &sessions) == "0" {
        assert!(Instant::now() < deadline, "pg_restore never started");
        assert!(child.try_wait().unwrap().is_none(), "restore ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopping pg_restore"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.psql("postgres", &sessions) != "0" {
        assert!(
            Instant::now() < deadline,
            "pg_restore sessions still running after pgbak exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restore_with_the_server_stopped_mid_restore_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (pg, db) = cluster_with_backup(tmp.path());
    // The newest backup of the database, restored into itself.
    let out = stop_server_mid_restore(
        &pg,
        &db,
        &["restore", "--no-confirm", "--create-db"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn restore_create_db_stopped_while_counting_removes_the_copy_at_once() {
    // A SIGTERM after pg_restore, while the copy's rows are counted (here waiting for a lock
    // another session holds on the copy), was not noticed until the count ended (up to
    // --lock-wait-timeout), and then the copy was left behind: the run stops at once, the count
    // is cancelled, the copy removed and the target untouched.
    let pg = pg16();
    let source = pg.db_with(
        "counting source",
        "CREATE TABLE big AS SELECT generate_series(1, 300000) AS x; \
         CREATE TABLE small AS SELECT generate_series(1, 10) AS x",
    );
    let dir = Dir::new("counting");
    let dump = backup(&source, &dir);
    let target = pg.db_with("counting target", "CREATE TABLE small AS SELECT 7 AS x");
    let lock = std::cell::RefCell::new(None);
    let counting = || {
        let Some(copy) = staging_copies(&target).pop() else {
            return false;
        };
        if lock.borrow().is_none() {
            // small is loaded (and pg_restore has nothing more to do with it): held from now.
            if pg.try_psql(&copy, "SELECT count(*) FROM small").as_deref() != Ok("10") {
                return false;
            }
            *lock.borrow_mut() = Some(TableLock::hold(pg, &copy, "small"));
        }
        pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{copy}' \
                 AND application_name = 'pgbak' AND wait_event_type = 'Lock'"
            ),
        ) != "0"
    };
    let (out, took) = signal_when(
        restore_cmd(&target, &dump, &["--create-db", "--no-confirm"]),
        counting,
        libc::SIGTERM,
        Duration::from_secs(120),
    );
    drop(lock);
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(took < Duration::from_secs(20), "took {took:?} to stop");
    assert!(staging_copies(&target).is_empty(), "{:?}", pg.databases());
    assert_eq!(
        target.psql("SELECT string_agg(x::text, ',') FROM small"),
        "7"
    );
}
