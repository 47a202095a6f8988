//! `pgbak backup` takes the lock of its group that `pgbak cron` takes: an
//! operator's backup before a migration and the 02:00 run of the same
//! database and mode never run at once (one post-dump path, issue 26).

use std::io::Write;

use crate::support::{backup, dumps, files, output_text, pg16};

#[test]
fn backup_while_another_run_of_its_group_holds_the_lock_exits_75_and_writes_nothing() {
    let pg = pg16();
    let db = pg.fresh_db("backup_lock");
    db.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
    let tmp = tempfile::tempdir().unwrap();
    // The lock as a cron run holds it: flock on the group's file, its owner written.
    let path = tmp.path().join(format!(".pgbak-{}_full.lock", db.name));
    let mut file = std::fs::File::create(&path).unwrap();
    file.try_lock().expect("the test takes the lock");
    write!(file, "pid=4242\nstarted=2026-11-25T02:00:00Z\n").unwrap();

    let out = backup(pg, &db.name, tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(75), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pid 4242"),
        "names the holder: {}",
        output_text(&out)
    );
    assert!(files(tmp.path()).is_empty(), "{:?}", files(tmp.path()));

    // Another mode is another group: not held.
    let schema = backup(pg, &db.name, tmp.path(), &["--mode", "schema"]);
    assert!(schema.status.success(), "{}", output_text(&schema));

    drop(file);
    let out = backup(pg, &db.name, tmp.path(), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        dumps(tmp.path())
            .iter()
            .filter(|d| d.contains("_full_"))
            .count(),
        1
    );
}
