//! What a globals file may hold, read strictly before anything of it runs.
//!
//! A globals backup is SQL text from the bucket, replayed as a superuser: a
//! bucket writer who could slip one `COPY ... TO PROGRAM` or `DO` into it would
//! run code on the target. So every statement must be one of the kinds
//! `pg_dumpall --globals-only` writes (its `SET` lines, roles, role settings,
//! memberships, tablespaces, parameter privileges), in the form it writes
//! them, tokenised without escape strings, dollar quoting or comments;
//! anything else is refused by name and nothing of the file is executed.
//! The statements read also give the roles as the backup has them
//! ([`RoleSpec`]), which the replay checks the server against afterwards.

use std::collections::BTreeMap;

use super::tokens::{tokenize, Cursor, Tok};

/// A role attribute pg_dumpall writes in `ALTER ROLE r WITH ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOption {
    /// `SUPERUSER`/`NOSUPERUSER` and the like: the pg_authid column and its value.
    Flag(&'static str, bool),
    ConnectionLimit(i32),
    /// `PASSWORD 'hash'`, or `PASSWORD NULL` (None).
    Password(Option<String>),
    ValidUntil(String),
}

/// The flags of `ALTER ROLE ... WITH`, by keyword, with their pg_authid column.
const FLAGS: [(&str, &str); 7] = [
    ("SUPERUSER", "rolsuper"),
    ("INHERIT", "rolinherit"),
    ("CREATEROLE", "rolcreaterole"),
    ("CREATEDB", "rolcreatedb"),
    ("LOGIN", "rolcanlogin"),
    ("REPLICATION", "rolreplication"),
    ("BYPASSRLS", "rolbypassrls"),
];

/// The keyword of a flag column, for messages (`rolcanlogin`, false -> `NOLOGIN`).
pub fn flag_keyword(column: &str, on: bool) -> String {
    let word = FLAGS
        .iter()
        .find(|(_, c)| *c == column)
        .map_or(column, |(w, _)| w);
    if on {
        (*word).to_owned()
    } else {
        format!("NO{word}")
    }
}

/// The only session settings a globals file may change, with the one value it may set.
const SETS: [(&str, &str); 3] = [
    ("default_transaction_read_only", "off"),
    ("client_encoding", "utf8"),
    ("standard_conforming_strings", "on"),
];

/// A statement of a globals file, as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// One of the `SET` lines at the top (checked; pgbak sets its own session).
    Set {
        name: String,
    },
    CreateRole(String),
    AlterRole {
        role: String,
        options: Vec<RoleOption>,
    },
    /// `ALTER ROLE r [IN DATABASE d] SET name TO values`.
    RoleSetting {
        role: String,
        database: Option<String>,
        name: String,
        value: String,
    },
    /// `COMMENT ON ROLE`, `SECURITY LABEL ... ON ROLE`.
    RoleNote(String),
    /// `GRANT role TO member [WITH ...] [GRANTED BY g]`.
    Membership {
        roles: Vec<String>,
        members: Vec<String>,
        admin: bool,
        inherit: Option<bool>,
        set: Option<bool>,
    },
    CreateTablespace(String),
    /// `ALTER`/`COMMENT ON`/`SECURITY LABEL ON`/`GRANT`/`REVOKE ... ON TABLESPACE`.
    Tablespace(String),
    /// `GRANT`/`REVOKE ... ON PARAMETER`.
    ParameterPrivilege,
}

impl Statement {
    /// The role the statement is about (the member, for a membership).
    pub fn roles(&self) -> Vec<&str> {
        match self {
            Statement::CreateRole(r)
            | Statement::AlterRole { role: r, .. }
            | Statement::RoleSetting { role: r, .. }
            | Statement::RoleNote(r) => vec![r.as_str()],
            Statement::Membership { members, .. } => members.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Why a statement is refused: its kind by name (`COPY`, `CREATE FUNCTION`)
/// and, for a known kind in a form pg_dumpall never writes, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: String,
    pub why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.kind, self.why)
    }
}

/// The statement's kind as named in a refusal: its first words.
fn kind_of(stmt: &str) -> String {
    let words: Vec<String> = stmt
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    let two = matches!(
        words.first().map(String::as_str),
        Some("CREATE" | "ALTER" | "DROP" | "COMMENT" | "SECURITY" | "REVOKE" | "GRANT")
    );
    let n = if two { 2 } else { 1 };
    let kind = words.into_iter().take(n).collect::<Vec<_>>().join(" ");
    if kind.is_empty() {
        "an unnamed statement".into()
    } else {
        kind
    }
}

