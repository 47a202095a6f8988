//! pgbak on any database, not only the bundled application: verify (by hand and in `pgbak cron`)
//! expects the tables each backup recorded in its meta.json, plus an explicit list
//! (`--expect-table`, `PGBAK_EXPECT_TABLES`, `[DB:]SCHEMA.TABLE`).

use crate::support::cron::{cron, Dirs};
use crate::support::{output_text, pg16, pgbak, pgbak_bare, run, Pg, TestDb};

/// A database with nothing of the application: a table in public, one in
/// its own schema with a serial key and an index.
fn ordinary_db<'a>(pg: &'a Pg, hint: &str) -> TestDb<'a> {
    let db = pg.db_with(
        hint,
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
         INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 50) g;
         CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id bigserial PRIMARY KEY, total numeric(10,2));
         CREATE INDEX orders_total_idx ON shop.orders (total);
         INSERT INTO shop.orders (total) SELECT g FROM generate_series(1, 20) g;",
    );
    db
}

fn verified(dirs: &Dirs) -> serde_json::Value {
    let metas = dirs.metas();
    assert_eq!(metas.len(), 1, "{metas:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs.backups.join(&metas[0])).unwrap()).unwrap();
    meta["verification"].clone()
}

/// The blocker: `pgbak cron` with VERIFY_ON_BACKUP=true on two
/// ordinary databases (neither has the application's tables) passes, and the
/// backups are recorded as verified. Failed on main ("13 of 15 missing").
#[test]
fn cron_verifies_two_ordinary_databases() {
    let pg = pg16();
    for hint in ["anydb crm", "anydb shop"] {
        let db = ordinary_db(pg, hint);
        let dirs = Dirs::new("anydb");
        let out = run(cron(pgbak(pg), &dirs, &db.url()).env("VERIFY_ON_BACKUP", "true"));
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        assert_eq!(verified(&dirs)["passed"], true);
        let (_, log) = dirs.only_log();
        assert!(
            log.contains("PASS  expected tables present: all 2 present (2 recorded in meta.json)"),
            "{log}"
        );
    }
}

/// `PGBAK_EXPECT_TABLES` with `DB:` entries applies each to its database
/// only; a missing table fails that database's run, saying which table and
/// why it was expected.
#[test]
fn cron_expected_tables_apply_per_database() {
    let pg = pg16();
    let crm = ordinary_db(pg, "expect crm");
    let shop = ordinary_db(pg, "expect shop");
    let list = format!(
        "{}:public.notes,{}:shop.orders,{}:public.customers",
        crm.name, shop.name, crm.name
    );
    let dirs = Dirs::new("expect-shop");
    let out = run(cron(pgbak(pg), &dirs, &shop.url())
        .env("VERIFY_ON_BACKUP", "true")
        .env("PGBAK_EXPECT_TABLES", &list));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(verified(&dirs)["passed"], true);

    let dirs = Dirs::new("expect-crm");
    let out = run(cron(pgbak(pg), &dirs, &crm.url())
        .env("VERIFY_ON_BACKUP", "true")
        .env("PGBAK_EXPECT_TABLES", &list));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(verified(&dirs)["passed"], false);
    let (_, log) = dirs.only_log();
    assert!(
        log.contains("not in the restored copy: public.customers (named, not in the backup)"),
        "{log}"
    );
    assert!(log.contains("1 of the 3 expected tables"), "{log}");
}

/// `--check-config` says what verify will expect, and what an
/// `--all-databases` run backs up (not "full backup of postgres").
#[test]
fn cron_check_config_shows_the_expected_tables_and_the_run() {
    let pg = pg16();
    let db = ordinary_db(pg, "expect check");
    let dirs = Dirs::new("expect-check");
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .arg("--check-config")
        .env("VERIFY_ON_BACKUP", "true")
        .env("PGBAK_EXPECT_TABLES", "shop.orders,other:public.x"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "verify expects the tables each backup's meta.json recorded, and shop.orders"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("other:public.x"), "{stderr}");

    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .args(["--check-config", "--all-databases"])
        .env("VERIFY_ON_BACKUP", "false"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("full backups of every database and the globals (--all-databases)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("backup of {}", db.name)),
        "{stderr}"
    );

    let out = run(cron(pgbak_bare(), &dirs, &db.url())
        .arg("--check-config")
        .env("PGBAK_EXPECT_TABLES", "crm:"));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}
