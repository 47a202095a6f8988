//! Issue 24: a rebuild (`restore --all-databases`) an on-call engineer can run, interrupt and
//! run again. Killed (SIGKILL, SIGTERM) in the middle of the roles, the same command again
//! leaves every role as in the backup; roles that existed before are reported and changed only
//! with --reset-roles; `--run` restores an older run, and a re-run continues the run of the
//! target's journal though a newer run appeared; several servers in one place need --server;
//! nothing changes before the preflight passed; the target restarting mid-rebuild is waited
//! for; SIGTERM says which databases are done; a roles statement waiting on a lock is bounded
//! and stops on SIGTERM.

use std::time::Duration;

use crate::support::runs::{
    psql_as, rebuild, roles_shape, run_id_of_backup, signal_when, OpenTransaction,
};
use crate::support::{self, output_text, private_cluster, run, Pg};
use crate::verify::Dir;

const JOURNAL: &str = "pgbak_restore_journal";

/// A server with `n` login roles `dr_r<i>` (password `pw<i>`), each a member of `dr_readers`
/// with a setting of its own, and a database `app` owned by `dr_r1`.
fn server_with_roles(pg: &Pg, n: u32) {
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE dr_readers; \
             DO $$ BEGIN FOR i IN 1..{n} LOOP \
               EXECUTE format('CREATE ROLE dr_r%s LOGIN PASSWORD %L CONNECTION LIMIT 7', i, 'pw' || i); \
               EXECUTE format('GRANT dr_readers TO dr_r%s', i); \
               EXECUTE format('ALTER ROLE dr_r%s SET work_mem = %L', i, (i % 64 + 1) || 'MB'); \
             END LOOP; END $$"
        ),
    );
    pg.psql("postgres", "CREATE DATABASE app OWNER dr_r1");
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10); \
         ALTER TABLE t OWNER TO dr_r1; GRANT SELECT ON t TO dr_readers",
    );
}

fn count(pg: &Pg, db: &str, sql: &str) -> i64 {
    pg.try_psql(db, sql)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1)
}

fn has_database(pg: &Pg, name: &str) -> bool {
    pg.databases().iter().any(|d| d == name)
}

/// The killed rebuild left roles half-made, the re-run repairs every one of them.
fn killed_in_the_roles_then_run_again(signal: i32) {
    let source = private_cluster(16);
    server_with_roles(&source, 1500);
    let dir = Dir::new("dr-kill");
    run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);
    let created = || {
        count(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dr_r%'",
        )
    };
    let (out, after) = signal_when(
        rebuild(&target, &dir, &[]),
        || created() >= 200,
        signal,
        Duration::from_secs(120),
    );
    let made = created();
    assert!(
        made > 0 && made < 1500,
        "killed in the middle: {made} roles\n{}",
        output_text(&out)
    );
    if signal == libc::SIGTERM {
        assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
        assert!(after < Duration::from_secs(5), "SIGTERM took {after:?}");
    }
    // Half-made: roles without their membership.
    let members = count(
        &target,
        "postgres",
        "SELECT count(*) FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member \
         WHERE m.rolname LIKE 'dr_r%'",
    );
    assert!(members < made, "{members} memberships for {made} roles");

    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        roles_shape(&target, "dr\\_%"),
        roles_shape(&source, "dr\\_%")
    );
    psql_as(
        &target,
        "dr_r1000",
        "pw1000",
        "app",
        "SELECT count(*) FROM t",
    )
    .unwrap();
    assert_eq!(
        psql_as(&target, "dr_r7", "pw7", "app", "SHOW work_mem").unwrap(),
        "8MB"
    );
    assert!(
        !has_database(&target, JOURNAL),
        "the journal goes when the rebuild completes"
    );
}

#[test]
fn dr_sigkill_in_the_roles_then_a_rerun_leaves_every_role_as_in_the_backup() {
    killed_in_the_roles_then_run_again(libc::SIGKILL);
}