/// Reads one statement; a kind pg_dumpall never writes is refused by name.
pub fn parse_statement(stmt: &str) -> Result<Statement, Refused> {
    let refuse = |why: String| Refused {
        kind: kind_of(stmt),
        why,
    };
    let toks = tokenize(stmt).map_err(|what| refuse(format!("holds {what}")))?;
    let mut c = Cursor { toks, at: 0 };
    let parsed = if c.kw("SET") {
        set(&mut c)
    } else if c.kw("CREATE") {
        if c.kw("ROLE") {
            c.ident()
                .and_then(|r| c.end().map(|()| Statement::CreateRole(r)))
        } else if c.kw("TABLESPACE") {
            create_tablespace(&mut c)
        } else {
            return Err(refuse("not written by pg_dumpall --globals-only".into()));
        }
    } else if c.kw("ALTER") {
        if c.kw("ROLE") {
            alter_role(&mut c)
        } else if c.kw("TABLESPACE") {
            alter_tablespace(&mut c)
        } else {
            return Err(refuse("not written by pg_dumpall --globals-only".into()));
        }
    } else if c.kw("COMMENT") {
        c.expect("ON").and_then(|()| note(&mut c))
    } else if c.kw("SECURITY") {
        security_label(&mut c)
    } else if c.kw("GRANT") {
        grant(&mut c)
    } else if c.kw("REVOKE") {
        revoke(&mut c)
    } else {
        return Err(refuse("not written by pg_dumpall --globals-only".into()));
    };
    parsed.map_err(|why| refuse(format!("not as pg_dumpall writes it: {why}")))
}

fn set(c: &mut Cursor) -> Result<Statement, String> {
    let name = c.ident()?;
    if !(c.punct('=') || c.kw("TO")) {
        return Err(format!("expected = {}", c.here()));
    }
    let value = match c.peek() {
        Some(Tok::Str(s) | Tok::Word(s)) => s.to_ascii_lowercase().replace('-', ""),
        _ => return Err(format!("expected a value {}", c.here())),
    };
    c.at += 1;
    c.end()?;
    match SETS.iter().find(|(n, _)| *n == name) {
        Some((_, allowed)) if *allowed == value => Ok(Statement::Set { name }),
        Some((_, allowed)) => Err(format!("{name} may only be set to {allowed}")),
        None => Err(format!("the setting {name}")),
    }
}

fn create_tablespace(c: &mut Cursor) -> Result<Statement, String> {
    let name = c.ident()?;
    if c.kw("OWNER") {
        c.ident()?;
    }
    c.expect("LOCATION")?;
    c.string()?;
    c.end()?;
    Ok(Statement::CreateTablespace(name))
}

fn alter_tablespace(c: &mut Cursor) -> Result<Statement, String> {
    let name = c.ident()?;
    if c.kw("OWNER") {
        c.expect("TO")?;
        c.ident()?;
    } else {
        c.expect("SET")?;
        if !c.punct('(') {
            return Err(format!("expected ( {}", c.here()));
        }
        loop {
            c.ident()?;
            if !c.punct('=') {
                return Err(format!("expected = {}", c.here()));
            }
            match c.peek() {
                Some(Tok::Str(_) | Tok::Num(_) | Tok::Word(_)) => c.at += 1,
                _ => return Err(format!("expected a value {}", c.here())),
            }
            if !c.punct(',') {
                break;
            }
        }
        if !c.punct(')') {
            return Err(format!("expected ) {}", c.here()));
        }
    }
    c.end()?;
    Ok(Statement::Tablespace(name))
}

