//! The tables verify expects in a restored copy besides those the backup's
//! meta.json recorded at dump time (always expected): `--expect-table`,
//! `--expect-tables-file`, `PGBAK_EXPECT_TABLES`, `PGBAK_EXPECT_TABLES_FILE`,
//! read by `pgbak verify` and `pgbak cron` (one database or
//! `--all-databases`) alike. pgbak works on any database, so there is no
//! built-in list: an application's tables are one line of its environment
//! file (contrib/pgbak.env.example holds the bundled application's).
//!
//! An entry is `[DB:]SCHEMA.TABLE`: a bare `TABLE` is in `public`; without
//! `DB:` it applies to every database (the one of a one-database run, each
//! of an `--all-databases` run), with it only to the database named `DB`.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::ExpectArgs;
use crate::error::usage;

/// One expected table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTable {
    /// The database it applies to; None: every database.
    pub database: Option<String>,
    pub schema: String,
    pub name: String,
}

/// The explicit list, resolved (empty: only meta.json's tables are expected).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedTables {
    pub entries: Vec<ExpectedTable>,
}

impl ExpectedTables {
    /// The flags (or `PGBAK_EXPECT_TABLES`) and the lines of the file (or
    /// `PGBAK_EXPECT_TABLES_FILE`). An unreadable file or a malformed entry
    /// is a usage error (exit 2) naming it.
    pub fn resolve(args: &ExpectArgs) -> Result<ExpectedTables> {
        let mut texts: Vec<(String, String)> = args
            .tables
            .iter()
            .map(|t| ("--expect-table / PGBAK_EXPECT_TABLES".to_owned(), t.clone()))
            .collect();
        if let Some(file) = &args.file {
            texts.extend(file_lines(file)?);
        }
        let mut entries = Vec::new();
        for (from, text) in texts {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let entry = parse_entry(text).map_err(|why| usage(format!("{why} (from {from})")))?;
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        Ok(ExpectedTables { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (schema, table) expected in a copy of `database`: the entries without
    /// a database and those naming it.
    pub fn for_database(&self, database: &str) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|e| e.database.as_deref().is_none_or(|d| d == database))
            .map(|e| (e.schema.clone(), e.name.clone()))
            .collect()
    }

    /// What verify will expect, in words (`cron --check-config`, the run's
    /// start line): for `database`, or for every database when None.
    pub fn describe(&self, database: Option<&str>) -> String {
        let named: Vec<String> = self
            .entries
            .iter()
            .filter(|e| match (database, &e.database) {
                (Some(db), Some(d)) => d == db,
                _ => true,
            })
            .map(ExpectedTable::to_string)
            .collect();
        if named.is_empty() {
            "the tables each backup's meta.json recorded".to_owned()
        } else {
            format!(
                "the tables each backup's meta.json recorded, and {}",
                named.join(", ")
            )
        }
    }
}

impl std::fmt::Display for ExpectedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = &self.database {
            write!(f, "{db}:")?;
        }
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// `[DB:]SCHEMA.TABLE` or `[DB:]TABLE` (in `public`).
pub fn parse_entry(text: &str) -> Result<ExpectedTable, String> {
    let (database, table) = match text.split_once(':') {
        Some((db, table)) => (Some(db.trim()), table.trim()),
        None => (None, text),
    };
    if database.is_some_and(str::is_empty) {
        return Err(format!(
            "expected table {text:?}: the database before ':' is empty"
        ));
    }
    let (schema, name) = split_table(table);
    if schema.is_empty() || name.is_empty() {
        return Err(format!(
            "expected table {text:?}: write [DB:]SCHEMA.TABLE (a bare TABLE is in public)"
        ));
    }
    Ok(ExpectedTable {
        database: database.map(str::to_owned),
        schema,
        name,
    })
}

/// `schema.table`, or `table` in `public`.
pub fn split_table(text: &str) -> (String, String) {
    match text.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), text.to_owned()),
    }
}

/// The meaningful lines of an expected-tables file, each with where it came from.
fn file_lines(file: &PathBuf) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        usage(format!(
            "cannot read the expected tables file {} (--expect-tables-file / \
             PGBAK_EXPECT_TABLES_FILE): {e}",
            file.display()
        ))
    })?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (format!("{} line {}", file.display(), i + 1), l.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(db: Option<&str>, schema: &str, name: &str) -> ExpectedTable {
        ExpectedTable {
            database: db.map(str::to_owned),
            schema: schema.into(),
            name: name.into(),
        }
    }

    #[test]
    fn entries_name_a_table_and_maybe_a_database() {
        let cases = [
            ("users", Ok(entry(None, "public", "users"))),
            ("app.users", Ok(entry(None, "app", "users"))),
            ("shop:app.orders", Ok(entry(Some("shop"), "app", "orders"))),
            ("shop:orders", Ok(entry(Some("shop"), "public", "orders"))),
            ("shop: app.orders", Ok(entry(Some("shop"), "app", "orders"))),
            (":app.orders", Err("database")),
            ("shop:", Err("[DB:]SCHEMA.TABLE")),
            ("app.", Err("[DB:]SCHEMA.TABLE")),
            (".users", Err("[DB:]SCHEMA.TABLE")),
        ];
        for (text, want) in cases {
            match (parse_entry(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(says)) => assert!(got.contains(says), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn flags_and_file_merge_and_apply_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tables");
        std::fs::write(&file, "# the app\nshop:app.orders\n\n  notes  \nusers\n").unwrap();
        let args = ExpectArgs {
            tables: vec!["users".into(), " ".into(), "crm:contacts".into()],
            file: Some(file),
        };
        let expected = ExpectedTables::resolve(&args).unwrap();
        assert_eq!(
            expected.entries.len(),
            4,
            "duplicates dropped: {expected:?}"
        );
        let pair = |s: &str, t: &str| (s.to_owned(), t.to_owned());
        assert_eq!(
            expected.for_database("shop"),
            vec![
                pair("public", "users"),
                pair("app", "orders"),
                pair("public", "notes")
            ]
        );
        assert_eq!(
            expected.for_database("crm"),
            vec![
                pair("public", "users"),
                pair("public", "contacts"),
                pair("public", "notes")
            ]
        );
        assert!(expected
            .describe(Some("other"))
            .contains("public.users, public.notes"));
        assert!(!expected.describe(Some("other")).contains("contacts"));
        assert!(expected.describe(None).contains("crm:public.contacts"));
        let none = ExpectedTables::resolve(&ExpectArgs::default()).unwrap();
        assert!(none.is_empty() && none.for_database("x").is_empty());
        assert_eq!(
            none.describe(None),
            "the tables each backup's meta.json recorded"
        );
    }

    #[test]
    fn a_missing_file_or_a_bad_entry_is_a_usage_error() {
        let bad = [
            ExpectArgs {
                tables: vec![],
                file: Some(PathBuf::from("/nonexistent/pgbak-tables")),
            },
            ExpectArgs {
                tables: vec!["shop:".into()],
                file: None,
            },
        ];
        for args in bad {
            let err = ExpectedTables::resolve(&args).unwrap_err();
            assert_eq!(
                crate::error::exit_code(&err),
                crate::error::USAGE,
                "{err:#}"
            );
        }
    }
}
