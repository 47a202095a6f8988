//! `pgbak sync`: a destination that missed backups gets them (every byte's
//! SHA-256 checked, the copies byte-identical), as far as its own retention
//! keeps them; `--dry-run` copies nothing; a copy whose bytes do not match
//! meta.json is not made (exit 1, naming source and backup); an encrypted
//! backup travels as its ciphertext.

use crate::encryption::{age_keygen, contains_pgdmp};
use crate::support::destinations::{TwoBuckets, PREFIX};
use crate::support::{output_text, run, scratch_dir, sha256_hex};

/// `pgbak sync` of the case's `S3_*` bucket (the local directory left out) and `to`.
fn sync(case: &TwoBuckets, to: &str, extra: &[&str]) -> std::process::Output {
    run(case
        .pgbak()
        .args(["sync", "--no-local", "--backup-dir"])
        .arg(&case.dir)
        .args(["--to", to])
        .args(extra))
}

fn object(server: &crate::support::S3Server, bucket: &str, file: &str) -> Vec<u8> {
    server.get_object(bucket, &format!("{PREFIX}{file}"))
}

#[test]
fn sync_backfills_a_destination_that_missed_backups_byte_for_byte() {
    let case = TwoBuckets::new("sync backfill");
    let first = case.backup(&[]);
    let second = case.backup(&[]);
    let to = case.offsite("");

    // --dry-run lists both copies and their source, and copies nothing.
    let out = sync(&case, &to, &["--dry-run"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for dump in [&first, &second] {
        assert!(
            stdout.contains(&format!("would copy {dump} from s3 to offsite")),
            "{text}"
        );
    }
    assert!(
        case.second
            .list_objects(&case.second_bucket, PREFIX)
            .is_empty(),
        "a dry run copied: {text}"
    );

    let out = sync(&case, &to, &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let synced = case.keys(case.second, &case.second_bucket, "");
    assert_eq!(
        synced,
        case.keys(&case.first, &case.first_bucket, ""),
        "{text}"
    );
    for dump in [&first, &second] {
        let copied = object(case.second, &case.second_bucket, dump);
        assert_eq!(
            copied,
            object(&case.first, &case.first_bucket, dump),
            "{dump}"
        );
        let meta: serde_json::Value = serde_json::from_slice(&object(
            case.second,
            &case.second_bucket,
            &dump.replace(".dump", ".meta.json"),
        ))
        .unwrap();
        let path = scratch_dir("sync-copied").join(dump);
        std::fs::write(&path, &copied).unwrap();
        assert_eq!(meta["sha256"], sha256_hex(&path), "{dump}");
    }
    // In sync: a second run copies nothing and exits 0.
    let again = sync(&case, &to, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
    assert!(
        output_text(&again).contains("0 copied"),
        "{}",
        output_text(&again)
    );
}

#[test]
fn sync_refuses_a_copy_whose_bytes_do_not_match_meta_json() {
    let case = TwoBuckets::new("sync mismatch");
    let dump = case.backup(&[]);
    let key = format!("{PREFIX}{dump}");
    case.first.flip_byte(&case.first_bucket, &key);

    let out = sync(&case, &case.offsite(""), &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("copying {dump} from s3 to offsite failed")),
        "names the backup and its source: {text}"
    );
    assert!(
        case.second
            .list_objects(&case.second_bucket, PREFIX)
            .is_empty(),
        "a bad copy reached the destination: {text}"
    );
}

#[test]
fn sync_copies_only_what_the_destination_retention_keeps() {
    let case = TwoBuckets::new("sync retention");
    let dumps: Vec<String> = (0..3).map(|_| case.backup(&[])).collect();
    let out = sync(&case, &case.offsite("&keep-last=1"), &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        case.keys(case.second, &case.second_bucket, ".dump"),
        [dumps[2].clone()],
        "keep-last=1 there: only the newest is copied: {text}"
    );
    // The local directory (keep all) gets every backup it lacks from the bucket.
    std::fs::remove_dir_all(&case.dir).unwrap();
    let out = run(case
        .pgbak()
        .args(["sync", "--backup-dir"])
        .arg(&case.dir)
        .args(["--to", &case.offsite("&keep-last=1")]));
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(crate::support::dumps(&case.dir), dumps, "{text}");
    for dump in &dumps {
        assert_eq!(
            std::fs::read(case.dir.join(dump)).unwrap(),
            object(&case.first, &case.first_bucket, dump),
            "{dump}"
        );
    }
}

#[test]
fn sync_carries_an_encrypted_backup_as_ciphertext_only() {
    let case = TwoBuckets::new("sync encrypted");
    let keys = scratch_dir("sync-encrypted-keys");
    let (_key, public) = age_keygen(&keys, "key.txt");
    let dump = case.backup(&["--encrypt-to", &public]);
    assert!(dump.ends_with(".dump.age"), "{dump}");
    let local = scratch_dir("sync-encrypted-copy");
    let file_to = format!("file://{}?name=vault", local.display());
    let out = run(case
        .pgbak()
        .args(["sync", "--no-local", "--backup-dir"])
        .arg(&case.dir)
        .args(["--to", &case.offsite(""), "--to", &file_to]));
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let sent = object(&case.first, &case.first_bucket, &dump);
    let offsite = object(case.second, &case.second_bucket, &dump);
    let vault = std::fs::read(local.join(&dump)).unwrap();
    assert_eq!(offsite, sent);
    assert_eq!(vault, sent);
    assert!(!contains_pgdmp(&offsite) && !contains_pgdmp(&vault));
    assert!(
        crate::encryption::plaintext_files(&local).is_empty(),
        "plaintext in the file:// destination"
    );
}
