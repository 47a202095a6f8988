//! The confirmation before a restore replaces a database: without a terminal it refuses at once
//! and leaves the target; on a terminal it asks for the database's name.

use std::process::Output;
use std::time::{Duration, Instant};

use super::tables;
use crate::support::processes::on_terminal;
use crate::support::verify::fixture_backup;
use crate::support::{output_text, pg16, restore_exits, TestDb};

#[test]
fn restore_without_a_terminal_refuses_at_once_and_leaves_the_target() {
    let pg = pg16();
    let (_source, _dir, dump) = fixture_backup(pg, "restore notty", 0.05);
    let target = pg.db_with(
        "restore notty target",
        "CREATE TABLE marker (x int); INSERT INTO marker VALUES (7)",
    );
    let started = Instant::now();
    let out = restore_exits(&target, &dump, &["--create-db"], 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-confirm"));
    assert_eq!(tables(&target), vec!["marker".to_owned()]);
    assert_eq!(target.psql("SELECT x FROM marker"), "7");
}

/// `pgbak restore DUMP --create-db` on a pseudo-terminal (util-linux `script`), answering
/// the confirmation with `answer`.
fn restore_on_a_terminal(target: &TestDb<'_>, dump: &std::path::Path, answer: &str) -> Output {
    use std::io::Write;
    let args = format!(
        "restore {} --create-db --allow-other-database",
        dump.display()
    );
    let mut child = on_terminal(target.pg(), &target.url(), &args)
        .spawn()
        .expect("running script(1)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

#[test]
fn restore_asks_for_the_database_name_on_a_terminal() {
    let pg = pg16();
    let (source, _dir, dump) = fixture_backup(pg, "restore tty", 0.05);
    let target = pg.db_with("restore tty target", "CREATE TABLE marker (x int)");

    let out = restore_on_a_terminal(&target, &dump, "wrong_name");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    for shown in [
        "127.0.0.1".to_owned(),
        format!("port {}", pg.port),
        target.name.clone(),
        dump.display().to_string(),
        "DROPPED".to_owned(),
        // A backup of another database: the prompt names both.
        format!(
            "the backup is of database \"{}\", NOT of the target",
            source.name
        ),
    ] {
        assert!(text.contains(&shown), "prompt lacks {shown:?}:\n{text}");
    }
    assert_eq!(tables(&target), vec!["marker".to_owned()]);

    let out = restore_on_a_terminal(&target, &dump, &target.name);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        pg.table_digests(&target.name),
        pg.table_digests(&source.name)
    );
}
