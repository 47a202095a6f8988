//! The disaster-recovery drill (issue 15): a PostgreSQL 16 server with several databases,
//! roles, grants, a row-level-security policy and settings is backed up with
//! `pgbak backup --all-databases` to the S3 server, then rebuilt on a brand-new empty cluster
//! with `pgbak restore --all-databases --from-s3`; the rebuilt server must behave like the
//! source: logins, privileges, the policy, every setting and every row.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::cluster::{quote_ident, quote_literal};
use crate::support::runs::psql_as;
use crate::support::verify::Dir;
use crate::support::{self, output_text, private_cluster, run, s3, Pg};

const APP_PASSWORD: &str = "app-Pa55 word";

const READER_PASSWORD: &str = "read-Pa55";

const ODD_DB: &str = "Odd \"quoted\" db";

/// `pgbak` against `pg` as `user` (password in the URL), with the S3 server and bucket.
fn pgbak_as(pg: &Pg, user: &str, password: &str, bucket: &str) -> Command {
    let mut cmd = support::pgbak(pg);
    for (key, value) in s3().env() {
        cmd.env(key, value);
    }
    cmd.env("S3_BUCKET", bucket)
        .env("S3_STORAGE_CLASS", "STANDARD")
        .env(
            "DATABASE_URL",
            format!(
                "postgresql://{user}:{}@127.0.0.1:{}/postgres",
                percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC),
                pg.port
            ),
        );
    cmd
}

fn backup_all(pg: &Pg, user: &str, password: &str, bucket: &str, dir: &Path) -> (Output, Value) {
    let out = run(pgbak_as(pg, user, password, bucket)
        .args(["backup", "--all-databases", "--json", "--output-dir"])
        .arg(dir));
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

/// The local dump of `db` in a `backup --all-databases --json` summary.
fn json_dump_of(json: &Value, db: &str) -> std::path::PathBuf {
    let entry = json["databases"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["database"] == db))
        .unwrap_or_else(|| panic!("no {db} in {json:#}"));
    std::path::PathBuf::from(entry["dump"].as_str().unwrap())
}

fn dumped_databases(json: &Value) -> Vec<String> {
    let mut names: Vec<String> = json["databases"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["database"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every database's owner, settings (per role) and ACL, and every non-bootstrap role with
/// its attributes and settings: what must be equal after a rebuild.
fn server_shape(pg: &Pg) -> String {
    pg.psql(
        "postgres",
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
           SELECT 'db ' || datname || ' owner ' || pg_get_userbyid(datdba)
                  || ' acl ' || coalesce(datacl::text, 'default') AS line
             FROM pg_database WHERE NOT datistemplate
           UNION ALL
           SELECT 'setting ' || coalesce(d.datname, '*') || ' ' || coalesce(r.rolname, '*') || ' '
                  || array_to_string(s.setconfig, ',')
             FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
                  LEFT JOIN pg_roles r ON r.oid = s.setrole
           UNION ALL
           SELECT 'role ' || rolname || ' login ' || rolcanlogin || ' super ' || rolsuper
                  || ' bypassrls ' || rolbypassrls
             FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'
           UNION ALL
           SELECT 'member ' || pg_get_userbyid(roleid) || ' of ' || pg_get_userbyid(member)
             FROM pg_auth_members WHERE pg_get_userbyid(roleid) NOT LIKE 'pg\\_%'
         ) lines",
    )
}

/// The source server: three application databases (one with a quoted name), an application
/// role owning its tables, a read-only role with grants, an RLS policy `TO` it, settings.
fn build_source(pg: &Pg) {
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE app_owner LOGIN PASSWORD {}; \
             CREATE ROLE app_reader LOGIN PASSWORD {}; \
             ALTER ROLE app_reader SET statement_timeout = '7s'; \
             ALTER ROLE app_owner SET search_path = app, public",
            quote_literal(APP_PASSWORD),
            quote_literal(READER_PASSWORD),
        ),
    );
    for db in ["app OWNER app_owner", "analytics", &quote_ident(ODD_DB)] {
        pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    pg.psql(
        "postgres",
        "ALTER DATABASE app SET work_mem = '12MB'; \
         ALTER ROLE app_reader IN DATABASE app SET default_transaction_read_only = on",
    );
    pg.psql(
        "app",
        "CREATE SCHEMA app AUTHORIZATION app_owner; \
         CREATE TABLE app.notes (id int PRIMARY KEY, visibility text NOT NULL, body text); \
         ALTER TABLE app.notes OWNER TO app_owner; \
         INSERT INTO app.notes SELECT g, CASE WHEN g % 3 = 0 THEN 'private' ELSE 'public' END, \
                'note ' || g FROM generate_series(1, 30) g; \
         ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY reader_sees_public ON app.notes FOR SELECT TO app_reader \
                USING (visibility = 'public'); \
         CREATE POLICY owner_sees_all ON app.notes TO app_owner USING (true); \
         GRANT USAGE ON SCHEMA app TO app_reader; \
         GRANT SELECT ON app.notes TO app_reader; \
         CREATE TABLE public.accounts (id int PRIMARY KEY, name text); \
         ALTER TABLE public.accounts OWNER TO app_owner; \
         INSERT INTO public.accounts SELECT g, 'account ' || g FROM generate_series(1, 50) g; \
         GRANT SELECT ON public.accounts TO app_reader",
    );
    pg.psql(
        "analytics",
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text, at timestamptz); \
         INSERT INTO events SELECT g, 'kind ' || (g % 7), '2026-01-01'::timestamptz + g * interval '1 minute' \
           FROM generate_series(1, 500) g",
    );
    pg.load_fixture(ODD_DB, 0.02);
}

