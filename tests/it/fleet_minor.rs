//! The minor items of issue 23, each against real servers: prune groups by
//! meta.json's database, `backup` and `cron` share one rule for the anomaly
//! check after a failed upload, the connection limit and default tablespace
//! of a database come back with `--create-db`, and a standby left paused by
//! a killed run is resumed by the next run whatever its directory.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::fleet::pgbak_s3_url;
use crate::s3::{backup_dir, run};
use crate::support::{
    self, backup, dumps, free_port, output_text, pg16, private_cluster, read_meta, restore_cmd, s3,
    spawn_backup, standby_of, wait_for_blocked_dump, wait_for_lock, wait_until, Pg, TableLock,
};

/// Renames a backup in `dir` to the lossy, server-less name pgbak 0.1 wrote:
/// `<legacy db>_full_<ts>`; meta.json's `file` follows.
fn to_legacy_name(dir: &Path, dump: &str, legacy_db: &str) -> String {
    let stem = dump.trim_end_matches(".dump");
    let stamp = stem.rsplit('_').next().unwrap();
    let legacy = format!("{legacy_db}_full_{stamp}");
    let mut meta = read_meta(&dir.join(format!("{stem}.meta.json")));
    meta["file"] = Value::String(format!("{legacy}.dump"));
    meta.as_object_mut().unwrap().remove("server");
    std::fs::remove_file(dir.join(format!("{stem}.meta.json"))).unwrap();
    std::fs::rename(dir.join(dump), dir.join(format!("{legacy}.dump"))).unwrap();
    std::fs::write(
        dir.join(format!("{legacy}.meta.json")),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    format!("{legacy}.dump")
}

#[test]
fn fleet_prune_groups_by_the_database_in_meta_json_not_the_file_name() {
    let pg = pg16();
    let tag = format!("fp{}", std::process::id());
    let spaced = pg.create_db_named(&format!("{tag} x"));
    let dashed = pg.create_db_named(&format!("{tag}-x"));
    let dir = backup_dir("fleet-prune");
    let mut legacy = Vec::new();
    for db in [&spaced, &dashed] {
        db.psql("CREATE TABLE t AS SELECT 1 AS x");
        let before = dumps(&dir);
        let out = backup(pg, &db.name, &dir, &["--keep", "0"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let made = dumps(&dir)
            .into_iter()
            .find(|d| !before.contains(d))
            .unwrap();
        legacy.push(to_legacy_name(&dir, &made, &format!("{tag}-x")));
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(dumps(&dir).len(), 2, "one file-name group, two databases");
    let out = run(support::pgbak(pg)
        .args(["prune", "--keep-last", "1", "--json", "--backup-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    legacy.sort();
    assert_eq!(dumps(&dir), legacy, "each database keeps its only backup");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_backup_runs_the_anomaly_check_after_a_failed_upload_as_cron_does() {
    let pg = pg16();
    let db = pg.fresh_db("fleet upload anomaly");
    db.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 5000) g");
    let dir = backup_dir("fleet-upload-anomaly");
    let out = backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let good = dumps(&dir)[0].clone();
    std::thread::sleep(Duration::from_millis(1100));
    db.psql("DELETE FROM t");
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = run(support::backup_cmd(pg, &db.name, &dir, &["--keep", "1"])
        .env("S3_BUCKET", "pgbak-fleet-down")
        .env("S3_ENDPOINT_URL", &down)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true"));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let meta = read_meta(&dir.join(good.replace(".dump", ".meta.json")));
    assert!(
        meta["pinned"]["reason"].is_string(),
        "pinned: {meta}\n{}",
        output_text(&out)
    );
    assert_eq!(dumps(&dir).len(), 2, "the pinned backup stays");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_create_db_restores_the_connection_limit_and_default_tablespace_or_names_it() {
    let pg = pg16();
    let source = pg.fresh_db("fleet dbprops");
    let space = format!("fleet_ts_{}", std::process::id());
    let location = backup_dir("fleet-tablespace");
    if support::is_root() {
        support::chown_to_postgres(&location);
    }
    pg.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE {space} LOCATION {}",
            support::cluster::quote_literal(&location.display().to_string())
        ),
    );
    let quoted = support::cluster::quote_ident(&source.name);
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {quoted} CONNECTION LIMIT 7"),
    );
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {quoted} SET TABLESPACE {space}"),
    );
    source.psql("CREATE TABLE t AS SELECT 1 AS x");
    let dir = backup_dir("fleet-dbprops");
    let out = backup(pg, &source.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dump = dir.join(&dumps(&dir)[0]);
    let meta = read_meta(&dump.with_file_name(dumps(&dir)[0].replace(".dump", ".meta.json")));
    assert_eq!(meta["database_properties"]["connection_limit"], 7, "{meta}");
    assert_eq!(
        meta["database_properties"]["tablespace"],
        space.as_str(),
        "{meta}"
    );

    let props = |db: &str| {
        pg.psql(
            "postgres",
            &format!(
                "SELECT datconnlimit || ' ' || t.spcname FROM pg_database d \
                 JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE datname = {}",
                support::cluster::quote_literal(db)
            ),
        )
    };
    let target = pg.fresh_db("fleet dbprops target");
    let out = run(&mut restore_cmd(
        &target,
        &dump,
        &["--create-db", "--no-confirm"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(props(&target.name), format!("7 {space}"));

    // Without the tablespace on the target: the database lands in the default one,
    // and the run says which tablespace it could not use.
    let target_name = target.name.clone();
    drop(target);
    drop(source);
    pg.psql("postgres", &format!("DROP TABLESPACE {space}"));
    let again = pg.fresh_db("fleet dbprops again");
    let out = run(&mut restore_cmd(
        &again,
        &dump,
        &["--create-db", "--no-confirm"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("tablespace {space}")) && stderr.contains("no such tablespace"),
        "{stderr}"
    );
    assert_eq!(props(&again.name), "7 pg_default");
    let _ = target_name;
    let _ = std::fs::remove_dir_all(&dir);
}

fn pause_state(standby: &Pg) -> String {
    standby.psql("postgres", "SELECT pg_get_wal_replay_pause_state()")
}

#[test]
fn fleet_replay_paused_by_a_killed_run_is_resumed_by_the_next_run_in_another_directory() {
    let primary = private_cluster(16);
    let db = primary.fresh_db("fleet replay");
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let standby = standby_of(&primary, "");
    standby.catch_up_with(&primary);
    let server = s3();
    let bucket = server.fresh_bucket("fleet replay");
    let url = standby.url(&db.name);
    let pod = |dir: &Path| {
        let mut cmd = pgbak_s3_url(&standby, &url, server, &bucket, "replay/");
        cmd.args([
            "backup",
            "--pause-replay",
            "--lock-wait-timeout",
            "60s",
            "--output-dir",
        ])
        .arg(dir);
        cmd
    };

    let held = TableLock::hold(&primary, &db.name, "t");
    primary.psql("postgres", "SELECT pg_switch_wal()");
    wait_for_lock(&standby, &db.name, "t", Duration::from_secs(30));
    let first = backup_dir("fleet-replay-1");
    let mut child = pod(&first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), || {
        pause_state(&standby) == "paused"
    });
    wait_for_blocked_dump(&standby, &db.name);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pause_state(&standby), "paused");
    held.release();
    let _ = std::fs::remove_dir_all(&first);

    // Another pod, another (empty) directory, no --pause-replay: it finds the
    // marker in the bucket and resumes replay, so the released lock replays
    // and the dump is not left waiting for it.
    let second = backup_dir("fleet-replay-2");
    let out = run(pgbak_s3_url(&standby, &url, server, &bucket, "replay/")
        .args(["backup", "--lock-wait-timeout", "20s", "--output-dir"])
        .arg(&second));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(pause_state(&standby), "not paused");
    let _ = std::fs::remove_dir_all(&second);
    let _ = spawn_backup;
}

#[test]
fn fleet_the_first_backup_after_an_upgrade_compares_with_the_old_unnamed_backups() {
    let pg = pg16();
    let db = pg.fresh_db("fleet upgrade anomaly");
    db.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 5000) g");
    let dir = backup_dir("fleet-upgrade-anomaly");
    let out = backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // As an older pgbak named it: no server in the name or meta.json.
    let old = to_legacy_name(&dir, &dumps(&dir)[0], &db.name);
    std::thread::sleep(Duration::from_millis(1100));
    db.psql("DELETE FROM t");
    let out = backup(pg, &db.name, &dir, &["--keep", "1", "--json"]);
    let summary = support::stdout_json(&out);
    assert!(summary["anomaly"].is_string(), "{}", output_text(&out));
    let meta = read_meta(&dir.join(old.replace(".dump", ".meta.json")));
    assert!(meta["pinned"]["reason"].is_string(), "{meta}");
    let _ = std::fs::remove_dir_all(&dir);
}
