//! Property tests for everything that parses outside input: DATABASE_URL,
//! backup file names and meta.json. None may panic; errors are plain values.

use pgbak::cli::Mode;
use std::collections::BTreeSet;

use pgbak::meta::{DatabaseGrant, DatabaseProperties, DatabaseSetting, Meta};
use pgbak::pg::dbprops;
use pgbak::pg::url::ConnSettings;
use pgbak::storage::{is_plain_file_name, BackupName};
use proptest::prelude::*;

fn no_env(_: &str) -> Option<String> {
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn database_url_parser_never_panics(text in "\\PC{0,120}") {
        let _ = ConnSettings::from_url(&text, &no_env);
    }

    #[test]
    fn database_url_parser_handles_url_shaped_garbage(
        scheme in "(postgres|postgresql|postgresql\\+[a-z]{1,8}|mysql|)",
        user in "[^@/]{0,12}",
        pass in "[^@/]{0,12}",
        host in "[a-z0-9.%:\\[\\]]{0,20}",
        port in "[0-9a-z]{0,7}",
        db in "[^?]{0,12}",
        query in "[a-z=&%/._-]{0,30}",
    ) {
        let url = format!("{scheme}://{user}:{pass}@{host}:{port}/{db}?{query}");
        if let Err(err) = ConnSettings::from_url(&url, &no_env) {
            // Errors are one line and never echo the password.
            let text = pgbak::error::one_line(&err);
            prop_assert!(!text.contains('\n'));
            if pass.len() >= 6 {
                prop_assert!(!text.contains(&pass), "{}", text);
            }
        }
    }

    #[test]
    fn backup_file_name_parser_never_panics_and_stays_a_plain_name(name in "\\PC{0,80}") {
        if let Some(parsed) = BackupName::parse(&name) {
            prop_assert!(is_plain_file_name(&parsed.dump_file()));
            prop_assert!(!parsed.database.contains('/'));
        }
    }

    #[test]
    fn backup_names_round_trip(
        db in "\\PC{1,40}",
        mode in prop_oneof![Just(Mode::Full), Just(Mode::Schema), Just(Mode::Data)],
        label in proptest::option::of("[A-Za-z0-9.-]{1,20}"),
        secs in 0i64..4_000_000_000,
    ) {
        let label = label.filter(|l| pgbak::storage::validate_label(l).is_ok());
        let at = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        let name = BackupName::new(&db, mode, label.as_deref(), at);
        prop_assert!(is_plain_file_name(&name.dump_file()));
        prop_assert_eq!(BackupName::parse(&name.dump_file()), Some(name.clone()));
        prop_assert_eq!(BackupName::parse(&name.meta_file()), Some(name));
    }

    #[test]
    fn meta_reader_never_panics(text in "\\PC{0,300}") {
        let _ = Meta::parse(&text);
    }

    #[test]
    fn meta_reader_rejects_any_file_that_is_not_a_plain_dump_name(
        file in "(\\.\\./|/|[a-z]{0,5}/)[a-z./]{0,20}\\.dump",
        size in any::<u64>(),
    ) {
        let json = serde_json::json!({
            "format_version": 1, "database": "d", "mode": "full", "label": null,
            "file": file, "size_bytes": size, "sha256": "a".repeat(64),
            "started_at": "x", "finished_at": "x", "duration_seconds": 1e308,
            "compression": "zstd:1", "server_version": "16", "pg_dump_version": "17",
            "alembic_revision": null, "extensions": {}, "tables": [], "host": "h",
            "pgbak_version": "0", "s3": null
        });
        prop_assert!(Meta::parse(&json.to_string()).is_err());
    }
}

/// Text a hostile meta.json may carry: quotes of every kind, backslashes,
/// statement separators, comment starts, dollar quotes, NUL and control
/// characters, non-ASCII; or plain words.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z_][A-Za-z0-9_]{0,10}",
        "[A-Za-z0-9 '\";\\\\$\\-/*\\x00\\n\\t()=.,@é]{0,24}",
        "\\PC{0,24}",
        Just("CONNECT".to_owned()),
        Just("icu".to_owned()),
        Just("UTF8".to_owned()),
    ]
}

/// A statement with every quoted literal (`'..'`, `E'..'`) and identifier
/// (`".."`) replaced by `?`, read the way PostgreSQL's lexer reads them (with
/// standard_conforming_strings on); None when a quote is left open.
fn skeleton(sql: &str) -> Option<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let escaped = c == 'E' && chars.get(i + 1) == Some(&'\'');
        if c == '\'' || c == '"' || escaped {
            let quote = if escaped { '\'' } else { c };
            i += if escaped { 2 } else { 1 };
            loop {
                match chars.get(i)? {
                    '\\' if escaped => i += 2,
                    q if *q == quote && chars.get(i + 1) == Some(&quote) => i += 2,
                    q if *q == quote => break,
                    _ => i += 1,
                }
            }
            out.push('?');
        } else {
            out.push(c);
        }
        i += 1;
    }
    Some(out)
}

