//! The bucket is the truth (issue 23): pods that start with an empty
//! directory, many servers sharing one prefix, names that come from the
//! clock, and `check` on a host that reads only the bucket. Real PostgreSQL
//! clusters, the real moto server, the real binary.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::bucket::{
    backup_dir, check_bucket, keys, pgbak_s3, pgbak_s3_url, s3_case, s3_meta,
};
use crate::support::{
    self, dumps, output_text, pg16, private_cluster, run, s3, HttpListener, Pg, S3Server,
};

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)))
}

/// One "pod": `pgbak cron` with a directory of its own that did not exist before.
fn pod(
    db: &crate::support::TestDb,
    server: &S3Server,
    bucket: &str,
    root: &Path,
    n: u32,
    hook: &HttpListener,
) -> Output {
    let dir = root.join(format!("pod{n}"));
    run(pgbak_s3(db, server, bucket, "fleet/")
        .arg("cron")
        .env("BACKUP_DIR", dir.join("backups"))
        .env("LOG_DIR", dir.join("logs"))
        .env("BACKUP_KEEP", "1")
        .env("ALERT_WEBHOOK_URL", hook.url()))
}

/// `backup --all-databases --keep 1` of `pg` into the shared prefix, named `name`.
fn backup_all(pg: &Pg, server: &S3Server, bucket: &str, name: &str, dir: &Path) -> Output {
    run(
        pgbak_s3_url(pg, &pg.url("postgres"), server, bucket, "shared/")
            .args([
                "backup",
                "--all-databases",
                "--keep",
                "1",
                "--server-name",
                name,
            ])
            .arg("--output-dir")
            .arg(dir),
    )
}

