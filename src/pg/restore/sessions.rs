//! pg_restore's sessions on the server, seen from a session of pgbak's own:
//! who blocks them while they wait on a lock (named when
//! `--lock-wait-timeout` ends the wait), and stopping them on the server
//! when pgbak is stopped. Killing pg_restore alone is not enough: a worker's
//! `CREATE INDEX` goes on on the server after its client is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::pg::client;
use crate::pg::url::ConnSettings;

/// The `application_name` of this pgbak's pg_restore sessions.
pub fn app_name() -> String {
    format!("pg_restore (pgbak {})", std::process::id())
}

/// Watches pg_restore's sessions for lock waits and remembers who blocked them.
pub struct Watch {
    blockers: Arc<Mutex<BTreeMap<i32, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    pub fn start(conn: ConnSettings, app: String) -> Watch {
        let blockers: Arc<Mutex<BTreeMap<i32, String>>> = Arc::default();
        let seen = Arc::clone(&blockers);
        let task = tokio::spawn(async move {
            let Ok(client) = client::connect(&conn).await else {
                return;
            };
            loop {
                if let Ok(rows) = client
                    .query(
                        "SELECT b.pid, format('pid %s (user %s%s, %s%s)', b.pid, b.usename,
                                coalesce(', application ' || nullif(b.application_name, ''), ''),
                                coalesce(b.state, 'unknown state'),
                                coalesce(', in a transaction since '
                                         || date_trunc('second', b.xact_start)::text, ''))
                           FROM pg_catalog.pg_stat_activity w
                          CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS p(pid)
                           JOIN pg_catalog.pg_stat_activity b ON b.pid = p.pid
                          WHERE w.application_name = $1 AND b.application_name <> $1",
                        &[&app],
                    )
                    .await
                {
                    if let Ok(mut map) = seen.lock() {
                        for row in rows {
                            map.insert(row.get(0), row.get(1));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Watch { blockers, task }
    }

    /// The sessions seen blocking pg_restore, described.
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

/// Ends every session named `app` on the server of `conn` (pg_terminate_backend,
/// which also ends a statement in progress) and waits, bounded, until they are gone.
pub async fn terminate(conn: &ConnSettings, app: &str) {
    let work = async {
        let client = client::connect(conn).await?;
        for _ in 0..50 {
            let left: i64 = client
                .query_one(
                    "SELECT count(pg_catalog.pg_terminate_backend(pid))
                       FROM pg_catalog.pg_stat_activity WHERE application_name = $1",
                    &[&app],
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
