//! The roles as a server has them, and how they differ from a globals
//! backup's: what `restore --all-databases` shows in its plan (roles that
//! exist and differ) and checks after the replay (every role of the backup
//! as the backup has it, or named with what differs). The comparison is pure
//! ([`differences`], table-tested); [`read`] is the catalog query.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::parse::{flag_keyword, Globals, RoleSpec};

/// A role as the server has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerRole {
    pub flags: BTreeMap<&'static str, bool>,
    pub connection_limit: i32,
    /// The stored password hash; None when pgbak may not read pg_authid.
    pub password: Option<Option<String>>,
    /// Whether `VALID UNTIL` equals the backup's (compared by the server).
    pub valid_until_equal: bool,
    /// (database, name) -> value, canonical (see [`canonical_value`]).
    pub settings: BTreeMap<(Option<String>, String), String>,
    /// role -> every grant of it to this role: (admin, inherit, set).
    pub member_of: BTreeMap<String, Vec<(bool, bool, bool)>>,
}

/// How a role of the backup differs from the server's: what is missing or
/// different (the role is not as in the backup), and what the server has
/// on top (reported, never removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    pub differs: Vec<String>,
    pub extra: Vec<String>,
}

/// A setting's value as a comparable text: list elements split at commas
/// outside double quotes, unquoted and joined with ", " (the server keeps
/// `app, "$user", public` for pg_dumpall's `'app', '$user', 'public'`).
pub fn canonical_value(value: &str) -> String {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut current).trim().to_owned()),
            c => current.push(c),
        }
    }
    items.push(current.trim().to_owned());
    items.join(", ")
}

/// How `have` differs from the backup's `spec`. `passwords`: the globals
/// hold the roles' passwords (not `--no-role-passwords`, not a managed
/// service), so a password that differs is a difference.
pub fn differences(spec: &RoleSpec, have: Option<&ServerRole>, passwords: bool) -> Difference {
    let Some(have) = have else {
        return Difference {
            differs: vec!["does not exist".into()],
            extra: Vec::new(),
        };
    };
    let mut d = Difference::default();
    for (column, want) in &spec.flags {
        let is = have.flags.get(column).copied().unwrap_or(!want);
        if is != *want {
            d.differs.push(format!(
                "{} (the backup has {})",
                flag_keyword(column, is),
                flag_keyword(column, *want)
            ));
        }
    }
    // pg_dumpall writes the attributes in one ALTER ROLE ... WITH: where it
    // wrote none, the role's attributes were not dumped at all.
    let stated = !spec.flags.is_empty();
    let limit = spec.connection_limit.unwrap_or(-1);
    if stated && have.connection_limit != limit {
        d.differs.push(format!(
            "CONNECTION LIMIT {} (the backup has {limit})",
            have.connection_limit
        ));
    }
    if let (true, true, Some(is)) = (stated, passwords, &have.password) {
        let want = spec.password.clone().flatten();
        match (is, &want) {
            (None, Some(_)) => d.differs.push("no password (the backup has one)".into()),
            (Some(_), None) => d.differs.push("a password the backup does not have".into()),
            (Some(a), Some(b)) if a != b => d
                .differs
                .push("another password than the backup's (its stored hash differs)".into()),
            _ => {}
        }
    }
    if stated && !have.valid_until_equal {
        d.differs.push(match &spec.valid_until {
            Some(v) => format!("another VALID UNTIL (the backup has {v})"),
            None => "a VALID UNTIL the backup does not have".into(),
        });
    }
    for ((database, name), want) in &spec.settings {
        let want = canonical_value(want);
        let key = (database.clone(), name.clone());
        let place = database
            .as_ref()
            .map_or_else(String::new, |db| format!(" in database {db}"));
        match have.settings.get(&key) {
            None => d.differs.push(format!(
                "setting {name}{place} not set (the backup has {want})"
            )),
            Some(is) if *is != want => d.differs.push(format!(
                "setting {name}{place} = {is} (the backup has {want})"
            )),
            Some(_) => {}
        }
    }
    // Settings of one database come with that database's backup, not the globals.
    for (database, name) in have.settings.keys() {
        if database.is_none() && !spec.settings.contains_key(&(None, name.clone())) {
            d.extra.push(format!("setting {name} (not in the backup)"));
        }
    }
    for (role, (admin, inherit, set)) in &spec.member_of {
        let grants = have.member_of.get(role).map(Vec::as_slice).unwrap_or(&[]);
        if grants.is_empty() {
            d.differs.push(format!("not a member of {role}"));
            continue;
        }
        let fits = |g: &&(bool, bool, bool)| {
            (g.0 || !admin) && inherit.is_none_or(|i| g.1 == i) && set.is_none_or(|s| g.2 == s)
        };
        if !grants.iter().any(|g| fits(&g)) {
            d.differs.push(format!(
                "member of {role} with other options (the backup has{}{}{})",
                if *admin {
                    " ADMIN OPTION"
                } else {
                    " no ADMIN OPTION"
                },
                inherit.map_or(String::new(), |i| format!(", INHERIT {}", upper(i))),
                set.map_or(String::new(), |s| format!(", SET {}", upper(s)))
            ));
        }
    }
    for role in have.member_of.keys() {
        if !spec.member_of.contains_key(role) {
            d.extra
                .push(format!("member of {role} (not in the backup)"));
        }
    }
    d
}

