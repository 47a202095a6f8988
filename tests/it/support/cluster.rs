//! Throwaway PostgreSQL clusters: initdb into a temp dir, a free port on 127.0.0.1 with
//! scram-sha-256 (so the password path is real), trust on a private unix socket for the
//! harness's own psql calls.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{
    as_server_user, chown_to_postgres, clear_pg_env, free_port, paths, scratch_dir, spawn_reaper,
};

/// Password of the superuser `postgres` in every test cluster (TCP connections need it).
pub const PASSWORD: &str = "s3cr3t-Pa55word";

/// A running test cluster.
#[derive(Debug)]
pub struct Pg {
    pub major: u32,
    pub bin: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub data_dir: PathBuf,
    /// The temp dir holding data, socket, log and password file; removed at cleanup.
    root: PathBuf,
}

/// A cluster of its own for a test that stops, restarts or breaks it. Stopped and removed on
/// Drop (and by the reaper if the test process dies first).
#[derive(Debug)]
pub struct OwnedCluster {
    pg: Pg,
    reaper: Mutex<Option<Child>>,
}

impl Deref for OwnedCluster {
    type Target = Pg;
    fn deref(&self) -> &Pg {
        &self.pg
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        if self.pg.postmaster_pid().is_some() {
            let _ = self
                .pg
                .pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
        }
        let _ = std::fs::remove_dir_all(&self.pg.root);
        super::stop_reaper(&self.reaper);
    }
}

/// The shared PostgreSQL 16 + pgvector cluster of this test process.
pub fn pg16() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let (pg, reaper) = start_cluster(16);
        std::mem::forget(reaper); // runs until the test process exits
        pg
    })
}

/// The shared PostgreSQL 17 cluster (no pgvector), when setup.sh installed 17.
pub fn pg17() -> Option<&'static Pg> {
    static PG: OnceLock<Option<Pg>> = OnceLock::new();
    shared_if_installed(&PG, 17, paths().pg17_bin.is_some())
}

/// The shared PostgreSQL 15 cluster (Debian's package, no pgvector), when installed.
pub fn pg15() -> Option<&'static Pg> {
    static PG: OnceLock<Option<Pg>> = OnceLock::new();
    shared_if_installed(&PG, 15, paths().pg15_bin.is_some())
}

/// The shared cluster of `major` in `cell`, started on first use when installed.
fn shared_if_installed(
    cell: &'static OnceLock<Option<Pg>>,
    major: u32,
    installed: bool,
) -> Option<&'static Pg> {
    cell.get_or_init(|| {
        installed.then(|| {
            let (pg, reaper) = start_cluster(major);
            std::mem::forget(reaper); // runs until the test process exits
            pg
        })
    })
    .as_ref()
}

/// A dedicated cluster of `major` (15, 16 or 17) that the test may stop, restart or kill.
pub fn private_cluster(major: u32) -> OwnedCluster {
    let (pg, reaper) = start_cluster(major);
    OwnedCluster {
        pg,
        reaper: Mutex::new(Some(reaper)),
    }
}

/// A streaming hot standby of `primary` (PostgreSQL 16), made with
/// `pg_basebackup -R -X stream` over the primary's unix socket; `extra_conf` is appended to
/// its postgresql.conf (e.g. `max_standby_streaming_delay = 0`). Stopped and removed on Drop.
pub fn standby_of(primary: &Pg, extra_conf: &str) -> OwnedCluster {
    let root = scratch_dir(&format!("pg{}-standby", primary.major));
    let data_dir = root.join("data");
    let socket_dir = root.join("sock");
    let reaper = spawn_reaper(CLUSTER_CLEANUP, &[data_dir.as_os_str(), root.as_os_str()]);
    std::fs::create_dir(&socket_dir).expect("mkdir socket dir");
    chown_to_postgres(&root);
    let mut basebackup = as_server_user(primary.bin.join("pg_basebackup"), &root);
    basebackup
        .arg("-D")
        .arg(&data_dir)
        .args(["-R", "-X", "stream", "-c", "fast", "-U", "postgres", "-h"])
        .arg(&primary.socket_dir)
        .arg("-p")
        .arg(primary.port.to_string());
    super::output_ok(&mut basebackup, "pg_basebackup");
    let conf = format!(
        "\n# pgbak test standby\nunix_socket_directories = '{}'\nhot_standby = on\n\
         include_if_exists = 'pgbak_port.conf'\n{extra_conf}\n",
        socket_dir.display()
    );
    append(&data_dir.join("postgresql.conf"), &conf);
    let mut pg = Pg {
        major: primary.major,
        bin: primary.bin.clone(),
        port: 0,
        socket_dir,
        data_dir,
        root,
    };
    for _ in 0..5 {
        pg.take_fresh_port();
        match pg.try_start() {
            Ok(()) => {
                return OwnedCluster {
                    pg,
                    reaper: Mutex::new(Some(reaper)),
                }
            }
            Err(log)
                if log.contains("Address already in use") || log.contains("could not bind") => {}
            Err(log) => panic!("starting the standby failed:\n{log}"),
        }
    }
    panic!("starting the standby: no free port after 5 tries");
}

