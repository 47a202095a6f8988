//! `pgbak restore` of one database: round trips, `--create-db` and the database's properties, the
//! confirmation (and Ctrl-C or a timeout at its prompt, `--all-databases`' too), pg_restore's
//! sessions on the server (locks, signals, a server that stops), one table, and which backup is
//! taken when no file is named. `--all-databases` is `dr::`.

mod confirm;
mod database;
mod prompt;
mod selection;
mod sessions;
mod streamed;
mod table;
mod table_sessions;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::runs::wait_bounded;
use crate::support::{output_text, restore_cmd, TableLock, TestDb};

/// The pid of the session holding an ACCESS EXCLUSIVE table lock in `target` ([`TableLock`]).
pub(crate) fn lock_holder(target: &TestDb<'_>) -> String {
    target.pg().psql(
        "postgres",
        &format!(
            "SELECT pid FROM pg_locks WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock' \
             AND granted AND database = (SELECT oid FROM pg_database WHERE datname = '{}')",
            target.name
        ),
    )
}

/// `pgbak restore` of `dump` into `target` with `args` (a `--lock-wait-timeout 2s` among them)
/// while `lock` holds a table it needs: it ends within bounds, exit 1, naming the holder.
pub(crate) fn restore_past_a_lock(
    target: &TestDb<'_>,
    dump: &Path,
    args: &[&str],
    lock: TableLock,
) {
    let holder = lock_holder(target);
    let started = Instant::now();
    let child = restore_cmd(target, dump, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(60));
    let took = started.elapsed();
    drop(lock);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--lock-wait-timeout 2s") && stderr.contains(&format!("pid {holder} ")),
        "{stderr}"
    );
}

/// Tables of the target's public schema.
pub(crate) fn tables(db: &TestDb<'_>) -> Vec<String> {
    db.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The staging copies of `target` on its server (`pgbak_restoring_<name>_<hash>`, the name
/// cut at 30 characters). Only the target's own: other tests' restores hold theirs on the
/// shared server meanwhile, and a restore whose check fails leaves its copy for inspection.
pub(crate) fn staging_copies(target: &TestDb<'_>) -> Vec<String> {
    let ours = format!(
        "pgbak_restoring_{}_",
        target.name.chars().take(30).collect::<String>()
    );
    target
        .pg()
        .databases()
        .into_iter()
        .filter(|d| d.starts_with(&ours))
        .collect()
}
