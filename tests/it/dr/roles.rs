//! Issue 24: a rebuild (`restore --all-databases`) an on-call engineer can run, interrupt and
//! run again, the roles first. Killed (SIGKILL, SIGTERM) in the middle of the roles, the same
//! command again leaves every role as in the backup; roles that existed before are reported and
//! changed only with --reset-roles; a roles statement waiting on a lock is bounded and stops on
//! SIGTERM; a globals file with statements pg_dumpall never writes is refused; only the roles it
//! created are counted.

use std::time::Duration;

use super::{count, has_database, server_with_roles, JOURNAL};
use crate::support::runs::{
    psql_as, rebuild, roles_shape, run_id_of_backup, signal_when, OpenTransaction,
};
use crate::support::verify::Dir;
use crate::support::{self, output_text, private_cluster, run};

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
