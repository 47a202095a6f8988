//! Disaster recovery: `backup --all-databases` runs and their records, the rebuild
//! (`restore --all-databases`) an on-call engineer can run, interrupt and run again, and the drill
//! that rebuilds a whole server from the bucket.

mod drill;
mod rebuild;
mod records;
mod roles;
mod whole_server;

use crate::support::Pg;

pub(crate) const JOURNAL: &str = "pgbak_restore_journal";

/// A server with `n` login roles `dr_r<i>` (password `pw<i>`), each a member of `dr_readers`
/// with a setting of its own, and a database `app` owned by `dr_r1`.
pub(crate) fn server_with_roles(pg: &Pg, n: u32) {
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE dr_readers; \
             DO $$ BEGIN FOR i IN 1..{n} LOOP \
               EXECUTE format('CREATE ROLE dr_r%s LOGIN PASSWORD %L CONNECTION LIMIT 7', i, 'pw' || i); \
               EXECUTE format('GRANT dr_readers TO dr_r%s', i); \
               EXECUTE format('ALTER ROLE dr_r%s SET work_mem = %L', i, (i % 64 + 1) || 'MB'); \
             END LOOP; END $$"
        ),
    );
    pg.psql("postgres", "CREATE DATABASE app OWNER dr_r1");
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10); \
         ALTER TABLE t OWNER TO dr_r1; GRANT SELECT ON t TO dr_readers",
    );
}

pub(crate) fn count(pg: &Pg, db: &str, sql: &str) -> i64 {
    pg.try_psql(db, sql)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1)
}

pub(crate) fn has_database(pg: &Pg, name: &str) -> bool {
    pg.databases().iter().any(|d| d == name)
}
