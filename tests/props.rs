//! Property tests for everything that parses outside input: DATABASE_URL,
//! backup file names and meta.json. None may panic; errors are plain values.

use pgbak::cli::Mode;
use pgbak::meta::Meta;
use pgbak::pg::url::ConnSettings;
use pgbak::storage::{is_plain_file_name, BackupName};
use proptest::prelude::*;

fn no_env(_: &str) -> Option<String> {
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn database_url_parser_never_panics(text in "\\PC{0,120}") {
        let _ = ConnSettings::from_url(&text, &no_env);
    }

    #[test]
    fn database_url_parser_handles_url_shaped_garbage(
        scheme in "(postgres|postgresql|postgresql\\+[a-z]{1,8}|mysql|)",
        user in "[^@/]{0,12}",
        pass in "[^@/]{0,12}",
        host in "[a-z0-9.%:\\[\\]]{0,20}",
        port in "[0-9a-z]{0,7}",
        db in "[^?]{0,12}",
        query in "[a-z=&%/._-]{0,30}",
    ) {
        let url = format!("{scheme}://{user}:{pass}@{host}:{port}/{db}?{query}");
        if let Err(err) = ConnSettings::from_url(&url, &no_env) {
            // Errors are one line and never echo the password.
            let text = pgbak::error::one_line(&err);
            prop_assert!(!text.contains('\n'));
            if pass.len() >= 6 {
                prop_assert!(!text.contains(&pass), "{}", text);
            }
        }
    }

    #[test]
    fn backup_file_name_parser_never_panics_and_stays_a_plain_name(name in "\\PC{0,80}") {
        if let Some(parsed) = BackupName::parse(&name) {
            prop_assert!(is_plain_file_name(&parsed.dump_file()));
            prop_assert!(!parsed.database.contains('/'));
        }
    }

    #[test]
    fn backup_names_round_trip(
        db in "\\PC{1,40}",
        mode in prop_oneof![Just(Mode::Full), Just(Mode::Schema), Just(Mode::Data)],
        label in proptest::option::of("[A-Za-z0-9.-]{1,20}"),
        secs in 0i64..4_000_000_000,
    ) {
        let label = label.filter(|l| pgbak::storage::validate_label(l).is_ok());
        let at = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        let name = BackupName::new(&db, mode, label.as_deref(), at);
        prop_assert!(is_plain_file_name(&name.dump_file()));
        prop_assert_eq!(BackupName::parse(&name.dump_file()), Some(name.clone()));
        prop_assert_eq!(BackupName::parse(&name.meta_file()), Some(name));
    }

    #[test]
    fn meta_reader_never_panics(text in "\\PC{0,300}") {
        let _ = Meta::parse(&text);
    }

    #[test]
    fn meta_reader_rejects_any_file_that_is_not_a_plain_dump_name(
        file in "(\\.\\./|/|[a-z]{0,5}/)[a-z./]{0,20}\\.dump",
        size in any::<u64>(),
    ) {
        let json = serde_json::json!({
            "format_version": 1, "database": "d", "mode": "full", "label": null,
            "file": file, "size_bytes": size, "sha256": "a".repeat(64),
            "started_at": "x", "finished_at": "x", "duration_seconds": 1e308,
            "compression": "zstd:1", "server_version": "16", "pg_dump_version": "17",
            "alembic_revision": null, "extensions": {}, "tables": [], "host": "h",
            "pgbak_version": "0", "s3": null
        });
        prop_assert!(Meta::parse(&json.to_string()).is_err());
    }
}
