//! `restore --table/--schema`, made exact. pg_restore's own `-t` takes no
//! schema, matches a name in every schema, and restores nothing (exit 0) when
//! nothing matches; so pgbak resolves the selection against the archive's table
//! of contents first, refuses one that matches nothing (exit 2, before the
//! target is touched); the entries a table takes with it are chosen in
//! [`super::table_toc`] and handed to pg_restore as a list (`-L`).

use std::collections::BTreeSet;

/// TOC entry kinds pg_restore's `-t` selects by name (its `_tocEntryRequired`).
const TABLE_LIKE: &[&str] = &[
    "MATERIALIZED VIEW DATA",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
    "SEQUENCE SET",
    "TABLE DATA",
    "SEQUENCE",
    "TABLE",
    "VIEW",
];

/// One line of `pg_restore --list` that names a table-like object or a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    /// The line as pg_restore printed it (what `-L` reads back).
    pub line: String,
    pub desc: &'static str,
    /// The schema; for a `SCHEMA` entry, the schema it creates.
    pub schema: String,
    pub name: String,
}

/// Parses the table-like and `SCHEMA` entries of a `pg_restore --list` output:
/// `3460; 1259 16400 TABLE public users postgres` (dump id; catalog oid, oid,
/// kind, schema, name, owner). A name with spaces keeps them.
pub fn parse_toc(listing: &str) -> Vec<TocEntry> {
    let mut entries = Vec::new();
    for line in listing.lines() {
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        // Skip the catalog oid and the oid.
        let mut rest = rest.trim_start();
        for _ in 0..2 {
            rest = rest
                .split_once(' ')
                .map_or("", |(_, tail)| tail)
                .trim_start();
        }
        let kinds = TABLE_LIKE.iter().chain(std::iter::once(&"SCHEMA"));
        let Some(desc) = kinds
            .copied()
            .find(|kind| rest.strip_prefix(kind).is_some_and(|t| t.starts_with(' ')))
        else {
            continue;
        };
        let words: Vec<&str> = rest[desc.len()..].split_whitespace().collect();
        // schema, name (maybe several words), owner.
        if words.len() < 3 {
            continue;
        }
        let (schema, name) = if desc == "SCHEMA" {
            (words[1..words.len() - 1].join(" "), String::new())
        } else {
            (words[0].to_owned(), words[1..words.len() - 1].join(" "))
        };
        entries.push(TocEntry {
            line: line.to_owned(),
            desc,
            schema,
            name,
        });
    }
    entries
}

/// The selection, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// (schema, table) chosen by `--table`; empty for a `--schema`-only selection.
    pub tables: BTreeSet<(String, String)>,
    pub schemas: BTreeSet<String>,
}

impl Resolved {
    /// Is `schema.name` part of the selection (for the row-count comparison)?
    pub fn contains(&self, schema: &str, name: &str) -> bool {
        if self.tables.is_empty() {
            self.schemas.contains(schema)
        } else {
            self.tables.contains(&(schema.to_owned(), name.to_owned()))
        }
    }
}