#[test]
fn fleet_pods_with_empty_directories_pin_the_good_backup_in_the_bucket_and_alert() {
    let (db, server, bucket, root) = s3_case("fleet pods", 0.0);
    db.psql(
        "CREATE TABLE messages AS SELECT g AS id, md5(g::text) AS body \
         FROM generate_series(1, 50000) g",
    );
    let hook = HttpListener::ok();
    let first = pod(&db, server, &bucket, &root, 1, &hook);
    assert!(first.status.success(), "{}", output_text(&first));
    let good = keys(server, &bucket, "fleet/", ".dump");
    assert_eq!(good.len(), 1, "{good:?}");

    db.psql("DELETE FROM messages");
    let second = pod(&db, server, &bucket, &root, 2, &hook);
    assert_eq!(second.status.code(), Some(0), "{}", output_text(&second));
    let alerts = hook.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "one warning for the collapse");
    let body = alerts[0].json();
    assert_eq!(body["status"], "warning", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("public.messages 50000 -> 0"), "{detail}");

    let both = keys(server, &bucket, "fleet/", ".dump");
    assert_eq!(both.len(), 2, "retention kept the good backup: {both:?}");
    assert!(both.contains(&good[0]), "{both:?}");
    let meta = s3_meta(
        server,
        &bucket,
        &format!("fleet/{}", good[0].replace(".dump", ".meta.json")),
    );
    assert!(
        meta["pinned"]["reason"].is_string(),
        "pinned in the bucket: {meta}"
    );

    // A third pod keeps the pinned backup too (and lets the collapsed one go).
    let third = pod(&db, server, &bucket, &root, 3, &hook);
    assert!(third.status.success(), "{}", output_text(&third));
    let left = keys(server, &bucket, "fleet/", ".dump");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&good[0]), "{left:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn fleet_two_servers_in_one_prefix_keep_their_own_backups_names_and_groups() {
    let one = private_cluster(16);
    let two = private_cluster(16);
    one.psql(
        "postgres",
        "CREATE TABLE origin AS SELECT 'one'::text AS name",
    );
    two.psql(
        "postgres",
        "CREATE TABLE origin AS SELECT 'two'::text AS name",
    );
    let server = s3();
    let bucket = server.fresh_bucket("fleet two servers");
    let dir_one = backup_dir("fleet-one");
    let dir_two = backup_dir("fleet-two");

    // Both at once: their `postgres` backups start within the same second.
    for _ in 0..2 {
        let a = pgbak_s3_url(&one, &one.url("postgres"), server, &bucket, "shared/")
            .args([
                "backup",
                "--keep",
                "1",
                "--server-name",
                "db-one",
                "--output-dir",
            ])
            .arg(&dir_one)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let b = run(
            pgbak_s3_url(&two, &two.url("postgres"), server, &bucket, "shared/")
                .args([
                    "backup",
                    "--keep",
                    "1",
                    "--server-name",
                    "db-two",
                    "--output-dir",
                ])
                .arg(&dir_two),
        );
        let a = a.wait_with_output().unwrap();
        assert!(a.status.success(), "{}", output_text(&a));
        assert!(b.status.success(), "{}", output_text(&b));
    }
    let full = keys(server, &bucket, "shared/", ".dump");
    assert_eq!(
        full.len(),
        2,
        "one per server, neither deleted nor overwritten: {full:?}"
    );
    let servers: Vec<String> = full
        .iter()
        .map(|k| {
            let meta = s3_meta(
                server,
                &bucket,
                &format!("shared/{}", k.replace(".dump", ".meta.json")),
            );
            meta["server"]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        servers.iter().filter(|s| *s == "db-one").count(),
        1,
        "{servers:?}"
    );
    assert_eq!(
        servers.iter().filter(|s| *s == "db-two").count(),
        1,
        "{servers:?}"
    );

    // Whole servers: globals and every database, per server.
    for (pg, name, dir) in [(&one, "db-one", &dir_one), (&two, "db-two", &dir_two)] {
        let out = backup_all(pg, server, &bucket, name, dir);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let globals = keys(server, &bucket, "shared/", ".dump")
        .into_iter()
        .filter(|k| k.contains("_globals_"))
        .count();
    assert_eq!(globals, 2, "each server's globals stay");
    let out = backup_all(&one, server, &bucket, "db-one", &dir_one);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut by_server: std::collections::BTreeMap<String, usize> = Default::default();
    for k in keys(server, &bucket, "shared/", ".dump") {
        let meta = s3_meta(
            server,
            &bucket,
            &format!("shared/{}", k.replace(".dump", ".meta.json")),
        );
        *by_server
            .entry(format!(
                "{} {} {}",
                meta["server"]["name"], meta["database"], meta["mode"]
            ))
            .or_default() += 1;
    }
    for (group, n) in &by_server {
        assert_eq!(*n, 1, "keep 1 per (server, database, mode): {by_server:?}");
        let _ = group;
    }
    assert!(
        by_server
            .keys()
            .any(|g| g.starts_with("\"db-two\" \"postgres\" \"full\"")),
        "{by_server:?}"
    );
    assert!(
        by_server
            .keys()
            .any(|g| g.starts_with("\"db-two\" \"postgres\" \"globals\"")),
        "{by_server:?}"
    );

    // check and list see one group per server.
    let out = check_bucket(
        server,
        &bucket,
        "shared/",
        &["--database", "postgres", "--max-verified-age", "0"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    let mut seen: Vec<String> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["server"].as_str().unwrap_or("?").to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ["db-one", "db-two"], "{report:#}");
    let out = run(
        pgbak_s3_url(&one, &one.url("postgres"), server, &bucket, "shared/")
            .args(["list", "--s3", "--json", "--backup-dir"])
            .arg(backup_dir("fleet-list")),
    );
    let list = crate::support::stdout_json(&out);
    let servers: std::collections::BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["server"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(
        servers.into_iter().collect::<Vec<_>>(),
        ["db-one", "db-two"]
    );
    for dir in [dir_one, dir_two] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn fleet_names_come_from_the_clock_and_check_reports_a_backup_dated_in_the_future() {
    let pg = pg16();
    let db = pg.db_with_rows("fleet clock", 100);
    let dir = backup_dir("fleet-clock");
    let out = support::backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // The same backup as if a clock had run 30 days ahead when it was made.
    let real = dumps(&dir)[0].clone();
    let stamp = real
        .trim_end_matches(".dump")
        .rsplit('_')
        .next()
        .unwrap()
        .to_owned();
    let at = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y%m%dT%H%M%S").unwrap();
    let future = (at + chrono::Duration::days(30))
        .format("%Y%m%dT%H%M%S")
        .to_string();
    let ahead = real.replace(&stamp, &future);
    std::fs::rename(dir.join(&real), dir.join(&ahead)).unwrap();
    let meta = std::fs::read_to_string(dir.join(real.replace(".dump", ".meta.json"))).unwrap();
    std::fs::write(
        dir.join(ahead.replace(".dump", ".meta.json")),
        meta.replace(&real, &ahead),
    )
    .unwrap();
    std::fs::remove_file(dir.join(real.replace(".dump", ".meta.json"))).unwrap();

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = support::backup(pg, &db.name, &dir, &["--keep", "0"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let names = dumps(&dir);
    assert_eq!(names.len(), 2, "{names:?}");
    let new = names.iter().find(|n| **n != ahead).unwrap();
    let new_stamp = new.trim_end_matches(".dump").rsplit('_').next().unwrap();
    let new_at = chrono::NaiveDateTime::parse_from_str(new_stamp, "%Y%m%dT%H%M%S").unwrap();
    let now = chrono::Utc::now().naive_utc();
    assert!(
        (now - new_at).num_seconds().abs() < 600,
        "the new name is from the clock, not after the future one: {new}"
    );

    let out = run(support::pgbak_bare()
        .args([
            "check",
            "--json",
            "--max-verified-age",
            "0",
            "--database",
            &db.name,
            "--backup-dir",
        ])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json(&out);
    let group = &report["groups"][0];
    assert_eq!(group["status"], "future", "{report:#}");
    let problems = group["problems"].to_string();
    assert!(problems.contains("in the future"), "{problems}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_check_s3_reports_a_group_whose_newest_backup_is_not_offsite() {
    let (db, server, bucket, dir) = s3_case("fleet offsite", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let out = run(pgbak_s3(&db, server, &bucket, "offsite/")
        .args(["backup", "--output-dir"])
        .arg(&dir));
    assert!(out.status.success(), "{}", output_text(&out));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The next backup never reached the bucket (made without S3).
    let out = support::backup(db.pg(), &db.name, &dir, &["--keep", "0"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let check = |dir: &Path| {
        let mut cmd = support::pgbak_bare();
        for (key, value) in server.env() {
            cmd.env(key, value);
        }
        run(cmd
            .env("AWS_SECRET_ACCESS_KEY", crate::support::bucket::SECRET)
            .env("S3_BUCKET", &bucket)
            .env("S3_PREFIX", "offsite/")
            .args([
                "check",
                "--s3",
                "--json",
                "--max-verified-age",
                "0",
                "--database",
                &db.name,
            ])
            .arg("--backup-dir")
            .arg(dir))
    };
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json(&out);
    let group = &report["groups"][0];
    assert_eq!(group["status"], "not offsite", "{report:#}");
    assert!(
        group["problems"].to_string().contains("not in the bucket"),
        "{report:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_check_after_an_upgrade_shows_the_old_unnamed_backups_as_superseded_not_stale() {
    let pg = pg16();
    let db = pg.db_with_rows("fleet upgrade", 100);
    let dir = backup_dir("fleet-upgrade");
    let out = support::backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // What an older pgbak left: no server in the name or meta.json, two days old.
    let real = dumps(&dir)[0].clone();
    let stem = real.trim_end_matches(".dump");
    let old_at = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y%m%dT%H%M%S");
    let legacy = format!("{}_full_{old_at}", db.name);
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.meta.json"))).unwrap())
            .unwrap();
    meta["file"] = Value::String(format!("{legacy}.dump"));
    meta.as_object_mut().unwrap().remove("server");
    std::fs::write(
        dir.join(format!("{legacy}.meta.json")),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
    std::fs::rename(dir.join(&real), dir.join(format!("{legacy}.dump"))).unwrap();
    std::fs::remove_file(dir.join(format!("{stem}.meta.json"))).unwrap();

    let out = support::backup(pg, &db.name, &dir, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(support::pgbak_bare()
        .args([
            "check",
            "--json",
            "--max-verified-age",
            "0",
            "--database",
            &db.name,
        ])
        .arg("--backup-dir")
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    let mut statuses: Vec<String> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| format!("{} {}", g["status"].as_str().unwrap(), g["server"]))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            format!("ok \"127.0.0.1:{}\"", pg.port),
            "superseded null".to_owned()
        ],
        "{report:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_two_pods_of_one_server_in_the_same_second_claim_two_names() {
    let (db, server, bucket, root) = s3_case("fleet claim", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    for round in 0..3 {
        let pod = |n: u32| {
            pgbak_s3(&db, server, &bucket, "claim/")
                .args(["backup", "--keep", "0", "--output-dir"])
                .arg(root.join(format!("pod{round}-{n}")))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (pod(1), pod(2));
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            assert!(out.status.success(), "{}", output_text(&out));
        }
    }
    let dumps = keys(server, &bucket, "claim/", ".dump");
    assert_eq!(dumps.len(), 6, "six runs, six names: {dumps:?}");
    for dump in &dumps {
        let meta = s3_meta(
            server,
            &bucket,
            &format!("claim/{}", dump.replace(".dump", ".meta.json")),
        );
        assert_eq!(
            meta["file"],
            dump.as_str(),
            "each meta.json names its own dump"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
