//! `pgbak restore --table`: the selection is exact and a miss touches nothing; the table comes
//! back with everything that belongs to it (indexes incl. HNSW, constraints, triggers, policies,
//! owned sequences and their values, column defaults, comments, grants); into an existing table
//! it refuses before touching anything unless `--data-only` (append) or `--clean` (drop and
//! recreate, refused when something outside the table depends on it); the verdict matches what
//! happened.

use std::path::Path;
use std::process::Output;

use crate::support::names::{backup_json, pgbak_for};
use crate::support::verify::{backup, Dir};
use crate::support::{output_text, pg16, restore_cmd, run, TestDb};

/// A database with a table that has one of everything, another table with a
/// foreign key to it and a view on it; a role granted SELECT on it.
fn rich_db(hint: &str) -> (TestDb<'static>, String) {
    let pg = pg16();
    let db = pg.fresh_db(hint);
    let role = format!("{}_reader", db.name);
    pg.psql(
        "postgres",
        &format!("DO $$BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END$$"),
    );
    db.psql(&format!(
        "CREATE EXTENSION vector;
         CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL
             CONSTRAINT email_not_blank CHECK (email <> ''), tenant int, emb vector(3));
         CREATE INDEX users_emb_hnsw ON users USING hnsw (emb vector_l2_ops);
         CREATE INDEX users_tenant_idx ON users (tenant);
         COMMENT ON TABLE users IS 'the users';
         GRANT SELECT ON users TO {role};
         ALTER TABLE users ENABLE ROW LEVEL SECURITY;
         CREATE POLICY tenant_iso ON users USING (tenant = 7);
         CREATE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NEW; END$f$;
         CREATE TRIGGER users_trg BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION users_touch();
         INSERT INTO users (email, tenant, emb)
             SELECT 'u' || g, g % 3, '[1,2,3]' FROM generate_series(1, 40) g;
         DELETE FROM users WHERE id > 30;
         CREATE TABLE messages (id serial PRIMARY KEY, user_id bigint REFERENCES users(id), body text);
         INSERT INTO messages (user_id, body) VALUES (1, 'hi'), (2, 'ho');
         CREATE VIEW v_users AS SELECT id, email FROM users;"
    ));
    (db, role)
}

fn restore_table(db: &TestDb<'_>, dump: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--table", "public.users", "--no-confirm"];
    args.extend_from_slice(extra);
    run(&mut restore_cmd(db, dump, &args))
}

fn one(db: &TestDb<'_>, sql: &str) -> String {
    db.psql(sql)
}

/// The table as in the backup: rows, indexes (the HNSW one too),
/// constraints, the sequence's value and the column default, the grant,
/// the policy and row-level security, the trigger and the comment.
fn assert_table_as_backed_up(db: &TestDb<'_>, role: &str) {
    assert_eq!(one(db, "SELECT count(*) FROM users"), "30");
    let indexes = one(
        db,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'users'",
    );
    assert_eq!(
        indexes,
        "users_email_key,users_emb_hnsw,users_pkey,users_tenant_idx"
    );
    assert!(one(
        db,
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'users_emb_hnsw'"
    )
    .contains("USING hnsw"));
    let constraints = one(
        db,
        "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'users'::regclass",
    );
    assert_eq!(constraints, "email_not_blank,users_email_key,users_pkey");
    assert_eq!(one(db, "SELECT last_value FROM users_id_seq"), "40");
    assert!(
        one(
            db,
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'users'::regclass"
        )
        .contains("nextval('users_id_seq'"),
        "the column default"
    );
    assert_eq!(
        one(db, "SELECT pg_get_serial_sequence('users', 'id')"),
        "public.users_id_seq",
        "the sequence is owned by the column"
    );
    assert_eq!(
        one(
            db,
            &format!("SELECT has_table_privilege('{role}', 'users', 'SELECT')")
        ),
        "t"
    );
    assert_eq!(
        one(db, "SELECT polname || ' ' || pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'users'::regclass"),
        "tenant_iso (tenant = 7)"
    );
    assert_eq!(
        one(
            db,
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'users'::regclass"
        ),
        "t"
    );
    assert_eq!(
        one(
            db,
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal"
        ),
        "users_trg"
    );
    assert_eq!(
        one(db, "SELECT obj_description('users'::regclass, 'pg_class')"),
        "the users"
    );
}