fn app_notes_digest(pg: &Pg) -> String {
    pg.psql(
        "app",
        "SELECT md5(string_agg(n::text, ',' ORDER BY id)) FROM app.notes n",
    )
}

#[test]
fn drill_rebuilds_a_whole_server_from_the_bucket() {
    let source = private_cluster(16);
    build_source(&source);
    let bucket = s3().fresh_bucket("drill");
    let dir = Dir::new("drill-backups");

    // The backup: every database and the globals, in one run, to the bucket.
    let (out, json) = backup_all(&source, "postgres", support::PASSWORD, &bucket, &dir);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // Sorted as Rust sorts (the quote first).
    let expected = [ODD_DB, "analytics", "app", "postgres"];
    assert_eq!(dumped_databases(&json), expected, "{json:#}");
    let globals = &json["globals"]["meta"];
    assert_eq!(globals["mode"], "globals", "{json:#}");
    assert_eq!(globals["globals"]["role_passwords"], true, "{json:#}");
    let run_id = json["cluster_run"].as_str().unwrap().to_owned();
    let app_meta = json["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == "app")
        .unwrap()["meta"]
        .clone();
    assert_eq!(app_meta["cluster_run"], run_id.as_str());
    let roles: Vec<&str> = app_meta["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"app_owner") && roles.contains(&"app_reader"),
        "{roles:?}"
    );
    let keys: Vec<String> = s3()
        .list_objects(&bucket, "")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".dump")).count(),
        5,
        "{keys:?}"
    );

    // `list` shows the run together, its globals first, and `--json` names the run.
    let out = run(pgbak_as(&source, "postgres", support::PASSWORD, &bucket)
        .args(["list", "--s3", "--json", "--backup-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5, "{listed:#?}");
    assert_eq!(listed[0]["mode"], "globals", "{listed:#?}");
    assert!(
        listed
            .iter()
            .all(|e| e["cluster_run"] == run_id.as_str() && e["where"] == "both"),
        "{listed:#?}"
    );

    // The disaster: a brand-new, empty server.
    let target = private_cluster(16);
    let app_key = app_meta["s3"]["key"].as_str().unwrap();

    // One database alone cannot be restored with owners: the roles are missing, and named.
    let out = run(pgbak_as(&target, "postgres", support::PASSWORD, &bucket)
        .env("DATABASE_URL", target.url("app"))
        .args(["restore", "--create-db", "--no-confirm"])
        .arg(format!("s3://{bucket}/{app_key}")));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("app_owner")
            && stderr.contains("app_reader")
            && stderr.contains("--no-owner"),
        "{stderr}"
    );
    assert!(!target.databases().contains(&"app".to_owned()));

    // The globals file is not a database backup: restore says what it is instead.
    let globals_key = globals["s3"]["key"].as_str().unwrap();
    let out = run(pgbak_as(&target, "postgres", support::PASSWORD, &bucket)
        .args(["restore", "--no-confirm"])
        .arg(format!("s3://{bucket}/{globals_key}")));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a globals backup"),
        "{}",
        output_text(&out)
    );

    // The rebuild.
    let out = run(
        pgbak_as(&target, "postgres", support::PASSWORD, &bucket).args([
            "restore",
            "--all-databases",
            "--from-s3",
            "--no-confirm",
        ]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("left as they are (postgres)"), "{stderr}");

    // Every row of every table is back.
    for db in expected {
        assert_eq!(
            target.table_digests(db),
            source.table_digests(db),
            "database {db}"
        );
    }
    assert_eq!(app_notes_digest(&target), app_notes_digest(&source));
    // Owners, ACLs, every database and role setting, roles and memberships.
    assert_eq!(server_shape(&target), server_shape(&source));

    // The application role logs in with its password, reads and writes its tables.
    assert_eq!(
        psql_as(&target, "app_owner", APP_PASSWORD, "app", "SHOW work_mem").unwrap(),
        "12MB"
    );
    psql_as(
        &target,
        "app_owner",
        APP_PASSWORD,
        "app",
        "INSERT INTO notes VALUES (31, 'public', 'written after the rebuild'); \
         INSERT INTO accounts VALUES (51, 'new')",
    )
    .unwrap();
    assert_eq!(
        psql_as(
            &target,
            "app_owner",
            APP_PASSWORD,
            "app",
            "SELECT count(*) FROM notes"
        )
        .unwrap(),
        "31"
    );
    // The read-only role reads, through the policy, and cannot write.
    assert_eq!(
        psql_as(
            &target,
            "app_reader",
            READER_PASSWORD,
            "app",
            "SELECT count(*) FROM app.notes"
        )
        .unwrap(),
        "21"
    );
    assert_eq!(
        psql_as(
            &target,
            "app_reader",
            READER_PASSWORD,
            "app",
            "SHOW statement_timeout"
        )
        .unwrap(),
        "7s"
    );
    let denied = psql_as(
        &target,
        "app_reader",
        READER_PASSWORD,
        "app",
        "SET default_transaction_read_only = off;; INSERT INTO public.accounts VALUES (99, 'x')",
    )
    .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");

    // verify --ephemeral replays the run's globals into its throwaway cluster first: the
    // policy and the grants are restored (no "role does not exist"), owners included.
    let app_dump = json_dump_of(&json, "app");
    let out = run(support::pgbak(&source)
        .env("DATABASE_URL", source.url("app"))
        .args([
            "verify",
            "--ephemeral",
            "--json",
            "--expect-table",
            "app.notes",
        ])
        .arg(&app_dump));
    crate::support::verify::assert_passed_with_the_roles(&out);

    // A second run picks up a new database without any configuration.
    source.psql("postgres", "CREATE DATABASE fourth OWNER app_owner");
    source.psql(
        "fourth",
        "CREATE TABLE t AS SELECT generate_series(1, 10) AS x",
    );
    let (out, json) = backup_all(&source, "postgres", support::PASSWORD, &bucket, &dir);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        dumped_databases(&json),
        [ODD_DB, "analytics", "app", "fourth", "postgres"],
        "{json:#}"
    );
    assert_ne!(json["cluster_run"], run_id.as_str());
}

/// Managed services give no superuser. A role with `pg_read_all_data` backs up every
/// database, except that a table with row-level security needs BYPASSRLS too: without it
/// that one database fails, the others are backed up, and the exit code and error name it.
/// A role that may not read pg_authid (RDS, Cloud SQL) gets the globals without passwords,
/// and meta.json says so. Also: `cron` with `PGBAK_ALL_DATABASES`/`PGBAK_EXCLUDE_DATABASES`,
/// and `restore --all-databases --backup-dir` onto a server whose roles exist, which leaves
/// them as they are (a changed password stays changed).
#[test]
fn all_databases_as_a_non_superuser_with_pg_read_all_data() {
    let source = private_cluster(16);
    source.psql(
        "postgres",
        "CREATE ROLE backup_agent LOGIN PASSWORD 'agent-Pa55'; \
         GRANT pg_read_all_data TO backup_agent; \
         CREATE ROLE app_owner LOGIN PASSWORD 'x'",
    );
    source.psql("postgres", "CREATE DATABASE plain");
    source.psql("postgres", "CREATE DATABASE guarded OWNER app_owner");
    source.psql(
        "plain",
        "CREATE TABLE t AS SELECT generate_series(1, 5) AS x",
    );
    source.psql(
        "guarded",
        "CREATE TABLE secrets (id int, owner text); INSERT INTO secrets VALUES (1, 'a'); \
         ALTER TABLE secrets OWNER TO app_owner; ALTER TABLE secrets ENABLE ROW LEVEL SECURITY",
    );
    let bucket = s3().fresh_bucket("managed");
    let dir = Dir::new("managed-backups");

    let (out, json) = backup_all(&source, "backup_agent", "agent-Pa55", &bucket, &dir);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(dumped_databases(&json), ["plain", "postgres"], "{json:#}");
    assert_eq!(json["failed"][0]["database"], "guarded", "{json:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("guarded"), "{stderr}");
    // pg_read_all_data includes SELECT on pg_authid: the passwords are there.
    assert_eq!(
        json["globals"]["meta"]["globals"]["role_passwords"], true,
        "{json:#}"
    );

    source.psql("postgres", "ALTER ROLE backup_agent BYPASSRLS");
    let (out, json) = backup_all(&source, "backup_agent", "agent-Pa55", &bucket, &dir);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        dumped_databases(&json),
        ["guarded", "plain", "postgres"],
        "{json:#}"
    );

    // Rebuilding onto a server where the roles exist (here: the same one, from the local
    // directory) leaves them exactly as they are, and says so.
    source.psql("postgres", "ALTER ROLE app_owner PASSWORD 'changed-since'");
    let out = run(pgbak_as(&source, "postgres", support::PASSWORD, &bucket)
        .args(["restore", "--all-databases", "--no-confirm", "--backup-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("left as they are") && stderr.contains("app_owner"),
        "{stderr}"
    );
    psql_as(&source, "app_owner", "changed-since", "guarded", "SELECT 1").unwrap();
    assert_eq!(source.psql("guarded", "SELECT count(*) FROM secrets"), "1");

    // cron does the same from its environment, excluding by glob.
    let cron_dir = Dir::new("managed-cron");
    let logs = Dir::new("managed-cron-logs");
    let out = run(pgbak_as(&source, "backup_agent", "agent-Pa55", &bucket)
        .arg("cron")
        .env("BACKUP_DIR", &*cron_dir)
        .env("LOG_DIR", &*logs)
        .env("PGBAK_ALL_DATABASES", "true")
        .env("PGBAK_EXCLUDE_DATABASES", "gua*,nothing"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let mut files: Vec<String> = std::fs::read_dir(&*cron_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".dump"))
        .map(|f| {
            // `<db>_<mode>_srv-<server tag>_<ts>.dump` -> `<db>_<mode>`
            let group = f.rsplit_once('_').map_or(f.as_str(), |(group, _)| group);
            group
                .rsplit_once("_srv-")
                .map_or(group, |(group, _)| group)
                .to_owned()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["plain_full", "postgres_full", "postgres_globals"],
        "{}",
        output_text(&out)
    );

    // An application role without pg_read_all_data: no pg_authid, so no passwords.
    let out = run(pgbak_as(&source, "app_owner", "changed-since", &bucket)
        .env(
            "DATABASE_URL",
            format!(
                "postgresql://app_owner:changed-since@127.0.0.1:{}/guarded",
                source.port
            ),
        )
        .args(["backup", "--globals", "--json", "--output-dir"])
        .arg(&*dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let globals = &json["globals"]["meta"]["globals"];
    assert_eq!(globals["role_passwords"], false, "{json:#}");
    assert!(
        globals["note"]
            .as_str()
            .unwrap_or_default()
            .contains("pg_authid"),
        "{json:#}"
    );
    let globals_sql = std::fs::read_to_string(json["globals"]["dump"].as_str().unwrap()).unwrap();
    assert!(
        globals_sql.contains("CREATE ROLE backup_agent"),
        "{globals_sql}"
    );
    assert!(!globals_sql.contains("SCRAM-SHA-256"), "{globals_sql}");
}
