//! Issue 22 item 4: a meta.json edited in the bucket (the dump untouched) must not reach SQL.
//! `restore --all-databases` and `restore --create-db` re-apply a database's recorded
//! properties (owner, locale, settings, privileges, comment) as a superuser: every value is
//! checked against what PostgreSQL allows before anything is touched (exit 2 naming the field),
//! and whatever is accepted is quoted into one statement that the server reads as meant
//! (a property test against the real server, below).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;

use crate::support::runs::{owned_database_run, rebuild};
use crate::support::verify::Dir;
use crate::support::{self, edit_meta, one_file, output_text, run, OwnedCluster};

/// A source server with a database `appdb` owned by `app`, with a non-default ACL (so meta.json
/// records `acl`), a setting and a comment; `backup --all-databases` of it into `dir`.
fn all_databases_backup(dir: &Path) -> OwnedCluster {
    let acl = "REVOKE ALL ON DATABASE appdb FROM PUBLIC; GRANT CONNECT ON DATABASE appdb TO app; \
               ALTER DATABASE appdb SET work_mem TO '8MB'; COMMENT ON DATABASE appdb IS 'the app'";
    owned_database_run(dir, "app", "appdb", "notes", 50, acl, &[])
}

/// The meta.json of the `--all-databases` backup of `db` in `dir`.
fn meta_of(dir: &Path, db: &str) -> PathBuf {
    one_file(dir, &format!("{db}_full_"), ".meta.json")
}

fn roles(pg: &OwnedCluster) -> String {
    pg.psql(
        "postgres",
        "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'",
    )
}

const INJECTED: &str = "CONNECT ON DATABASE appdb TO app; CREATE ROLE evil SUPERUSER; --";

/// Text as a hostile meta.json may carry it: quotes, backslashes, separators,
/// comment starts, dollar quotes, NUL, newlines, non-ASCII.
fn hostile(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!(
            "[A-Za-z0-9 '\";\\\\$\\-/*\\x00\\n\\t()=.,@é]{{1,{max}}}"
        ))
        .unwrap(),
        proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).unwrap(),
        proptest::string::string_regex(&format!("[A-Za-z0-9 '\";\\\\$\\-/*()=.,@é]{{1,{max}}}"))
            .unwrap(),
    ]
}

#[test]
fn bucket_meta_sql_an_injected_privilege_stops_restore_all_databases_before_anything() {
    let dir = Dir::new("meta-sql-all");
    let _source = all_databases_backup(&dir);
    let meta = meta_of(&dir, "appdb");
    edit_meta(&meta, |m| {
        let acl = &mut m["database_properties"]["acl"];
        assert!(acl.as_array().is_some_and(|a| !a.is_empty()), "{m:#}");
        acl[0]["privilege"] = Value::from(INJECTED);
    });
    let target = support::private_cluster(16);
    let before = roles(&target);
    let out = run(&mut rebuild(&target, &dir, &[]));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database_properties.acl[0].privilege"),
        "{}",
        output_text(&out)
    );
    // Refused before anything was touched: no role evil, not even the roles of the globals.
    assert_eq!(roles(&target), before);
    assert!(!target.databases().contains(&"appdb".to_owned()));
}

