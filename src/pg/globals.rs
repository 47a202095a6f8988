//! Restoring a globals backup (`pg_dumpall --globals-only` output) onto a
//! server: statement by statement over pgbak's own connection, so that roles
//! that already exist there are left exactly as they are (not re-passworded,
//! not re-configured) and reported, and a statement the server refuses (a
//! tablespace directory that does not exist on the new machine) is named
//! instead of stopping the rest.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// Splits SQL text into statements at `;` outside quotes and comments;
/// psql meta-commands (`\restrict`, `\connect`) and comments are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut at_line_start = true;
    while let Some(c) = chars.next() {
        if at_line_start && c == '\\' && current.trim().is_empty() {
            // A psql meta-command runs to the end of its line.
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        at_line_start = c == '\n';
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                at_line_start = true;
                current.push('\n');
            }
            '\'' | '"' => {
                current.push(c);
                // A doubled quote inside is two quote chars in a row: the
                // loop closes and reopens, which keeps the text intact.
                for q in chars.by_ref() {
                    current.push(q);
                    if q == c {
                        break;
                    }
                }
            }
            ';' => {
                let stmt = current.trim();
                if !stmt.is_empty() {
                    out.push(stmt.to_owned());
                }
                current.clear();
            }
            c => current.push(c),
        }
    }
    let stmt = current.trim();
    if !stmt.is_empty() {
        out.push(stmt.to_owned());
    }
    out
}

/// Reads one identifier (`name` or `"Quoted ""name"""`) at the start of `text`.
fn identifier(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(rest) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    name.push('"');
                } else {
                    return Some((name, &rest[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
}

/// What a globals statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `CREATE ROLE r`.
    CreateRole(String),
    /// `ALTER ROLE r ...`, `COMMENT ON ROLE r`, `SECURITY LABEL ... ON ROLE r`.
    Role(String),
    /// `GRANT role TO member ...`: about the member.
    Membership(String),
    /// `CREATE TABLESPACE t`.
    CreateTablespace(String),
    /// Anything else (`SET`, `GRANT ... ON PARAMETER`, `ALTER TABLESPACE`).
    Other,
}

pub fn classify(stmt: &str) -> Subject {
    let upper = stmt.to_ascii_uppercase();
    let after = |prefix: &str| -> Option<String> {
        upper
            .starts_with(prefix)
            .then(|| identifier(&stmt[prefix.len()..]).map(|(name, _)| name))
            .flatten()
    };
    if let Some(role) = after("CREATE ROLE ") {
        return Subject::CreateRole(role);
    }
    if let Some(role) = after("ALTER ROLE ").or_else(|| after("COMMENT ON ROLE ")) {
        return Subject::Role(role);
    }
    if let Some(space) = after("CREATE TABLESPACE ") {
        return Subject::CreateTablespace(space);
    }
    if upper.starts_with("GRANT ") && !upper.contains(" ON ") {
        if let Some(pos) = upper.find(" TO ") {
            if let Some((member, _)) = identifier(&stmt[pos + 4..]) {
                return Subject::Membership(member);
            }
        }
    }
    Subject::Other
}

/// What applying the globals did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Applied {
    pub created_roles: Vec<String>,
    /// Roles that existed on the target: left as they were.
    pub existing_roles: Vec<String>,
    /// Statements the server refused, with its message.
    pub failed: Vec<String>,
}

/// Applies the globals SQL. Statements about roles that existed before are
/// skipped; failures are collected, not fatal.
pub async fn apply(client: &Client, sql: &str) -> Result<Applied> {
    let rows = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .context("listing the server's roles")?;
    let existing: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let rows = client
        .query("SELECT spcname::text FROM pg_tablespace", &[])
        .await
        .context("listing the server's tablespaces")?;
    let tablespaces: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut applied = Applied::default();
    for stmt in split_statements(sql) {
        let skip = match classify(&stmt) {
            Subject::CreateRole(role) => {
                if existing.contains(&role) {
                    applied.existing_roles.push(role);
                    true
                } else {
                    applied.created_roles.push(role);
                    false
                }
            }
            Subject::Role(role) | Subject::Membership(role) => existing.contains(&role),
            Subject::CreateTablespace(space) => tablespaces.contains(&space),
            Subject::Other => false,
        };
        if skip {
            continue;
        }
        if let Err(err) = client.batch_execute(&stmt).await {
            let message = err
                .as_db_error()
                .map_or_else(|| err.to_string(), |d| d.message().to_owned());
            applied.failed.push(format!("{}: {message}", redact(&stmt)));
        }
    }
    Ok(applied)
}

/// A statement as it may be shown: a password literal replaced.
fn redact(stmt: &str) -> String {
    match stmt.to_ascii_uppercase().find(" PASSWORD '") {
        Some(pos) => format!("{} PASSWORD '***'", &stmt[..pos]),
        None => stmt.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql = "\\restrict abc\n--\n-- Roles\n--\nSET x = 'a;b';\nCREATE ROLE \"odd;\"\"r\";\n\
                   COMMENT ON ROLE app IS 'it''s; fine';\n\\unrestrict abc\n";
        assert_eq!(
            split_statements(sql),
            vec![
                "SET x = 'a;b'",
                "CREATE ROLE \"odd;\"\"r\"",
                "COMMENT ON ROLE app IS 'it''s; fine'"
            ]
        );
    }

    #[test]
    fn statements_are_classified_by_their_role() {
        let cases = [
            ("CREATE ROLE app", Subject::CreateRole("app".into())),
            (
                "CREATE ROLE \"Odd \"\"R\"\"\"",
                Subject::CreateRole("Odd \"R\"".into()),
            ),
            (
                "ALTER ROLE app WITH LOGIN PASSWORD 'x'",
                Subject::Role("app".into()),
            ),
            (
                "ALTER ROLE app SET work_mem TO '8MB'",
                Subject::Role("app".into()),
            ),
            ("COMMENT ON ROLE app IS 'x'", Subject::Role("app".into())),
            (
                "GRANT readonly TO app WITH INHERIT TRUE GRANTED BY postgres",
                Subject::Membership("app".into()),
            ),
            (
                "CREATE TABLESPACE fast OWNER postgres LOCATION '/x'",
                Subject::CreateTablespace("fast".into()),
            ),
            ("GRANT SET ON PARAMETER work_mem TO app", Subject::Other),
            ("SET client_encoding = 'UTF8'", Subject::Other),
        ];
        for (stmt, want) in cases {
            assert_eq!(classify(stmt), want, "{stmt}");
        }
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc'"),
            "ALTER ROLE app WITH LOGIN PASSWORD '***'"
        );
    }
}
