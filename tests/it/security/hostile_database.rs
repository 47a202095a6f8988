//! Issue 22, items 1 and 2: a database user's code never runs in pgbak's own
//! sessions, nor with more privilege than a throwaway role while verify
//! restores a copy. Each test builds the attack: the application's owner
//! (a role that is not a superuser) plants objects that write a file through
//! `COPY ... TO PROGRAM` or make a role a superuser when run by one; the test
//! shows the payload did not run and what pgbak recorded or judged. Database,
//! schema and table names with quotes, spaces and semicolons are quoted everywhere.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::cluster::quote_ident;
use crate::support::verify::Dir;
use crate::support::{
    self, backup, chown_to_postgres, dumps, output_text, pg16, read_meta, scratch_dir, sha256_hex,
    Pg, TestDb,
};

/// A database owned by a role of its own that is not a superuser (the
/// application's owner), and a trap: a file path the server's OS user may
/// write, which exists only if planted code ran as a superuser.
pub struct Hostile<'a> {
    pub db: TestDb<'a>,
    pub owner: String,
    trap_dir: PathBuf,
}

impl<'a> Hostile<'a> {
    pub fn new(pg: &'a Pg, hint: &str) -> Hostile<'a> {
        let db = pg.fresh_db(hint);
        let owner = format!("owner_{}", db.name);
        pg.psql(
            "postgres",
            &format!(
                "CREATE ROLE {0} NOLOGIN NOSUPERUSER; ALTER DATABASE {1} OWNER TO {0}",
                quote_ident(&owner),
                quote_ident(&db.name)
            ),
        );
        let trap_dir = scratch_dir(&format!("trap-{hint}").replace(' ', "-"));
        chown_to_postgres(&trap_dir);
        let hostile = Hostile {
            db,
            owner,
            trap_dir,
        };
        // The payload: run by a superuser it writes the trap file (as the
        // server's OS user) and makes the owner a superuser; run by anyone
        // else it does nothing and returns a value.
        hostile.as_owner(&format!(
            "CREATE FUNCTION public.pwn() RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
             BEGIN
               IF current_setting('is_superuser') = 'on' THEN
                 EXECUTE format('COPY (SELECT current_user) TO PROGRAM %L', 'cat > {}');
                 BEGIN
                   EXECUTE format('ALTER ROLE %I SUPERUSER', {});
                 EXCEPTION WHEN OTHERS THEN NULL; -- a read-only transaction: the file is enough
                 END;
               END IF;
               RETURN 'abc123';
             END $f$",
            hostile.trap().display(),
            support::cluster::quote_literal(&hostile.owner)
        ));
        hostile
    }

    /// Runs `sql` in the database as its owner (SET ROLE: what the owner could do itself).
    pub fn as_owner(&self, sql: &str) -> String {
        self.db
            .psql(&format!("SET ROLE {}; {sql}", quote_ident(&self.owner)))
    }

    pub fn trap(&self) -> PathBuf {
        self.trap_dir.join("pwned")
    }

    /// `verify --expect-table public.t` of `dump` on the database's server passes, and the
    /// payload did not run: its JSON report.
    pub fn verify_passes(&self, dump: &Path) -> Value {
        let (out, report) =
            crate::support::verify::run_json(&mut crate::support::verify::verify_cmd(
                &self.db,
                dump,
                &["--expect-table", "public.t"],
            ));
        self.assert_contained("verify");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        report
    }

    /// Fails the test when the payload ran: the trap file exists or the owner became a superuser.
    pub fn assert_contained(&self, after: &str) {
        let trap = self.trap();
        assert!(
            !trap.exists(),
            "{after}: the payload ran as a superuser ({} says {:?})",
            trap.display(),
            std::fs::read_to_string(&trap).unwrap_or_default()
        );
        let pg = self.db.pg();
        let superuser = pg.psql(
            "postgres",
            &format!(
                "SELECT rolsuper FROM pg_roles WHERE rolname = {}",
                support::cluster::quote_literal(&self.owner)
            ),
        );
        assert_eq!(superuser, "f", "{after}: {} became a superuser", self.owner);
    }
}

impl Drop for Hostile<'_> {
    fn drop(&mut self) {
        let pg = self.db.pg();
        let _ = pg.try_psql(
            "postgres",
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.db.name)
            ),
        );
        let _ = pg.try_psql(
            "postgres",
            &format!("DROP ROLE IF EXISTS {}", quote_ident(&self.owner)),
        );
        let _ = std::fs::remove_dir_all(&self.trap_dir);
    }
}

