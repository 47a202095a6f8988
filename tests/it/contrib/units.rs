//! The systemd units pass `systemd-analyze verify`, the crontab line is the scripts' line and runs
//! through `/bin/sh -c` with an env file whose URL holds `&`, and the environment example names the
//! application's tables on one line.

use std::path::PathBuf;
use std::process::Command;

use crate::support::cron::cron_case;
use crate::support::verify::{detail, run_json, status, verify_cmd, Dir};
use crate::support::{self, output_text, pg16, pgbak_bare, repo_dir, run, scratch_dir};

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

/// contrib/'s `unit` and `timer`, read (for the caller's asserts), then checked by
/// `systemd-analyze verify` with the unit's pgbak pointed at this build. None when
/// systemd-analyze is not installed (said so).
fn analyze(unit: &str, timer: &str, check: impl Fn(&str, &str)) -> Option<()> {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed");
        return None;
    };
    let dir = scratch_dir("units");
    let contrib = support::repo_dir().join("contrib");
    let service = std::fs::read_to_string(contrib.join(unit)).expect(unit);
    let timer_text = std::fs::read_to_string(contrib.join(timer)).expect(timer);
    check(&service, &timer_text);
    // The unit names /usr/local/bin/pgbak; verify checks that it exists, so point it at this build.
    let service = service.replace("/usr/local/bin/pgbak", env!("CARGO_BIN_EXE_pgbak"));
    std::fs::write(dir.join(unit), service).unwrap();
    std::fs::write(dir.join(timer), timer_text).unwrap();
    // Documentation=man:pgbak(1) must resolve: install the generated page into a private MANPATH.
    std::fs::create_dir_all(dir.join("man/man1")).unwrap();
    let page = run(pgbak_bare().arg("man"));
    std::fs::write(dir.join("man/man1/pgbak.1"), &page.stdout).unwrap();
    super::assert_units_verify(&analyze, &dir, &[unit, timer]);
    let _ = std::fs::remove_dir_all(&dir);
    Some(())
}

#[test]
fn contrib_systemd_units_pass_systemd_analyze_verify() {
    analyze("pgbak.service", "pgbak.timer", |service, timer| {
        assert!(service.contains("ExecStart=/usr/local/bin/pgbak cron --verify"));
        assert!(service.contains("EnvironmentFile=/etc/pgbak/pgbak.env"));
        assert!(service.contains("Type=oneshot"));
        assert!(timer.contains("OnCalendar=*-*-* 02:00:00") && timer.contains("Persistent=true"));
    });
}