fn alter_role(c: &mut Cursor) -> Result<Statement, String> {
    let role = c.ident()?;
    let database = if c.kw("IN") {
        c.expect("DATABASE")?;
        Some(c.ident()?)
    } else {
        None
    };
    if c.kw("SET") {
        let name = c.dotted()?.to_ascii_lowercase();
        if !(c.kw("TO") || c.punct('=')) {
            return Err(format!("expected TO {}", c.here()));
        }
        let mut values = Vec::new();
        loop {
            match c.peek() {
                Some(Tok::Str(s) | Tok::Num(s)) => values.push(s.clone()),
                _ => return Err(format!("expected a value {}", c.here())),
            }
            c.at += 1;
            if !c.punct(',') {
                break;
            }
        }
        c.end()?;
        return Ok(Statement::RoleSetting {
            role,
            database,
            name,
            value: values.join(", "),
        });
    }
    if database.is_some() {
        return Err(format!("expected SET {}", c.here()));
    }
    c.kw("WITH");
    let mut options = Vec::new();
    while !c.done() {
        options.push(role_option(c)?);
    }
    if options.is_empty() {
        return Err("no attributes".into());
    }
    Ok(Statement::AlterRole { role, options })
}

fn role_option(c: &mut Cursor) -> Result<RoleOption, String> {
    for (word, column) in FLAGS {
        if c.kw(word) {
            return Ok(RoleOption::Flag(column, true));
        }
        if c.kw(&format!("NO{word}")) {
            return Ok(RoleOption::Flag(column, false));
        }
    }
    if c.kw("CONNECTION") {
        c.expect("LIMIT")?;
        return c.number().map(RoleOption::ConnectionLimit);
    }
    c.kw("ENCRYPTED");
    if c.kw("PASSWORD") {
        if c.kw("NULL") {
            return Ok(RoleOption::Password(None));
        }
        return c.string().map(|p| RoleOption::Password(Some(p)));
    }
    if c.kw("VALID") {
        c.expect("UNTIL")?;
        return c.string().map(RoleOption::ValidUntil);
    }
    Err(format!("the role attribute {}", c.here()))
}

/// `COMMENT ON ROLE|TABLESPACE x IS '...'` (after COMMENT ON).
fn note(c: &mut Cursor) -> Result<Statement, String> {
    let on_role = c.kw("ROLE");
    if !on_role {
        c.expect("TABLESPACE")?;
    }
    let name = c.ident()?;
    c.expect("IS")?;
    if !c.kw("NULL") {
        c.string()?;
    }
    c.end()?;
    Ok(if on_role {
        Statement::RoleNote(name)
    } else {
        Statement::Tablespace(name)
    })
}

/// `SECURITY LABEL [FOR provider] ON ROLE|TABLESPACE x IS '...'`.
fn security_label(c: &mut Cursor) -> Result<Statement, String> {
    c.expect("LABEL")?;
    if c.kw("FOR") {
        c.ident()?;
    }
    c.expect("ON")?;
    note(c)
}

/// The privileges of a GRANT/REVOKE on a tablespace or parameter, up to ON.
fn privileges(c: &mut Cursor) -> Result<(), String> {
    const WORDS: [&str; 6] = ["ALL", "PRIVILEGES", "CREATE", "SET", "ALTER", "SYSTEM"];
    loop {
        if c.is_kw("ON") {
            return Ok(());
        }
        if !(WORDS.iter().any(|w| c.kw(w)) || c.punct(',')) {
            return Err(format!("the privilege {}", c.here()));
        }
    }
}

/// What follows `ON` in a GRANT/REVOKE of privileges.
fn privilege_object(c: &mut Cursor) -> Result<Statement, String> {
    c.expect("ON")?;
    if c.kw("TABLESPACE") {
        Ok(Statement::Tablespace(c.ident()?))
    } else if c.kw("PARAMETER") {
        c.dotted()?;
        while c.punct(',') {
            c.dotted()?;
        }
        Ok(Statement::ParameterPrivilege)
    } else {
        Err(format!("privileges on {}", c.here()))
    }
}

fn grant(c: &mut Cursor) -> Result<Statement, String> {
    // A privilege grant names ON before TO; a membership never does.
    let is_privilege = c
        .toks
        .iter()
        .any(|t| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("ON")));
    if is_privilege {
        privileges(c)?;
        let stmt = privilege_object(c)?;
        c.expect("TO")?;
        c.idents()?;
        if c.kw("WITH") {
            c.expect("GRANT")?;
            c.expect("OPTION")?;
        }
        granted_by(c)?;
        c.end()?;
        return Ok(stmt);
    }
    let roles = c.idents()?;
    c.expect("TO")?;
    let members = c.idents()?;
    let (mut admin, mut inherit, mut set) = (false, None, None);
    if c.kw("WITH") {
        loop {
            if c.kw("ADMIN") {
                admin = c.kw("OPTION") || truth(c)?;
            } else if c.kw("INHERIT") {
                inherit = Some(truth(c)?);
            } else if c.kw("SET") {
                set = Some(truth(c)?);
            } else {
                return Err(format!("the membership option {}", c.here()));
            }
            if !c.punct(',') {
                break;
            }
        }
    }
    granted_by(c)?;
    c.end()?;
    Ok(Statement::Membership {
        roles,
        members,
        admin,
        inherit,
        set,
    })
}

