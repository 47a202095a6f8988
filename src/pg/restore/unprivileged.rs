//! What an unprivileged restore (verify's throwaway role) needs done first and
//! left out. Done first: the extensions the archive creates, in their schema,
//! created by pgbak itself as the connecting role, since only a superuser may
//! create most of them; read from the archive's own `CREATE EXTENSION`
//! entries, printed by pg_restore without connecting anywhere, and parsed
//! strictly: nothing of the dump's text runs, only two identifiers are taken
//! from it, and only in the exact form pg_dump writes. Left out: the entries
//! only a superuser may create (event triggers, subscriptions), named instead
//! of tried (pg_restore's parallel mode miscounts their failures), and the
//! extensions' comments, which only their owner may set.

use std::io::Write;
use std::process::Stdio;

use anyhow::{Context, Result};

use super::{tools, Input, PgTools};
use crate::error::finding;

/// (extension, schema) for every `CREATE EXTENSION` entry of the archive,
/// from its table of contents `toc` (`pg_restore --list`'s output) and its
/// text. Empty when the archive creates none.
pub async fn extension_schemas(
    tools: &PgTools,
    input: &Input,
    toc: &str,
) -> Result<Vec<(String, String)>> {
    let lines: Vec<&str> = toc
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("EXTENSION"))
        .collect();
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let mut list = tempfile::NamedTempFile::new().context("writing the extensions' TOC list")?;
    writeln!(list, "{}", lines.join("\n")).context("writing the extensions' TOC list")?;
    let mut cmd = crate::children::command(tools.tool("pg_restore"));
    cmd.arg("--file=-")
        .arg("--use-list")
        .arg(list.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    input.attach(&mut cmd)?;
    let out = tools::run(cmd, "pg_restore (the extensions' statements)").await?;
    if !out.success() {
        return Err(finding(
            out.failure("pg_restore (the extensions' statements)")
                .to_string(),
        ));
    }
    Ok(parse_create_extensions(&out.stdout))
}

/// The table of contents `toc` without the entries only a superuser may
/// create (event triggers, subscriptions, and their comments and security
/// labels), and those objects, as `EVENT TRIGGER name`. Pure.
pub fn superuser_only(toc: &str) -> (String, Vec<String>) {
    let mut kept = String::new();
    let mut left_out = Vec::new();
    for line in toc.lines() {
        // `<id>; <catalog> <oid> <desc...> <schema> <tag...> <owner>`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let verdict = match fields.get(3..).unwrap_or_default() {
            ["EVENT", "TRIGGER", _schema, name, ..] => Some(Some(format!("EVENT TRIGGER {name}"))),
            ["SUBSCRIPTION", _schema, name, ..] => Some(Some(format!("SUBSCRIPTION {name}"))),
            // Their comments and labels fail with them: left out, named by the object.
            ["COMMENT" | "SECURITY", .., "EVENT", "TRIGGER", _name, _owner]
            | ["COMMENT" | "SECURITY", .., "SUBSCRIPTION", _name, _owner] => Some(None),
            // An extension's comment: only its owner (the connecting role, which
            // created it, with the comment of its control file) may set it.
            ["COMMENT", _schema, "EXTENSION", _name, ..] => Some(None),
            _ => None,
        };
        match verdict {
            Some(Some(object)) if !left_out.contains(&object) => left_out.push(object),
            Some(_) => {}
            None => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    (kept, left_out)
}

/// Every `CREATE EXTENSION IF NOT EXISTS <name> WITH SCHEMA <schema>;` line,
/// as pg_dump writes it; any other line is ignored. Pure.
pub fn parse_create_extensions(sql: &str) -> Vec<(String, String)> {
    sql.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("CREATE EXTENSION IF NOT EXISTS ")?;
            let (name, rest) = identifier(rest)?;
            let rest = rest.strip_prefix(" WITH SCHEMA ")?;
            let (schema, rest) = identifier(rest)?;
            (rest == ";").then_some((name, schema))
        })
        .collect()
}

/// One SQL identifier at the start of `text` (bare lowercase, or double-quoted
/// with `""` for a quote), and the rest.
fn identifier(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return (!name.is_empty()).then(|| (name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$'))
        .unwrap_or(text.len());
    let name = &text[..end];
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    starts_well.then(|| (name.to_owned(), &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superuser_only_entries_are_left_out_and_named() {
        let toc = ";\n; Archive created at 2026-12-07\n;\n\
                   215; 1259 16390 TABLE public t app\n\
                   3401; 3466 16420 EVENT TRIGGER - ddl_log postgres\n\
                   3402; 0 0 COMMENT - EVENT TRIGGER ddl_log postgres\n\
                   3403; 6100 16430 SUBSCRIPTION - sub1 postgres\n\
                   3404; 0 16390 TABLE DATA public t app\n\
                   3405; 0 0 COMMENT public TABLE t app\n\
                   3406; 0 0 COMMENT - EXTENSION vector \n";
        let (kept, left_out) = superuser_only(toc);
        assert_eq!(
            left_out,
            vec![
                "EVENT TRIGGER ddl_log".to_owned(),
                "SUBSCRIPTION sub1".to_owned()
            ]
        );
        assert_eq!(
            kept,
            ";\n; Archive created at 2026-12-07\n;\n215; 1259 16390 TABLE public t app\n\
             3404; 0 16390 TABLE DATA public t app\n3405; 0 0 COMMENT public TABLE t app\n"
        );
    }

    #[test]
    fn create_extension_lines_are_parsed_strictly() {
        let sql = "--\n-- Name: vector; Type: EXTENSION; Schema: -; Owner: -\n--\n\n\
                   CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n\
                   CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA \"Odd \"\"S\"\"\";\n\
                   CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA ext_1;\n";
        assert_eq!(
            parse_create_extensions(sql),
            vec![
                ("vector".to_owned(), "public".to_owned()),
                ("uuid-ossp".to_owned(), "Odd \"S\"".to_owned()),
                ("pg_trgm".to_owned(), "ext_1".to_owned()),
            ]
        );
        for bad in [
            "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public; DROP ROLE x;",
            "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public",
            "CREATE EXTENSION vector WITH SCHEMA public;",
            "CREATE EXTENSION IF NOT EXISTS Vector WITH SCHEMA public;",
            "CREATE EXTENSION IF NOT EXISTS \"unterminated WITH SCHEMA public;",
            "CREATE EXTENSION IF NOT EXISTS \"\" WITH SCHEMA public;",
            "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public CASCADE;",
            "  CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;",
        ] {
            assert_eq!(parse_create_extensions(bad), vec![], "{bad}");
        }
    }
}
