//! Boolean settings, one rule for every command: each boolean variable is read by the one strict
//! parser (true/false, 1/0, yes/no, on/off, any case), so a value that is none of them is exit 2
//! naming the variable, before anything is dumped, restored or written, for `pgbak backup` as
//! for `pgbak cron` (backup used to read PGBAK_ALL_DATABASES and PGBAK_NO_ROLE_PASSWORDS
//! leniently, as "off", and PGBAK_PAUSE_REPLAY took y/n/t/f). `--no-verify`,
//! `--no-all-databases` and `--no-pause-replay` switch an environment `true` off for one run.

use std::path::Path;

use crate::support::cron::{cron, Dirs};
use crate::support::verify::{fixture_backup, Dir};
use crate::support::{self, dumps, output_text, pg16, pgbak, run};

/// `(command line, variable, value)`: each refused (exit 2, the variable named).
const REFUSED: &[(&[&str], &str, &str)] = &[
    (&["backup"], "PGBAK_ALL_DATABASES", "ture"),
    (
        &["backup", "--globals"],
        "PGBAK_NO_ROLE_PASSWORDS",
        "enabled",
    ),
    (&["backup"], "PGBAK_PAUSE_REPLAY", "y"),
    (&["backup"], "PGBAK_REQUIRE_ENCRYPTION", "maybe"),
    (&["cron"], "PGBAK_ALL_DATABASES", "ture"),
    (&["cron"], "PGBAK_NO_ROLE_PASSWORDS", "enabled"),
    (&["cron"], "PGBAK_PAUSE_REPLAY", "t"),
    (&["cron"], "VERIFY_ON_BACKUP", "yes-please"),
    (&["verify"], "PGBAK_REQUIRE_ENCRYPTION", "maybe"),
    (
        &["restore", "--no-confirm"],
        "PGBAK_REQUIRE_ENCRYPTION",
        "sure",
    ),
];

#[test]
fn a_boolean_variable_that_is_not_one_is_exit_2_for_every_command() {
    let pg = pg16();
    let (db, dir, dump) = fixture_backup(pg, "strict booleans", 0.05);
    let before = dumps(&dir);
    for (args, name, value) in REFUSED {
        let dirs = Dirs::new("strict-booleans");
        let mut cmd = pgbak(pg);
        match args[0] {
            "cron" => {
                cmd = cron(cmd, &dirs, &db.url());
            }
            "backup" => {
                cmd.args(*args).arg("--output-dir").arg(&*dir);
            }
            _ => {
                cmd.args(*args).arg(&dump);
            }
        }
        if args[0] != "cron" {
            cmd.env("DATABASE_URL", db.url());
        }
        let out = run(cmd.env(name, value));
        let text = output_text(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {name}={value}: {text}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name),
            "{args:?}: the variable is named: {text}"
        );
        assert!(stderr.contains("not a boolean"), "{args:?}: {text}");
        assert_eq!(dumps(&dir), before, "{args:?} {name}: nothing written");
        assert!(
            dirs.dumps().is_empty(),
            "{args:?} {name}: nothing backed up"
        );
    }
    // The same variables, spelled as booleans, still work: nothing was refused for being one.
    let out = run(pgbak(pg)
        .args(["backup", "--no-s3", "--output-dir"])
        .arg(&*dir)
        .env("DATABASE_URL", db.url())
        .env("PGBAK_ALL_DATABASES", "Off")
        .env("PGBAK_PAUSE_REPLAY", "0")
        .env("PGBAK_REQUIRE_ENCRYPTION", "no"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(dumps(&dir).len(), before.len() + 1);
}

/// Everything `dir` holds whose name contains `part`.
fn named(dir: &Path, part: &str) -> Vec<String> {
    support::files(dir)
        .into_iter()
        .filter(|f| f.contains(part))
        .collect()
}

#[test]
fn no_all_databases_backs_up_one_database_though_the_environment_says_all() {
    let pg = pg16();
    let db = pg.fresh_db("no all databases");
    db.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let dir = Dir::new("no-all-databases");
    let out = run(pgbak(pg)
        .args(["backup", "--no-s3", "--no-all-databases", "--output-dir"])
        .arg(&*dir)
        .env("DATABASE_URL", db.url())
        .env("PGBAK_ALL_DATABASES", "true"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let made = dumps(&dir);
    assert_eq!(made.len(), 1, "one database's backup: {made:?}");
    assert!(made[0].contains(&db.name), "{made:?}");
    assert!(named(&dir, "globals").is_empty(), "no globals backup");
    assert!(named(&dir, "pgbak-run_").is_empty(), "no run record");
}

#[test]
fn no_verify_skips_the_verify_the_environment_asks_for() {
    let pg = pg16();
    let db = pg.fresh_db("cron no verify");
    db.load_fixture(0.05);
    let dirs = Dirs::new("no-verify");
    let out = run(cron(pgbak(pg), &dirs, &db.url())
        .arg("--no-verify")
        .env("VERIFY_ON_BACKUP", "true"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let (_, log) = dirs.only_log();
    assert!(log.contains("verify off"), "{log}");
    assert!(!log.contains("verify passed"), "{log}");
    assert_eq!(dirs.metas().len(), 1);
    let meta = support::read_meta(&dirs.backups.join(&dirs.metas()[0]));
    assert!(
        meta.get("verification").is_none(),
        "never verified: {meta:#}"
    );
    assert!(Dirs::files(&dirs.backups, ".verify.json").is_empty());
    // Without --no-verify the same environment verifies.
    let dirs = Dirs::new("verify-on");
    let out = run(cron(pgbak(pg), &dirs, &db.url()).env("VERIFY_ON_BACKUP", "true"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(Dirs::files(&dirs.backups, ".verify.json").len(), 1);
}
