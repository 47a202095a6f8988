//! A database's own properties (owner, encoding and locale, `ALTER DATABASE
//! ... SET`, `ALTER ROLE ... IN DATABASE ... SET`, ACL, comment, connection
//! limit, default tablespace) re-applied
//! when restore creates the database. pg_dump without `--create` leaves them
//! out and `pg_dumpall --globals-only` does not carry them either, so backup
//! records them in meta.json and this module turns them back into SQL.
//!
//! Why not `pg_dump --create` / `pg_restore --create`: its statements name the
//! source database, so a restore under another name (DATABASE_URL names the
//! target) cannot use them, and one failing `CREATE DATABASE` (a locale the
//! new server lacks) stops the whole restore. Here each property is applied on
//! its own and whatever cannot be is named in the summary, never dropped silently.
//!
//! The values come from meta.json, so from the bucket: [`super::meta_values`]
//! checks every one against what PostgreSQL allows, names and literals are
//! quoted, and each statement is sent alone through the extended protocol,
//! which refuses a second statement in the same text.

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use tokio_postgres::Client;

use super::client::{quote_ident, quote_literal};
use crate::error::usage;
use crate::meta::{DatabaseProperties, DatabaseSetting};

/// Settings whose value is a list of (double-quoted when needed) names;
/// pg_dump's `variable_is_guc_list_quote`.
fn is_list_setting(name: &str) -> bool {
    [
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    ]
    .contains(&name.to_ascii_lowercase().as_str())
}

/// Splits a stored list setting (`"my schema", public`) into its names, the
/// way the server's `SplitGUCList` does: double quotes group, `""` is a quote.
pub fn split_guc_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_owned();
        }
        items.push(item);
        if chars.next() != Some(',') {
            break;
        }
    }
    items
}

/// `ALTER [ROLE r IN] DATABASE db SET name TO value`, quoted as pg_dump does.
pub fn set_statement(database: &str, setting: &DatabaseSetting) -> String {
    let value = if is_list_setting(&setting.name) {
        split_guc_list(&setting.value)
            .iter()
            .map(|v| quote_literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        quote_literal(&setting.value)
    };
    let role = setting
        .role
        .as_deref()
        .map(|r| format!("ROLE {} IN ", quote_ident(r)))
        .unwrap_or_default();
    format!(
        "ALTER {role}DATABASE {} SET {} TO {value}",
        quote_ident(database),
        quote_ident(&setting.name)
    )
}

/// `CREATE DATABASE` with the recorded encoding and locale (from template0,
/// so nothing preinstalled collides with the archive).
pub fn create_statement(database: &str, props: Option<&DatabaseProperties>) -> String {
    let mut sql = format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_ident(database)
    );
    if let Some(p) = props {
        sql.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_literal(&p.encoding),
            quote_literal(&p.collate),
            quote_literal(&p.ctype)
        ));
        if p.locale_provider != "libc" {
            sql.push_str(&format!(" LOCALE_PROVIDER {}", p.locale_provider));
            if let Some(locale) = &p.locale {
                let key = if p.locale_provider == "icu" {
                    "ICU_LOCALE"
                } else {
                    "BUILTIN_LOCALE"
                };
                sql.push_str(&format!(" {key} {}", quote_literal(locale)));
            }
        }
    }
    sql
}

fn message(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map_or_else(|| err.to_string(), |d| d.message().to_owned())
}

/// Creates `database` with its recorded properties. `roles` are the roles of
/// the target server; `owners` false (`--no-owner`) leaves owner and ACL to
/// the server's defaults. Returns what could not be carried over, in words.
pub async fn create_database(
    admin: &Client,
    database: &str,
    props: Option<&DatabaseProperties>,
    roles: &BTreeSet<String>,
    owners: bool,
) -> Result<Vec<String>> {
    // Checked by restore before anything was touched; checked again here, so
    // no caller can hand a value from the bucket to SQL unchecked.
    super::meta_values::check_name(database)
        .map_err(|why| usage(format!("the database name {database:?} {why}")))?;
    if let Some(props) = props {
        super::meta_values::check_properties(props).map_err(usage)?;
    }
    let mut skipped = create(admin, database, props).await?;
    let Some(props) = props else {
        skipped.push(
            "owner, encoding/locale, settings and privileges of the database: this backup's \
             meta.json does not record them (made by an older pgbak)"
                .to_owned(),
        );
        return Ok(skipped);
    };
    let tablespaces = tablespaces(admin).await?;
    let placed = placement_steps(database, props, &tablespaces);
    for step in placed
        .into_iter()
        .chain(property_steps(database, props, roles, owners))
    {
        match step {
            Step::Skip(why) => skipped.push(why),
            Step::Run { sql, what } => {
                // One statement each (the extended protocol takes no more).
                if let Err(e) = admin.execute(sql.as_str(), &[]).await {
                    skipped.push(format!("{what}: {}", message(&e)));
                }
            }
        }
    }
    Ok(skipped)
}

