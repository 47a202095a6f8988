//! Issue 28 item 5: `restore --create-db --jobs 1` of a backup in S3 streams the download
//! straight into pg_restore (only the dump's head is written locally). Its sha256 is known at
//! the end only, so a stream that does not match meta.json fails the restore (exit 1) and
//! nothing built from it is kept: no staging database, the target as it was, no files. An
//! encrypted backup streams too; a stop midway leaves nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::bucket::{keys, pgbak_s3, s3_backup, s3_case};
use crate::support::keys::keygen;
use crate::support::processes::signal;
use crate::support::verify::Dir;
use crate::support::{self, output_text, run, wait_until, TestDb};

const PREFIX: &str = "streamed/";

/// `restore --from-s3 --create-db --jobs 1`, downloading in ranges of `part` bytes, two at
/// once, with `TMPDIR` at `tmp`.
fn streaming_restore<'a>(cmd: &'a mut Command, part: u64, tmp: &Path) -> &'a mut Command {
    cmd.args([
        "restore",
        "--from-s3",
        "--no-confirm",
        "--create-db",
        "--jobs",
        "1",
    ])
    .env("PGBAK_S3_DOWNLOAD_PART_SIZE", part.to_string())
    .env("S3_DOWNLOAD_CONCURRENCY", "2")
    .env("TMPDIR", tmp)
}

/// The staging databases `restore --create-db` of `db` made that are still there.
fn staging_left(db: &TestDb<'_>) -> String {
    let readable: String = db
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    db.pg().psql(
        "postgres",
        &format!(
            "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database \
             WHERE datname LIKE 'pgbak\\_restoring\\_{readable}\\_%'"
        ),
    )
}

/// A table made after the backup: a restore that replaced the database took it away.
fn mark(db: &TestDb<'_>) {
    db.psql("CREATE TABLE IF NOT EXISTS made_after_backup (x int)");
}

fn marked(db: &TestDb<'_>) -> bool {
    db.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'made_after_backup'") == "1"
}

#[test]
fn restore_streamed_with_one_job_matches_and_a_stream_that_differs_leaves_nothing() {
    let (db, server, bucket, root) = s3_case("restore streamed", 0.05);
    let before = db.pg().row_counts(&db.name);
    s3_backup(&db, server, &bucket, PREFIX, &root, &[]);
    let tmp = Dir::new("restore-streamed-tmp");

    // Streamed: pg_restore reads the download as it comes; every row is back.
    mark(&db);
    let out = run(streaming_restore(
        &mut pgbak_s3(&db, server, &bucket, PREFIX),
        64 << 10,
        &tmp,
    ));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("into pg_restore as it downloads"), "{text}");
    assert_eq!(db.pg().row_counts(&db.name), before);
    assert!(!marked(&db), "the restored database replaced the target");
    assert!(
        support::files(&tmp).is_empty(),
        "{:?}",
        support::files(&tmp)
    );

    // One byte more in the object (pg_restore may well succeed on it), or one byte flipped in
    // the middle: the sha256 at the end differs from meta.json: exit 1, the staging copy
    // dropped, the target untouched.
    let key = format!(
        "{PREFIX}{}",
        keys(server, &bucket, PREFIX, ".dump").remove(0)
    );
    let good = server.get_object(&bucket, &key);
    let mut longer = good.clone();
    longer.push(0);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    for bad in [longer, flipped] {
        server.put_object(&bucket, &key, bad, None);
        mark(&db);
        let out = run(streaming_restore(
            &mut pgbak_s3(&db, server, &bucket, PREFIX),
            64 << 10,
            &tmp,
        ));
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("does not match its meta.json")
                && text.contains("checked as it streamed into pg_restore"),
            "{text}"
        );
        assert!(marked(&db), "the target is as it was");
        assert_eq!(staging_left(&db), "", "{text}");
        assert!(
            support::files(&tmp).is_empty(),
            "{:?}",
            support::files(&tmp)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn restore_streamed_decrypts_an_encrypted_backup_on_the_way() {
    let (db, server, bucket, root) = s3_case("restore streamed enc", 0.05);
    let before = db.pg().row_counts(&db.name);
    let keys_dir = Dir::new("restore-streamed-keys");
    let (key, public) = keygen(&keys_dir, "pgbak.key");
    s3_backup(
        &db,
        server,
        &bucket,
        PREFIX,
        &root,
        &["--encrypt-to", &public],
    );
    let tmp = Dir::new("restore-streamed-enc-tmp");
    mark(&db);
    // Ranges of 256 KiB: the head holds whole age chunks (64 KiB each) and the archive's
    // table of contents.
    let out = run(streaming_restore(
        pgbak_s3(&db, server, &bucket, PREFIX).env("PGBAK_AGE_IDENTITY_FILE", &key),
        256 << 10,
        &tmp,
    ));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("into pg_restore as it downloads"), "{text}");
    assert_eq!(db.pg().row_counts(&db.name), before);
    assert!(!marked(&db));
    assert!(support::files(&tmp).is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn restore_streamed_stopped_midway_leaves_nothing() {
    let (db, server, bucket, root) = s3_case("restore streamed stop", 0.2);
    s3_backup(&db, server, &bucket, PREFIX, &root, &[]);
    let tmp = Dir::new("restore-streamed-stop-tmp");
    mark(&db);
    // Ranges of 16 KiB: the stream lasts long enough to be stopped while pg_restore reads it.
    let mut child = streaming_restore(&mut pgbak_s3(&db, server, &bucket, PREFIX), 16 << 10, &tmp)
        .env("S3_DOWNLOAD_CONCURRENCY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), || {
        if child.try_wait().unwrap().is_some() {
            let mut text = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap();
            panic!("the restore ended before it was stopped: {text}");
        }
        !staging_left(&db).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(143), "{text}");
    assert!(text.contains("into pg_restore as it downloads"), "{text}");
    assert_eq!(staging_left(&db), "", "{text}");
    assert!(marked(&db), "the target is as it was");
    assert!(
        support::files(&tmp).is_empty(),
        "{:?}",
        support::files(&tmp)
    );
    let _ = std::fs::remove_dir_all(&root);
}
