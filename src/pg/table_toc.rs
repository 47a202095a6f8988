//! What belongs to a table in an archive's table of contents, for `restore
//! --table`: its definition and data, and everything that goes with it
//! (indexes, constraints, triggers, policies, the row-level security switch,
//! owned sequences with their values, column defaults, comments, grants,
//! security labels, rules, extended statistics), found by following the
//! dependencies `pg_restore --list --verbose` prints (`;\tdepends on: 216`).
//! Objects outside the table that depend on it (another table's foreign
//! key, a view) are not restored with it; they are named.
//!
//! Pure: parsing and the closure have table tests.

use std::collections::{BTreeMap, BTreeSet};

/// Every entry kind pg_dump writes, longest first so that `TABLE DATA` is
/// not read as `TABLE` (pg_dump's `te->desc` strings).
const KINDS: &[&str] = &[
    "PUBLICATION TABLES IN SCHEMA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "MATERIALIZED VIEW DATA",
    "TEXT SEARCH TEMPLATE",
    "FOREIGN DATA WRAPPER",
    "PROCEDURAL LANGUAGE",
    "DATABASE PROPERTIES",
    "TEXT SEARCH PARSER",
    "PUBLICATION TABLE",
    "SEQUENCE OWNED BY",
    "MATERIALIZED VIEW",
    "CHECK CONSTRAINT",
    "OPERATOR FAMILY",
    "STATISTICS DATA",
    "OPERATOR CLASS",
    "FOREIGN SERVER",
    "SECURITY LABEL",
    "BLOB METADATA",
    "FOREIGN TABLE",
    "EVENT TRIGGER",
    "FK CONSTRAINT",
    "ACCESS METHOD",
    "INDEX ATTACH",
    "LARGE OBJECTS",
    "LARGE OBJECT",
    "ROW SECURITY",
    "SEQUENCE SET",
    "TABLE ATTACH",
    "USER MAPPING",
    "SUBSCRIPTION",
    "DEFAULT ACL",
    "PUBLICATION",
    "SHELL TYPE",
    "STATISTICS",
    "CONVERSION",
    "CONSTRAINT",
    "STDSTRINGS",
    "SEARCHPATH",
    "TABLE DATA",
    "COLLATION",
    "EXTENSION",
    "AGGREGATE",
    "PROCEDURE",
    "TRANSFORM",
    "OPERATOR",
    "SEQUENCE",
    "ENCODING",
    "FUNCTION",
    "DATABASE",
    "TRIGGER",
    "COMMENT",
    "DEFAULT",
    "DOMAIN",
    "SCHEMA",
    "SERVER",
    "POLICY",
    "INDEX",
    "TABLE",
    "BLOBS",
    "BLOB",
    "CAST",
    "RULE",
    "TYPE",
    "VIEW",
    "ACL",
];

/// The kinds that belong to the table they depend on: restored with it.
const BELONGS: &[&str] = &[
    "TABLE DATA",
    "INDEX",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "ROW SECURITY",
    "DEFAULT",
    "COMMENT",
    "SECURITY LABEL",
    "ACL",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "RULE",
    "STATISTICS",
    "STATISTICS DATA",
];

/// One entry of `pg_restore --list --verbose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    /// The line as printed (what `-L` reads back).
    pub line: String,
    pub kind: &'static str,
    /// The namespace (`-` for none).
    pub schema: String,
    /// The tag without the owner: `users` for a table, `users users_pkey`
    /// for a constraint (table, name), `TABLE users` for an ACL.
    pub tag: String,
    /// The entries it depends on (dump ids).
    pub deps: Vec<u32>,
}

impl Entry {
    /// `FK CONSTRAINT public messages fk` as a reader says it.
    pub fn describe(&self) -> String {
        format!("{} {}.{}", self.kind.to_lowercase(), self.schema, self.tag)
    }
}

/// Parses the entries of a `pg_restore --list --verbose` output, each with
/// the dependencies printed on the line after it. Lines it cannot read
/// (another kind of comment, a kind it does not know) are skipped.
pub fn parse(listing: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in listing.lines() {
        if let Some(deps) = line
            .trim_start_matches(';')
            .trim()
            .strip_prefix("depends on:")
        {
            if let Some(last) = entries.last_mut() {
                last.deps = deps
                    .split_whitespace()
                    .filter_map(|d| d.parse().ok())
                    .collect();
            }
            continue;
        }
        if line.starts_with(';') {
            continue;
        }
        if let Some(entry) = parse_line(line) {
            entries.push(entry);
        }
    }
    entries
}

