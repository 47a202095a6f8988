//! `pgbak backup` takes the lock of its group that `pgbak cron` takes: an
//! operator's backup before a migration and the 02:00 run of the same
//! database and mode never run at once (one post-dump path, issue 26).

use std::io::Write;

use crate::support::{
    backup, dumps, files, lock_owned_by, output_text, pg16, private_cluster, spawn_backup,
    TableLock,
};

#[test]
fn backup_while_another_run_of_its_group_holds_the_lock_exits_75_and_writes_nothing() {
    let pg = pg16();
    let db = pg.fresh_db("backup_lock");
    db.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
    let tmp = tempfile::tempdir().unwrap();
    // The lock as a cron run holds it: flock on the group's file, its owner written.
    let path = tmp
        .path()
        .join(format!(".pgbak-{}_full.held.lock", db.name));
    let mut file = std::fs::File::create(&path).unwrap();
    file.try_lock().expect("the test takes the lock");
    write!(file, "pid=4242\nstarted=2026-11-25T02:00:00Z\n").unwrap();

    let named = ["--server-name", "held"];
    let out = backup(pg, &db.name, tmp.path(), &named);
    assert_eq!(out.status.code(), Some(75), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pid 4242"),
        "names the holder: {}",
        output_text(&out)
    );
    assert!(files(tmp.path()).is_empty(), "{:?}", files(tmp.path()));

    // Another mode is another group: not held.
    let schema = backup(
        pg,
        &db.name,
        tmp.path(),
        &["--server-name", "held", "--mode", "schema"],
    );
    assert!(schema.status.success(), "{}", output_text(&schema));

    drop(file);
    let out = backup(pg, &db.name, tmp.path(), &named);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        dumps(tmp.path())
            .iter()
            .filter(|d| d.contains("_full_"))
            .count(),
        1
    );
}

#[test]
fn two_servers_with_a_database_of_the_same_name_back_up_into_one_directory_at_once() {
    // Groups are per server: "app" of server a and "app" of server b are two
    // groups, with their own backups and retention, so neither run may wait
    // for (or be refused by) the other's lock. Each server keeps its default
    // name (its socket's host and port).
    let a = pg16();
    let db = a.fixture_db("backup lock servers", 0.05);
    let b = private_cluster(16);
    let _same_name = b.create_db_named(&db.name);
    b.psql(&db.name, "CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
    let tmp = tempfile::tempdir().unwrap();
    let table_lock = TableLock::hold(a, &db.name, "users");
    let first = spawn_backup(a, &db.name, tmp.path(), &[]);
    let held = lock_owned_by(tmp.path(), ".pgbak-", first.id());

    let other = backup(&b, &db.name, tmp.path(), &[]);
    let same = backup(a, &db.name, tmp.path(), &[]);
    table_lock.release();
    let first = first.wait_with_output().unwrap();

    assert!(
        other.status.success(),
        "server b's backup is not server a's group (lock {held}): {}",
        output_text(&other)
    );
    assert_eq!(same.status.code(), Some(75), "{}", output_text(&same));
    assert!(first.status.success(), "{}", output_text(&first));
    assert_eq!(dumps(tmp.path()).len(), 2, "{:?}", files(tmp.path()));
}