#[test]
fn dr_sigterm_in_the_roles_stops_at_once_and_a_rerun_repairs_the_roles() {
    killed_in_the_roles_then_run_again(libc::SIGTERM);
}

#[test]
fn dr_a_role_that_existed_before_is_reported_and_changed_only_with_reset_roles() {
    let source = private_cluster(16);
    server_with_roles(&source, 3);
    let dir = Dir::new("dr-existing");
    run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);
    target.psql(
        "postgres",
        "CREATE ROLE dr_r2 NOLOGIN; CREATE ROLE dr_other",
    );

    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for said in [
        "role dr_r2 differs (existed before; LEFT AS IT IS (--reset-roles changes it))",
        "NOLOGIN (the backup has LOGIN)",
        "not a member of dr_readers",
        "setting work_mem not set",
        "roles that existed before and differ from the backup, left as they are: role dr_r2",
    ] {
        assert!(stderr.contains(said), "{said:?} in\n{stderr}");
    }
    // Left exactly as it was; the others are as in the backup.
    assert!(psql_as(&target, "dr_r2", "pw2", "app", "SELECT 1").is_err());
    assert_eq!(
        target.psql(
            "postgres",
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'dr_r2'"
        ),
        "f"
    );
    assert_eq!(
        roles_shape(&target, "dr\\_r1"),
        roles_shape(&source, "dr\\_r1")
    );

    let own_password = || {
        target.psql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
        )
    };
    let before = own_password();
    let out = run(&mut rebuild(&target, &dir, &["--reset-roles"]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // Except the password of the role the rebuild is connected as: changing it would cut it off.
    assert_eq!(own_password(), before);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "the password of postgres, the role pgbak is connected as, was left as it is"
        ),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        roles_shape(&target, "dr\\_r_"),
        roles_shape(&source, "dr\\_r_")
    );
    assert_eq!(
        psql_as(&target, "dr_r2", "pw2", "app", "SELECT count(*) FROM t").unwrap(),
        "10"
    );
}

#[test]
fn dr_run_restores_an_older_run_and_a_rerun_continues_the_journals_run() {
    let source = private_cluster(16);
    server_with_roles(&source, 2);
    source.psql("postgres", "CREATE DATABASE zeta");
    source.psql(
        "zeta",
        "CREATE TABLE z AS SELECT generate_series(1, 5) AS x",
    );
    let dir = Dir::new("dr-runs");
    let r1 = run_id_of_backup(&source, &dir, &[]);
    source.psql("app", "INSERT INTO t SELECT generate_series(11, 20)");
    let r2 = run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);

    let out = run(&mut rebuild(&target, &dir, &["--run", &r1]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(target.psql("app", "SELECT count(*) FROM t"), "10");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "newer run {r2} not chosen: complete, but named with --run is {r1}"
        )),
        "{stderr}"
    );
    // A run id that is not there: exit 2, nothing touched.
    let out = run(&mut rebuild(&target, &dir, &["--run", "20200101T000000"]));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));

    // An attempt at r1 that fails in its last database (`zeta`, its dump corrupted with
    // its size kept) leaves the journal on the target.
    // Names sort by time: the first is r1's.
    let mut zetas: Vec<String> = support::files(&dir)
        .into_iter()
        .filter(|f| f.starts_with("zeta_full_") && f.ends_with(".dump"))
        .collect();
    zetas.sort();
    let zeta = zetas.remove(0);
    let path = dir.join(&zeta);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    target.psql("app", "DELETE FROM t");
    let out = run(&mut rebuild(&target, &dir, &["--run", &r1]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(has_database(&target, JOURNAL));
    assert_eq!(target.psql("app", "SELECT count(*) FROM t"), "10");

    // The rebuilt host's own cron makes a newer run meanwhile; the re-run continues r1.
    source.psql("app", "INSERT INTO t SELECT generate_series(21, 30)");
    let r3 = run_id_of_backup(&source, &dir, &[]);
    target.psql("app", "INSERT INTO t VALUES (-1)");
    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("from run {r1} ")), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "newer run {r3} not chosen: complete, but the run the target's restore journal"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("database \"app\": restored by this run already, skipped"),
        "{stderr}"
    );
    assert_eq!(
        target.psql("app", "SELECT count(*) FROM t"),
        "11",
        "app was not restored again"
    );

    // Told otherwise, it takes the newest run and completes; the journal goes.
    let out = run(&mut rebuild(&target, &dir, &["--run", &r3]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(target.psql("app", "SELECT count(*) FROM t"), "30");
    assert!(!has_database(&target, JOURNAL));
    // The row-count tables name their database.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("app ") && l.contains("public.t") && l.ends_with("ok")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("zeta ") && l.contains("public.z")),
        "{stdout}"
    );
}