/// `217; 1259 16714 TABLE public users postgres`: id; catalog oid, oid, kind,
/// namespace, tag (words), owner (the last word, absent for some kinds).
fn parse_line(line: &str) -> Option<Entry> {
    let (id, rest) = line.split_once("; ")?;
    let id = id.trim().parse().ok()?;
    let mut rest = rest.trim_start();
    for _ in 0..2 {
        rest = rest.split_once(' ').map(|(_, tail)| tail)?.trim_start();
    }
    let kind = KINDS
        .iter()
        .copied()
        .find(|k| rest.strip_prefix(k).is_some_and(|t| t.starts_with(' ')))?;
    let words: Vec<&str> = rest[kind.len()..].split_whitespace().collect();
    let (schema, tag) = match words.as_slice() {
        [] => return None,
        [schema] => ((*schema).to_owned(), String::new()),
        [schema, tag @ ..] if tag.len() == 1 => ((*schema).to_owned(), tag[0].to_owned()),
        [schema, tag @ .., _owner] => ((*schema).to_owned(), tag.join(" ")),
    };
    Some(Entry {
        id,
        line: line.to_owned(),
        kind,
        schema,
        tag,
        deps: Vec::new(),
    })
}

/// The entries a table restore takes, and what it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableEntries {
    /// Ids of the tables and everything that belongs to them, in TOC order.
    pub ids: Vec<u32>,
    /// The tables' own `TABLE DATA` entries (what `--data-only` takes).
    pub data: Vec<u32>,
    /// (schema, name) of the sequences they own.
    pub sequences: Vec<(String, String)>,
    /// Objects outside the tables that depend on them (another table's
    /// foreign key, a view), as [`Entry::describe`] says them.
    pub outside: Vec<String>,
    /// The tables' own foreign keys and the other tables they reference:
    /// (the entry, (schema, table) referenced). A restore that lacks one
    /// cannot create the key.
    pub references: Vec<(u32, Vec<(String, String)>)>,
}

/// The kinds whose tag is `table name`: they are the table's they name.
const TAGGED_BY_TABLE: &[&str] = &[
    "DEFAULT",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "RULE",
];

