//! pg_restore's sessions on the server, seen from a session of pgbak's own:
//! a lock wait longer than `--lock-wait-timeout` is cancelled and the
//! session that held the lock named, and the sessions are ended on the
//! server when pgbak is stopped. Killing pg_restore alone is not enough: a worker's
//! `CREATE INDEX` goes on on the server after its client is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::pg::client;
use crate::pg::url::ConnSettings;

/// Which sessions are pg_restore's: its `application_name` (`pg_restore`,
/// or the one the connection names) in the database it restores into.
#[derive(Debug, Clone)]
pub struct Sessions {
    pub app: String,
    pub database: String,
}

impl Sessions {
    pub fn of(conn: &ConnSettings) -> Sessions {
        Sessions {
            app: conn
                .params
                .get("application_name")
                .cloned()
                .unwrap_or_else(|| "pg_restore".to_owned()),
            database: conn.dbname.clone(),
        }
    }
}

/// A session `b` of pg_stat_activity described for an operator: its pid,
/// user, application, state and how long its transaction has been open.
const DESCRIBE_B: &str = "format('pid %s (user %s%s, %s%s)', b.pid, b.usename,
    coalesce(', application ' || nullif(b.application_name, ''), ''),
    coalesce(b.state, 'unknown state'),
    coalesce(', in a transaction since ' || date_trunc('second', b.xact_start)::text, ''))";

/// The sessions other than `client`'s own that hold a lock on the table
/// `schema.table`, described (for a statement of pgbak's own that gave up
/// waiting for them: its lock_timeout).
pub async fn holders(client: &tokio_postgres::Client, schema: &str, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT DISTINCT {DESCRIBE_B}
           FROM pg_catalog.pg_locks l
           JOIN pg_catalog.pg_class c ON c.oid = l.relation
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_stat_activity b ON b.pid = l.pid
          WHERE l.granted AND n.nspname = $1 AND c.relname = $2
            AND l.pid <> pg_catalog.pg_backend_pid()"
    );
    match client.query(&sql, &[&schema, &table]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Watches pg_restore's sessions for lock waits: one that waits longer than
/// the limit is cancelled, and who blocked it is remembered. (A lock_timeout
/// of our own would not hold: every pg_restore session starts with `SET
/// lock_timeout = 0`.)
pub struct Watch {
    blockers: Arc<Mutex<BTreeMap<i32, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    pub fn start(conn: ConnSettings, sessions: Sessions, limit: Duration) -> Watch {
        let blockers: Arc<Mutex<BTreeMap<i32, String>>> = Arc::default();
        let seen = Arc::clone(&blockers);
        let task = tokio::spawn(async move {
            let Ok(client) = client::connect(&conn).await else {
                return;
            };
            let limit = limit.as_secs_f64();
            loop {
                if let Ok(rows) = client
                    .query(
                        &format!(
                            "SELECT w.pid, b.pid, {DESCRIBE_B}
                           FROM pg_catalog.pg_locks l
                           JOIN pg_catalog.pg_stat_activity w ON w.pid = l.pid
                          CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS p(pid)
                           JOIN pg_catalog.pg_stat_activity b ON b.pid = p.pid
                          WHERE NOT l.granted AND w.application_name = $1 AND w.datname = $3
                            AND NOT (b.application_name = $1 AND b.datname = $3)
                            AND extract(epoch FROM now() - l.waitstart)::float8 > $2::float8"
                        ),
                        &[&sessions.app, &limit, &sessions.database],
                    )
                    .await
                {
                    for row in rows {
                        let waiter: i32 = row.get(0);
                        if let Ok(mut map) = seen.lock() {
                            map.insert(row.get(1), row.get(2));
                        }
                        let _ = client
                            .execute("SELECT pg_catalog.pg_cancel_backend($1)", &[&waiter])
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Watch { blockers, task }
    }

    /// The sessions whose locks made pgbak cancel a statement of pg_restore, described.
    pub fn blockers(&self) -> Vec<String> {
        self.blockers
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ends pg_restore's sessions on the server of `conn` (pg_terminate_backend,
/// which also ends a statement in progress) and waits, bounded, until they are gone.
pub async fn terminate(conn: &ConnSettings, sessions: &Sessions) {
    let work = async {
        let client = client::connect(conn).await?;
        for _ in 0..50 {
            let left: i64 = client
                .query_one(
                    "SELECT count(pg_catalog.pg_terminate_backend(pid))
                       FROM pg_catalog.pg_stat_activity
                      WHERE application_name = $1 AND datname = $2",
                    &[&sessions.app, &sessions.database],
                )
                .await
                .context("ending pg_restore's sessions")?
                .get(0);
            if left == 0 {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("pg_restore's sessions are still there after 5s")
    };
    match tokio::time::timeout(Duration::from_secs(10), work).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => crate::ui::warn(&format!(
            "stopping pg_restore's sessions on the server: {}",
            crate::error::one_line(&err)
        )),
        Err(_) => crate::ui::warn("stopping pg_restore's sessions on the server timed out"),
    }
}