#[test]
fn dr_several_servers_in_one_place_need_server() {
    let one = private_cluster(16);
    let two = private_cluster(16);
    one.psql("postgres", "CREATE DATABASE from_one");
    two.psql("postgres", "CREATE DATABASE from_two");
    let dir = Dir::new("dr-servers");
    run_id_of_backup(&one, &dir, &["--server-name", "one"]);
    run_id_of_backup(&two, &dir, &["--server-name", "two"]);
    let target = private_cluster(16);

    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runs of 2 servers") && stderr.contains("--server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("one (system identifier") && stderr.contains("two (system identifier"),
        "{stderr}"
    );
    assert!(!has_database(&target, "from_two") && !has_database(&target, "from_one"));

    let out = run(&mut rebuild(&target, &dir, &["--server", "one"]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(has_database(&target, "from_one") && !has_database(&target, "from_two"));
}

#[test]
fn dr_without_a_fitting_pg_restore_changes_nothing() {
    let Some(pg15_bin) = support::paths().pg15_bin.clone() else {
        eprintln!("skipped: no PostgreSQL 15 client tools");
        return;
    };
    let source = private_cluster(16);
    server_with_roles(&source, 3);
    let dir = Dir::new("dr-tools");
    run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);
    let out = run(rebuild(&target, &dir, &[]).env("PGBAK_PG_BIN_DIR", &pg15_bin));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was changed"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        count(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dr_%'"
        ),
        0
    );
    assert!(!has_database(&target, "app") && !has_database(&target, JOURNAL));
}