impl Pg {
    /// Waits until this standby has replayed everything `primary` wrote so far.
    pub fn catch_up_with(&self, primary: &Pg) {
        let lsn = primary.psql("postgres", "SELECT pg_current_wal_lsn()");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let caught_up = self.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            );
            if caught_up == "t" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the standby did not replay up to {lsn} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn bin_dir(major: u32) -> PathBuf {
    let p = paths();
    match major {
        16 => p.pg16_bin.clone(),
        17 => p
            .pg17_bin
            .clone()
            .expect("PostgreSQL 17 not installed (scripts/setup.sh)"),
        15 => p
            .pg15_bin
            .clone()
            .expect("PostgreSQL 15 not installed (apt-get install postgresql-15)"),
        other => panic!("no PostgreSQL {other} in the test tools"),
    }
}

/// Cleanup run by the reaper: immediate shutdown of the postmaster (SIGQUIT), wait for it,
/// remove the cluster's directory. `$1` = data dir, `$2` = root dir.
const CLUSTER_CLEANUP: &str = r#"
if [ -f "$1/postmaster.pid" ]; then
  pm=$(head -n 1 "$1/postmaster.pid")
  kill -QUIT "$pm" 2>/dev/null
  i=0
  while kill -0 "$pm" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pm" 2>/dev/null
fi
rm -rf "$2"
"#;

fn start_cluster(major: u32) -> (Pg, Child) {
    let bin = bin_dir(major);
    let root = scratch_dir(&format!("pg{major}"));
    let data_dir = root.join("data");
    let socket_dir = root.join("sock");
    let reaper = spawn_reaper(CLUSTER_CLEANUP, &[data_dir.as_os_str(), root.as_os_str()]);
    std::fs::create_dir(&socket_dir).expect("mkdir socket dir");
    let pwfile = root.join("pwfile");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).expect("writing pwfile");
    chown_to_postgres(&root);

    let mut initdb = as_server_user(bin.join("initdb"), &root);
    initdb
        .arg("-D")
        .arg(&data_dir)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
    super::output_ok(&mut initdb, &format!("initdb (PostgreSQL {major})"));
    let _ = std::fs::remove_file(&pwfile);

    let conf = format!(
        "\n# pgbak test harness\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
         shared_buffers = 32MB\nmax_connections = 200\n\
         max_wal_size = 1GB\ncheckpoint_timeout = 30min\n\
         logging_collector = off\n\
         include_if_exists = 'pgbak_port.conf'\n",
        socket_dir.display()
    );
    append(&data_dir.join("postgresql.conf"), &conf);

    let mut pg = Pg {
        major,
        bin,
        port: 0,
        socket_dir,
        data_dir,
        root,
    };
    let mut last_log = String::new();
    for _ in 0..5 {
        pg.take_fresh_port();
        match pg.try_start() {
            Ok(()) => return (pg, reaper),
            Err(log)
                if log.contains("Address already in use") || log.contains("could not bind") =>
            {
                last_log = log;
            }
            Err(log) => panic!("starting PostgreSQL {major} failed:\n{log}"),
        }
    }
    panic!("starting PostgreSQL {major}: no free port after 5 tries:\n{last_log}");
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .expect("appending to postgresql.conf");
}

