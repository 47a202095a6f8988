//! verify's temporary database on a real server: `<db>_verify_<UTC ts>`,
//! created from template0, marked as a live run's (a comment for people and
//! a session-level advisory lock keyed by its oid, which is what decides),
//! swept by the next run when its own run died, and dropped at the end.

use anyhow::{Context, Result};
use chrono::Utc;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::client::{self, quote_ident};
use super::url::ConnSettings;
use crate::error::finding;
use crate::ui;

/// `<db>_verify_<UTC ts>`, cut to PostgreSQL's 63-byte limit on a character boundary.
pub fn name_for(base: &str, at: chrono::DateTime<Utc>) -> String {
    let suffix = format!("_verify_{}", at.format("%Y%m%dT%H%M%S"));
    let mut base = base.to_owned();
    while base.len() + suffix.len() > 63 - 3 {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// Creates the temporary database from template0 (nothing preinstalled to
/// collide with the archive), owned by `owner` when given (verify's throwaway
/// role). A server that refuses is a [`crate::error::Finding`] for the report.
pub async fn create(
    client: &Client,
    base: &str,
    conn: &ConnSettings,
    slot: &mut Option<String>,
    owner: Option<&str>,
) -> Result<String> {
    let first = name_for(base, Utc::now());
    for attempt in 1..=9 {
        let name = if attempt == 1 {
            first.clone()
        } else {
            format!("{first}_{attempt}")
        };
        *slot = Some(name.clone());
        let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name));
        if let Some(owner) = owner {
            sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        let created = client.batch_execute(&sql).await;
        if created.is_err() {
            // Not ours (taken by another verify, or never created): never drop it.
            *slot = None;
        }
        match created {
            Ok(()) => {
                mark_owner(client, &name).await;
                return Ok(name);
            }
            Err(err) if err.code() == Some(&SqlState::DUPLICATE_DATABASE) => continue,
            Err(err) if err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                return Err(finding(format!(
                    "user {:?} may not create databases on {}: grant CREATEDB, or verify with \
                     --target-url (another server) or --ephemeral (a throwaway local cluster)",
                    conn.user,
                    conn.endpoint()
                )))
            }
            Err(err) => {
                return Err(finding(format!(
                    "creating {} on {}: {}",
                    quote_ident(&name),
                    conn.endpoint(),
                    err.as_db_error()
                        .map_or_else(|| err.to_string(), |d| d.message().to_owned())
                )))
            }
        }
    }
    Err(finding(format!(
        "creating {first}: every variant of the name is taken on {}",
        conn.endpoint()
    )))
}

/// The comment that marks a temporary database as a live verify's. The mark
/// is for people; what decides is the advisory lock below.
fn owner_mark() -> String {
    format!(
        "{OWNER_MARK}{} on {}",
        std::process::id(),
        crate::settings::host_name()
    )
}

const OWNER_MARK: &str = "pgbak verify: pid ";

/// High half of the advisory lock key a live verify holds for its temporary
/// database ("pgbx"); the low half is the database's oid. pg_locks shows it
/// as classid = this, objid = oid, objsubid = 1, from any database and host.
const LOCK_CLASS: i64 = 0x7067_6278;

/// Takes the session-level advisory lock for `db` on `client` (a session
/// that lives as long as the run), then writes the mark. A run that dies
/// (SIGKILL, power loss, a lost host) loses its session and so its lock.
async fn mark_owner(client: &Client, db: &str) {
    let locked = client
        .execute(
            "SELECT pg_advisory_lock(($1::bigint << 32) | oid::bigint) \
               FROM pg_database WHERE datname = $2",
            &[&LOCK_CLASS, &db],
        )
        .await;
    if let Err(err) = locked {
        // Unmarked, it is never swept: a leftover, never a lost live database.
        ui::debug(&format!("locking {db} as this run's: {err}"));
        return;
    }
    let sql = format!(
        "COMMENT ON DATABASE {} IS '{}'",
        quote_ident(db),
        owner_mark().replace('\'', "''")
    );
    if let Err(err) = client.batch_execute(&sql).await {
        ui::debug(&format!("marking {db} as this run's: {err}"));
    }
}

/// Drops temporary databases that verify runs left when they were killed:
/// marked ones whose run no longer holds its advisory lock, whichever host
/// or output directory that run had. Databases kept with --no-cleanup carry
/// no mark and stay.
pub async fn sweep_dead_runs(client: &Client) {
    let rows = match client
        .query(
            "SELECT d.datname::text, shobj_description(d.oid, 'pg_database') FROM pg_database d \
              WHERE shobj_description(d.oid, 'pg_database') LIKE 'pgbak verify: pid %' \
                AND NOT EXISTS (SELECT 1 FROM pg_locks l \
                                 WHERE l.locktype = 'advisory' AND l.granted \
                                   AND l.classid = $1::bigint::oid AND l.objid = d.oid \
                                   AND l.objsubid = 1)",
            &[&LOCK_CLASS],
        )
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            ui::debug(&format!("looking for leftover temporary databases: {err}"));
            return;
        }
    };
    for row in rows {
        let (db, comment): (String, String) = (row.get(0), row.get(1));
        ui::info(&format!(
            "dropping the temporary database {} left by a verify run that died ({comment})",
            quote_ident(&db)
        ));
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&db));
        if let Err(err) = client.batch_execute(&sql).await {
            ui::warn(&format!("could not drop {}: {err}", quote_ident(&db)));
        }
    }
}

/// `DROP DATABASE ... WITH (FORCE)` over a fresh connection (the old one may be gone).
pub async fn drop(admin: &ConnSettings, db: &str) -> Result<()> {
    let client = client::connect(admin).await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(db)
        ))
        .await
        .with_context(|| format!("dropping {}", quote_ident(db)))
}

/// Keeps `db` on purpose (`--no-cleanup`): its mark is replaced, so no later
/// run's sweep takes it for a dead run's. Best effort: a failure leaves the mark.
pub async fn keep(admin: &ConnSettings, db: &str) {
    if let Ok(client) = client::connect(admin).await {
        let sql = format!(
            "COMMENT ON DATABASE {} IS 'pgbak verify --no-cleanup'",
            quote_ident(db)
        );
        let _ = client.batch_execute(&sql).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_fit_postgres_limit() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap();
        assert_eq!(
            name_for("enterprise_agents", at),
            "enterprise_agents_verify_20261125T020000"
        );
        let long = name_for(&"é".repeat(40), at);
        assert!(long.len() <= 60, "{}", long.len());
        assert!(long.ends_with("_verify_20261125T020000"));
    }
}