#[test]
fn dr_of_an_encrypted_run_without_an_identity_is_refused_before_the_prompt() {
    use std::io::Write;
    let source = private_cluster(16);
    server_with_roles(&source, 2);
    let dir = Dir::new("dr-encrypted");
    let keys = Dir::new("dr-encrypted-keys");
    let out = support::pgbak_bare()
        .args(["keygen", "-o"])
        .arg(keys.join("id.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    run_id_of_backup(&source, &dir, &["--encrypt-to", &public]);
    let target = private_cluster(16);
    // On a terminal (script(1)), answering the prompt should it come.
    let mut child = std::process::Command::new("script")
        .arg("-qec")
        .arg(format!(
            "{} restore --all-databases --backup-dir {}",
            env!("CARGO_BIN_EXE_pgbak"),
            dir.display()
        ))
        .arg("/dev/null")
        .env("DATABASE_URL", target.url("postgres"))
        .env(
            "PGBAK_PG_BIN_DIR",
            support::paths()
                .pg17_bin
                .clone()
                .unwrap_or_else(|| target.bin.clone()),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running script(1)");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "127.0.0.1").unwrap();
    let out = crate::support::runs::wait_bounded(child, Duration::from_secs(60));
    drop(stdin);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains("--identity-file") && !text.contains("Type the host name"),
        "{text}"
    );
    assert_eq!(
        count(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dr_%'"
        ),
        0
    );
}

#[test]
fn dr_waits_for_a_target_that_restarts_and_sigterm_says_what_is_done() {
    let source = private_cluster(16);
    for (db, rows) in [("d1", 20000), ("d2", 400_000), ("d3", 20000), ("d4", 20000)] {
        source.psql("postgres", &format!("CREATE DATABASE {db}"));
        source.psql(
            db,
            &format!("CREATE TABLE t AS SELECT generate_series(1, {rows}) AS x"),
        );
    }
    let dir = Dir::new("dr-restart");
    run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);

    // The target restarts once d1 is in place: the databases after the one in flight are
    // restored once it is back.
    let child = rebuild(&target, &dir, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_until(Duration::from_secs(120), || has_database(&target, "d1"));
    target.stop();
    std::thread::sleep(Duration::from_secs(2));
    target.start();
    let out = crate::support::runs::wait_bounded(child, Duration::from_secs(300));
    let text = output_text(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
    assert_eq!(
        target.try_psql("d4", "SELECT count(*) FROM t").as_deref(),
        Ok("20000"),
        "the database after the one in flight is restored once the target is back:\n{text}"
    );
    // Whatever the restart broke, the same command completes it.
    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for (db, rows) in [
        ("d1", "20000"),
        ("d2", "400000"),
        ("d3", "20000"),
        ("d4", "20000"),
    ] {
        assert_eq!(target.psql(db, "SELECT count(*) FROM t"), rows, "{db}");
    }

    // SIGTERM in the middle of the databases: which are done, interrupted, untouched.
    let fresh = private_cluster(16);
    let (out, _) = signal_when(
        rebuild(&fresh, &dir, &[]),
        || {
            fresh
                .databases()
                .iter()
                .any(|d| d.starts_with("pgbak_restoring_d2"))
        },
        libc::SIGTERM,
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopped: done: d1; interrupted: d2"),
        "{stderr}"
    );
    assert!(stderr.contains("untouched: d3, d4, postgres"), "{stderr}");
    assert!(
        fresh
            .databases()
            .iter()
            .all(|d| !d.starts_with("pgbak_restoring_")),
        "the unfinished copy is removed: {:?}",
        fresh.databases()
    );
}

#[test]
fn dr_a_roles_statement_waiting_on_a_lock_is_bounded_and_stops_on_sigterm() {
    let source = private_cluster(16);
    server_with_roles(&source, 3);
    let dir = Dir::new("dr-role-lock");
    run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);
    // Someone is creating dr_r2 in a transaction that stays open.
    let holder = OpenTransaction::hold(&target, "postgres", "CREATE ROLE dr_r2");
    let waiting = || {
        count(
            &target,
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND {} = ANY(pg_blocking_pids(pid))",
                holder.pid
            ),
        ) > 0
    };
    let (out, after) = signal_when(
        rebuild(&target, &dir, &[]),
        waiting,
        libc::SIGTERM,
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(after < Duration::from_secs(5), "SIGTERM took {after:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting(), "pgbak's statement still waits on the server");

    // With --lock-wait-timeout the wait ends by itself: that role is named, not counted as created.
    let started = std::time::Instant::now();
    let out = run(&mut rebuild(&target, &dir, &["--lock-wait-timeout", "1s"]));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lock timeout") && stderr.contains("role dr_r2"),
        "{stderr}"
    );
    let created = stderr
        .lines()
        .find(|l| l.contains("role(s) created"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        created.contains("dr_r3") && !created.contains("dr_r2"),
        "{created}"
    );
    drop(holder);
    // And run again once the other session is gone: complete.
    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        roles_shape(&target, "dr\\_%"),
        roles_shape(&source, "dr\\_%")
    );
}

/// Issue 22 item 5(b): a globals file changed in the store (its meta.json changed to match)
/// holds statements pg_dumpall never writes: the rebuild refuses it naming each, and nothing
/// of it runs, not even the role statements before them; verify --ephemeral does not replay it.
#[test]
fn dr_refuses_a_globals_file_with_statements_pg_dumpall_never_writes() {
    let source = private_cluster(16);
    server_with_roles(&source, 2);
    let dir = Dir::new("dr-hostile");
    run_id_of_backup(&source, &dir, &[]);
    let marker = std::path::PathBuf::from(format!("/tmp/pgbak-dr-hostile-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let globals = support::files(&dir)
        .into_iter()
        .find(|f| f.starts_with("postgres_globals_") && f.ends_with(".dump"))
        .unwrap();
    let path = dir.join(&globals);
    let mut sql = std::fs::read_to_string(&path).unwrap();
    sql.push_str(&format!(
        "CREATE ROLE evil_early;\n\
         CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1';\n\
         COPY (SELECT 1) TO PROGRAM 'touch {0}';\n\
         DO $$ BEGIN EXECUTE 'ALTER ROLE dr_r1 SUPERUSER'; END $$;\n\
         ALTER SYSTEM SET archive_command = 'touch {0}';\n\
         CREATE ROLE \"x\"; ALTER ROLE dr_r2 WITH SUPERUSER; GRANT pg_execute_server_program TO dr_r2;\n\
         ALTER ROLE dr_r1 SET search_path TO E'\\''; COPY (SELECT 1) TO PROGRAM 'touch {0}'; --';\n",
        marker.display()
    ));
    std::fs::write(&path, &sql).unwrap();
    // The bucket writer fixes meta.json's checksum too.
    let meta_path = dir.join(globals.replace(".dump", ".meta.json"));
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["sha256"] = support::sha256_hex(&path).into();
    meta["size_bytes"] = sql.len().into();
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();

    let target = private_cluster(16);
    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for kind in [
        "CREATE FUNCTION",
        "COPY (",
        "DO (",
        "ALTER SYSTEM",
        "ALTER ROLE (holds a prefixed string",
    ] {
        assert!(stderr.contains(kind), "{kind:?} not named:\n{stderr}");
    }
    assert!(stderr.contains("none of it was run"), "{stderr}");
    assert!(!marker.exists(), "COPY TO PROGRAM ran");
    assert_eq!(
        count(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dr_%' OR rolname LIKE 'evil%'"
        ),
        0
    );
    assert!(!has_database(&target, "app") && !has_database(&target, JOURNAL));

    // verify --ephemeral finds this globals file beside the dump and does not replay it.
    let app_dump = support::files(&dir)
        .into_iter()
        .find(|f| f.starts_with("app_full_") && f.ends_with(".dump"))
        .unwrap();
    let out = run(support::pgbak(&source)
        .env("DATABASE_URL", source.url("app"))
        .args(["verify", "--ephemeral", "--json"])
        .arg(dir.join(app_dump)));
    let text = output_text(&out);
    assert!(
        text.contains("never writes") && text.contains("so none of it runs"),
        "{text}"
    );
    assert!(
        !marker.exists(),
        "COPY TO PROGRAM ran in the throwaway cluster"
    );
}

/// "N role(s) created" counts the CREATE ROLE statements that succeeded: a rebuild as a role
/// that may create databases but not roles creates none, says so, and fails naming them.
#[test]
fn dr_counts_only_the_roles_it_created() {
    let source = private_cluster(16);
    server_with_roles(&source, 2);
    let dir = Dir::new("dr-count");
    run_id_of_backup(&source, &dir, &[]);
    let target = private_cluster(16);
    target.psql(
        "postgres",
        "CREATE ROLE limited LOGIN CREATEDB PASSWORD 'limited-pw'",
    );
    let out = run(rebuild(&target, &dir, &[]).env(
        "DATABASE_URL",
        format!(
            "postgresql://limited:limited-pw@127.0.0.1:{}/postgres",
            target.port
        ),
    ));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("globals: 0 role(s) created"), "{stderr}");
    assert!(
        stderr.contains("permission denied to create role"),
        "{stderr}"
    );
    assert!(stderr.contains("role dr_r1: does not exist"), "{stderr}");
    assert_eq!(
        count(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dr_%'"
        ),
        0
    );
}
