//! What tests do to a backup directory and see in it: a `pgbak backup` run,
//! the files it left, meta.json, checksums; a restore command into another
//! database; the assertion that a failed run left nothing behind.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{output_text, pgbak, Pg, TestDb};

/// `pgbak backup` of `db` into `dir` with extra arguments, not started yet.
pub fn backup_cmd(pg: &Pg, db: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = pgbak(pg);
    cmd.env("DATABASE_URL", pg.url(db))
        .arg("backup")
        .arg("--output-dir")
        .arg(dir)
        .args(extra);
    cmd
}

/// Runs `pgbak backup` for `db` into `dir` with extra arguments.
pub fn backup(pg: &Pg, db: &str, dir: &Path, extra: &[&str]) -> Output {
    run(&mut backup_cmd(pg, db, dir, extra))
}

/// Starts `pgbak backup` with its output captured (for a run the test stops or kills).
pub fn spawn_backup(pg: &Pg, db: &str, dir: &Path, extra: &[&str]) -> Child {
    backup_cmd(pg, db, dir, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgbak")
}

/// Waits until a group's run lock in `dir` whose name starts with `prefix` names `pid` as
/// its owner (the lock file holds `pid=N`); the lock's file name.
pub fn lock_owned_by(dir: &Path, prefix: &str, pid: u32) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owned = std::fs::read_to_string(entry.path())
                .is_ok_and(|t| t.contains(&format!("pid={pid}\n")));
            if name.starts_with(prefix) && name.ends_with(".lock") && owned {
                return name;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "pid {pid} never took a lock {prefix}*.lock in {}",
        dir.display()
    );
}

/// Files in `dir` (names only), sorted; the groups' run locks
/// (`.pgbak-*.lock`, which stay between runs, empty, like cron's) left out.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !(n.starts_with(".pgbak-") && n.ends_with(".lock")))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The `.dump` files in `dir`, sorted.
pub fn dumps(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(".dump"))
        .collect()
}

/// A meta.json, parsed.
pub fn read_meta(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("reading meta.json"))
        .expect("meta.json is JSON")
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
pub fn one_file(dir: &Path, prefix: &str, suffix: &str) -> std::path::PathBuf {
    let found: Vec<String> = files(dir)
        .into_iter()
        .filter(|f| f.starts_with(prefix) && f.ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{prefix}*{suffix} in {:?}", files(dir));
    dir.join(&found[0])
}

/// Edits the meta.json at `path` in place, as someone with write access to the bucket can.
pub fn edit_meta(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut meta = read_meta(path);
    change(&mut meta);
    std::fs::write(path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

/// SHA-256 of a file, in hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// An earlier complete backup that a failed run must not prune (it runs with --keep 1).
pub fn earlier_backup(pg: &Pg, db: &str, dir: &Path) -> String {
    let out = backup(pg, db, dir, &["--keep", "1"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let names = dumps(dir);
    assert_eq!(names.len(), 1);
    std::thread::sleep(Duration::from_millis(1100));
    names[0].clone()
}

/// Asserts that `dir` holds only the earlier backup: the failed run left nothing.
pub fn assert_only(dir: &Path, earlier: &str) {
    let stem = earlier.strip_suffix(".dump").unwrap();
    assert_eq!(
        files(dir),
        vec![earlier.to_owned(), format!("{stem}.meta.json")],
        "no new .dump, .meta.json or .partial; the earlier backup stays"
    );
}

/// `pgbak restore DUMP` into `target` (another database than the backup's
/// source, allowed explicitly) with extra arguments.
pub fn restore_cmd(target: &TestDb<'_>, dump: &Path, extra: &[&str]) -> Command {
    let mut cmd = pgbak(target.pg());
    cmd.arg("restore")
        .arg(dump)
        .arg("--allow-other-database")
        .args(extra)
        .env("DATABASE_URL", target.url());
    cmd
}

/// `pgbak restore` of `dump` into `target` (as [`restore_cmd`]), run to its end; the test
/// fails unless it exits with `code`.
pub fn restore_exits(target: &TestDb<'_>, dump: &Path, extra: &[&str], code: i32) -> Output {
    let out = run(&mut restore_cmd(target, dump, extra));
    assert_eq!(out.status.code(), Some(code), "{}", output_text(&out));
    out
}

/// Runs a prepared `pgbak` command to its end.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running pgbak")
}

/// The JSON a successful command printed on stdout.
pub fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", output_text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)))
}