/// `CREATE DATABASE` with the recorded encoding and locale; a locale the new
/// server lacks still gets the database, with the defaults (and says so).
async fn create(
    admin: &Client,
    database: &str,
    props: Option<&DatabaseProperties>,
) -> Result<Vec<String>> {
    let Err(err) = admin
        .execute(create_statement(database, props).as_str(), &[])
        .await
    else {
        return Ok(Vec::new());
    };
    let quoted = quote_ident(database);
    let Some(p) = props else {
        return Err(anyhow!("creating {quoted}: {}", message(&err)));
    };
    admin
        .execute(create_statement(database, None).as_str(), &[])
        .await
        .map_err(|e| anyhow!("creating {quoted}: {}", message(&e)))?;
    Ok(vec![format!(
        "encoding {} / locale {} ({} provider): {}; created with the server's defaults",
        p.encoding,
        p.locale.as_deref().unwrap_or(&p.collate),
        p.locale_provider,
        message(&err)
    )])
}

/// The tablespaces of the target server.
async fn tablespaces(admin: &Client) -> Result<BTreeSet<String>> {
    let rows = admin
        .query("SELECT spcname::text FROM pg_catalog.pg_tablespace", &[])
        .await
        .map_err(|e| anyhow!("reading the server's tablespaces: {}", message(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The steps right after `CREATE DATABASE`, before anything is restored into
/// it (moving an empty database is cheap): its default tablespace, when it
/// was not `pg_default` and the target has one of that name (else a named
/// skip: the database stays in the server's default), and its connection
/// limit. Pure; meta.json's values reach SQL only as a checked integer and
/// a quoted identifier.
pub fn placement_steps(
    database: &str,
    props: &DatabaseProperties,
    tablespaces: &BTreeSet<String>,
) -> Vec<Step> {
    let quoted = quote_ident(database);
    let mut steps = Vec::new();
    if let Some(space) = props.tablespace.as_deref().filter(|s| *s != "pg_default") {
        let what = format!("default tablespace {space}");
        steps.push(if tablespaces.contains(space) {
            Step::Run {
                sql: format!(
                    "ALTER DATABASE {quoted} SET TABLESPACE {}",
                    quote_ident(space)
                ),
                what,
            }
        } else {
            Step::Skip(format!(
                "{what} (no such tablespace here: the database is in the server's default \
                 tablespace; create it and run ALTER DATABASE {quoted} SET TABLESPACE {})",
                quote_ident(space)
            ))
        });
    }
    match props.connection_limit {
        None | Some(-1) => {}
        Some(limit) if limit >= 0 => steps.push(Step::Run {
            sql: format!("ALTER DATABASE {quoted} CONNECTION LIMIT {limit}"),
            what: format!("connection limit {limit}"),
        }),
        Some(limit) => steps.push(Step::Skip(format!(
            "connection limit {limit} (not a limit PostgreSQL takes)"
        ))),
    }
    steps
}

/// One step of re-applying a database's properties: a statement (and what
/// it carries over, for the summary when it fails), or what is left out and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Run { sql: String, what: String },
    Skip(String),
}

/// The steps after `CREATE DATABASE`, in order: owner, settings, privileges,
/// comment. Pure: which roles exist and `--no-owner` decide what is skipped.
pub fn property_steps(
    database: &str,
    props: &DatabaseProperties,
    roles: &BTreeSet<String>,
    owners: bool,
) -> Vec<Step> {
    let quoted = quote_ident(database);
    let mut steps = vec![owner_step(&quoted, props, roles, owners)];
    for setting in &props.settings {
        let what = match &setting.role {
            Some(role) => format!("setting {} for role {role}", setting.name),
            None => format!("setting {}", setting.name),
        };
        steps.push(
            if setting.role.as_ref().is_some_and(|r| !roles.contains(r)) {
                Step::Skip(format!("{what} (no such role here)"))
            } else {
                Step::Run {
                    sql: set_statement(database, setting),
                    what,
                }
            },
        );
    }
    steps.extend(privilege_steps(&quoted, props, roles, owners));
    if let Some(comment) = &props.comment {
        steps.push(Step::Run {
            sql: format!("COMMENT ON DATABASE {quoted} IS {}", quote_literal(comment)),
            what: "comment".to_owned(),
        });
    }
    steps
}

fn owner_step(
    quoted: &str,
    props: &DatabaseProperties,
    roles: &BTreeSet<String>,
    owners: bool,
) -> Step {
    if !owners {
        Step::Skip(format!("owner {} (--no-owner)", props.owner))
    } else if !roles.contains(&props.owner) {
        Step::Skip(format!("owner {} (no such role here)", props.owner))
    } else {
        Step::Run {
            sql: format!(
                "ALTER DATABASE {quoted} OWNER TO {}",
                quote_ident(&props.owner)
            ),
            what: format!("owner {}", props.owner),
        }
    }
}

/// The recorded ACL replaces the defaults (PUBLIC: CONNECT, TEMPORARY).
fn privilege_steps(
    quoted: &str,
    props: &DatabaseProperties,
    roles: &BTreeSet<String>,
    owners: bool,
) -> Vec<Step> {
    let Some(acl) = &props.acl else {
        return Vec::new();
    };
    if !owners {
        return vec![Step::Skip(
            "privileges on the database (--no-owner)".to_owned(),
        )];
    }
    let mut steps = vec![Step::Run {
        sql: format!("REVOKE ALL ON DATABASE {quoted} FROM PUBLIC"),
        what: "privileges of PUBLIC".to_owned(),
    }];
    for grant in acl {
        let what = format!("{} on the database for {}", grant.privilege, grant.grantee);
        let grantee = if grant.grantee == "PUBLIC" {
            "PUBLIC".to_owned()
        } else if roles.contains(&grant.grantee) {
            quote_ident(&grant.grantee)
        } else {
            steps.push(Step::Skip(format!("{what} (no such role here)")));
            continue;
        };
        let option = if grant.grantable {
            " WITH GRANT OPTION"
        } else {
            ""
        };
        steps.push(Step::Run {
            sql: format!(
                "GRANT {} ON DATABASE {quoted} TO {grantee}{option}",
                grant.privilege
            ),
            what,
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database owned by `app`, UTF8 with the C locale (libc), nothing else set.
    fn plain_props() -> DatabaseProperties {
        DatabaseProperties {
            owner: "app".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            locale_provider: "libc".into(),
            locale: None,
            settings: vec![],
            acl: None,
            comment: None,
            connection_limit: None,
            tablespace: None,
        }
    }

    #[test]
    fn list_settings_split_like_the_server() {
        let cases: &[(&str, &[&str])] = &[
            ("public", &["public"]),
            ("app, public", &["app", "public"]),
            ("\"$user\", public", &["$user", "public"]),
            ("\"my \"\"odd\"\" schema\",x", &["my \"odd\" schema", "x"]),
            ("", &[]),
        ];
        for (value, want) in cases {
            assert_eq!(split_guc_list(value), *want, "{value}");
        }
    }

    #[test]
    fn settings_become_alter_statements() {
        let setting = |role: Option<&str>, name: &str, value: &str| DatabaseSetting {
            role: role.map(str::to_owned),
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            set_statement("my db", &setting(None, "work_mem", "64MB")),
            "ALTER DATABASE \"my db\" SET \"work_mem\" TO '64MB'"
        );
        assert_eq!(
            set_statement("d", &setting(Some("app"), "search_path", "app, \"$user\"")),
            "ALTER ROLE \"app\" IN DATABASE \"d\" SET \"search_path\" TO 'app', '$user'"
        );
        assert_eq!(
            set_statement("d", &setting(None, "app.note", "it's")),
            "ALTER DATABASE \"d\" SET \"app.note\" TO 'it''s'"
        );
    }

    #[test]
    fn placement_moves_the_database_and_limits_connections_or_says_why_not() {
        let props = |space: Option<&str>, limit: Option<i32>| DatabaseProperties {
            connection_limit: limit,
            tablespace: space.map(str::to_owned),
            ..plain_props()
        };
        let here: BTreeSet<String> = ["pg_default".to_owned(), "fast \"ssd\"".to_owned()].into();
        let sql = |steps: Vec<Step>| -> Vec<String> {
            steps
                .into_iter()
                .map(|s| match s {
                    Step::Run { sql, .. } => sql,
                    Step::Skip(why) => format!("SKIP {why}"),
                })
                .collect()
        };
        assert!(
            placement_steps("d", &props(None, None), &here).is_empty(),
            "older backups"
        );
        assert!(placement_steps("d", &props(Some("pg_default"), Some(-1)), &here).is_empty());
        assert_eq!(
            sql(placement_steps(
                "my db",
                &props(Some("fast \"ssd\""), Some(7)),
                &here
            )),
            [
                "ALTER DATABASE \"my db\" SET TABLESPACE \"fast \"\"ssd\"\"\"",
                "ALTER DATABASE \"my db\" CONNECTION LIMIT 7",
            ]
        );
        let missing = sql(placement_steps("d", &props(Some("gone"), Some(0)), &here));
        assert!(
            missing[0].starts_with("SKIP default tablespace gone (no such tablespace here"),
            "{missing:?}"
        );
        assert_eq!(missing[1], "ALTER DATABASE \"d\" CONNECTION LIMIT 0");
        let odd = sql(placement_steps("d", &props(None, Some(-5)), &here));
        assert!(odd[0].starts_with("SKIP connection limit -5"), "{odd:?}");
    }

    #[test]
    fn create_carries_encoding_and_locale() {
        let props = DatabaseProperties {
            locale_provider: "icu".into(),
            locale: Some("und".into()),
            ..plain_props()
        };
        assert_eq!(
            create_statement("x", Some(&props)),
            "CREATE DATABASE \"x\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' \
             LOCALE_PROVIDER icu ICU_LOCALE 'und'"
        );
        assert_eq!(
            create_statement("x", None),
            "CREATE DATABASE \"x\" TEMPLATE template0"
        );
    }

    #[test]
    fn property_steps_skip_what_the_target_cannot_take() {
        let props = DatabaseProperties {
            settings: vec![
                DatabaseSetting {
                    role: None,
                    name: "work_mem".into(),
                    value: "64MB".into(),
                },
                DatabaseSetting {
                    role: Some("gone".into()),
                    name: "work_mem".into(),
                    value: "1MB".into(),
                },
            ],
            acl: Some(vec![
                crate::meta::DatabaseGrant {
                    grantee: "PUBLIC".into(),
                    privilege: "CONNECT".into(),
                    grantable: false,
                },
                crate::meta::DatabaseGrant {
                    grantee: "gone".into(),
                    privilege: "CREATE".into(),
                    grantable: true,
                },
            ]),
            comment: Some("it's".into()),
            connection_limit: Some(-1),
            tablespace: Some("pg_default".into()),
            ..plain_props()
        };
        let roles: BTreeSet<String> = ["app".to_owned()].into();
        let run = |sql: &str| Step::Run {
            sql: sql.into(),
            what: String::new(),
        };
        let shape = |steps: Vec<Step>| -> Vec<Step> {
            steps
                .into_iter()
                .map(|s| match s {
                    Step::Run { sql, .. } => run(&sql),
                    skip => skip,
                })
                .collect()
        };
        assert_eq!(
            shape(property_steps("d", &props, &roles, true)),
            vec![
                run("ALTER DATABASE \"d\" OWNER TO \"app\""),
                run("ALTER DATABASE \"d\" SET \"work_mem\" TO '64MB'"),
                Step::Skip("setting work_mem for role gone (no such role here)".into()),
                run("REVOKE ALL ON DATABASE \"d\" FROM PUBLIC"),
                run("GRANT CONNECT ON DATABASE \"d\" TO PUBLIC"),
                Step::Skip("CREATE on the database for gone (no such role here)".into()),
                run("COMMENT ON DATABASE \"d\" IS 'it''s'"),
            ]
        );
        assert_eq!(
            shape(property_steps("d", &props, &roles, false)),
            vec![
                Step::Skip("owner app (--no-owner)".into()),
                run("ALTER DATABASE \"d\" SET \"work_mem\" TO '64MB'"),
                Step::Skip("setting work_mem for role gone (no such role here)".into()),
                Step::Skip("privileges on the database (--no-owner)".into()),
                run("COMMENT ON DATABASE \"d\" IS 'it''s'"),
            ]
        );
    }
}
