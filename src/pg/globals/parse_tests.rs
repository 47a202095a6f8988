//! Table tests of what a globals file may hold.

use super::*;

/// pg_dumpall 16's `--globals-only` output for a few roles (from a real server).
const PG16_GLOBALS: &str = "\
--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict sM4bSiU2\n\n\
SET default_transaction_read_only = off;\n\nSET client_encoding = 'UTF8';\n\
SET standard_conforming_strings = on;\n\n--\n-- Roles\n--\n\n\
CREATE ROLE adm;\n\
ALTER ROLE adm WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;\n\
CREATE ROLE app;\n\
ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS \
CONNECTION LIMIT 5 PASSWORD 'SCRAM-SHA-256$4096:XJV4==$jUPQ=:kLz8=' VALID UNTIL '2030-01-01 00:00:00+00';\n\
COMMENT ON ROLE app IS 'it''s';\n\
CREATE ROLE \"Odd \"\"R\"\"\";\n\
ALTER ROLE \"Odd \"\"R\"\"\" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT -1;\n\
ALTER ROLE app SET search_path TO 'app', '$user', 'public';\n\
ALTER ROLE app SET work_mem TO '8MB';\n\
GRANT readonly TO adm WITH ADMIN OPTION, INHERIT FALSE, SET FALSE GRANTED BY postgres;\n\
GRANT readonly TO app WITH INHERIT TRUE GRANTED BY postgres;\n\
GRANT SET ON PARAMETER work_mem TO app;\n\
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';\n\
ALTER TABLESPACE fast SET (random_page_cost = '1.1');\n\
GRANT ALL ON TABLESPACE fast TO app;\n\
COMMENT ON TABLESPACE fast IS 'ssd';\n\
\\unrestrict sM4bSiU2\n";

#[test]
fn pg_dumpall_output_is_read_with_its_roles() {
    let globals = Globals::parse(PG16_GLOBALS).unwrap();
    assert_eq!(globals.statements.len(), 19);
    let app = &globals.roles["app"];
    assert!(app.flags["rolcanlogin"]);
    assert!(!app.flags["rolsuper"]);
    assert_eq!(app.connection_limit, Some(5));
    assert_eq!(
        app.password,
        Some(Some("SCRAM-SHA-256$4096:XJV4==$jUPQ=:kLz8=".to_owned()))
    );
    assert_eq!(app.valid_until.as_deref(), Some("2030-01-01 00:00:00+00"));
    assert_eq!(
        app.settings[&(None, "search_path".to_owned())],
        "app, $user, public"
    );
    assert_eq!(app.settings[&(None, "work_mem".to_owned())], "8MB");
    assert_eq!(app.member_of["readonly"], (false, Some(true), None));
    assert_eq!(
        globals.roles["adm"].member_of["readonly"],
        (true, Some(false), Some(false))
    );
    assert_eq!(globals.roles["Odd \"R\""].connection_limit, Some(-1));
}

#[test]
fn anything_pg_dumpall_does_not_write_is_refused_by_name() {
    let cases = [
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE FUNCTION",
        ),
        ("COPY (SELECT 1) TO PROGRAM 'id > /tmp/x'", "COPY"),
        ("DO $$BEGIN PERFORM 1; END$$", "DO"),
        ("ALTER SYSTEM SET archive_command = 'id'", "ALTER SYSTEM"),
        ("SELECT pg_read_file('/etc/passwd')", "SELECT"),
        ("DROP ROLE app", "DROP ROLE"),
        ("SET role = evil", "SET"),
        ("SET session_authorization = evil", "SET"),
        ("SET client_encoding = 'LATIN1'", "SET"),
        ("SET standard_conforming_strings = off", "SET"),
        // A role statement with something after it.
        ("CREATE ROLE x SUPERUSER", "CREATE ROLE"),
        ("CREATE ROLE x (SELECT 1)", "CREATE ROLE"),
        // An escape string another parser reads differently: the quote after \ ends
        // nothing for PostgreSQL, so "; COPY ..." would run.
        (
            "ALTER ROLE x SET a TO E'\\'' ; COPY x TO PROGRAM 'id'; --'",
            "ALTER ROLE",
        ),
        ("ALTER ROLE x WITH PASSWORD $$p$$", "ALTER ROLE"),
        ("ALTER ROLE x WITH LOGIN /* c */", "ALTER ROLE"),
        ("ALTER ROLE x RENAME TO y", "ALTER ROLE"),
        ("ALTER ROLE x IN DATABASE d RESET ALL", "ALTER ROLE"),
        ("GRANT SELECT ON pg_authid TO app", "GRANT SELECT"),
        (
            "GRANT pg_execute_server_program TO app, (SELECT 1)",
            "GRANT PG_EXECUTE_SERVER_PROGRAM",
        ),
        ("COMMENT ON FUNCTION f() IS 'x'", "COMMENT ON"),
        ("CREATE TABLESPACE t LOCATION '/x' ; x", "CREATE TABLESPACE"),
        ("CREATE EXTENSION plpython3u", "CREATE EXTENSION"),
    ];
    for (stmt, kind) in cases {
        let refused = parse_statement(stmt).expect_err(stmt);
        assert_eq!(refused.kind, kind, "{stmt}: {refused}");
    }
}

#[test]
fn a_second_statement_after_a_semicolon_is_its_own_and_refused() {
    let sql = "CREATE ROLE \"a\"; COPY (SELECT 1) TO PROGRAM 'id';\nCREATE ROLE b;\n\
               ALTER ROLE b WITH LOGIN; DO $$ BEGIN END $$;";
    let refused = Globals::parse(sql).unwrap_err();
    let kinds: Vec<(usize, &str)> = refused.iter().map(|(n, r)| (*n, r.kind.as_str())).collect();
    assert_eq!(kinds, vec![(2, "COPY"), (5, "DO")]);
}

#[test]
fn role_names_are_folded_or_kept_quoted() {
    assert_eq!(
        parse_statement("CREATE ROLE App").unwrap(),
        Statement::CreateRole("app".into())
    );
    assert_eq!(
        parse_statement("CREATE ROLE \"App\"").unwrap(),
        Statement::CreateRole("App".into())
    );
    assert_eq!(
        parse_statement("ALTER ROLE app IN DATABASE \"My db\" SET statement_timeout TO '5s'")
            .unwrap(),
        Statement::RoleSetting {
            role: "app".into(),
            database: Some("My db".into()),
            name: "statement_timeout".into(),
            value: "5s".into()
        }
    );
    assert_eq!(
        parse_statement("GRANT a, \"B\" TO c GRANTED BY postgres").unwrap(),
        Statement::Membership {
            roles: vec!["a".into(), "B".into()],
            members: vec!["c".into()],
            admin: false,
            inherit: None,
            set: None
        }
    );
    assert_eq!(flag_keyword("rolcanlogin", false), "NOLOGIN");
    assert_eq!(flag_keyword("rolsuper", true), "SUPERUSER");
}
