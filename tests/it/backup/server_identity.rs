//! Every backup names the server it came from (many servers share one bucket,
//! and every one of them has a `postgres` database): its system identifier and
//! a readable name.

use crate::support::{self, backup, dumps, output_text, pg16, read_meta};

/// The cluster's `pg_control_system().system_identifier`, read with psql.
fn system_identifier(pg: &crate::support::Pg, db: &str) -> String {
    pg.psql(
        db,
        "SELECT system_identifier FROM pg_catalog.pg_control_system()",
    )
}

#[test]
fn a_backup_records_the_servers_identity_and_a_readable_name() {
    let pg = pg16();
    let db = pg.db_with("server_identity", "CREATE TABLE t AS SELECT 1 AS x");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");

    let out = backup(pg, &db.name, &dir, &["--globals"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let id = system_identifier(pg, &db.name);
    assert!(id.parse::<u64>().is_ok(), "{id}");
    let names = dumps(&dir);
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        let meta = read_meta(&dir.join(name.replace(".dump", ".meta.json")));
        assert_eq!(meta["server"]["system_identifier"], id.as_str(), "{name}");
        // The default name is the connection's host:port.
        assert_eq!(
            meta["server"]["name"],
            format!("127.0.0.1:{}", pg.port).as_str(),
            "{name}"
        );
    }

    let named = tmp.path().join("named");
    let out = support::backups::backup_cmd(pg, &db.name, &named, &[])
        .env("PGBAK_SERVER_NAME", "db-eu-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let flag = backup(pg, &db.name, &named, &["--server-name", "db-eu-2"]);
    assert!(flag.status.success(), "{}", output_text(&flag));
    let mut seen: Vec<String> = dumps(&named)
        .iter()
        .map(|n| {
            read_meta(&named.join(n.replace(".dump", ".meta.json")))["server"]["name"].to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["\"db-eu-1\"", "\"db-eu-2\""]);
}

#[test]
fn a_server_name_with_spaces_or_quotes_is_a_usage_error() {
    let pg = pg16();
    let db = pg.fresh_db("server_name_bad");
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["db one", "db\"1", "x".repeat(129).as_str()] {
        let out = backup(pg, &db.name, tmp.path(), &["--server-name", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", output_text(&out));
        assert!(dumps(tmp.path()).is_empty());
    }
}