/// Backs `hostile` up into a fresh directory; the backup must succeed. Returns
/// the directory, the dump and its meta.json.
fn backed_up(pg: &Pg, hostile: &Hostile<'_>) -> (tempfile::TempDir, PathBuf, Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = backup(pg, &hostile.db.name, dir.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    hostile.assert_contained("backup");
    let dump = dir.path().join(&dumps(dir.path())[0]);
    let meta = read_meta(&PathBuf::from(
        dump.to_string_lossy().replace(".dump", ".meta.json"),
    ));
    (dir, dump, meta)
}

/// Plants the application code a restore runs (a CHECK constraint, a
/// generated column, an index expression, a materialized view; a column
/// default and a trigger too, which a restore does not fire) in `hostile`,
/// each calling the payload; and, as the superuser, an event trigger (which
/// only a superuser may create).
fn plant_restore_payloads(hostile: &Hostile<'_>) {
    hostile.as_owner(
        "CREATE FUNCTION public.chk(integer) RETURNS boolean LANGUAGE plpgsql AS $f$
           BEGIN PERFORM public.pwn(); RETURN true; END $f$;
         CREATE FUNCTION public.imm(integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $f$
           BEGIN PERFORM public.pwn(); RETURN $1; END $f$;
         CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql AS $f$
           BEGIN PERFORM public.pwn(); RETURN NEW; END $f$;
         CREATE TABLE public.t (
           g integer CHECK (public.chk(g)),
           d text DEFAULT public.pwn(),
           x integer GENERATED ALWAYS AS (public.imm(g)) STORED);
         INSERT INTO public.t (g) SELECT generate_series(1, 5);
         CREATE INDEX t_expr ON public.t (public.imm(g));
         CREATE TRIGGER t_trg BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.trg();
         CREATE MATERIALIZED VIEW public.mv AS SELECT public.pwn() AS v",
    );
    hostile.db.psql(
        "CREATE FUNCTION public.ddl_log() RETURNS event_trigger LANGUAGE plpgsql AS $f$
           BEGIN RAISE NOTICE 'ddl'; END $f$;
         CREATE EVENT TRIGGER ddl_log ON ddl_command_end EXECUTE FUNCTION public.ddl_log()",
    );
}

/// The throwaway role named in verify's report, which must be gone.
fn assert_role_dropped(pg: &Pg, report: &Value) {
    let detail = crate::support::verify::detail(report, "temp database created");
    let role = detail
        .split("throwaway role ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no throwaway role in {detail:?}"));
    assert!(role.starts_with("pgbak_verify_"), "{detail}");
    let left = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = {}",
            support::cluster::quote_literal(role)
        ),
    );
    assert_eq!(left, "0", "the throwaway role {role} was left behind");
}

