//! The rebuild's choices and waits: `--run` restores an older run and a re-run continues the run
//! of the target's journal; several servers in one place need --server; nothing changes without a
//! fitting pg_restore or, for an encrypted run, an identity; a target that restarts is waited
//! for, and SIGTERM says which databases are done; `verify --ephemeral --from-s3` replays the
//! run's globals found in the bucket.

use std::time::Duration;

use serde_json::Value;

use super::{count, has_database, server_with_roles, JOURNAL};
use crate::support::keys::keygen;
use crate::support::processes::on_terminal;
use crate::support::runs::{pgbak_on, rebuild, run_id_of_backup, signal_when};
use crate::support::verify::Dir;
use crate::support::{self, output_text, private_cluster, run, s3};

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
    let (_, public) = keygen(&keys, "id.txt");
    run_id_of_backup(&source, &dir, &["--encrypt-to", &public]);
    let target = private_cluster(16);
    // On a terminal (script(1)), answering the prompt should it come.
    let args = format!("restore --all-databases --backup-dir {}", dir.display());
    let mut child = on_terminal(&target, &target.url("postgres"), &args)
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
fn verify_ephemeral_from_s3_replays_the_globals_of_the_run_in_the_bucket() {
    let source = private_cluster(16);
    source.psql("postgres", "CREATE ROLE app_reader");
    source.psql("postgres", "CREATE DATABASE app");
    source.psql(
        "app",
        "CREATE TABLE notes (id int PRIMARY KEY, public bool); \
         INSERT INTO notes SELECT g, g % 2 = 0 FROM generate_series(1, 50) g; \
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY readers ON notes FOR SELECT TO app_reader USING (public); \
         GRANT SELECT ON notes TO app_reader",
    );
    let bucket = s3().fresh_bucket("dr-ephemeral");
    let dir = Dir::new("dr-ephemeral");
    let mut cmd = pgbak_on(&source);
    for (key, value) in s3().env() {
        cmd.env(key, value);
    }
    let out = run(cmd
        .env("S3_BUCKET", &bucket)
        .env("S3_STORAGE_CLASS", "STANDARD")
        .args(["backup", "--all-databases", "--json", "--output-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let mut cmd = support::pgbak(&source);
    for (key, value) in s3().env() {
        cmd.env(key, value);
    }
    let out = run(cmd
        .env("S3_BUCKET", &bucket)
        .env("DATABASE_URL", source.url("app"))
        .args([
            "verify",
            "--ephemeral",
            "--from-s3",
            "--json",
            "--expect-table",
            "public.notes",
        ]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restored into the throwaway cluster"),
        "{}",
        output_text(&out)
    );
}
