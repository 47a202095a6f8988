//! Versions: `pgbak --version` names the build, meta.json files of every released format
//! still read, and a meta.json in a newer format than this pgbak knows is a clear exit 2
//! (naming both versions) for verify, restore, list and check, never a misread.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{
    self, backup, output_text, pg16, pgbak, pgbak_bare, read_meta, restore_cmd, run, scratch_dir,
};

#[test]
fn version_names_the_commit_and_the_build_date() {
    let short = run(pgbak_bare().arg("-V"));
    assert_eq!(short.status.code(), Some(0), "{}", output_text(&short));
    let line = String::from_utf8_lossy(&short.stdout).trim().to_owned();
    let long = run(pgbak_bare().arg("--version"));
    assert_eq!(long.status.code(), Some(0), "{}", output_text(&long));
    let long = String::from_utf8_lossy(&long.stdout).into_owned();
    assert!(long.starts_with(&line), "{long}");
    assert!(
        line.starts_with(concat!("pgbak ", env!("CARGO_PKG_VERSION"), " (")),
        "{line}"
    );
    let date = line
        .rsplit("built ")
        .next()
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_default();
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "a build date in {line}"
    );
    assert!(
        long.contains("meta.json format: writes 1, reads 1"),
        "{long}"
    );
    // Built from this checkout: the commit is HEAD's (when git can tell; a source tarball
    // has none and says so).
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(support::repo_dir())
        .output();
    match head {
        Ok(out) if out.status.success() => {
            let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(
                line.contains(&format!("commit {}", &head[..12])),
                "{line} vs {head}"
            );
            assert!(long.contains(&format!("commit: {head}")), "{long}");
        }
        _ => assert!(long.contains("commit: unknown"), "{long}"),
    }
}

/// Each cron run's log file names the build that ran it (the version line, with the commit),
/// and its backup's meta.json the version: a year later the operator can tell which made it.
#[test]
fn a_cron_runs_log_names_the_build() {
    let pg = pg16();
    let db = pg.fresh_db("cron version");
    db.load_fixture(0.02);
    let dirs = crate::support::cron::Dirs::new("version");
    let out = crate::support::run(
        crate::support::cron::cron(pgbak(pg), &dirs, &db.url()).env("VERIFY_ON_BACKUP", "false"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let (_, log) = dirs.only_log();
    let line = String::from_utf8_lossy(&run(pgbak_bare().arg("-V")).stdout)
        .trim()
        .replacen("pgbak ", "pgbak cron ", 1);
    assert!(
        log.contains(&format!("{line} starting (pid ")),
        "{line} in\n{log}"
    );
    let meta = read_meta(&dirs.backups.join(&dirs.metas()[0]));
    assert_eq!(meta["pgbak_version"], env!("CARGO_PKG_VERSION"));
}

/// The meta.json files pgbak 0.1.0 wrote (fixtures/meta-format-1/), as `list` reads them.
#[test]
fn released_format_1_meta_files_are_listed() {
    let fixtures = support::repo_dir().join("fixtures/meta-format-1");
    for (kind, encrypted, verified) in [
        ("full", false, Some(true)),
        ("globals", false, None),
        ("encrypted", true, None),
    ] {
        let dir = scratch_dir("format-1");
        for entry in std::fs::read_dir(fixtures.join(kind)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        let out = run(pgbak_bare()
            .args(["list", "--json", "--backup-dir"])
            .arg(&dir));
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", output_text(&out));
        let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let entry = &listed[0];
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(1),
            "{kind}: {listed:#}"
        );
        assert_eq!(entry["database"], "enterprise_agents", "{kind}");
        assert_eq!(entry["encrypted"], encrypted, "{kind}");
        assert_eq!(entry["verified"], serde_json::json!(verified), "{kind}");
        assert!(
            entry["sha256"].as_str().is_some_and(|s| s.len() == 64),
            "{kind}: read"
        );
        assert!(entry.get("unreadable").is_none(), "{kind}: {entry:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Rewrites a backup's meta.json as a future pgbak might: format 2, a field whose meaning
/// changed, a new one.
fn make_newer(meta_path: &Path) {
    let mut meta = read_meta(meta_path);
    meta["format_version"] = 2.into();
    meta["tables"] = serde_json::json!({"moved": "elsewhere in format 2"});
    meta["future_field"] = true.into();
    std::fs::write(meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

fn assert_newer_format_refused(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {}", output_text(out));
    assert!(
        stderr.contains("meta.json format_version 2 is newer than this pgbak")
            && stderr.contains("(format 1)")
            && stderr.contains("upgrade pgbak"),
        "{what}: {}",
        output_text(out)
    );
}

#[test]
fn a_newer_meta_format_is_exit_2_for_verify_restore_list_and_check() {
    let pg = pg16();
    let db = pg.fresh_db("newer format");
    db.load_fixture(0.02);
    let dir = scratch_dir("newer-format");
    let out = backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let metas: Vec<PathBuf> = support::files(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".meta.json"))
        .map(|f| dir.join(f))
        .collect();
    assert_eq!(metas.len(), 1, "{metas:?}");
    let dump = dir.join(read_meta(&metas[0])["file"].as_str().unwrap());
    make_newer(&metas[0]);
    // (Only this test's database's names: other tests create databases on the same server.)
    let verify_databases = || {
        pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_verify\\_%'",
                db.name
            ),
        )
    };

    let verify = |args: &[&str]| {
        let mut cmd = pgbak(pg);
        cmd.env("DATABASE_URL", db.url()).arg("verify").args(args);
        run(&mut cmd)
    };
    assert_newer_format_refused("verify FILE", &verify(&[dump.to_str().unwrap()]));
    assert_newer_format_refused(
        "verify --backup-dir",
        &verify(&["--backup-dir", dir.to_str().unwrap()]),
    );
    assert_eq!(verify_databases().trim(), "0", "no temporary database left");

    let target = pg.fresh_db("newer format target");
    let restore = run(&mut restore_cmd(&target, &dump, &["--no-confirm"]));
    assert_newer_format_refused("restore", &restore);
    let tables = target.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
    assert_eq!(tables.trim(), "0", "nothing was restored");

    let list = run(pgbak_bare()
        .args(["list", "--json", "--backup-dir"])
        .arg(&dir));
    assert_newer_format_refused("list", &list);
    // Still listed, marked unreadable, never with the misread fields.
    let listed: Value = serde_json::from_slice(&list.stdout).expect("list JSON on stdout");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
    assert!(listed[0]["unreadable"]
        .as_str()
        .is_some_and(|u| u.contains("format_version 2")));
    assert_eq!(listed[0]["sha256"], Value::Null);
    let table = run(pgbak_bare().args(["list", "--backup-dir"]).arg(&dir));
    assert_eq!(table.status.code(), Some(2), "{}", output_text(&table));
    assert!(String::from_utf8_lossy(&table.stdout).contains("(unreadable meta.json)"));

    let check = run(pgbak_bare()
        .args(["check", "--max-age", "1h", "--backup-dir"])
        .arg(&dir));
    assert_newer_format_refused("check", &check);
    // The files are as they were: nothing pruned, rewritten or removed.
    assert_eq!(read_meta(&metas[0])["format_version"], 2);
    assert!(dump.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
