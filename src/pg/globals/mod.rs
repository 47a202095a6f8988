//! Restoring a globals backup (`pg_dumpall --globals-only` output) onto a
//! server. The file is read whole first ([`parse`]): a statement of a kind
//! pg_dumpall never writes refuses the file, and nothing of it runs. Then
//! statement by statement over pgbak's own connection, each on its own
//! (the extended protocol runs exactly one), racing the stop signals (a
//! statement waiting on a lock is cancelled on the server): roles that
//! existed before pgbak first touched the server are left as they are unless
//! the operator asks for them to be reset, every other role of the backup
//! gets every statement about it again (so a re-run repairs a role a killed
//! run half-created), and a statement the server refuses is named instead of
//! stopping the rest. [`roles`] then says which role is not as in the backup.

pub mod parse;
pub mod roles;
mod tokens;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::url::ConnSettings;
use crate::signals::Signals;

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

/// What to replay and how.
pub struct Replay<'a> {
    pub globals: &'a parse::Globals,
    /// Roles that existed before pgbak first touched the server: left as
    /// they are unless `reset`.
    pub pre_existing: &'a BTreeSet<String>,
    /// `--reset-roles`: make the pre-existing roles as in the backup too.
    pub reset: bool,
    /// The longest a statement waits for a lock (`--lock-wait-timeout`).
    pub lock_wait_timeout: Duration,
}

/// What applying the globals did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Applied {
    /// Roles whose CREATE ROLE succeeded.
    pub created_roles: Vec<String>,
    /// Roles of the backup that existed before pgbak touched the server.
    pub existing_roles: Vec<String>,
    /// Statements the server refused, with its message.
    pub failed: Vec<String>,
    /// The role pgbak is connected as, when `--reset-roles` would have
    /// changed its password: left as it is, or the rest of the rebuild could
    /// no longer connect.
    pub own_password_kept: Option<String>,
}

/// Whether `stmt` runs: not for a role that existed before pgbak touched the
/// server (unless `reset`), not a CREATE of what exists; the `SET` lines
/// only where they matter to this session (the encoding is pgbak's own).
fn runs(
    stmt: &parse::Statement,
    pre_existing: &BTreeSet<String>,
    reset: bool,
    existing_roles: &BTreeSet<String>,
    existing_spaces: &BTreeSet<String>,
) -> bool {
    use parse::Statement;
    let untouchable = |role: &str| !reset && pre_existing.contains(role);
    match stmt {
        Statement::Set { name } => name != "client_encoding",
        Statement::CreateRole(role) => !existing_roles.contains(role),
        Statement::CreateTablespace(space) => !existing_spaces.contains(space),
        other => !other.roles().into_iter().any(untouchable),
    }
}

/// Applies the globals: every statement [`runs`] allows, one at a time,
/// each racing the stop signals (and cancelled on the server when one
/// arrives). Failures are collected, not fatal.
pub async fn apply(
    client: &Client,
    conn: &ConnSettings,
    replay: &Replay<'_>,
    signals: &mut Signals,
) -> Result<Applied> {
    let mut existing = super::client::role_names(client).await?;
    let rows = client
        .query("SELECT spcname::text FROM pg_catalog.pg_tablespace", &[])
        .await
        .context("listing the server's tablespaces")?;
    let tablespaces: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    super::client::set_lock_timeout(client, replay.lock_wait_timeout).await?;
    let connected_as: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .context("reading pgbak's session")?
        .get(0);
    let mut applied = Applied {
        existing_roles: replay
            .globals
            .roles
            .keys()
            .filter(|r| replay.pre_existing.contains(*r))
            .cloned()
            .collect(),
        ..Applied::default()
    };
    for (text, stmt) in &replay.globals.statements {
        if !runs(
            stmt,
            replay.pre_existing,
            replay.reset,
            &existing,
            &tablespaces,
        ) {
            continue;
        }
        let text = match own_password_left(stmt, &connected_as) {
            Some(without) => {
                applied.own_password_kept = Some(connected_as.clone());
                without
            }
            None => text.clone(),
        };
        let outcome = tokio::select! {
            outcome = client.execute(text.as_str(), &[]) => outcome,
            sig = signals.recv() => {
                // Dropping the request leaves the statement running on the server.
                super::cancel::cancel(client, conn).await;
                return Err(crate::error::interrupted(sig));
            }
        };
        match outcome {
            Ok(_) => {
                if let parse::Statement::CreateRole(role) = stmt {
                    existing.insert(role.clone());
                    applied.created_roles.push(role.clone());
                }
            }
            Err(err) => {
                let message = err
                    .as_db_error()
                    .map_or_else(|| err.to_string(), |d| d.message().to_owned());
                applied.failed.push(format!("{}: {message}", redact(&text)));
            }
        }
    }
    Ok(applied)
}

