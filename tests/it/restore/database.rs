//! `pgbak restore` against real clusters: a full round trip reproduces every row, `--create-db`
//! carries over the database's properties, a selective restore only its table, odd database
//! names work, harmless pg_restore warnings pass while real errors fail, bad backups never touch
//! the target, and alembic revisions are compared or stamped.

use std::process::Command;
use std::time::Duration;

use super::tables;
use crate::support::bucket::backup_dir;
use crate::support::verify::{backup, fixture_backup, read_meta, write_meta};
use crate::support::{self, dumps, output_text, pg16, restore_cmd, restore_exits, run};

#[test]
fn restore_create_db_reproduces_every_row() {
    let pg = pg16();
    let (source, _dir, dump) = fixture_backup(pg, "restore full", 0.05);
    let target = pg.db_with(
        "restore full target",
        "CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (1)",
    );
    // A session on the target: --create-db terminates it.
    let mut idle = Command::new(pg.bin.join("psql"))
        .env("PGPASSWORD", support::PASSWORD)
        .arg(target.url())
        .arg("-c")
        .arg("SELECT pg_sleep(60)")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = run(&mut restore_cmd(
        &target,
        &dump,
        &["--create-db", "--no-confirm"],
    ));
    let _ = idle.kill();
    let _ = idle.wait();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        pg.table_digests(&target.name),
        pg.table_digests(&source.name)
    );
    assert!(!tables(&target).contains(&"leftover".to_owned()));
    assert_eq!(
        target.psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"),
        "1"
    );
    // The row-count spot check is on stdout, one line per table of meta.json.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("public.vector_chunks"), "{stdout}");
    assert_eq!(stdout.matches(" ok").count(), 14, "{stdout}");
    assert!(!stdout.contains("MISMATCH"));
}

#[test]
fn restore_harmless_warnings_do_not_fail_but_real_errors_do() {
    let pg = pg16();
    // pg_dump 17 writes `SET transaction_timeout`, which a 16 server rejects: harmless.
    let (_source, _dir, dump) = fixture_backup(pg, "restore warn", 0.05);
    assert!(read_meta(&dump)["pg_dump_version"]
        .as_str()
        .unwrap()
        .starts_with("17"));
    let target = pg.fresh_db("restore warn target");
    let out = restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("harmless") && stderr.contains("transaction_timeout"),
        "{stderr}"
    );

    // Into a database where `users` already exists with other columns: real errors.
    let clash = pg.db_with(
        "restore clash",
        "CREATE TABLE users (id int); INSERT INTO users VALUES (42)",
    );
    let out = restore_exits(&clash, &dump, &["--no-confirm"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH"));
}

#[test]
fn restore_selected_table_restores_only_that_table() {
    let pg = pg16();
    let (source, _dir, dump) = fixture_backup(pg, "restore table", 0.05);
    let target = pg.fresh_db("restore table target");
    let out = restore_exits(
        &target,
        &dump,
        &["--create-db", "--no-confirm", "--table", "users"],
        0,
    );
    assert_eq!(tables(&target), vec!["users".to_owned()]);
    assert_eq!(
        pg.table_digests(&target.name)["users"],
        pg.table_digests(&source.name)["users"]
    );
    // Only the selected table is compared.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("public.users"), "{stdout}");
    assert!(!stdout.contains("public.messages"), "{stdout}");
}

#[test]
fn restore_round_trips_a_database_with_an_odd_name() {
    let pg = pg16();
    let db = pg.create_db_named("odd db \"name\"");
    db.load_fixture(0.05);
    let before = pg.table_digests(&db.name);
    let dir = crate::support::verify::Dir::new("restore-odd");
    let dump = backup(&db, &dir);
    // verify quotes the name too: its temp database is `odd db "name"_verify_<ts>`.
    let out = support::pgbak(pg)
        .arg("verify")
        .arg(&dump)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(crate::support::verify::verify_dbs(pg, &db.name).is_empty());
    db.psql("DELETE FROM feedback; DROP TABLE token_usage_records");
    restore_exits(&db, &dump, &["--create-db", "--no-confirm"], 0);
    assert_eq!(pg.table_digests(&db.name), before);
}

#[test]
fn restore_refuses_a_corrupt_backup_before_touching_the_target() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "restore corrupt", 0.05);
    let target = pg.db_with("restore corrupt target", "CREATE TABLE marker (x int)");
    let mut bytes = std::fs::read(&dump).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&dump, &bytes).unwrap();
    let out = restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match meta.json"));
    assert_eq!(tables(&target), vec!["marker".to_owned()]);
}

