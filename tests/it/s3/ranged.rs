//! Restore and verify download a backup from S3 in parallel ranged GETs (issue 28 item 5):
//! the bytes are those of one GetObject (the checksum against meta.json still decides, a
//! flipped byte is still refused), memory stays at about the range size times the ranges in
//! flight, and a run killed mid-download leaves nothing the next run does not remove.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fetch_dirs;
use crate::support::bucket::{keys, pgbak_s3, s3_backup, s3_case, sha256_hex};
use crate::support::verify::Dir;
use crate::support::{self, output_text, run, wait_until, S3Server};

const PREFIX: &str = "ranged/";

/// Ranges of `part` bytes, `concurrency` at once.
fn ranged<'a>(cmd: &'a mut Command, part: u64, concurrency: u32, tmp: &Path) -> &'a mut Command {
    cmd.env("PGBAK_S3_DOWNLOAD_PART_SIZE", part.to_string())
        .env("S3_DOWNLOAD_CONCURRENCY", concurrency.to_string())
        .env("TMPDIR", tmp)
}

#[test]
fn ranged_download_gives_the_same_bytes_and_still_refuses_a_flipped_byte() {
    let (db, server, bucket, root) = s3_case("ranged bytes", 0.05);
    let dump = s3_backup(&db, server, &bucket, PREFIX, &root, &[]);
    let uri = format!("s3://{bucket}/{PREFIX}{dump}");
    let tmp = Dir::new("ranged-bytes-tmp");

    // Many small ranges, four at once: the checksum against meta.json passes, and the copy
    // restores (verify's checks pass).
    let out = run(ranged(
        pgbak_s3(&db, server, &bucket, PREFIX).args(["verify", "--json", &uri]),
        64 * 1024,
        4,
        &tmp,
    ));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ranges of 64.0 KiB, 4 at once"), "{text}");
    assert!(fetch_dirs(&tmp).is_empty(), "the download is removed");

    // A byte flipped in the object: refused before anything reads it, nothing left.
    let key = format!("{PREFIX}{dump}");
    server.flip_byte(&bucket, &key);
    let out = run(ranged(
        pgbak_s3(&db, server, &bucket, PREFIX).args(["verify", &uri]),
        64 * 1024,
        4,
        &tmp,
    ));
    let text = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("does not match its meta.json"), "{text}");
    assert!(fetch_dirs(&tmp).is_empty(), "{:?}", fetch_dirs(&tmp));
    let _ = std::fs::remove_dir_all(&root);
}

/// A 96 MiB object of random bytes with a meta.json that matches it (a real backup's, with
/// the size, checksum and file changed): what is downloaded is real, what it holds does not
/// matter to the download. Returns its `s3://` URI.
pub(super) fn big_object(
    db: &support::TestDb<'_>,
    server: &S3Server,
    bucket: &str,
    root: &Path,
) -> String {
    let out = run(pgbak_s3(db, server, bucket, PREFIX)
        .args(["backup", "--output-dir"])
        .arg(root));
    assert!(out.status.success(), "{}", output_text(&out));
    let real = keys(server, bucket, PREFIX, ".meta.json").remove(0);
    let mut meta: Value =
        serde_json::from_slice(&server.get_object(bucket, &format!("{PREFIX}{real}"))).unwrap();
    let mut bytes = vec![0u8; 96 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let stem = format!("{}_full_20200101T000000", db.name);
    meta["file"] = Value::from(format!("{stem}.dump"));
    meta["size_bytes"] = Value::from(bytes.len() as u64);
    meta["sha256"] = Value::from(sha256_hex(&bytes));
    server.put_object(bucket, &format!("{PREFIX}{stem}.dump"), bytes, None);
    server.put_object(
        bucket,
        &format!("{PREFIX}{stem}.meta.json"),
        serde_json::to_vec(&meta).unwrap(),
        None,
    );
    format!("s3://{bucket}/{PREFIX}{stem}.dump")
}

/// VmHWM (peak resident set) of `pid`, in KiB; None once it is gone.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn ranged_download_memory_stays_bounded_and_a_kill_mid_download_leaves_nothing() {
    let (db, server, bucket, root) = s3_case("ranged memory", 0.0);
    db.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let uri = big_object(&db, server, &bucket, &root);
    let tmp = Dir::new("ranged-memory-tmp");

    // 1 MiB ranges, two at once: the 96 MiB object never sits in memory.
    let mut child = ranged(
        pgbak_s3(&db, server, &bucket, PREFIX).args(["verify", &uri]),
        1 << 20,
        2,
        &tmp,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(peak > 0, "the peak was read");
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB while downloading 96 MiB in 1 MiB ranges, two at once\n{text}"
    );
    assert!(text.contains("96 ranges of 1.0 MiB, 2 at once"), "{text}");
    assert!(text.contains("sha256 matches meta.json"), "{text}");

    // Killed (SIGKILL) in the middle of the download: the next run removes what it left.
    let mut child = ranged(
        pgbak_s3(&db, server, &bucket, PREFIX).args(["verify", &uri]),
        256 << 10,
        1,
        &tmp,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_until(Duration::from_secs(60), || {
        fetch_dirs(&tmp).iter().any(|d| {
            support::files(d).iter().any(|f| {
                f.ends_with(".dump") && std::fs::metadata(d.join(f)).is_ok_and(|m| m.len() > 0)
            })
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !fetch_dirs(&tmp).is_empty(),
        "the killed run's download is there"
    );
    let out = run(ranged(
        pgbak_s3(&db, server, &bucket, PREFIX)
            .args(["verify", "--backup-dir"])
            .arg(&root),
        1 << 20,
        2,
        &tmp,
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(fetch_dirs(&tmp).is_empty(), "{:?}", fetch_dirs(&tmp));
    let _ = std::fs::remove_dir_all(&root);
}