#[test]
fn bucket_meta_sql_restore_create_db_refuses_every_field_that_would_reach_sql() {
    let dir = Dir::new("meta-sql-one");
    let source = all_databases_backup(&dir);
    let meta = meta_of(&dir, "appdb");
    let dump = one_file(&dir, "appdb_full_", ".dump");
    let original = std::fs::read(&meta).unwrap();
    let cases: &[(&str, &str, Value)] = &[
        (
            "database_properties.locale_provider",
            "/database_properties/locale_provider",
            Value::from("icu ICU_LOCALE 'und'; CREATE ROLE evil SUPERUSER; --"),
        ),
        (
            "database_properties.encoding",
            "/database_properties/encoding",
            Value::from("UTF8' LC_COLLATE 'C"),
        ),
        (
            "database_properties.collate",
            "/database_properties/collate",
            Value::from("C'; CREATE ROLE evil SUPERUSER; --"),
        ),
        (
            "database_properties.acl[0].privilege",
            "/database_properties/acl/0/privilege",
            Value::from(INJECTED),
        ),
        (
            "database_properties.acl[0].grantee",
            "/database_properties/acl/0/grantee",
            Value::from("app\0x"),
        ),
        (
            "database_properties.settings[0].name",
            "/database_properties/settings/0/name",
            Value::from("work_mem TO '1MB'; CREATE ROLE evil SUPERUSER; --"),
        ),
        (
            "database_properties.owner",
            "/database_properties/owner",
            Value::from("x".repeat(64)),
        ),
    ];
    for (field, pointer, value) in cases {
        std::fs::write(&meta, &original).unwrap();
        edit_meta(&meta, |m| {
            let slot = m.pointer_mut(pointer);
            *slot.unwrap_or_else(|| panic!("{pointer} not in meta.json")) = value.clone();
        });
        let out = support::pgbak(&source)
            .args(["restore", "--no-confirm", "--create-db"])
            .arg(&dump)
            .env("DATABASE_URL", source.url("appdb"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{field}: {}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(field),
            "{field}: {}",
            output_text(&out)
        );
        // Not dropped: the refusal came before the target was touched.
        assert_eq!(source.psql("appdb", "SELECT count(*) FROM notes"), "50");
    }
    assert!(!roles(&source).split(',').any(|r| r == "evil"));
    // The untouched meta.json restores, with its properties.
    std::fs::write(&meta, &original).unwrap();
    let out = support::pgbak(&source)
        .args(["restore", "--no-confirm", "--create-db"])
        .arg(&dump)
        .env("DATABASE_URL", source.url("appdb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        source.psql(
            "postgres",
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'appdb'"
        ),
        "the app"
    );
}

/// The property of `tests/props.rs` (refused, or quoted into one statement
/// each) on the real server: for accepted values, `pg::dbprops` creates the
/// database, and the catalog then holds exactly the recorded owner, setting,
/// privilege and comment, and no role appeared that the test did not create.
#[test]
fn bucket_meta_sql_accepted_values_reach_the_server_exactly_as_recorded() {
    use pgbak::meta::{DatabaseGrant, DatabaseProperties, DatabaseSetting};
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let pg = support::private_cluster(16);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = pgbak::pg::url::ConnSettings::from_url(&pg.url("postgres"), &|_| None).unwrap();
    let admin = rt.block_on(pgbak::pg::client::connect(&conn)).unwrap();
    let cases = (
        hostile(20),
        hostile(20),
        hostile(40),
        hostile(40),
        "[a-z_]{1,12}",
    );
    let accepted = std::cell::Cell::new(0);
    // About a third of the hostile values are accepted; 120 cases make the
    // 20 accepted ones the assertion below asks for all but certain.
    let mut runner = TestRunner::new(Config {
        cases: 120,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&cases, |(db, role, comment, value, setting)| {
        let props = DatabaseProperties {
            owner: role.clone(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            locale_provider: "libc".into(),
            locale: None,
            settings: vec![DatabaseSetting {
                role: Some(role.clone()),
                name: format!("pgbak_fuzz.{setting}"),
                value: value.clone(),
            }],
            acl: Some(vec![DatabaseGrant {
                grantee: role.clone(),
                privilege: "CONNECT".into(),
                grantable: true,
            }]),
            comment: Some(comment.clone()),
            connection_limit: None,
            tablespace: None,
        };
        let ok = pgbak::pg::meta_values::check_properties(&props).is_ok()
            && pgbak::pg::meta_values::check_name(&db).is_ok();
        let before = rt.block_on(pgbak::pg::client::role_names(&admin)).unwrap();
        if !ok {
            // Refused by the one place that runs it, too: nothing created.
            let made = rt.block_on(pgbak::pg::dbprops::create_database(
                &admin,
                &db,
                Some(&props),
                &before,
                true,
            ));
            prop_assert!(made.is_err());
            prop_assert!(!pg.databases().contains(&db));
            return Ok(());
        }
        if before.contains(&role)
            || pg.databases().contains(&db)
            || rt
                .block_on(admin.execute(
                    format!("CREATE ROLE {}", pgbak::pg::client::quote_ident(&role)).as_str(),
                    &[],
                ))
                .is_err()
        {
            // A reserved or taken name ("public", "pg_x", postgres): not this property's case.
            return Err(TestCaseError::reject("name taken or reserved"));
        }
        accepted.set(accepted.get() + 1);
        let mut roles = before.clone();
        roles.insert(role.clone());
        let skipped = rt
            .block_on(pgbak::pg::dbprops::create_database(
                &admin,
                &db,
                Some(&props),
                &roles,
                true,
            ))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert!(skipped.is_empty(), "{:?}", skipped);
        let row = rt
            .block_on(admin.query_one(
                "SELECT pg_get_userbyid(d.datdba)::text, shobj_description(d.oid, 'pg_database'), \
                        (SELECT s.setconfig FROM pg_db_role_setting s \
                          WHERE s.setdatabase = d.oid AND s.setrole = d.datdba), \
                        (SELECT count(*) FROM aclexplode(d.datacl) a \
                          WHERE a.grantee = d.datdba AND a.privilege_type = 'CONNECT' \
                            AND a.is_grantable) \
                   FROM pg_database d WHERE d.datname = $1",
                &[&db],
            ))
            .unwrap();
        prop_assert_eq!(row.get::<_, String>(0), role.clone());
        prop_assert_eq!(row.get::<_, Option<String>>(1), Some(comment));
        prop_assert_eq!(
            row.get::<_, Option<Vec<String>>>(2),
            Some(vec![format!("pgbak_fuzz.{setting}={value}")])
        );
        prop_assert_eq!(row.get::<_, i64>(3), 1);
        let after = rt.block_on(pgbak::pg::client::role_names(&admin)).unwrap();
        prop_assert_eq!(after, roles);
        for sql in [
            format!("DROP DATABASE {}", pgbak::pg::client::quote_ident(&db)),
            format!("DROP ROLE {}", pgbak::pg::client::quote_ident(&role)),
        ] {
            rt.block_on(admin.execute(sql.as_str(), &[])).unwrap();
        }
        Ok(())
    });
    result.unwrap();
    assert!(
        accepted.get() >= 20,
        "only {} accepted cases ran",
        accepted.get()
    );
}
