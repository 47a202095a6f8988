//! `restore` and `verify` read from the first destination (in order) that
//! holds good bytes of the backup: one that is down, or holds a copy whose
//! bytes do not match meta.json, is skipped and named; verify's verdict
//! lands on every destination that holds the backup.

use crate::support::destinations::{TwoBuckets, PREFIX};
use crate::support::{output_text, run, scratch_dir};

fn rows(db: &crate::support::TestDb<'_>) -> String {
    db.psql("SELECT count(*) FROM messages")
}

#[test]
fn restore_falls_back_to_the_second_destination_when_the_first_is_down() {
    let case = TwoBuckets::new("dest fallback down");
    let dump = case.backup(&[]);
    case.copy_first_to_second();
    case.first.kill();
    let before = rows(&case.db);
    case.db.psql("TRUNCATE messages CASCADE");
    let restore = |to: Option<&str>| {
        let mut cmd = case.pgbak();
        cmd.args(["restore", "--from-s3", "--no-confirm", "--create-db"])
            .env("AWS_MAX_ATTEMPTS", "1");
        if let Some(to) = to {
            cmd.args(["--to", to]);
        }
        run(&mut cmd)
    };
    // Without the second destination, the restore has nowhere to read from.
    let alone = restore(None);
    assert!(!alone.status.success(), "{}", output_text(&alone));

    let out = restore(Some(&case.offsite("")));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(rows(&case.db), before, "{text}");
    assert!(
        text.contains(&format!("reading {dump} from destination offsite")),
        "says which destination it read: {text}"
    );
    assert!(text.contains("s3 (s3://"), "names the skipped one: {text}");
}

#[test]
fn a_flipped_byte_at_the_first_destination_falls_back_and_names_it() {
    let case = TwoBuckets::new("dest fallback flip");
    let out = crate::support::backup(case.db.pg(), &case.db.name, &case.dir, &["--no-s3"]);
    assert!(out.status.success(), "{}", output_text(&out));
    // A second directory holds the same backup (file:// destination `copy`).
    let copy = scratch_dir("dest-fallback-copy");
    for f in crate::support::files(&case.dir) {
        std::fs::copy(case.dir.join(&f), copy.join(&f)).unwrap();
    }
    let dump = crate::support::dumps(&case.dir).pop().unwrap();
    let mut bytes = std::fs::read(case.dir.join(&dump)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(case.dir.join(&dump), &bytes).unwrap();

    let to = format!("file://{}?name=copy", copy.display());
    let verify = || {
        run(crate::support::pgbak(case.db.pg())
            .env("DATABASE_URL", case.db.url())
            .args(["verify", "--json", "--backup-dir"])
            .arg(&case.dir)
            .args(["--to", &to]))
    };
    let out = verify();
    let text = output_text(&out);
    assert!(out.status.success(), "the good copy verifies: {text}");
    assert!(
        text.contains("destination local holds a bad copy"),
        "the warning names the bad destination: {text}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true, "{text}");
    // The verdict lands where the good bytes are, not beside the bad copy.
    let verdict = dump.replace(".dump", ".verify.json");
    assert!(copy.join(&verdict).is_file(), "{text}");
    assert!(!case.dir.join(&verdict).exists(), "{text}");

    // No destination with good bytes: the checksum Finding of today (exit 1).
    let mut bytes = std::fs::read(copy.join(&dump)).unwrap();
    bytes[middle] ^= 0xff;
    bytes[middle + 1] ^= 0xff;
    std::fs::write(copy.join(&dump), &bytes).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checksum = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "checksum")
        .cloned()
        .unwrap_or_default();
    assert_eq!(checksum["status"], "fail", "{}", output_text(&out));
}

#[test]
fn verify_records_its_verdict_on_every_destination_that_holds_the_backup() {
    let case = TwoBuckets::new("dest verdict all");
    let dump = case.backup(&[]);
    case.copy_first_to_second();
    let out = run(case
        .pgbak()
        .args(["verify", "--from-s3", "--to", &case.offsite("")]));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let verdict = dump.replace(".dump", ".verify.json");
    for (server, bucket) in [
        (&*case.first, &case.first_bucket),
        (case.second, &case.second_bucket),
    ] {
        let json = server.get_object(bucket, &format!("{PREFIX}{verdict}"));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["verification"]["passed"], true, "{bucket}: {v}");
    }
}