/// Resolves `--table` (`schema.table`, or a bare `table` found in exactly one
/// schema, within `--schema` when given) and `--schema` against the TOC.
/// Err is the one-line usage error naming what matched nothing.
pub fn resolve(
    toc: &[TocEntry],
    tables: &[String],
    schemas: &[String],
) -> Result<Resolved, String> {
    let known_schemas: BTreeSet<&str> = toc.iter().map(|e| e.schema.as_str()).collect();
    let unknown: Vec<&str> = schemas
        .iter()
        .map(String::as_str)
        .filter(|s| !known_schemas.contains(s))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "--schema {} matches nothing in the archive (its schemas: {}); nothing was restored",
            unknown.join(", "),
            known_schemas.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    let schemas: BTreeSet<String> = schemas.iter().cloned().collect();
    let in_scope = |schema: &str| schemas.is_empty() || schemas.contains(schema);
    let archive_tables: BTreeSet<(&str, &str)> = toc
        .iter()
        .filter(|e| e.desc != "SCHEMA" && in_scope(&e.schema))
        .map(|e| (e.schema.as_str(), e.name.as_str()))
        .collect();
    let mut chosen = BTreeSet::new();
    for wanted in tables {
        let matches: Vec<(&str, &str)> = match wanted.split_once('.') {
            Some((schema, name)) => archive_tables
                .iter()
                .copied()
                .filter(|(s, n)| *s == schema && *n == name)
                .collect(),
            None => archive_tables
                .iter()
                .copied()
                .filter(|(_, n)| *n == wanted)
                .collect(),
        };
        match matches.as_slice() {
            [] => {
                return Err(format!(
                    "--table {wanted} matches no table in the archive{}; use schema.table as \
                     `pg_restore --list` shows it; nothing was restored",
                    if schemas.is_empty() {
                        String::new()
                    } else {
                        format!(" within --schema {}", join(&schemas))
                    }
                ))
            }
            [(schema, name)] => {
                chosen.insert(((*schema).to_owned(), (*name).to_owned()));
            }
            several => {
                let named: Vec<String> = several.iter().map(|(s, n)| format!("{s}.{n}")).collect();
                return Err(format!(
                    "--table {wanted} is ambiguous: the archive has {}; name one as schema.table",
                    named.join(", ")
                ));
            }
        }
    }
    Ok(Resolved {
        tables: chosen,
        schemas,
    })
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOC: &str = "\
;
; Archive created at 2026-11-25 02:00:00 UTC
;     dbname: enterprise_agents
;
5; 2615 16390 SCHEMA - audit postgres
2; 3079 16385 EXTENSION - vector
220; 1259 16400 TABLE public users postgres
221; 1259 16410 TABLE audit users postgres
222; 1259 16420 TABLE public messages postgres
223; 1259 16425 SEQUENCE public messages_id_seq postgres
224; 1259 16430 TABLE public odd name postgres
3460; 0 16400 TABLE DATA public users postgres
3461; 0 16410 TABLE DATA audit users postgres
3462; 0 16420 TABLE DATA public messages postgres
3470; 0 0 SEQUENCE SET public messages_id_seq postgres
3300; 2606 16500 CONSTRAINT public users users_pkey postgres
";

    #[test]
    fn parses_tables_schemas_and_names_with_spaces() {
        let toc = parse_toc(TOC);
        assert_eq!(toc.len(), 10, "{toc:#?}");
        assert_eq!((toc[0].desc, toc[0].schema.as_str()), ("SCHEMA", "audit"));
        assert!(toc
            .iter()
            .any(|e| e.desc == "TABLE DATA" && e.schema == "audit" && e.name == "users"));
        assert!(toc.iter().any(|e| e.name == "odd name"));
    }

    #[test]
    fn a_qualified_table_selects_only_its_schema() {
        let toc = parse_toc(TOC);
        let pair = |s: &str, t: &str| (s.to_owned(), t.to_owned());
        let one = resolve(&toc, &["public.users".into()], &[]).unwrap();
        assert_eq!(one.tables, BTreeSet::from([pair("public", "users")]));
        assert!(one.contains("public", "users") && !one.contains("audit", "users"));
        let other = resolve(&toc, &["audit.users".into()], &[]).unwrap();
        assert_eq!(other.tables, BTreeSet::from([pair("audit", "users")]));
        let scoped = resolve(&toc, &["users".into()], &["audit".into()]).unwrap();
        assert_eq!(scoped.tables, other.tables);
        let bare = resolve(&toc, &["messages".into(), "odd name".into()], &[]).unwrap();
        assert_eq!(
            bare.tables,
            BTreeSet::from([pair("public", "messages"), pair("public", "odd name")])
        );
    }

    #[test]
    fn selections_matching_nothing_or_several_are_refused() {
        let toc = parse_toc(TOC);
        for (tables, schemas, says) in [
            (vec!["public.nope"], vec![], "matches no table"),
            (vec!["nope.users"], vec![], "matches no table"),
            (vec!["users"], vec![], "ambiguous"),
            (vec!["messages"], vec!["audit"], "within --schema audit"),
            (vec![], vec!["nope"], "--schema nope matches nothing"),
        ] {
            let tables: Vec<String> = tables.into_iter().map(str::to_owned).collect();
            let schemas: Vec<String> = schemas.into_iter().map(str::to_owned).collect();
            let err = resolve(&toc, &tables, &schemas).unwrap_err();
            assert!(err.contains(says), "{tables:?} {schemas:?}: {err}");
        }
        let schema_only = resolve(&toc, &[], &["audit".into()]).unwrap();
        assert!(
            schema_only.tables.is_empty(),
            "pg_restore -n does a schema exactly"
        );
        assert!(schema_only.contains("audit", "users") && !schema_only.contains("public", "users"));
    }
}
