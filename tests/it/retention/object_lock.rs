//! S3 Object Lock on a moto bucket created with it: a locked backup survives a delete attempt and
//! prune plans around it; Object Lock asked of a bucket without it exits 2 before dumping.

use super::{small_db, small_s3_case};
use crate::support::bucket::pgbak_s3;
use crate::support::{self, dumps, output_text, pg16, run, s3, stdout_json};

/// A bucket created with Object Lock enabled (and so versioning).
fn lock_bucket(server: &support::S3Server, name: &str) {
    let client = server.client();
    support::s3::block_on(async {
        client
            .create_bucket()
            .bucket(name)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
    })
    .expect("creating a bucket with Object Lock");
}

#[test]
fn s3_object_lock_on_a_bucket_without_it_exits_2_before_dumping() {
    let (db, server, bucket, dir) = small_s3_case("no lock bucket", "nolock");
    let out = run(pgbak_s3(&db, server, &bucket, "p/")
        .args(["backup", "--s3-object-lock-days", "7", "--output-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not have Object Lock enabled"),
        "{}",
        output_text(&out)
    );
    assert!(dumps(dir.path()).is_empty(), "nothing was dumped");
    assert!(server.list_objects(&bucket, "").is_empty());
}

#[test]
fn s3_locked_backup_survives_a_delete_attempt_and_prune_plans_around_it() {
    let pg = pg16();
    let db = small_db(pg, "object lock", 10);
    let server = s3();
    let bucket = format!("t-lock-{}", std::process::id());
    lock_bucket(server, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let backup_s3 = |extra: &[&str]| {
        let out = run(pgbak_s3(&db, server, &bucket, "p/")
            .args([
                "backup",
                "--keep",
                "0",
                "--storage-class",
                "STANDARD",
                "--json",
            ])
            .args(extra)
            .arg("--output-dir")
            .arg(dir.path()));
        stdout_json(&out)["meta"]["file"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let locked = backup_s3(&[
        "--s3-object-lock-days",
        "2",
        "--s3-object-lock-mode",
        "governance",
    ]);
    let newer = backup_s3(&[]);
    let locked_key = format!("p/{locked}");

    // The store itself refuses to delete the locked version.
    let client = server.client();
    let refused = support::s3::block_on(async {
        let head = client
            .head_object()
            .bucket(&bucket)
            .key(&locked_key)
            .send()
            .await?;
        let version = head.version_id().unwrap_or_default().to_owned();
        assert!(head.object_lock_retain_until_date().is_some(), "{head:?}");
        Ok::<_, aws_sdk_s3::Error>(
            client
                .delete_object()
                .bucket(&bucket)
                .key(&locked_key)
                .version_id(version)
                .send()
                .await
                .is_err(),
        )
    })
    .expect("reading the lock");
    assert!(refused, "a locked version cannot be deleted");

    // prune plans around it: kept, "locked until", and the run succeeds.
    let prune = |dry: bool| {
        let mut cmd = pgbak_s3(&db, server, &bucket, "p/");
        cmd.env("BACKUP_DIR", dir.path()).args([
            "prune",
            "--s3",
            "--no-local",
            "--keep-last",
            "1",
            "--json",
        ]);
        if dry {
            cmd.arg("--dry-run");
        }
        stdout_json(&run(&mut cmd))
    };
    let plan = prune(true);
    let entry = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == locked.trim_end_matches(".dump"))
        .unwrap()
        .clone();
    assert_eq!(entry["action"], "keep", "{plan}");
    assert!(
        entry["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("locked until"),
        "{entry}"
    );
    prune(false);
    let keys: Vec<String> = server
        .list_objects(&bucket, "p/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(keys.contains(&locked_key), "{keys:?}");
    assert!(keys.contains(&format!("p/{newer}")), "{keys:?}");

    // list shows the lock.
    let list = stdout_json(&run(pgbak_s3(&db, server, &bucket, "p/")
        .env("BACKUP_DIR", dir.path())
        .args(["list", "--s3", "--json"])));
    let shown = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == locked.trim_end_matches(".dump"))
        .unwrap()
        .clone();
    assert!(shown["locked_until"].is_string(), "{shown}");
}
