//! Issue 28 item 5: `--scratch-dir` (`PGBAK_SCRATCH_DIR`) chooses where restore and verify
//! download a backup from S3 (`$TMPDIR` otherwise). The download is private there (0700
//! directory, 0600 dump), a stop by SIGINT or SIGTERM in the middle of it leaves nothing, and
//! a directory without room for the dump (its size from meta.json) is refused before a byte
//! is fetched: exit 1, nothing written there or in `$TMPDIR`, the target untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::fetch_dirs;
use super::ranged::big_object;
use crate::support::bucket::{pgbak_s3, s3_case};
use crate::support::faults::Tmpfs;
use crate::support::processes::signal;
use crate::support::verify::Dir;
use crate::support::{self, output_text, run, wait_until};

const PREFIX: &str = "ranged/";

/// Downloads into `scratch`, `$TMPDIR` at `tmp`; ranges of 256 KiB one at a time, so a 96 MiB
/// download takes long enough to be stopped midway.
fn into_scratch<'a>(cmd: &'a mut Command, scratch: &Path, tmp: &Path) -> &'a mut Command {
    cmd.arg("--scratch-dir")
        .arg(scratch)
        .env("TMPDIR", tmp)
        .env("PGBAK_S3_DOWNLOAD_PART_SIZE", (256 << 10).to_string())
        .env("S3_DOWNLOAD_CONCURRENCY", "1")
}

/// The download directory in `scratch` once its dump has bytes.
fn wait_for_partial_dump(scratch: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut found = None;
    wait_until(Duration::from_secs(60), || {
        found = fetch_dirs(scratch).into_iter().find_map(|d| {
            let dump = support::files(&d)
                .into_iter()
                .find(|f| f.ends_with(".dump"))
                .map(|f| d.join(f))?;
            std::fs::metadata(&dump)
                .is_ok_and(|m| m.len() > 0)
                .then_some((d, dump))
        });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn scratch_dir_holds_the_download_privately_and_a_signal_midway_leaves_nothing() {
    let (db, server, bucket, root) = s3_case("scratch signal", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let uri = big_object(&db, server, &bucket, &root);
    let scratch = Dir::new("scratch-signal-dir");
    let tmp = Dir::new("scratch-signal-tmp");

    for (command, sig, code) in [
        (vec!["verify", uri.as_str()], libc::SIGTERM, 143),
        (
            vec!["restore", "--no-confirm", "--create-db", uri.as_str()],
            libc::SIGINT,
            130,
        ),
    ] {
        let child = into_scratch(
            pgbak_s3(&db, server, &bucket, PREFIX).args(&command),
            &scratch,
            &tmp,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let (dir, dump) = wait_for_partial_dump(&scratch);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        assert_eq!(mode(&dump), 0o600, "{}", dump.display());
        assert!(fetch_dirs(&tmp).is_empty(), "nothing goes to TMPDIR");

        signal(child.id(), sig);
        let out = child.wait_with_output().unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(code), "{command:?}: {text}");
        assert!(
            support::files(&scratch).is_empty(),
            "{command:?} left {:?}",
            support::files(&scratch)
        );
        assert!(fetch_dirs(&tmp).is_empty());
    }
    assert_eq!(
        db.psql("SELECT count(*) FROM t"),
        "100",
        "the target is as it was"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn scratch_dir_without_room_is_refused_before_a_byte_and_tmpdir_is_untouched() {
    let Some(small) = Tmpfs::mount("16m") else {
        return;
    };
    let scratch = small.path();
    std::fs::create_dir(&scratch).unwrap();
    let (db, server, bucket, root) = s3_case("scratch room", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let uri = big_object(&db, server, &bucket, &root);
    let tmp = Dir::new("scratch-room-tmp");

    // 96 MiB into a 16 MiB tmpfs: one clear line, exit 1, nothing half-written anywhere.
    for command in [
        vec!["verify", uri.as_str()],
        vec!["restore", "--no-confirm", uri.as_str()],
    ] {
        let out = run(into_scratch(
            pgbak_s3(&db, server, &bucket, PREFIX).args(&command),
            &scratch,
            &tmp,
        ));
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {text}");
        assert!(
            text.contains(&format!("not downloading: {} has", scratch.display()))
                && text.contains("the backup needs 96.0 MiB"),
            "{text}"
        );
        assert!(
            support::files(&scratch).is_empty(),
            "{:?}",
            support::files(&scratch)
        );
        assert!(support::files(&tmp).is_empty(), "TMPDIR untouched");
    }
    assert_eq!(
        db.psql("SELECT count(*) FROM t"),
        "100",
        "the target is as it was"
    );

    // The real backup fits: verified from there, which the log names, and gone afterwards.
    let real = crate::support::bucket::keys(server, &bucket, PREFIX, ".dump")
        .into_iter()
        .find(|k| !uri.ends_with(k.as_str()))
        .unwrap();
    let real = format!("s3://{bucket}/{PREFIX}{real}");
    let out = run(into_scratch(
        pgbak_s3(&db, server, &bucket, PREFIX).args(["verify", &real]),
        &scratch,
        &tmp,
    ));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "of local disk in {} for the download",
            scratch.display()
        )),
        "{text}"
    );
    assert!(support::files(&scratch).is_empty());
    assert!(support::files(&tmp).is_empty());
    let _ = std::fs::remove_dir_all(&root);
}