/// `"name"` with embedded quotes doubled: a safe SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled: a safe SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A libpq conninfo value, quoted so any database name survives.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Pg {
    /// `postgresql://postgres:PASSWORD@127.0.0.1:PORT/DB`, the database name percent-encoded.
    pub fn url(&self, db: &str) -> String {
        let db = percent_encoding::utf8_percent_encode(db, percent_encoding::NON_ALPHANUMERIC);
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// A port free a moment ago for the server's next start, in its own `pgbak_port.conf`.
    fn take_fresh_port(&mut self) {
        self.port = free_port();
        let port_conf = self.data_dir.join("pgbak_port.conf");
        std::fs::write(&port_conf, format!("port = {}\n", self.port)).expect("writing port conf");
        chown_to_postgres(&port_conf);
    }

    /// The server log (startup failures, errors pgbak's queries caused).
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A new, empty database with a name unique in this test process; dropped on Drop.
    pub fn fresh_db(&self, hint: &str) -> TestDb<'_> {
        static N: AtomicU64 = AtomicU64::new(0);
        let mut clean = super::names::slug(hint, '_');
        if clean.is_empty() {
            clean.push_str("db");
        }
        let name = format!("{clean}_{}", N.fetch_add(1, Ordering::Relaxed));
        self.create_db_named(&name)
    }

    /// A database with exactly this name (spaces, quotes, unicode...); dropped on Drop.
    pub fn create_db_named(&self, name: &str) -> TestDb<'_> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
        TestDb {
            name: name.to_string(),
            pg: self,
        }
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        clear_pg_env(&mut cmd);
        cmd.env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-d"])
            .arg(format!(
                "dbname={} host={} port={} user=postgres",
                conninfo_value(db),
                conninfo_value(&self.socket_dir.to_string_lossy()),
                self.port
            ))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `sql` in `db` as the superuser over the unix socket; stdout without the trailing
    /// newline, or stderr as the error.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .psql_command(db)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("running psql");
        if out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            while text.ends_with('\n') {
                text.pop();
            }
            Ok(text)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// [`Pg::try_psql`], panicking with psql's stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|err| {
            panic!(
                "psql (PostgreSQL {} port {}) db {db:?} failed: {err}\nSQL: {sql}",
                self.major, self.port
            )
        })
    }

    /// Loads the enterprise_agents fixture (13 tables, pgvector, alembic 013) into `db`.
    /// `PGBAK_FIXTURE` overrides the path; `scale` 0.05 gives a few MB.
    pub fn load_fixture(&self, db: &str, scale: f64) {
        let path = fixture_path();
        let out = self
            .psql_command(db)
            .arg("-q")
            .arg("-v")
            .arg(format!("scale={scale}"))
            .arg("-f")
            .arg(&path)
            .output()
            .expect("running psql -f fixture");
        assert!(
            out.status.success(),
            "loading {} into {db:?} (PostgreSQL {}) failed:\n{}",
            path.display(),
            self.major,
            super::output_text(&out)
        );
    }

    /// Names of the non-template databases, sorted.
    pub fn databases(&self) -> Vec<String> {
        self.psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Whether `CREATE EXTENSION name` can work on this server (e.g. `vector`).
    pub fn has_extension(&self, name: &str) -> bool {
        self.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_available_extensions WHERE name = {}",
                quote_literal(name)
            ),
        ) == "1"
    }

    /// Tables of the `public` schema with their exact row counts.
    pub fn row_counts(&self, db: &str) -> BTreeMap<String, i64> {
        self.per_table(db, "count(*)::text")
            .into_iter()
            .map(|(t, n)| {
                let n = n
                    .parse()
                    .unwrap_or_else(|_| panic!("row count of {t}: {n:?}"));
                (t, n)
            })
            .collect()
    }

    /// Per table of the `public` schema: md5 of all rows' text, in a fixed order. Equal maps
    /// mean equal contents (compare a source with its restored copy).
    pub fn table_digests(&self, db: &str) -> BTreeMap<String, String> {
        self.per_table(
            db,
            r#"md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text COLLATE "C"), ''))"#,
        )
    }

    fn per_table(&self, db: &str, expr: &str) -> BTreeMap<String, String> {
        let queries = self.psql(
            db,
            &format!(
                "SELECT format('SELECT %L, {} FROM %I.%I t', tablename, schemaname, tablename) \
                 FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                expr.replace('\'', "''")
            ),
        );
        if queries.is_empty() {
            return BTreeMap::new();
        }
        let sql = queries.lines().collect::<Vec<_>>().join(" UNION ALL ");
        self.psql(db, &sql)
            .lines()
            .map(|line| {
                let (table, value) = line
                    .rsplit_once('|')
                    .unwrap_or_else(|| panic!("psql line {line:?}"));
                (table.to_string(), value.to_string())
            })
            .collect()
    }

    /// The postmaster's pid while the server runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        as_server_user(self.bin.join("pg_ctl"), &self.root)
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_file())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running pg_ctl")
    }

    fn try_start(&self) -> Result<(), String> {
        let out = self.pg_ctl(&["start", "-w", "-t", "60"]);
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
            Err(format!(
                "{}\n--- server log ---\n{log}",
                super::output_text(&out)
            ))
        }
    }

    /// Starts a stopped cluster (same port); for private clusters.
    pub fn start(&self) {
        if let Err(err) = self.try_start() {
            panic!(
                "pg_ctl start (PostgreSQL {} port {}) failed:\n{err}",
                self.major, self.port
            );
        }
    }

    /// Stops the server (fast shutdown: sessions are terminated); for private clusters.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed:\n{}",
            super::output_text(&out)
        );
    }
}

/// Path of the enterprise_agents fixture (`PGBAK_FIXTURE` overrides).
pub fn fixture_path() -> PathBuf {
    match std::env::var_os("PGBAK_FIXTURE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => super::repo_dir().join("fixtures/enterprise_agents.sql"),
    }
}

/// A database created for one test; dropped `WITH (FORCE)` on Drop, errors ignored.
#[derive(Debug)]
pub struct TestDb<'a> {
    pub name: String,
    pg: &'a Pg,
}

impl TestDb<'_> {
    pub fn pg(&self) -> &Pg {
        self.pg
    }

    /// [`Pg::url`] of this database.
    pub fn url(&self) -> String {
        self.pg.url(&self.name)
    }

    /// [`Pg::psql`] in this database.
    pub fn psql(&self, sql: &str) -> String {
        self.pg.psql(&self.name, sql)
    }

    /// [`Pg::load_fixture`] into this database.
    pub fn load_fixture(&self, scale: f64) {
        self.pg.load_fixture(&self.name, scale)
    }
}

impl Drop for TestDb<'_> {
    fn drop(&mut self) {
        let _ = self.pg.try_psql(
            "postgres",
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ),
        );
    }
}
