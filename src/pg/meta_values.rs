//! Every value meta.json hands to SQL, checked against what PostgreSQL allows
//! before any of it is used. meta.json comes from the bucket, and whoever can
//! write there must not be able to make a restore (which runs as a superuser)
//! execute their SQL: keywords come from closed sets (privileges, locale
//! providers, encodings), names and free text are refused when PostgreSQL
//! could not have produced them, and what passes is still quoted
//! ([`super::client::quote_ident`], [`super::client::quote_literal`]) and sent
//! as one statement each ([`super::dbprops`]).
//!
//! A refusal names the meta.json field (`database_properties.acl[0].privilege`)
//! and what is wrong with its value, so the operator can tell tampering from an
//! unusual but honest setting.

use crate::meta::{DatabaseProperties, Meta};

/// The privileges a database's ACL can hold (`aclexplode`'s `privilege_type`).
pub const DATABASE_PRIVILEGES: [&str; 3] = ["CONNECT", "CREATE", "TEMPORARY"];

/// The locale providers of `CREATE DATABASE ... LOCALE_PROVIDER` (16: libc, icu; 17: builtin).
pub const LOCALE_PROVIDERS: [&str; 3] = ["libc", "icu", "builtin"];

/// The encodings a database can have (`pg_encoding_to_char` of the server-side
/// encodings; client-only ones such as SJIS or BIG5 cannot be a database's).
pub const SERVER_ENCODINGS: [&str; 41] = [
    "SQL_ASCII",
    "EUC_JP",
    "EUC_CN",
    "EUC_KR",
    "EUC_TW",
    "EUC_JIS_2004",
    "UTF8",
    "MULE_INTERNAL",
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "WIN1256",
    "WIN1258",
    "WIN866",
    "WIN874",
    "KOI8R",
    "WIN1251",
    "WIN1252",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN1250",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1257",
    "KOI8U",
    // Spellings older servers reported, kept readable.
    "UNICODE",
    "ALT",
    "WIN",
    "TCVN",
    "ABC",
    "VSCII",
];

/// The longest name PostgreSQL keeps (NAMEDATALEN - 1 bytes); a longer one
/// would be truncated by the server into another name.
const MAX_NAME_BYTES: usize = 63;
/// Free text (a setting's value, a comment) longer than this is not a backup's.
const MAX_TEXT_BYTES: usize = 1 << 20;

/// A role, database or other name: what PostgreSQL could have stored.
pub fn check_name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".to_owned());
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!(
            "is {} bytes long; PostgreSQL names have at most {MAX_NAME_BYTES}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("holds a control character".to_owned());
    }
    Ok(())
}

/// Free text that becomes a quoted literal: no NUL (which no PostgreSQL text
/// holds) and a sane length.
fn check_text(value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("holds a NUL byte".to_owned());
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(format!("is {} bytes long", value.len()));
    }
    Ok(())
}

/// A locale name (libc `en_US.UTF-8`, `sr_RS@latin`, `English_United States.1252`;
/// ICU `und-u-ks-level2`; builtin `C.UTF-8`): letters, digits and `_.-@=+, `.
fn check_locale(value: &str) -> Result<(), String> {
    if value.len() > 255 {
        return Err(format!("is {} bytes long", value.len()));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-@=+, ".contains(*c)))
    {
        Some(c) => Err(format!("holds {c:?}, which no locale name has")),
        None => Ok(()),
    }
}

/// A configuration parameter's name: an identifier, or dot-separated
/// identifiers for an extension's (`plpgsql.variable_conflict`).
fn check_setting_name(value: &str) -> Result<(), String> {
    let part_ok = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    if value.len() > 255 || !value.split('.').all(part_ok) {
        return Err("is not a configuration parameter name".to_owned());
    }
    Ok(())
}

fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!("is not one of {}", allowed.join(", ")))
    }
}

/// The first value of `props` that PostgreSQL could not have recorded: the
/// meta.json field and what is wrong with it, e.g.
/// `database_properties.acl[0].privilege "..." is not one of CONNECT, CREATE, TEMPORARY`.
pub fn check_properties(props: &DatabaseProperties) -> Result<(), String> {
    let mut checks: Vec<(String, &str, Result<(), String>)> = vec![
        ("owner".into(), &props.owner, check_name(&props.owner)),
        (
            "encoding".into(),
            &props.encoding,
            one_of(&props.encoding, &SERVER_ENCODINGS),
        ),
        (
            "collate".into(),
            &props.collate,
            check_locale(&props.collate),
        ),
        ("ctype".into(), &props.ctype, check_locale(&props.ctype)),
        (
            "locale_provider".into(),
            &props.locale_provider,
            one_of(&props.locale_provider, &LOCALE_PROVIDERS),
        ),
    ];
    if let Some(locale) = &props.locale {
        checks.push(("locale".into(), locale, check_locale(locale)));
    }
    if let Some(space) = &props.tablespace {
        checks.push(("tablespace".into(), space, check_name(space)));
    }
    for (i, s) in props.settings.iter().enumerate() {
        if let Some(role) = &s.role {
            checks.push((format!("settings[{i}].role"), role, check_name(role)));
        }
        checks.push((
            format!("settings[{i}].name"),
            &s.name,
            check_setting_name(&s.name),
        ));
        checks.push((
            format!("settings[{i}].value"),
            &s.value,
            check_text(&s.value),
        ));
    }
    for (i, g) in props.acl.iter().flatten().enumerate() {
        checks.push((
            format!("acl[{i}].grantee"),
            &g.grantee,
            check_name(&g.grantee),
        ));
        checks.push((
            format!("acl[{i}].privilege"),
            &g.privilege,
            one_of(&g.privilege, &DATABASE_PRIVILEGES),
        ));
    }
    if let Some(comment) = &props.comment {
        checks.push(("comment".into(), comment, check_text(comment)));
    }
    for (field, value, verdict) in checks {
        if let Err(why) = verdict {
            return Err(format!(
                "meta.json's database_properties.{field} {} {why}",
                shown(value)
            ));
        }
    }
    Ok(())
}