/// (b) of the issue: a dropped table came back without its primary key, HNSW
/// index, sequence and default, grants and policy, and exit 0.
#[test]
fn table_restore_brings_back_a_dropped_table_with_all_that_belongs_to_it() {
    let (db, role) = rich_db("table dropped");
    let dir = Dir::new("table-dropped");
    let dump = backup(&db, &dir);
    db.psql("DROP TABLE users CASCADE; DROP SEQUENCE IF EXISTS users_id_seq");
    let out = restore_table(&db, &dump, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_table_as_backed_up(&db, &role);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What depended on it from outside is named, not silently left out.
    assert!(
        stderr.contains("messages_user_id_fkey") && stderr.contains("v_users"),
        "{stderr}"
    );
}

/// (a) of the issue: into an existing table, pg_restore failed, the rows
/// were appended anyway and pgbak said both "row counts match" and FAILED.
/// Now: refused before anything is touched (exit 2), saying what to pass.
#[test]
fn table_restore_into_an_existing_table_is_refused_untouched() {
    let (db, _role) = rich_db("table exists");
    let dir = Dir::new("table-exists");
    let dump = backup(&db, &dir);
    db.psql("DELETE FROM messages; DELETE FROM users WHERE id > 5");
    let out = restore_table(&db, &dump, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--data-only") && stderr.contains("--clean"),
        "{stderr}"
    );
    assert_eq!(one(&db, "SELECT count(*) FROM users"), "5", "untouched");
}

/// `--data-only` appends the backup's rows: into the emptied table it is the
/// backup again (exit 0); where the rows clash with a constraint nothing is
/// appended, the error is reported and the exit is 1.
#[test]
fn table_restore_data_only_appends_and_reports_constraint_errors() {
    let (db, _role) = rich_db("table data only");
    let dir = Dir::new("table-data-only");
    let dump = backup(&db, &dir);
    db.psql("DELETE FROM messages; DELETE FROM users WHERE id > 5");
    let out = restore_table(&db, &dump, &["--data-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("users_pkey"),
        "the clash is named: {stderr}"
    );
    assert_eq!(
        one(&db, "SELECT count(*) FROM users"),
        "5",
        "nothing appended"
    );

    // Emptied with its sequence reset: the append moves the sequence up to the
    // backup's value, so the next insert does not collide with an appended id.
    db.psql("TRUNCATE users RESTART IDENTITY CASCADE");
    let out = restore_table(&db, &dump, &["--data-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(one(&db, "SELECT count(*) FROM users"), "30");
    assert_eq!(one(&db, "SELECT last_value FROM users_id_seq"), "40");
    db.psql("INSERT INTO users (email) VALUES ('new')");
}

/// `--clean` is refused, naming them, while a view or another table's
/// foreign key depends on the table; once they are gone it drops and
/// recreates the table with everything that belongs to it.
#[test]
fn table_restore_clean_recreates_the_table_unless_something_depends_on_it() {
    let (db, role) = rich_db("table clean");
    let dir = Dir::new("table-clean");
    let dump = backup(&db, &dir);
    db.psql(
        "DELETE FROM messages; DELETE FROM users WHERE id > 5; DROP INDEX users_tenant_idx;
         DROP POLICY tenant_iso ON users",
    );
    let out = restore_table(&db, &dump, &["--clean"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("v_users") && stderr.contains("messages_user_id_fkey"),
        "{stderr}"
    );
    assert_eq!(one(&db, "SELECT count(*) FROM users"), "5", "untouched");

    db.psql("DROP VIEW v_users; ALTER TABLE messages DROP CONSTRAINT messages_user_id_fkey");
    let out = restore_table(&db, &dump, &["--clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_table_as_backed_up(&db, &role);
}

/// A table restore runs through psql: without one beside pg_restore it is
/// refused before anything is touched (not after `--create-db` dropped the
/// database).
#[test]
fn table_restore_without_psql_is_refused_before_anything_is_touched() {
    let (db, _role) = rich_db("table no psql");
    let dir = Dir::new("table-no-psql");
    let dump = backup(&db, &dir);
    let bin = Dir::new("table-no-psql-bin");
    let real = crate::support::paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| db.pg().bin.clone());
    for entry in std::fs::read_dir(&real).unwrap().flatten() {
        if entry.file_name() != "psql" {
            std::os::unix::fs::symlink(entry.path(), bin.join(entry.file_name())).unwrap();
        }
    }
    db.psql("DROP TABLE users CASCADE");
    for extra in [&[][..], &["--create-db"]] {
        let mut cmd = restore_cmd(&db, &dump, &["--table", "public.users", "--no-confirm"]);
        cmd.args(extra).env("PGBAK_PG_BIN_DIR", &*bin);
        let out = run(&mut cmd);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            output_text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("psql"),
            "{}",
            output_text(&out)
        );
        assert_eq!(one(&db, "SELECT count(*) FROM messages"), "2", "untouched");
        assert_eq!(one(&db, "SELECT to_regclass('users') IS NULL"), "t");
    }
}

#[test]
fn restore_table_selection_is_exact_and_a_miss_touches_nothing() {
    let pg = pg16();
    let source = pg.db_with(
        "trust select",
        "CREATE SCHEMA audit;
         CREATE TABLE public.users (id int PRIMARY KEY); INSERT INTO public.users VALUES (1), (2);
         CREATE TABLE audit.users (id int); INSERT INTO audit.users VALUES (1), (2), (3);
         CREATE TABLE public.other (id int); INSERT INTO public.other VALUES (1);",
    );
    let dir = Dir::new("trust-select");
    let dump = backup_json(&mut pgbak_for(&source), &dir, &["--no-s3"]);
    let target = pg.db_with("trust select target", "CREATE TABLE leftover (x int)");
    let restore = |extra: &[&str]| {
        run(pgbak_for(&target)
            .args([
                "restore",
                "--create-db",
                "--no-confirm",
                "--allow-other-database",
            ])
            .args(extra)
            .arg(&dump))
    };
    for (selection, says) in [
        (vec!["--table", "public.nope"], "public.nope"),
        (vec!["--table", "nope.users"], "nope.users"),
        (vec!["--table", "users"], "ambiguous"),
        (vec!["--schema", "nope"], "--schema nope"),
        (
            vec!["--schema", "audit", "--table", "other"],
            "within --schema audit",
        ),
    ] {
        let out = restore(&selection);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{selection:?}: {}",
            output_text(&out)
        );
        assert!(output_text(&out).contains(says), "{}", output_text(&out));
        assert_eq!(
            target.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'"),
            "1",
            "{selection:?}: the target was not dropped"
        );
    }
    let tables = |db: &TestDb<'_>| {
        db.psql(
            "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY 1) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
    };
    let out = restore(&["--table", "public.users"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(tables(&target), "public.users");
    assert_eq!(target.psql("SELECT count(*) FROM public.users"), "2");
    let out = restore(&["--table", "audit.users"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(tables(&target), "audit.users", "its schema is created too");
    assert_eq!(target.psql("SELECT count(*) FROM audit.users"), "3");
    let out = restore(&["--schema", "audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(tables(&target), "audit.users");
}