fn upper(b: bool) -> &'static str {
    if b {
        "TRUE"
    } else {
        "FALSE"
    }
}

/// The server's roles that the backup names, as [`ServerRole`]s. Passwords
/// are read from pg_authid when this user may (a superuser), else left unknown.
pub async fn read(client: &Client, globals: &Globals) -> Result<BTreeMap<String, ServerRole>> {
    let names: Vec<String> = globals.roles.keys().cloned().collect();
    let valid_until: Vec<Option<String>> = globals
        .roles
        .values()
        .map(|s| s.valid_until.clone())
        .collect();
    let authid = "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
                         rolcanlogin, rolreplication, rolbypassrls, rolconnlimit,
                         rolpassword::text, rolvaliduntil IS NULL
                    FROM pg_catalog.pg_authid WHERE rolname = ANY($1)";
    let (rows, readable) = match client.query(authid, &[&names]).await {
        Ok(rows) => (rows, true),
        Err(_) => (
            client
                .query(
                    &authid
                        .replace("rolpassword::text", "NULL::text")
                        .replace("pg_catalog.pg_authid", "pg_catalog.pg_roles"),
                    &[&names],
                )
                .await
                .context("reading the server's roles")?,
            false,
        ),
    };
    let mut roles = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        let columns = [
            "rolsuper",
            "rolinherit",
            "rolcreaterole",
            "rolcreatedb",
            "rolcanlogin",
            "rolreplication",
            "rolbypassrls",
        ];
        let flags = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, row.get::<_, bool>(i + 1)))
            .collect();
        let no_valid_until: bool = row.get(10);
        roles.insert(
            name,
            ServerRole {
                flags,
                connection_limit: row.get(8),
                password: readable.then(|| row.get::<_, Option<String>>(9)),
                valid_until_equal: no_valid_until,
                ..ServerRole::default()
            },
        );
    }
    for (name, until) in names.iter().zip(&valid_until) {
        let (Some(until), Some(role)) = (until, roles.get_mut(name)) else {
            continue;
        };
        // The server compares: pg_dumpall wrote the time in its session's format.
        role.valid_until_equal = client
            .query_one(
                "SELECT rolvaliduntil IS NOT DISTINCT FROM $1::text::timestamptz
                   FROM pg_catalog.pg_roles WHERE rolname = $2",
                &[until, name],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(false);
    }
    read_settings(client, &names, &mut roles).await?;
    read_memberships(client, &names, &mut roles).await?;
    Ok(roles)
}

async fn read_settings(
    client: &Client,
    names: &[String],
    roles: &mut BTreeMap<String, ServerRole>,
) -> Result<()> {
    let rows = client
        .query(
            "SELECT r.rolname::text, d.datname::text, s.setconfig
               FROM pg_catalog.pg_db_role_setting s
               JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
               LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
              WHERE r.rolname = ANY($1)",
            &[&names],
        )
        .await
        .context("reading the roles' settings")?;
    for row in rows {
        let Some(role) = roles.get_mut(&row.get::<_, String>(0)) else {
            continue;
        };
        let database: Option<String> = row.get(1);
        let config: Vec<String> = row.get::<_, Option<Vec<String>>>(2).unwrap_or_default();
        for item in config {
            if let Some((name, value)) = item.split_once('=') {
                role.settings.insert(
                    (database.clone(), name.to_ascii_lowercase()),
                    canonical_value(value),
                );
            }
        }
    }
    Ok(())
}

async fn read_memberships(
    client: &Client,
    names: &[String],
    roles: &mut BTreeMap<String, ServerRole>,
) -> Result<()> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .context("reading the server version")?
        .get(0);
    // Before PostgreSQL 16 a grant has no INHERIT or SET option of its own.
    let options = if version >= 160_000 {
        "am.inherit_option, am.set_option"
    } else {
        "m.rolinherit, true"
    };
    let rows = client
        .query(
            &format!(
                "SELECT m.rolname::text, r.rolname::text, am.admin_option, {options}
                   FROM pg_catalog.pg_auth_members am
                   JOIN pg_catalog.pg_roles r ON r.oid = am.roleid
                   JOIN pg_catalog.pg_roles m ON m.oid = am.member
                  WHERE m.rolname = ANY($1)"
            ),
            &[&names],
        )
        .await
        .context("reading the roles' memberships")?;
    for row in rows {
        if let Some(role) = roles.get_mut(&row.get::<_, String>(0)) {
            role.member_of.entry(row.get(1)).or_default().push((
                row.get(2),
                row.get(3),
                row.get(4),
            ));
        }
    }
    Ok(())
}