#[test]
fn restore_names_the_pgvector_package_when_the_server_lacks_it() {
    let Some(pg17) = support::pg17() else {
        eprintln!("skipped: PostgreSQL 17 not installed");
        return;
    };
    let (_source, _dir, dump) = fixture_backup(pg16(), "restore novector", 0.05);
    let target = pg17.db_with("restore novector target", "CREATE TABLE marker (x int)");
    let out = restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postgresql-17-pgvector"),
        "{}",
        output_text(&out)
    );
    assert_eq!(tables(&target), vec!["marker".to_owned()]);
}

#[test]
fn restore_warns_about_an_older_alembic_revision_and_counts_mismatches() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "restore alembic", 0.05);
    let mut meta = read_meta(&dump);
    meta["alembic_revision"] = "014".into();
    write_meta(&dump, &meta);
    let target = pg.fresh_db("restore alembic target");
    let out = run(&mut restore_cmd(
        &target,
        &dump,
        &["--create-db", "--no-confirm"],
    ));
    // The checksum covers the dump, not meta.json: the restore runs, then warns.
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("alembic upgrade head"), "{stderr}");
    assert_eq!(
        target.psql("SELECT version_num FROM alembic_version"),
        "013"
    );

    let tables = meta["tables"].as_array_mut().unwrap();
    let users = tables.iter_mut().find(|t| t["name"] == "users").unwrap();
    users["rows"] = 1.into();
    write_meta(&dump, &meta);
    let out = restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("public.users") && l.ends_with("MISMATCH")),
        "{stdout}"
    );
}

#[test]
fn restore_into_a_missing_database_suggests_create_db() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "restore missing", 0.05);
    let mut cmd = support::pgbak(pg);
    let out = cmd
        .arg("restore")
        .arg(&dump)
        .args(["--no-confirm", "--allow-other-database"])
        .env("DATABASE_URL", pg.url("no_such_db_for_restore"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--create-db"), "{stderr}");
    assert!(!pg
        .databases()
        .contains(&"no_such_db_for_restore".to_owned()));
}

#[test]
fn restore_without_meta_warns_and_still_restores() {
    let pg = pg16();
    let (source, _dir, dump) = fixture_backup(pg, "restore nometa", 0.05);
    std::fs::remove_file(crate::support::verify::meta_path(&dump)).unwrap();
    let target = pg.fresh_db("restore nometa target");
    let out = restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum cannot be checked"));
    assert_eq!(
        pg.table_digests(&target.name),
        pg.table_digests(&source.name)
    );
}

#[test]
fn restore_alembic_stamp_runs_alembic_from_path_only_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "restore stamp", 0.05);
    let target = pg.fresh_db("restore stamp target");
    // A stand-in `alembic` on PATH that records how it was called.
    let bin = crate::support::verify::Dir::new("restore-stamp-bin");
    let calls = bin.join("calls");
    let script = bin.join("alembic");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let out = run(restore_cmd(&target, &dump, &["--create-db", "--no-confirm"]).env("PATH", &path));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(!calls.exists(), "alembic ran without --alembic-stamp");

    let out = run(restore_cmd(
        &target,
        &dump,
        &["--create-db", "--no-confirm", "--alembic-stamp"],
    )
    .env("PATH", &path));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "stamp head\n");
}

/// Roles created for one test on the shared cluster; dropped at the end (after the databases).
struct Roles<'a> {
    pg: &'a support::Pg,
    names: Vec<String>,
}

impl Drop for Roles<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.pg.try_psql(
                "postgres",
                &format!(
                    "DROP OWNED BY {name} CASCADE; DROP ROLE IF EXISTS {name}",
                    name = support::cluster::quote_ident(name)
                ),
            );
        }
    }
}

