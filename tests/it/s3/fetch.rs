//! `fetch_backup`: a backup by s3:// URI or the newest full backup under a prefix, downloaded with
//! its meta.json; hostile keys and checksum mismatches are refused.

use std::path::Path;

use pgbak::meta::Meta;
use pgbak::storage::s3::S3Settings;

use crate::support::bucket::{backup_dir, files, pgbak_s3, s3_case, sha256_hex, SECRET};
use crate::support::{output_text, run, s3, S3Server};

/// Credentials for in-process S3 calls (`fetch_backup`), set once.
fn in_process_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

fn s3_args(server: &S3Server, bucket: &str, prefix: &str) -> pgbak::cli::S3Args {
    pgbak::cli::S3Args {
        bucket: Some(bucket.to_owned()),
        prefix: Some(prefix.to_owned()),
        endpoint_url: Some(server.endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        storage_class: "STANDARD_IA".parse().unwrap(),
        max_parts: 10_000,
        concurrency: 4,
        ..Default::default()
    }
}

fn fetch(
    args: &pgbak::cli::S3Args,
    uri: Option<&str>,
    db: &str,
    dest: &Path,
) -> anyhow::Result<pgbak::storage::Fetched> {
    in_process_credentials();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Without a URI: the newest full backup of `db`.
    let select = pgbak::storage::select::Selector {
        database: db.to_owned(),
        mode: pgbak::cli::Mode::Full,
        include_failed: false,
    };
    rt.block_on(async {
        let open = |s: S3Settings| pgbak::storage::Place::S3(Box::new(s)).open();
        let (store, file) = match uri {
            Some(uri) => {
                let (bucket, key) = pgbak::storage::s3::parse_uri(uri)?;
                let settings = S3Settings::from_args(args, None)?.in_bucket(&bucket);
                let file = key.rsplit('/').next().unwrap_or(&key).to_owned();
                (open(settings).beside(&key), file)
            }
            None => {
                let store = open(S3Settings::from_args(args, None)?);
                let name = pgbak::storage::select::newest(&store, &select, "").await?;
                (store, name.dump_file())
            }
        };
        store.download(&file, dest, &|_| Ok(())).await
    })
}

#[test]
fn fetch_backup_by_uri_and_newest_full_under_prefix() {
    let (db, server, bucket, dir) = s3_case("s3 fetch", 0.05);
    let prefix = "fetch/";
    for mode in ["full", "full", "schema"] {
        let out = run(pgbak_s3(&db, server, &bucket, prefix)
            .args(["backup", "--mode", mode, "--keep", "0", "--output-dir"])
            .arg(&dir));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let dumps = files(&dir, ".dump");
    assert_eq!(dumps.len(), 3);
    let fulls: Vec<&String> = dumps.iter().filter(|d| d.contains("_full_")).collect();
    let (older, newer) = (fulls[0], fulls[1]);
    // A newer full dump without its meta.json is not complete: never picked.
    let mut later = pgbak::storage::BackupName::parse(newer).expect("a backup name");
    later.timestamp += chrono::Duration::hours(1);
    let incomplete = later.dump_file();
    server.put_object(
        &bucket,
        &format!("{prefix}{incomplete}"),
        b"PGDMP junk".to_vec(),
        None,
    );

    let dest = backup_dir("s3-fetch-dest");
    let fetched =
        fetch(&s3_args(server, &bucket, prefix), None, &db.name, &dest).expect("fetching newest");
    assert_eq!(fetched.dump, dest.join(newer));
    assert_eq!(
        std::fs::read(&fetched.dump).unwrap(),
        std::fs::read(dir.join(newer)).unwrap()
    );
    let meta = Meta::read(fetched.meta.as_ref().expect("meta fetched")).unwrap();
    assert_eq!(
        meta.sha256,
        sha256_hex(&std::fs::read(&fetched.dump).unwrap())
    );
    assert!(pgbak::storage::fsio::is_private(&fetched.dump));

    let dest2 = backup_dir("s3-fetch-dest2");
    // The URI names its own bucket; the configured one does not matter.
    let other = s3_args(server, "unused-bucket", "elsewhere/");
    let uri = format!("s3://{bucket}/{prefix}{older}");
    let fetched = fetch(&other, Some(&uri), "", &dest2).expect("fetching by URI");
    assert_eq!(fetched.dump, dest2.join(older));
    assert_eq!(
        std::fs::read(&fetched.dump).unwrap(),
        std::fs::read(dir.join(older)).unwrap()
    );
    assert!(fetched.meta.is_some());
    for d in [&dir, &dest, &dest2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn fetch_backup_refuses_hostile_keys_and_checksum_mismatches() {
    let server = s3();
    let bucket = server.fresh_bucket("fetch-hostile");
    let dest = backup_dir("s3-hostile");
    let args = s3_args(server, &bucket, "");
    for uri in [
        format!("s3://{bucket}/../x_full_20261125T020000.dump"),
        format!("s3://{bucket}/a/../../x_full_20261125T020000.dump"),
        format!("s3://{bucket}/a/./x_full_20261125T020000.dump"),
        format!("s3://{bucket}/notes.txt"),
        format!("s3://{bucket}/"),
    ] {
        let err = fetch(&args, Some(&uri), "", &dest).expect_err(&uri);
        assert_eq!(pgbak::error::exit_code(&err), 2, "{uri}: {err:#}");
    }
    // A dump whose bytes differ from its meta.json: refused, nothing left behind.
    let name = "x_full_20261125T020000";
    let mut meta: serde_json::Value = serde_json::json!({
        "format_version": 1, "database": "x", "mode": "full", "label": null,
        "file": format!("{name}.dump"), "size_bytes": 10, "sha256": "a".repeat(64),
        "started_at": "2026-11-25T02:00:00Z", "finished_at": "2026-11-25T02:00:01Z",
        "duration_seconds": 1.0, "compression": "zstd:1", "server_version": "16.1",
        "pg_dump_version": "17.1", "alembic_revision": null, "extensions": {}, "tables": [],
        "host": "h", "pgbak_version": "0.1.0", "s3": null
    });
    server.put_object(
        &bucket,
        &format!("p/{name}.dump"),
        b"PGDMP12345".to_vec(),
        None,
    );
    server.put_object(
        &bucket,
        &format!("p/{name}.meta.json"),
        meta.to_string().into_bytes(),
        None,
    );
    let uri = format!("s3://{bucket}/p/{name}.dump");
    let err = fetch(&args, Some(&uri), "", &dest).expect_err("checksum mismatch");
    assert!(
        format!("{err:#}").contains("does not match its meta.json"),
        "{err:#}"
    );
    assert!(files(&dest, "").is_empty(), "{:?}", files(&dest, ""));
    // A meta.json naming a path outside the directory is not read at all.
    meta["file"] = serde_json::json!("../../etc/passwd.dump");
    meta["sha256"] = serde_json::json!(sha256_hex(b"PGDMP12345"));
    server.put_object(
        &bucket,
        &format!("p/{name}.meta.json"),
        meta.to_string().into_bytes(),
        None,
    );
    assert!(fetch(&args, Some(&uri), "", &dest).is_err());
    assert!(files(&dest, "").is_empty());
    // With a good meta.json the same object downloads and checks out.
    meta["file"] = serde_json::json!(format!("{name}.dump"));
    server.put_object(
        &bucket,
        &format!("p/{name}.meta.json"),
        meta.to_string().into_bytes(),
        None,
    );
    let fetched = fetch(&args, Some(&uri), "", &dest).expect("good fetch");
    assert_eq!(std::fs::read(&fetched.dump).unwrap(), b"PGDMP12345");
    // Nothing under the prefix: a clear error.
    let empty = s3_args(server, &bucket, "nothing-here/");
    let err = fetch(&empty, None, "db", &dest).expect_err("empty prefix");
    assert!(
        format!("{err:#}").contains("no complete full backup"),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(&dest);
}
