//! What the tests of `--all-databases` runs and of rebuilds (`restore --all-databases`) do:
//! a run into a directory, a rebuild from it, a command spawned and stopped by a signal at a
//! moment the server shows, the shape of a server's roles, a session holding a transaction open.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{output_text, pgbak, private_cluster, OwnedCluster, Pg, PASSWORD};

/// A server of two databases for `--all-databases` runs, `plain` and `guarded` (a
/// row-level-security table), and a backup role `agent` (password `agent-pw`) with
/// pg_read_all_data and BYPASSRLS: without BYPASSRLS its backup of `guarded` fails, the
/// others succeed.
pub fn rls_server(pg: &Pg) {
    pg.psql(
        "postgres",
        "CREATE ROLE agent LOGIN PASSWORD 'agent-pw' BYPASSRLS; GRANT pg_read_all_data TO agent",
    );
    pg.psql("postgres", "CREATE DATABASE plain");
    pg.psql("postgres", "CREATE DATABASE guarded");
    pg.psql(
        "plain",
        "CREATE TABLE t AS SELECT generate_series(1, 10) AS x",
    );
    pg.psql(
        "guarded",
        "CREATE TABLE s (x int); INSERT INTO s VALUES (1); ALTER TABLE s ENABLE ROW LEVEL SECURITY",
    );
}

/// `pgbak` against `pg`'s `postgres` database.
pub fn pgbak_on(pg: &Pg) -> Command {
    let mut cmd = pgbak(pg);
    cmd.env("DATABASE_URL", pg.url("postgres"));
    cmd
}

/// `backup --all-databases --json` of `pg` into `dir`: the output and its summary.
pub fn backup_all(pg: &Pg, dir: &Path, extra: &[&str]) -> (Output, Value) {
    let out = pgbak_on(pg)
        .args([
            "backup",
            "--all-databases",
            "--no-s3",
            "--json",
            "--output-dir",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .expect("running pgbak backup --all-databases");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

/// A private PostgreSQL 16 server with a login role `owner` that owns the database `db` and
/// its table `table` (`id int PRIMARY KEY`, 1 to `rows`), after `db_sql` ran in `postgres`
/// (a setting, an ACL); backed up `--all-databases` into `dir` with `extra` (it must succeed).
pub fn owned_database_run(
    dir: &Path,
    owner: &str,
    db: &str,
    table: &str,
    rows: u32,
    db_sql: &str,
    extra: &[&str],
) -> OwnedCluster {
    let source = private_cluster(16);
    source.psql(
        "postgres",
        &format!("CREATE ROLE {owner} LOGIN PASSWORD '{owner}-Pa55'"),
    );
    source.psql("postgres", &format!("CREATE DATABASE {db} OWNER {owner}"));
    if !db_sql.is_empty() {
        source.psql("postgres", db_sql);
    }
    source.psql(
        db,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY); \
             INSERT INTO {table} SELECT generate_series(1, {rows}); \
             ALTER TABLE {table} OWNER TO {owner}"
        ),
    );
    let (out, _) = backup_all(&source, dir, extra);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    source
}

/// A successful `backup --all-databases` of `pg` into `dir`: its run id. Waits a second
/// first, so that two runs never share an id (ids are whole seconds).
pub fn run_id_of_backup(pg: &Pg, dir: &Path, extra: &[&str]) -> String {
    std::thread::sleep(Duration::from_millis(1100));
    let (out, json) = backup_all(pg, dir, extra);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    json["cluster_run"].as_str().unwrap().to_owned()
}

/// `restore --all-databases --no-confirm --backup-dir dir` onto `target`.
pub fn rebuild(target: &Pg, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = pgbak_on(target);
    cmd.args(["restore", "--all-databases", "--no-confirm", "--backup-dir"])
        .arg(dir)
        .args(extra);
    cmd
}

/// Spawns `cmd` (stdout and stderr piped), waits until `ready` holds (polling every 20 ms,
/// at most `timeout`), then sends `signal`; returns the child's output and how long it took
/// to exit after the signal.
pub fn signal_when(
    mut cmd: Command,
    ready: impl Fn() -> bool,
    signal: i32,
    timeout: Duration,
) -> (Output, Duration) {
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning pgbak");
    let deadline = Instant::now() + timeout;
    while !ready() {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "ended before the moment to signal it:\n{}",
                output_text(&out)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the moment to signal never came:\n{}", output_text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let sent = Instant::now();
    let out = wait_bounded(child, Duration::from_secs(60));
    (out, sent.elapsed())
}

/// Waits for `child` at most `limit`, killing it after that (the test then sees signal 9).
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Every role whose name matches `like` as the server has it: attributes, password hash,
/// memberships and settings, one line each, sorted.
pub fn roles_shape(pg: &Pg, like: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT coalesce(string_agg(line, E'\\n' ORDER BY line), '') FROM (
               SELECT 'role ' || rolname || ' ' || rolsuper || rolinherit || rolcreaterole
                      || rolcreatedb || rolcanlogin || rolreplication || rolbypassrls || ' '
                      || rolconnlimit || ' ' || coalesce(rolpassword, '-') AS line
                 FROM pg_authid WHERE rolname LIKE '{like}'
               UNION ALL
               SELECT 'member ' || m.rolname || ' of ' || r.rolname || ' ' || am.admin_option
                 FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid
                 JOIN pg_roles m ON m.oid = am.member WHERE m.rolname LIKE '{like}'
               UNION ALL
               SELECT 'setting ' || r.rolname || ' ' || array_to_string(s.setconfig, ',')
                 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                WHERE s.setdatabase = 0 AND r.rolname LIKE '{like}'
             ) lines"
        ),
    )
}

/// psql over TCP as `user` with `password`: Ok(stdout) or Err(stderr). `sql` may hold several
/// commands separated by `;;`, each its own `-c` (its own transaction).
pub fn psql_as(pg: &Pg, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(pg.bin.join("psql"));
    super::clear_pg_env(&mut cmd);
    let out = cmd
        .env("PGPASSWORD", password)
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(pg.port.to_string())
        .args(["-U", user, "-d", db])
        .args(sql.split(";;").flat_map(|c| ["-c", c]))
        .stdin(Stdio::null())
        .output()
        .expect("running psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A superuser session that ran `sql` in an open transaction and holds it until dropped.
pub struct OpenTransaction {
    child: Child,
    /// The session's backend pid.
    pub pid: String,
}

impl OpenTransaction {
    pub fn hold(pg: &Pg, db: &str, sql: &str) -> OpenTransaction {
        let marker = format!("dr-open-{}", std::process::id());
        let mut child = super::faults::psql_session(pg, db)
            .env("PGAPPNAME", &marker)
            .spawn()
            .unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN; {sql};").unwrap();
        stdin.flush().unwrap();
        // Owned from here on: a failed wait below still ends the session.
        let mut held = OpenTransaction {
            child,
            pid: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pid = pg.psql(
                "postgres",
                &format!(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = '{marker}' \
                     AND state = 'idle in transaction'"
                ),
            );
            if !pid.is_empty() {
                held.pid = pid;
                return held;
            }
            assert!(
                Instant::now() < deadline,
                "the open transaction never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