/// Everything of `meta` that a restore turns into SQL or a connection: the
/// database's name and its recorded properties.
pub fn check_meta(meta: &Meta) -> Result<(), String> {
    check_name(&meta.database)
        .map_err(|why| format!("meta.json's database {} {why}", shown(&meta.database)))?;
    meta.database_properties
        .as_ref()
        .map_or(Ok(()), check_properties)
}

/// A value in a message: quoted, escaped, at most 80 characters.
fn shown(value: &str) -> String {
    let mut text: String = value.chars().take(80).collect();
    if text.len() < value.len() {
        text.push_str("...");
    }
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{DatabaseGrant, DatabaseSetting};

    fn props() -> DatabaseProperties {
        DatabaseProperties {
            owner: "app".into(),
            encoding: "UTF8".into(),
            collate: "en_US.UTF-8".into(),
            ctype: "en_US.UTF-8".into(),
            locale_provider: "icu".into(),
            locale: Some("und-u-ks-level2".into()),
            connection_limit: Some(-1),
            tablespace: Some("pg_default".into()),
            settings: vec![
                DatabaseSetting {
                    role: Some("my role".into()),
                    name: "search_path".into(),
                    value: "\"$user\", 'odd'; public".into(),
                },
                DatabaseSetting {
                    role: None,
                    name: "plpgsql.variable_conflict".into(),
                    value: "use_column".into(),
                },
            ],
            acl: Some(vec![DatabaseGrant {
                grantee: "PUBLIC".into(),
                privilege: "TEMPORARY".into(),
                grantable: false,
            }]),
            comment: Some("it's; DROP TABLE x; --".into()),
        }
    }

    #[test]
    fn what_postgresql_records_passes() {
        assert_eq!(check_properties(&props()), Ok(()));
        for locale in [
            "C",
            "POSIX",
            "sr_RS@latin",
            "English_United States.1252",
            "C.UTF-8",
        ] {
            let mut p = props();
            p.collate = locale.into();
            assert_eq!(check_properties(&p), Ok(()), "{locale}");
        }
    }

    #[test]
    fn each_field_that_reaches_sql_is_refused_by_name() {
        type Edit = fn(&mut DatabaseProperties);
        let cases: &[(Edit, &str)] = &[
            (|p| p.owner = "x".repeat(64), "database_properties.owner"),
            (|p| p.owner = String::new(), "database_properties.owner"),
            (
                |p| p.encoding = "UTF8' x".into(),
                "database_properties.encoding",
            ),
            (
                |p| p.encoding = "SJIS".into(),
                "database_properties.encoding",
            ),
            (
                |p| p.collate = "C'; --".into(),
                "database_properties.collate",
            ),
            (|p| p.ctype = "C\n".into(), "database_properties.ctype"),
            (
                |p| p.locale_provider = "icu; CREATE ROLE evil".into(),
                "database_properties.locale_provider",
            ),
            (
                |p| p.locale = Some("und'".into()),
                "database_properties.locale",
            ),
            (
                |p| p.settings[0].role = Some("a\0b".into()),
                "database_properties.settings[0].role",
            ),
            (
                |p| p.settings[1].name = "work_mem TO 1; --".into(),
                "database_properties.settings[1].name",
            ),
            (
                |p| p.settings[1].name = "a..b".into(),
                "database_properties.settings[1].name",
            ),
            (
                |p| p.settings[0].value = "a\0".into(),
                "database_properties.settings[0].value",
            ),
            (
                |p| p.acl.as_mut().unwrap()[0].privilege = "CONNECT ON DATABASE x TO y; --".into(),
                "database_properties.acl[0].privilege",
            ),
            (
                |p| p.acl.as_mut().unwrap()[0].privilege = "connect".into(),
                "database_properties.acl[0].privilege",
            ),
            (
                |p| p.acl.as_mut().unwrap()[0].grantee = "\u{7f}".into(),
                "database_properties.acl[0].grantee",
            ),
            (
                |p| p.comment = Some("\0".into()),
                "database_properties.comment",
            ),
        ];
        for (edit, field) in cases {
            let mut p = props();
            edit(&mut p);
            let err = check_properties(&p).expect_err(field);
            assert!(err.starts_with(&format!("meta.json's {field} ")), "{err}");
        }
    }

    #[test]
    fn the_database_name_is_checked_too() {
        let mut meta = crate::meta::tests::sample();
        assert_eq!(check_meta(&meta), Ok(()));
        meta.database = "a\0b".into();
        assert!(check_meta(&meta).unwrap_err().contains("database"));
        meta.database = "ok".into();
        meta.database_properties = Some(props());
        meta.database_properties.as_mut().unwrap().encoding = "X".into();
        assert!(check_meta(&meta)
            .unwrap_err()
            .contains("database_properties.encoding"));
    }
}