/// Every role of the backup that differs from the server, and how; only
/// the roles in `only` when given.
pub fn compare(
    globals: &Globals,
    have: &BTreeMap<String, ServerRole>,
    passwords: bool,
    only: Option<&BTreeSet<String>>,
) -> BTreeMap<String, Difference> {
    globals
        .roles
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o.contains(*name)))
        .map(|(name, spec)| (name.clone(), differences(spec, have.get(name), passwords)))
        .filter(|(_, d)| !d.differs.is_empty() || !d.extra.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RoleSpec {
        let globals = Globals::parse(
            "CREATE ROLE app;\n\
             ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN CONNECTION LIMIT 5 PASSWORD 'SCRAM-a';\n\
             ALTER ROLE app SET search_path TO 'app', '$user', 'public';\n\
             GRANT readonly TO app WITH INHERIT TRUE GRANTED BY postgres;",
        )
        .unwrap();
        globals.roles["app"].clone()
    }

    fn as_in_backup() -> ServerRole {
        ServerRole {
            flags: BTreeMap::from([
                ("rolsuper", false),
                ("rolinherit", true),
                ("rolcanlogin", true),
            ]),
            connection_limit: 5,
            password: Some(Some("SCRAM-a".into())),
            valid_until_equal: true,
            settings: BTreeMap::from([
                ((None, "search_path".into()), "app, $user, public".into()),
                ((Some("app".into()), "work_mem".into()), "8MB".into()),
            ]),
            member_of: BTreeMap::from([("readonly".into(), vec![(false, true, true)])]),
        }
    }

    #[test]
    fn settings_compare_as_the_server_stores_them() {
        assert_eq!(
            canonical_value("app, \"$user\", public"),
            "app, $user, public"
        );
        assert_eq!(canonical_value("8MB"), "8MB");
        assert_eq!(canonical_value("\"a,\"\"b\", c"), "a,\"b, c");
    }

    #[test]
    fn each_difference_is_named() {
        let spec = spec();
        assert_eq!(
            differences(&spec, Some(&as_in_backup()), true),
            Difference::default()
        );
        type Change = Box<dyn Fn(&mut ServerRole)>;
        let cases: Vec<(&str, Change, Vec<&str>)> = vec![
            (
                "half-created: no login, no password, no membership, no setting",
                Box::new(|r| {
                    r.flags.insert("rolcanlogin", false);
                    r.password = Some(None);
                    r.member_of.clear();
                    r.settings.clear();
                    r.connection_limit = -1;
                }),
                vec![
                    "NOLOGIN (the backup has LOGIN)",
                    "CONNECTION LIMIT -1 (the backup has 5)",
                    "no password (the backup has one)",
                    "setting search_path not set (the backup has app, $user, public)",
                    "not a member of readonly",
                ],
            ),
            (
                "another password",
                Box::new(|r| r.password = Some(Some("SCRAM-b".into()))),
                vec!["another password than the backup's (its stored hash differs)"],
            ),
            (
                "passwords unreadable: not compared",
                Box::new(|r| r.password = None),
                vec![],
            ),
            (
                "membership without inherit",
                Box::new(|r| {
                    r.member_of.insert("readonly".into(), vec![(false, false, true)]);
                }),
                vec!["member of readonly with other options (the backup has no ADMIN OPTION, INHERIT TRUE)"],
            ),
            (
                "a setting with another value",
                Box::new(|r| {
                    r.settings
                        .insert((None, "search_path".into()), "public".into());
                }),
                vec!["setting search_path = public (the backup has app, $user, public)"],
            ),
        ];
        for (what, change, want) in cases {
            let mut have = as_in_backup();
            change(&mut have);
            assert_eq!(
                differences(&spec, Some(&have), true).differs,
                want,
                "{what}"
            );
        }
        assert_eq!(
            differences(&spec, None, true).differs,
            vec!["does not exist"]
        );
    }

    #[test]
    fn extras_are_reported_apart() {
        let mut have = as_in_backup();
        have.member_of
            .insert("admins".into(), vec![(false, true, true)]);
        have.settings
            .insert((None, "work_mem".into()), "1GB".into());
        let d = differences(&spec(), Some(&have), true);
        assert!(d.differs.is_empty(), "{d:?}");
        assert_eq!(
            d.extra,
            vec![
                "setting work_mem (not in the backup)",
                "member of admins (not in the backup)"
            ]
        );
        // Without passwords in the globals, a different hash is no difference.
        have.password = Some(Some("other".into()));
        assert!(differences(&spec(), Some(&have), false).differs.is_empty());
    }
}