/// verify of a dump carrying `plant_restore_payloads` on `extra`'s target:
/// the payload did not run, verify passed, naming the event trigger it could
/// not create, and the throwaway role is gone.
fn verify_contains_the_payloads(hint: &str, extra: &[&str], bin: Option<&std::path::Path>) {
    let pg = pg16();
    let hostile = Hostile::new(pg, hint);
    plant_restore_payloads(&hostile);
    let (_dir, dump, _meta) = backed_up(pg, &hostile);
    let mut args = vec!["--expect-table", "public.t"];
    args.extend_from_slice(extra);
    let mut cmd = crate::support::verify::verify_cmd(&hostile.db, &dump, &args);
    if let Some(bin) = bin {
        cmd.env("PGBAK_PG_BIN_DIR", bin);
    }
    let (out, report) = crate::support::verify::run_json(&mut cmd);
    hostile.assert_contained(&format!("verify {extra:?}"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let restore = crate::support::verify::detail(&report, "restore succeeded");
    assert!(
        restore.contains("only a superuser may create them")
            && restore.contains("EVENT TRIGGER ddl_log"),
        "{restore}"
    );
    if !extra.contains(&"--ephemeral") {
        assert_role_dropped(pg, &report);
    }
}

#[test]
fn hostile_alembic_version_view_is_not_read_by_backup_or_verify() {
    let pg = pg16();
    let hostile = Hostile::new(pg, "alembic view");
    hostile.as_owner(
        "CREATE TABLE public.t AS SELECT g FROM generate_series(1, 5) g;
         CREATE VIEW public.alembic_version AS SELECT public.pwn()::varchar(32) AS version_num",
    );
    let (_dir, dump, meta) = backed_up(pg, &hostile);
    // Refused with a warning, recorded as no revision.
    assert_eq!(meta["alembic_revision"], Value::Null, "{meta:#}");
    // verify on the source server reads the copy's alembic_version too.
    let report = hostile.verify_passes(&dump);
    assert_eq!(
        crate::support::verify::status(&report, "alembic revision matches"),
        "pass"
    );
}

#[test]
fn hostile_operator_and_function_in_public_shadow_nothing_pgbak_calls() {
    let pg = pg16();
    let hostile = Hostile::new(pg, "shadowing");
    // Exact matches for what pgbak's catalog queries compare and call with an
    // integer (oid = 10, pg_get_userbyid(10)): with `public` on the search
    // path they win over the built-ins, which need a cast.
    hostile.as_owner(
        "CREATE TABLE public.t AS SELECT g FROM generate_series(1, 5) g;
         CREATE FUNCTION public.evil_eq(oid, integer) RETURNS boolean LANGUAGE plpgsql AS $f$
           BEGIN PERFORM public.pwn(); RETURN $1 = $2::oid; END $f$;
         CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.evil_eq);
         CREATE FUNCTION public.pg_get_userbyid(integer) RETURNS name LANGUAGE plpgsql AS $f$
           BEGIN PERFORM public.pwn(); RETURN pg_catalog.pg_get_userbyid($1::oid); END $f$",
    );
    let (_dir, dump, meta) = backed_up(pg, &hostile);
    let rows = meta["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "t")
        .map(|t| t["rows"].clone());
    assert_eq!(rows, Some(Value::from(5)), "{meta:#}");
    hostile.verify_passes(&dump);
}

#[test]
fn hostile_alembic_version_with_a_rule_is_refused_with_a_named_warning() {
    let pg = pg16();
    let hostile = Hostile::new(pg, "alembic rule");
    hostile.as_owner(
        "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO public.alembic_version VALUES ('abc123');
         CREATE TABLE public.audit (v text);
         CREATE RULE keep AS ON INSERT TO public.alembic_version
           DO ALSO INSERT INTO public.audit VALUES (public.pwn())",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = backup(pg, &hostile.db.name, dir.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alembic_version is a table with rules"),
        "{stderr}"
    );
    let dump = dir.path().join(&dumps(dir.path())[0]);
    let meta = read_meta(&PathBuf::from(
        dump.to_string_lossy().replace(".dump", ".meta.json"),
    ));
    assert_eq!(meta["alembic_revision"], Value::Null, "{meta:#}");
    hostile.assert_contained("backup");
}

#[test]
fn hostile_restore_payloads_are_contained_when_verify_restores_on_the_source_server() {
    verify_contains_the_payloads("payload source", &[], None);
}

#[test]
fn hostile_restore_payloads_are_contained_when_verify_restores_on_a_target_url() {
    let target = pg16().url("postgres");
    verify_contains_the_payloads("payload target", &["--target-url", &target], None);
}

#[test]
fn hostile_restore_payloads_are_contained_when_verify_restores_in_an_ephemeral_cluster() {
    // The harness's default tools (PostgreSQL 17, initdb and postgres beside pg_restore).
    verify_contains_the_payloads("payload ephemeral", &["--ephemeral"], None);
}

#[test]
fn hostile_event_trigger_verify_names_it_and_restore_as_a_superuser_brings_it_back() {
    let pg = pg16();
    let db = pg.db_with(
        "event trigger",
        "CREATE TABLE public.t AS SELECT g FROM generate_series(1, 3) g;
         CREATE FUNCTION public.ddl_log() RETURNS event_trigger LANGUAGE plpgsql AS $f$
           BEGIN RAISE NOTICE 'ddl'; END $f$;
         CREATE EVENT TRIGGER ddl_log ON ddl_command_end EXECUTE FUNCTION public.ddl_log()",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, dir.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = dir.path().join(&dumps(dir.path())[0]);
    let (out, report) = crate::support::verify::run_json(&mut crate::support::verify::verify_cmd(
        &db,
        &dump,
        &["--expect-table", "public.t"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let restore = crate::support::verify::detail(&report, "restore succeeded");
    assert!(restore.contains("EVENT TRIGGER ddl_log"), "{restore}");
    // The operator's real restore, as the superuser: the event trigger comes back.
    let target = pg.fresh_db("event trigger target");
    let out = support::run(&mut support::restore_cmd(&target, &dump, &["--no-confirm"]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        target.psql("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'ddl_log'"),
        "1"
    );
}

/// A `verify` of a fresh backup (the fixture at scale 0.3, `hint`) spawned and waited for until
/// its pg_restore runs, logged in as the run's throwaway role: the database, the backup's
/// directory and dump, the running verify and that role's name.
fn verify_into_its_restore<'a>(
    pg: &'a Pg,
    hint: &str,
) -> (TestDb<'a>, Dir, PathBuf, std::process::Child, String) {
    let (db, dir, dump) = crate::support::verify::fixture_backup(pg, hint, 0.3);
    let child = crate::support::verify::verify_cmd(&db, &dump, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let restoring = format!(
        "SELECT usename FROM pg_stat_activity WHERE usename LIKE 'pgbak\\_verify\\_%' \
         AND datname LIKE '{}\\_verify\\_%' LIMIT 1",
        db.name
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let role = loop {
        let role = pg.psql("postgres", &restoring);
        if !role.is_empty() {
            break role;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (db, dir, dump, child, role)
}

#[test]
fn hostile_a_killed_verify_leaves_a_throwaway_role_the_next_run_drops() {
    let pg = pg16();
    // Into the restore: pg_restore is logged in as this run's throwaway role.
    let (db, _dir, dump, mut child, role) = verify_into_its_restore(pg, "killed role");
    child.kill().unwrap();
    child.wait().unwrap();
    let exists = format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = {}",
        support::cluster::quote_literal(&role)
    );
    assert_eq!(pg.psql("postgres", &exists), "1", "SIGKILL cannot clean up");
    let (out, _report) =
        crate::support::verify::run_json(&mut crate::support::verify::verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // This run dropped it (or a verify of another test on the shared cluster did).
    assert_eq!(pg.psql("postgres", &exists), "0", "{role} left behind");
}

#[test]
fn hostile_restore_role_creates_the_objects_as_that_role() {
    let pg = pg16();
    let source = pg.db_with(
        "restore role",
        "CREATE TABLE public.t AS SELECT g FROM generate_series(1, 3) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = backup(pg, &source.name, dir.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = dir.path().join(&dumps(dir.path())[0]);
    let target = pg.fresh_db("restore role target");
    let role = format!("restorer_{}", target.name);
    pg.psql(
        "postgres",
        &format!("CREATE ROLE {} NOLOGIN", quote_ident(&role)),
    );
    target.psql(&format!(
        "GRANT CREATE ON SCHEMA public TO {}",
        quote_ident(&role)
    ));
    let out = support::run(&mut support::restore_cmd(
        &target,
        &dump,
        &["--no-confirm", "--no-owner", "--role", &role],
    ));
    let owner = target.psql("SELECT tableowner FROM pg_tables WHERE tablename = 't'");
    drop(target);
    let _ = pg.try_psql("postgres", &format!("DROP ROLE {}", quote_ident(&role)));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(owner, role);
}

#[test]
fn hostile_verify_as_a_role_with_createdb_and_createrole_restores_as_a_throwaway_role() {
    // A managed service's administrator: not a superuser, CREATEDB and CREATEROLE.
    let pg = pg16();
    let hostile = Hostile::new(pg, "payload createrole");
    plant_restore_payloads(&hostile);
    let (_dir, dump, _meta) = backed_up(pg, &hostile);
    let admin = format!("admin_{}", hostile.db.name);
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD 'admin-pass-123'",
            quote_ident(&admin)
        ),
    );
    let url = format!(
        "postgresql://{admin}:admin-pass-123@127.0.0.1:{}/postgres",
        pg.port
    );
    let (out, report) = crate::support::verify::run_json(
        crate::support::verify::verify_cmd(&hostile.db, &dump, &["--expect-table", "public.t"])
            .env("DATABASE_URL", &url),
    );
    let left = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
             WHERE r.rolname LIKE 'pgbak\\_verify\\_%' AND d.datname LIKE '{}\\_verify\\_%'",
            hostile.db.name
        ),
    );
    let _ = pg.try_psql("postgres", &format!("DROP ROLE {}", quote_ident(&admin)));
    hostile.assert_contained("verify as a CREATEROLE administrator");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(left, "0", "the temporary database was left");
    assert_role_dropped(pg, &report);
}

#[test]
fn hostile_a_verify_stopped_by_sigterm_drops_its_throwaway_role_on_the_way_out() {
    let pg = pg16();
    let (db, _dir, _dump, mut child, role) = verify_into_its_restore(pg, "sigterm role");
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let left = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = {}",
            support::cluster::quote_literal(&role)
        ),
    );
    assert_eq!(left, "0", "{role} left behind after SIGTERM");
    let dbs = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_verify\\_%'",
            db.name
        ),
    );
    assert_eq!(dbs, "0");
}

#[test]
fn hostile_database_schema_and_table_names_are_quoted_everywhere() {
    let pg = pg16();
    let name = "odd db \"name\"; drop table x; -- ü";
    let db = pg.create_db_named(name);
    db.psql(
        "CREATE SCHEMA \"sch \"\"q\"\" ;\";
         CREATE TABLE \"sch \"\"q\"\" ;\".\"tab; DROP TABLE t --\" (\"wert ü\" int);
         INSERT INTO \"sch \"\"q\"\" ;\".\"tab; DROP TABLE t --\" SELECT generate_series(1, 42);
         CREATE TABLE \"Ünïcödé\" AS SELECT 1 AS x",
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(pg, &db.name, tmp.path(), &["--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let names = dumps(tmp.path());
    assert_eq!(names.len(), 1);
    assert!(
        names[0]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
        "{names:?}"
    );
    let meta = read_meta(&tmp.path().join(names[0].replace(".dump", ".meta.json")));
    assert_eq!(meta["database"], name);
    assert_eq!(meta["sha256"], sha256_hex(&tmp.path().join(&names[0])));
    let tables = meta["tables"].as_array().unwrap();
    let odd = tables
        .iter()
        .find(|t| t["name"] == "tab; DROP TABLE t --")
        .expect("the odd table is listed");
    assert_eq!(odd["schema"], "sch \"q\" ;");
    assert_eq!(odd["rows"], 42);
    assert!(tables
        .iter()
        .any(|t| t["name"] == "Ünïcödé" && t["rows"] == 1));
}