fn truth(c: &mut Cursor) -> Result<bool, String> {
    if c.kw("TRUE") {
        Ok(true)
    } else if c.kw("FALSE") {
        Ok(false)
    } else {
        Err(format!("expected TRUE or FALSE {}", c.here()))
    }
}

fn granted_by(c: &mut Cursor) -> Result<(), String> {
    if c.kw("GRANTED") {
        c.expect("BY")?;
        c.ident()?;
    }
    Ok(())
}

fn revoke(c: &mut Cursor) -> Result<Statement, String> {
    if c.kw("GRANT") {
        c.expect("OPTION")?;
        c.expect("FOR")?;
    }
    privileges(c)?;
    let stmt = privilege_object(c)?;
    c.expect("FROM")?;
    c.idents()?;
    granted_by(c)?;
    if !c.kw("CASCADE") {
        c.kw("RESTRICT");
    }
    c.end()?;
    Ok(stmt)
}

/// A role as the globals backup has it: what the statements about it set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSpec {
    /// pg_authid column -> value, for every flag the backup states.
    pub flags: BTreeMap<&'static str, bool>,
    pub connection_limit: Option<i32>,
    /// The stored password (a SCRAM or md5 hash); Some(None) for `PASSWORD NULL`.
    pub password: Option<Option<String>>,
    pub valid_until: Option<String>,
    /// (database, setting name) -> value as pg_db_role_setting keeps it.
    pub settings: BTreeMap<(Option<String>, String), String>,
    /// The roles it is a member of, with (admin, inherit, set) as granted.
    pub member_of: BTreeMap<String, (bool, Option<bool>, Option<bool>)>,
}

/// A globals file read and checked: its statements in order and its roles.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// (the text as written, what it is).
    pub statements: Vec<(String, Statement)>,
    pub roles: BTreeMap<String, RoleSpec>,
}

impl Globals {
    /// Reads a whole globals file; every statement pg_dumpall would not write
    /// is named in the error (with its number), and none is executed.
    pub fn parse(sql: &str) -> Result<Globals, Vec<(usize, Refused)>> {
        let mut globals = Globals::default();
        let mut refused = Vec::new();
        for (i, text) in super::split_statements(sql).into_iter().enumerate() {
            match parse_statement(&text) {
                Ok(stmt) => {
                    globals.add_to_roles(&stmt);
                    globals.statements.push((text, stmt));
                }
                Err(why) => refused.push((i + 1, why)),
            }
        }
        if refused.is_empty() {
            Ok(globals)
        } else {
            Err(refused)
        }
    }

    fn add_to_roles(&mut self, stmt: &Statement) {
        match stmt {
            Statement::CreateRole(role) => {
                self.roles.entry(role.clone()).or_default();
            }
            Statement::AlterRole { role, options } => {
                let spec = self.roles.entry(role.clone()).or_default();
                for option in options {
                    match option {
                        RoleOption::Flag(column, on) => {
                            spec.flags.insert(column, *on);
                        }
                        RoleOption::ConnectionLimit(n) => spec.connection_limit = Some(*n),
                        RoleOption::Password(p) => spec.password = Some(p.clone()),
                        RoleOption::ValidUntil(v) => spec.valid_until = Some(v.clone()),
                    }
                }
            }
            Statement::RoleSetting {
                role,
                database,
                name,
                value,
            } => {
                self.roles
                    .entry(role.clone())
                    .or_default()
                    .settings
                    .insert((database.clone(), name.clone()), value.clone());
            }
            Statement::Membership {
                roles,
                members,
                admin,
                inherit,
                set,
            } => {
                for member in members {
                    let spec = self.roles.entry(member.clone()).or_default();
                    for role in roles {
                        spec.member_of
                            .insert(role.clone(), (*admin, *inherit, *set));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