/// The weekly drill's units pass `systemd-analyze verify`, and pgbak accepts the unit's
/// command line (`--check-config`: resolved, nothing read), and refuses it with a broken
/// setting, so the check can fail.
#[test]
fn contrib_drill_units_pass_systemd_analyze_verify_and_pgbak_accepts_them() {
    let (unit, timer) = ("pgbak-drill.service", "pgbak-drill.timer");
    let contrib = support::repo_dir().join("contrib");
    let service = std::fs::read_to_string(contrib.join(unit)).expect(unit);
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/pgbak "))
        .expect("ExecStart runs pgbak");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args, ["verify", "--all-databases", "--ephemeral"]);
    let dir = scratch_dir("drill-unit");
    let run_it = |extra: &[(&str, &str)]| {
        let mut cmd = pgbak_bare();
        cmd.args(&args).arg("--check-config");
        cmd.env("BACKUP_DIR", &dir);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("running pgbak")
    };
    let out = run_it(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run_it(&[("PGBAK_EXPECT_TABLES_FILE", "/nonexistent/pgbak-tables")]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let _ = std::fs::remove_dir_all(&dir);
    analyze(unit, timer, |service, timer| {
        assert!(service.contains("EnvironmentFile=/etc/pgbak/pgbak.env"));
        assert!(service.contains("Type=oneshot"));
        assert!(
            timer.contains("OnCalendar=Sun *-*-* 05:00:00") && timer.contains("Persistent=true")
        );
        assert!(timer.contains("Unit=pgbak-drill.service"));
    });
}

#[test]
fn contrib_crontab_matches_the_scripts_line() {
    let text = std::fs::read_to_string(support::repo_dir().join("contrib/pgbak.crontab"))
        .expect("contrib/pgbak.crontab");
    // Kept, commented, for who wants the settings inline; the active line reads the env file.
    let line = text
        .lines()
        .find(|l| l.starts_with("#0 2 * * * DATABASE_URL="))
        .expect("the scripts' 02:00 line");
    for part in [
        "DATABASE_URL=",
        "BACKUP_DIR=",
        "BACKUP_KEEP=14",
        "VERIFY_ON_BACKUP=true",
        "pgbak cron",
        ">> /var/log/pg-backup/cron.log 2>&1",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
}

#[test]
fn cron_env_file_with_an_ampersand_url_runs_from_the_shipped_crontab_line() {
    let pg = pg16();
    let (db, dirs) = cron_case(pg, "cron env file", "env-file");
    std::fs::create_dir_all(&dirs.root).unwrap();
    // systemd EnvironmentFile syntax: the URL unquoted, with `&` in its query.
    let env_file = dirs.root.join("pgbak.env");
    std::fs::write(
        &env_file,
        format!(
            "# /etc/pgbak/pgbak.env\nDATABASE_URL={}?sslmode=disable&application_name=pgbak-cron\n\
             BACKUP_DIR={}\nLOG_DIR={}\nMETRICS_FILE={}\nBACKUP_KEEP=14\n",
            db.url(),
            dirs.backups.display(),
            dirs.logs.display(),
            dirs.metrics.display()
        ),
    )
    .unwrap();
    let crontab = std::fs::read_to_string(support::repo_dir().join("contrib/pgbak.crontab"))
        .expect("contrib/pgbak.crontab");
    let line = crontab
        .lines()
        .find(|l| l.starts_with("0 2 * * * ") && l.contains("--env-file"))
        .expect("an active 02:00 line using --env-file");
    let command = line
        .trim_start_matches("0 2 * * * ")
        .replace("/etc/pgbak/pgbak.env", &env_file.display().to_string())
        .replace("/usr/local/bin/pgbak", env!("CARGO_BIN_EXE_pgbak"))
        .replace(
            "/var/log/pg-backup/cron.log",
            &dirs.root.join("cron.log").display().to_string(),
        );
    let mut sh = std::process::Command::new("/bin/sh");
    sh.arg("-c").arg(&command);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PG") || k == "DATABASE_URL" || k.starts_with("BACKUP_") {
            sh.env_remove(&key);
        }
    }
    sh.env(
        "PGBAK_PG_BIN_DIR",
        support::paths()
            .pg17_bin
            .clone()
            .unwrap_or_else(|| pg.bin.clone()),
    );
    let out = sh.output().expect("running the crontab line");
    let cron_log = std::fs::read_to_string(dirs.root.join("cron.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{cron_log}",
        output_text(&out)
    );
    assert_eq!(dirs.dumps().len(), 1, "{cron_log}");
    assert!(cron_log.contains(&db.name), "{cron_log}");
    // The weekly schema line ships too.
    assert!(
        crontab.lines().any(|l| !l.starts_with('#')
            && l.contains("--mode schema")
            && l.contains("--env-file")),
        "{crontab}"
    );
}

/// The application's 13 tables are one line of contrib/pgbak.env.example:
/// with it, verify of the application's database requires them (a dropped
/// one fails), without it the backup's own tables are what is expected.
#[test]
fn the_application_tables_are_one_line_of_the_env_example() {
    let example = std::fs::read_to_string(repo_dir().join("contrib/pgbak.env.example")).unwrap();
    let line = example
        .lines()
        .find_map(|l| l.strip_prefix("PGBAK_EXPECT_TABLES="))
        .expect("PGBAK_EXPECT_TABLES in contrib/pgbak.env.example");
    assert_eq!(line.split(',').count(), 13, "{line}");
    let pg = pg16();
    let db = pg.fixture_db("expect app", 0.02);
    db.psql("DROP TABLE feedback CASCADE");
    let dir = Dir::new("expect-app");
    let dump = crate::support::verify::backup(&db, &dir);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(status(&report, "expected tables present"), "pass");
    let mut cmd: Command = verify_cmd(&db, &dump, &[]);
    cmd.env("PGBAK_EXPECT_TABLES", line);
    let (out, report) = run_json(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        detail(&report, "expected tables present")
            .contains("not in the restored copy: public.feedback (named, not in the backup)"),
        "{report:#}"
    );
}
