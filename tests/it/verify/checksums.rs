//! Re-proving retained backups (issue 28 item 3): `verify --checksum-only` reads every
//! backup of the store back (the bucket when S3 is configured) and checks its sha256 and, for
//! `.dump.age`, that the identity decrypts it; a flipped byte marks that backup failed (exit
//! 1 naming it, selection passes over it), a pass records a proof beside the restore verdict.
//! `verify --sample N` restores the backups proven longest ago.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::bucket::{backup_dir, keys, pgbak_s3, s3_case};
use crate::support::keys::keygen;
use crate::support::verify::{backup, verify_cmd, Dir};
use crate::support::{self, output_text, pg16, run, S3Server};

const PREFIX: &str = "reprove/";

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)))
}

/// The verdict document beside `dump` in the bucket.
fn verdict(server: &S3Server, bucket: &str, dump: &str) -> Value {
    let key = format!("{PREFIX}{}", dump.replace(".dump.age", ".verify.json"));
    let key = key.replace(".dump", ".verify.json");
    serde_json::from_slice(&server.get_object(bucket, &key)).expect("a verdict document")
}

/// Three backups of `db` into the bucket, a second apart; their dump keys, oldest first.
fn three_backups(
    db: &support::TestDb<'_>,
    server: &S3Server,
    bucket: &str,
    root: &Path,
    extra: &[&str],
) -> Vec<String> {
    for n in 0..3 {
        let out = run(pgbak_s3(db, server, bucket, PREFIX)
            .args(["backup", "--keep", "0", "--output-dir"])
            .arg(root.join(format!("pod{n}")))
            .args(extra));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let suffix = if extra.is_empty() {
        ".dump"
    } else {
        ".dump.age"
    };
    let dumps = keys(server, bucket, PREFIX, suffix);
    assert_eq!(dumps.len(), 3, "{dumps:?}");
    dumps
}

fn checksum_only(
    db: &support::TestDb<'_>,
    server: &S3Server,
    bucket: &str,
    extra: &[&str],
) -> Output {
    run(pgbak_s3(db, server, bucket, PREFIX)
        .args(["verify", "--checksum-only", "--json", "--parallel", "2"])
        .arg("--backup-dir")
        .arg(backup_dir("reprove-none"))
        .args(extra))
}

#[test]
fn verify_checksum_only_finds_a_flipped_byte_two_backups_back_and_selection_passes_over_it() {
    let (db, server, bucket, root) = s3_case("reprove flipped", 0.05);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g");
    let dumps = three_backups(&db, server, &bucket, &root, &[]);

    // Nothing flipped: every backup passes and its proof is recorded in the bucket.
    let out = checksum_only(&db, server, &bucket, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    assert_eq!(report["checked"].as_array().unwrap().len(), 3, "{report:#}");
    for dump in &dumps {
        let doc = verdict(server, &bucket, dump);
        assert_eq!(doc["checksum"]["passed"], true, "{doc:#}");
        assert!(
            doc.get("verification").is_none(),
            "no restore verdict: {doc:#}"
        );
    }

    // A byte flipped in the backup two back from the newest: found, named, marked failed.
    server.flip_byte(&bucket, &format!("{PREFIX}{}", dumps[0]));
    let out = checksum_only(&db, server, &bucket, &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("checksum FAIL {}", dumps[0])),
        "{text}"
    );
    let failed = verdict(server, &bucket, &dumps[0]);
    assert_eq!(failed["verification"]["passed"], false, "{failed:#}");
    assert_eq!(failed["verification"]["failed_checks"][0], "checksum");
    assert_eq!(failed["checksum"]["passed"], false, "{failed:#}");
    for dump in &dumps[1..] {
        assert_eq!(verdict(server, &bucket, dump)["checksum"]["passed"], true);
    }

    // Selection passes over a backup the checksums failed: flip the newest too, and a
    // verify without a name restores the middle one, naming the one it skipped.
    server.flip_byte(&bucket, &format!("{PREFIX}{}", dumps[2]));
    let out = checksum_only(&db, server, &bucket, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let out = run(pgbak_s3(&db, server, &bucket, PREFIX)
        .args(["verify", "--from-s3", "--json", "--backup-dir"])
        .arg(backup_dir("reprove-select")));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("skipping {}", dumps[2].trim_end_matches(".dump"))),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn verify_checksum_only_decrypts_encrypted_backups_with_the_identity() {
    let (db, server, bucket, root) = s3_case("reprove age", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g");
    std::fs::create_dir_all(&root).unwrap();
    let (identity, public) = keygen(&root, "id");
    let dumps = three_backups(&db, server, &bucket, &root, &["--encrypt-to", &public]);
    let with_identity = ["--identity-file", identity.to_str().unwrap()];

    let out = checksum_only(&db, server, &bucket, &with_identity);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json(&out);
    for checked in report["checked"].as_array().unwrap() {
        let detail = checked["detail"].as_str().unwrap();
        assert!(detail.contains("decrypts"), "{report:#}");
    }

    // Another identity proves nothing: exit 1, and no backup is marked failed for it.
    let (other, _) = keygen(&root, "other");
    let out = checksum_only(
        &db,
        server,
        &bucket,
        &["--identity-file", other.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    for dump in &dumps {
        let doc = verdict(server, &bucket, dump);
        assert!(doc.get("verification").is_none(), "{doc:#}");
    }

    // A flipped byte in the ciphertext fails that backup.
    server.flip_byte(&bucket, &format!("{PREFIX}{}", dumps[1]));
    let out = checksum_only(&db, server, &bucket, &with_identity);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("checksum FAIL {}", dumps[1])),
        "{text}"
    );
    assert_eq!(
        verdict(server, &bucket, &dumps[1])["verification"]["passed"],
        false
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn verify_sample_1_restores_the_backup_proven_longest_ago() {
    let pg = pg16();
    let db = pg.db_with(
        "reprove sample",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
    );
    let dir = Dir::new("reprove-sample");
    let mut dumps = Vec::new();
    for _ in 0..3 {
        dumps.push(backup(&db, &dir));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let file = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    // Real verifies, newest first, so the oldest backup has the oldest restore verdict...
    for dump in dumps.iter().rev().take(2) {
        let out = run(&mut verify_cmd(&db, dump, &[]));
        assert!(out.status.success(), "{}", output_text(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let sample = || {
        let out = run(support::pgbak(db.pg())
            .env("DATABASE_URL", db.url())
            .args(["verify", "--sample", "1", "--json", "--backup-dir"])
            .arg(&*dir));
        assert!(out.status.success(), "{}", output_text(&out));
        json(&out)["sampled"].clone()
    };
    // ...but the first was never restored: it goes first.
    let sampled = sample();
    assert_eq!(sampled.as_array().unwrap().len(), 1, "{sampled:#}");
    assert_eq!(sampled[0]["file"], file(&dumps[0]), "{sampled:#}");
    assert_eq!(sampled[0]["reason"], "never restored");
    // Now every backup was restored once: the one restored longest ago is the newest.
    let sampled = sample();
    assert_eq!(sampled[0]["file"], file(&dumps[2]), "{sampled:#}");
    assert!(
        sampled[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("last restored"),
        "{sampled:#}"
    );
}