/// The statements `pg::dbprops` makes of `props` (CREATE DATABASE, then each
/// step), as skeletons; a list setting's several literals count as one.
fn skeletons(db: &str, props: &DatabaseProperties) -> Vec<Option<String>> {
    let roles: BTreeSet<String> = props
        .acl
        .iter()
        .flatten()
        .map(|g| g.grantee.clone())
        .chain(props.settings.iter().filter_map(|s| s.role.clone()))
        .chain([props.owner.clone()])
        .collect();
    // The recorded tablespace exists on the target, so its step runs too.
    let spaces: BTreeSet<String> = props.tablespace.iter().cloned().collect();
    let mut sql = vec![dbprops::create_statement(db, Some(props))];
    sql.extend(
        dbprops::property_steps(db, props, &roles, true)
            .into_iter()
            .chain(dbprops::placement_steps(db, props, &spaces))
            .filter_map(|step| match step {
                dbprops::Step::Run { sql, .. } => Some(sql),
                dbprops::Step::Skip(_) => None,
            }),
    );
    sql.iter()
        .map(|s| skeleton(s).map(|k| k.replace("?, ", "")))
        .collect()
}

/// `props` with every free value replaced by a harmless one (the keywords kept).
fn harmless(props: &DatabaseProperties) -> DatabaseProperties {
    let x = || "x".to_owned();
    DatabaseProperties {
        owner: x(),
        encoding: x(),
        collate: x(),
        ctype: x(),
        locale_provider: props.locale_provider.clone(),
        locale: props.locale.as_ref().map(|_| x()),
        settings: props
            .settings
            .iter()
            .map(|s| DatabaseSetting {
                role: s.role.as_ref().map(|_| x()),
                name: x(),
                value: x(),
            })
            .collect(),
        acl: props.acl.as_ref().map(|acl| {
            acl.iter()
                .map(|g| DatabaseGrant {
                    grantee: if g.grantee == "PUBLIC" {
                        g.grantee.clone()
                    } else {
                        x()
                    },
                    privilege: g.privilege.clone(),
                    grantable: g.grantable,
                })
                .collect()
        }),
        comment: props.comment.as_ref().map(|_| x()),
        connection_limit: props.connection_limit,
        tablespace: props.tablespace.as_ref().map(|_| x()),
    }
}

fn properties() -> impl Strategy<Value = DatabaseProperties> {
    let setting = (proptest::option::of(hostile()), hostile(), hostile())
        .prop_map(|(role, name, value)| DatabaseSetting { role, name, value });
    let grant =
        (hostile(), hostile(), any::<bool>()).prop_map(|(grantee, privilege, grantable)| {
            DatabaseGrant {
                grantee,
                privilege,
                grantable,
            }
        });
    (
        (hostile(), hostile(), hostile(), hostile(), hostile()),
        proptest::option::of(hostile()),
        proptest::collection::vec(setting, 0..3),
        proptest::option::of(proptest::collection::vec(grant, 0..3)),
        (
            proptest::option::of(hostile()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(hostile()),
        ),
    )
        .prop_map(
            |(
                (owner, encoding, collate, ctype, locale_provider),
                locale,
                settings,
                acl,
                (comment, connection_limit, tablespace),
            )| {
                DatabaseProperties {
                    owner,
                    encoding,
                    collate,
                    ctype,
                    locale_provider,
                    locale,
                    settings,
                    acl,
                    comment,
                    connection_limit,
                    tablespace,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Issue 22 item 4: every meta.json value that reaches SQL is either refused,
    /// or quoted into single statements that read exactly like the same
    /// statements made of harmless values, with keywords from closed sets.
    #[test]
    fn meta_values_are_refused_or_quoted_into_one_statement_each(
        db in hostile(),
        props in properties(),
    ) {
        let accepted = pgbak::pg::meta_values::check_properties(&props).is_ok()
            && pgbak::pg::meta_values::check_name(&db).is_ok();
        if !accepted {
            return Ok(());
        }
        prop_assert!(pgbak::pg::meta_values::LOCALE_PROVIDERS.contains(&props.locale_provider.as_str()));
        for g in props.acl.iter().flatten() {
            prop_assert!(pgbak::pg::meta_values::DATABASE_PRIVILEGES.contains(&g.privilege.as_str()));
        }
        let got = skeletons(&db, &props);
        let want = skeletons("x", &harmless(&props));
        for (g, w) in got.iter().zip(&want) {
            let g = g.as_deref();
            prop_assert!(g.is_some_and(|g| !g.contains(';')), "{:?}", g);
            prop_assert_eq!(g, w.as_deref());
        }
        prop_assert_eq!(got.len(), want.len());
    }
}