/// Issue 10 item 8: `--create-db` re-applies the database's owner, `ALTER DATABASE ... SET`,
/// `ALTER ROLE ... IN DATABASE ... SET`, ACL and comment recorded at backup time (before, the
/// database came back owned by the restoring user with none of them), restores object owners
/// when the roles exist, and names what it could not carry over (`--no-owner`).
#[test]
fn restore_create_db_carries_over_database_properties() {
    let pg = pg16();
    let source = pg.fresh_db("dbprops source");
    let suffix = source.name.rsplit('_').next().unwrap().to_owned();
    let (owner, reader) = (
        format!("dbprops_owner_{suffix}"),
        format!("dbprops_reader_{suffix}"),
    );
    let roles = Roles {
        pg,
        names: vec![owner.clone(), reader.clone()],
    };
    let db = support::cluster::quote_ident(&source.name);
    pg.psql(
        "postgres",
        &format!("CREATE ROLE {owner}; CREATE ROLE {reader}"),
    );
    for sql in [
        format!("ALTER DATABASE {db} OWNER TO {owner}"),
        format!("ALTER DATABASE {db} SET work_mem = '7MB'"),
        format!("ALTER DATABASE {db} SET search_path = app, \"$user\", public"),
        format!("ALTER ROLE {reader} IN DATABASE {db} SET statement_timeout = '5s'"),
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {db} TO {reader}"),
        format!("COMMENT ON DATABASE {db} IS 'the source''s comment'"),
    ] {
        pg.psql("postgres", &sql);
    }
    source.psql(&format!(
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2); ALTER TABLE t OWNER TO {owner}; \
         GRANT SELECT ON t TO {reader}"
    ));
    let dir = crate::support::verify::Dir::new("dbprops");
    let dump = backup(&source, &dir);

    // What pg_database / pg_db_role_setting say about a database, names made comparable.
    let describe = |name: &str| -> String {
        let lit = support::cluster::quote_literal(name);
        pg.psql(
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, \
                        replace(datacl::text, datname, 'DB'), \
                        shobj_description(oid, 'pg_database'), \
                        (SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '-') \
                                           || ':' || array_to_string(s.setconfig, ';'), ' ' \
                                           ORDER BY s.setrole) \
                           FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) \
                   FROM pg_database d WHERE datname = {lit}"
            ),
        )
    };
    let target = pg.fresh_db("dbprops target");
    restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 0);
    assert_eq!(describe(&target.name), describe(&source.name));
    assert!(describe(&target.name).contains("work_mem=7MB"));
    // Owners and grants of the objects came back too: every role exists here.
    assert_eq!(
        target.psql("SELECT pg_get_userbyid(relowner) || ' ' || relacl::text FROM pg_class WHERE relname = 't'"),
        source.psql("SELECT pg_get_userbyid(relowner) || ' ' || relacl::text FROM pg_class WHERE relname = 't'"),
    );

    // --no-owner: owner and ACL stay the server's defaults, and the summary says so.
    let plain = pg.fresh_db("dbprops no owner");
    let out = restore_exits(
        &plain,
        &dump,
        &["--create-db", "--no-confirm", "--no-owner"],
        0,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("not restored: owner {owner} (--no-owner)")),
        "{stderr}"
    );
    assert!(
        stderr.contains("privileges on the database (--no-owner)"),
        "{stderr}"
    );
    assert_eq!(
        plain.psql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 't'"),
        "postgres"
    );
    // The settings are not about roles: they are carried over all the same.
    assert!(describe(&plain.name).contains("work_mem=7MB"));
    drop((plain, target, source));
    drop(roles);
}

#[test]
fn fleet_create_db_restores_the_connection_limit_and_default_tablespace_or_names_it() {
    let pg = pg16();
    let source = pg.fresh_db("fleet dbprops");
    let space = format!("fleet_ts_{}", std::process::id());
    let location = backup_dir("fleet-tablespace");
    if support::is_root() {
        support::chown_to_postgres(&location);
    }
    pg.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE {space} LOCATION {}",
            support::cluster::quote_literal(&location.display().to_string())
        ),
    );
    let quoted = support::cluster::quote_ident(&source.name);
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {quoted} CONNECTION LIMIT 7"),
    );
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {quoted} SET TABLESPACE {space}"),
    );
    source.psql("CREATE TABLE t AS SELECT 1 AS x");
    let dir = backup_dir("fleet-dbprops");
    let out = support::backup(pg, &source.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = dir.join(&dumps(&dir)[0]);
    let meta =
        support::read_meta(&dump.with_file_name(dumps(&dir)[0].replace(".dump", ".meta.json")));
    assert_eq!(meta["database_properties"]["connection_limit"], 7, "{meta}");
    assert_eq!(
        meta["database_properties"]["tablespace"],
        space.as_str(),
        "{meta}"
    );

    let props = |db: &str| {
        pg.psql(
            "postgres",
            &format!(
                "SELECT datconnlimit || ' ' || t.spcname FROM pg_database d \
                 JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE datname = {}",
                support::cluster::quote_literal(db)
            ),
        )
    };
    let target = pg.fresh_db("fleet dbprops target");
    restore_exits(&target, &dump, &["--create-db", "--no-confirm"], 0);
    assert_eq!(props(&target.name), format!("7 {space}"));

    // Without the tablespace on the target: the database lands in the default one,
    // and the run says which tablespace it could not use.
    let target_name = target.name.clone();
    drop(target);
    drop(source);
    pg.psql("postgres", &format!("DROP TABLESPACE {space}"));
    let again = pg.fresh_db("fleet dbprops again");
    let out = restore_exits(&again, &dump, &["--create-db", "--no-confirm"], 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("tablespace {space}")) && stderr.contains("no such tablespace"),
        "{stderr}"
    );
    assert_eq!(props(&again.name), "7 pg_default");
    let _ = target_name;
    let _ = std::fs::remove_dir_all(&dir);
}