/// Everything that belongs to `tables` ((schema, name) of `TABLE` entries).
/// An entry of a kind whose tag names its table (`users users_pkey`) is
/// taken only by the table it names (another table's foreign key or
/// default depends on the table or its sequence too, and is not its);
/// `own(entry, schema, table)` decides for constraints whether they are
/// that table's (the caller asks the constraints meta.json recorded).
pub fn belonging(
    entries: &[Entry],
    tables: &BTreeSet<(String, String)>,
    own: &dyn Fn(&Entry, &str, &str) -> bool,
) -> TableEntries {
    let roots: BTreeMap<u32, (&str, &str)> = entries
        .iter()
        .filter(|e| e.kind == "TABLE" && tables.contains(&(e.schema.clone(), e.tag.clone())))
        .map(|e| (e.id, (e.schema.as_str(), e.tag.as_str())))
        .collect();
    // The table each taken entry belongs to (its root TABLE entry).
    let mut owner: BTreeMap<u32, u32> = roots.keys().map(|id| (*id, *id)).collect();
    loop {
        let mut grew = false;
        for entry in entries {
            if owner.contains_key(&entry.id) || !BELONGS.contains(&entry.kind) {
                continue;
            }
            let table = entry.deps.iter().find_map(|d| {
                let root = owner.get(d)?;
                let (schema, name) = roots.get(root)?;
                is_its(entry, schema, name, own).then_some(*root)
            });
            if let Some(table) = table {
                owner.insert(entry.id, table);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let tables_by_id: BTreeMap<u32, &Entry> = entries
        .iter()
        .filter(|e| e.kind == "TABLE")
        .map(|e| (e.id, e))
        .collect();
    let mut taken = TableEntries::default();
    for entry in entries {
        if owner.contains_key(&entry.id) {
            if entry.kind == "FK CONSTRAINT" {
                let referenced = entry
                    .deps
                    .iter()
                    .filter(|d| owner.get(d) != Some(*d))
                    .filter_map(|d| tables_by_id.get(d))
                    .map(|t| (t.schema.clone(), t.tag.clone()))
                    .collect();
                taken.references.push((entry.id, referenced));
            }
            taken.ids.push(entry.id);
            if entry.kind == "TABLE DATA" {
                taken.data.push(entry.id);
            }
            if entry.kind == "SEQUENCE" {
                taken
                    .sequences
                    .push((entry.schema.clone(), entry.tag.clone()));
            }
        } else if entry.deps.iter().any(|d| owner.contains_key(d))
            && !matches!(entry.kind, "COMMENT" | "ACL" | "SECURITY LABEL")
        {
            taken.outside.push(entry.describe());
        }
    }
    taken
}

/// Whether `entry`, which depends on table `schema.name` (or on something
/// of it), is that table's.
fn is_its(
    entry: &Entry,
    schema: &str,
    name: &str,
    own: &dyn Fn(&Entry, &str, &str) -> bool,
) -> bool {
    if entry.kind == "ROW SECURITY" {
        return entry.schema == schema && entry.tag == name;
    }
    if !TAGGED_BY_TABLE.contains(&entry.kind) {
        return true;
    }
    let named = entry.schema == schema && tag_names_table(entry, name);
    if entry.kind.ends_with("CONSTRAINT") {
        return named && own(entry, schema, name);
    }
    named
}

/// The `-L` list: the entries of `ids` in TOC order, plus the `SCHEMA`
/// entries of `create_schemas` (schemas the target lacks).
pub fn list_file(entries: &[Entry], ids: &[u32], create_schemas: &BTreeSet<String>) -> String {
    let mut text = String::new();
    for entry in entries {
        let schema = entry.kind == "SCHEMA" && create_schemas.contains(&entry.tag);
        if schema || ids.contains(&entry.id) {
            text.push_str(&entry.line);
            text.push('\n');
        }
    }
    text
}

/// A tag `table name` (a constraint, trigger, policy, default, rule): is
/// it `table`'s? A name after the table may hold spaces; a table whose name
/// is another's followed by a space is told apart by the caller's `own`.
pub fn tag_names_table(entry: &Entry, table: &str) -> bool {
    entry
        .tag
        .strip_prefix(table)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore --list --verbose` of a database with one of everything
    /// on `users` (PostgreSQL 16), trimmed.
    const TOC: &str = "\
;
; Archive created at 2026-12-07 03:51:52 UTC
;     dbname: app
;
2; 3079 16384 EXTENSION - vector 
347; 1255 16728 FUNCTION public trg() postgres
221; 1259 16748 SEQUENCE public free_seq postgres
219; 1259 16731 TABLE public messages postgres
218; 1259 16730 SEQUENCE public messages_id_seq postgres
;\tdepends on: 219
2819; 0 0 SEQUENCE OWNED BY public messages_id_seq postgres
;\tdepends on: 218
217; 1259 16714 TABLE public users postgres
;\tdepends on: 2 2
2820; 0 0 COMMENT public TABLE users postgres
;\tdepends on: 217
2822; 0 0 ACL public TABLE users postgres
;\tdepends on: 217
216; 1259 16713 SEQUENCE public users_id_seq postgres
;\tdepends on: 217
2823; 0 0 SEQUENCE OWNED BY public users_id_seq postgres
;\tdepends on: 216
2824; 0 0 ACL public SEQUENCE users_id_seq postgres
;\tdepends on: 216
220; 1259 16744 VIEW public v_users postgres
;\tdepends on: 217 217
2830; 0 0 ACL public TABLE v_users postgres
;\tdepends on: 220
2647; 2604 16717 DEFAULT public users id postgres
;\tdepends on: 217 216 217
2648; 2604 16734 DEFAULT public messages id postgres
;\tdepends on: 219 216 219
2809; 0 16731 TABLE DATA public messages postgres
;\tdepends on: 219
2807; 0 16714 TABLE DATA public users postgres
;\tdepends on: 217
2825; 0 0 SEQUENCE SET public free_seq postgres
;\tdepends on: 221
2827; 0 0 SEQUENCE SET public users_id_seq postgres
;\tdepends on: 216
2654; 2606 16722 CONSTRAINT public users users_pkey postgres
;\tdepends on: 217
2652; 1259 16725 INDEX public users_emb_hnsw postgres
;\tdepends on: 2 2 217
2828; 0 0 COMMENT public INDEX users_emb_hnsw postgres
;\tdepends on: 2652
2659; 2620 16729 TRIGGER public users users_trg postgres
;\tdepends on: 217 347
2658; 2606 16739 FK CONSTRAINT public messages messages_user_id_fkey postgres
;\tdepends on: 217 2654 219
2805; 3256 16727 POLICY public users tenant_iso postgres
;\tdepends on: 217 217
2804; 0 16714 ROW SECURITY public users postgres
;\tdepends on: 217
";

    #[test]
    fn entries_are_parsed_with_their_dependencies() {
        let entries = parse(TOC);
        assert_eq!(entries.len(), 27, "{entries:#?}");
        let find = |id| entries.iter().find(|e| e.id == id).unwrap();
        assert_eq!(find(2).kind, "EXTENSION");
        assert_eq!(
            (find(2).schema.as_str(), find(2).tag.as_str()),
            ("-", "vector")
        );
        assert_eq!(
            (find(2807).kind, find(2807).tag.as_str()),
            ("TABLE DATA", "users")
        );
        assert_eq!(find(2823).kind, "SEQUENCE OWNED BY");
        assert_eq!(find(2822).tag, "TABLE users");
        assert_eq!(find(2658).tag, "messages messages_user_id_fkey");
        assert_eq!(find(2647).deps, vec![217, 216, 217]);
        assert!(find(347).deps.is_empty());
    }

    #[test]
    fn a_table_takes_what_belongs_to_it_and_names_what_depends_on_it() {
        let entries = parse(TOC);
        let users = BTreeSet::from([("public".to_owned(), "users".to_owned())]);
        let taken = belonging(&entries, &users, &|_, _, _| true);
        assert_eq!(
            taken.ids,
            vec![
                217, 2820, 2822, 216, 2823, 2824, 2647, 2807, 2827, 2654, 2652, 2828, 2659, 2805,
                2804
            ]
        );
        assert_eq!(taken.data, vec![2807]);
        assert_eq!(
            taken.sequences,
            vec![("public".to_owned(), "users_id_seq".to_owned())]
        );
        assert_eq!(
            taken.outside,
            vec![
                "view public.v_users",
                "default public.messages id",
                "fk constraint public.messages messages_user_id_fkey"
            ],
            "another table's default on its sequence, foreign key and view"
        );
        let messages = BTreeSet::from([("public".to_owned(), "messages".to_owned())]);
        let taken = belonging(&entries, &messages, &|_, _, _| true);
        assert_eq!(
            taken.ids,
            vec![219, 218, 2819, 2648, 2809, 2658],
            "its own default and foreign key"
        );
        assert_eq!(
            taken.references,
            vec![(2658, vec![("public".to_owned(), "users".to_owned())])]
        );
        assert!(taken.outside.is_empty());
        let both = users.union(&messages).cloned().collect();
        let taken = belonging(&entries, &both, &|_, _, _| true);
        assert_eq!(taken.outside, vec!["view public.v_users"]);
    }

    #[test]
    fn the_list_holds_the_entries_and_missing_schemas() {
        let text = "5; 2615 16390 SCHEMA - audit postgres\n6; 2615 16391 SCHEMA - other postgres\n\
                    7; 1259 16400 TABLE audit t postgres\n";
        let entries = parse(text);
        let list = list_file(&entries, &[7], &BTreeSet::from(["audit".to_owned()]));
        assert_eq!(
            list,
            "5; 2615 16390 SCHEMA - audit postgres\n7; 1259 16400 TABLE audit t postgres\n"
        );
        assert_eq!(
            list_file(&entries, &[7], &BTreeSet::new()).lines().count(),
            1
        );
    }

    #[test]
    fn a_foreign_key_tag_names_its_table() {
        let entry = |tag: &str| Entry {
            id: 1,
            line: String::new(),
            kind: "FK CONSTRAINT",
            schema: "public".into(),
            tag: tag.into(),
            deps: vec![],
        };
        assert!(tag_names_table(&entry("users users_fk"), "users"));
        assert!(!tag_names_table(&entry("users2 users_fk"), "users"));
        assert!(tag_names_table(&entry("users tenant isolation"), "users"));
        assert!(tag_names_table(&entry("odd name fk"), "odd name"));
        assert!(!tag_names_table(&entry("users "), "users"));
    }
}