/// `ALTER ROLE <connected_as> WITH … PASSWORD …` without its password,
/// written from what was read (names and literals quoted by pgbak); None
/// for every other statement.
fn own_password_left(stmt: &parse::Statement, connected_as: &str) -> Option<String> {
    use parse::{RoleOption, Statement};
    let Statement::AlterRole { role, options } = stmt else {
        return None;
    };
    if role != connected_as || !options.iter().any(|o| matches!(o, RoleOption::Password(_))) {
        return None;
    }
    let mut sql = format!("ALTER ROLE {} WITH", super::client::quote_ident(role));
    for option in options {
        match option {
            RoleOption::Flag(column, on) => {
                sql.push(' ');
                sql.push_str(&parse::flag_keyword(column, *on));
            }
            RoleOption::ConnectionLimit(n) => sql.push_str(&format!(" CONNECTION LIMIT {n}")),
            RoleOption::ValidUntil(v) => {
                sql.push_str(&format!(" VALID UNTIL {}", super::client::quote_literal(v)))
            }
            RoleOption::Password(_) => {}
        }
    }
    Some(sql)
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
    fn only_the_roles_pgbak_may_change_get_their_statements() {
        let pre: BTreeSet<String> = ["postgres".to_owned(), "dba".to_owned()].into();
        let exists: BTreeSet<String> =
            ["postgres".to_owned(), "dba".to_owned(), "half".to_owned()].into();
        let cases = [
            ("CREATE ROLE app", false, true),
            ("CREATE ROLE half", false, false),
            ("ALTER ROLE half WITH LOGIN PASSWORD 'x'", false, true),
            ("CREATE ROLE dba", false, false),
            ("ALTER ROLE dba WITH LOGIN", false, false),
            ("ALTER ROLE dba WITH LOGIN", true, true),
            ("ALTER ROLE dba SET work_mem TO '1MB'", false, false),
            ("GRANT readonly TO dba GRANTED BY postgres", false, false),
            ("GRANT readonly TO dba GRANTED BY postgres", true, true),
            ("GRANT dba TO app GRANTED BY postgres", false, true),
            ("SET client_encoding = 'UTF8'", false, false),
            ("SET standard_conforming_strings = on", false, true),
            ("GRANT SET ON PARAMETER work_mem TO app", false, true),
        ];
        for (stmt, reset, want) in cases {
            let parsed = parse::parse_statement(stmt).unwrap();
            assert_eq!(
                runs(&parsed, &pre, reset, &exists, &BTreeSet::new()),
                want,
                "{stmt} reset {reset}"
            );
        }
    }

    #[test]
    fn the_connected_roles_password_is_left_out() {
        let stmt = parse::parse_statement(
            "ALTER ROLE \"Post gres\" WITH SUPERUSER LOGIN CONNECTION LIMIT 3 PASSWORD 'SCRAM-x' VALID UNTIL 'infinity'",
        )
        .unwrap();
        assert_eq!(
            own_password_left(&stmt, "Post gres").as_deref(),
            Some("ALTER ROLE \"Post gres\" WITH SUPERUSER LOGIN CONNECTION LIMIT 3 VALID UNTIL 'infinity'")
        );
        assert_eq!(own_password_left(&stmt, "app"), None);
        let no_password = parse::parse_statement("ALTER ROLE app WITH LOGIN").unwrap();
        assert_eq!(own_password_left(&no_password, "app"), None);
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc'"),
            "ALTER ROLE app WITH LOGIN PASSWORD '***'"
        );
    }
}
