//! The throwaway role verify restores as. A dump carries the application's
//! code (CHECK constraints, index expressions, column defaults, triggers) and
//! pg_restore runs it; run as pgbak's connecting role (a superuser) it could
//! make a role a superuser or run a program on the server. So verify creates a
//! role for the run, `pgbak_verify_<random>`, with no attribute at all (not a
//! superuser, no CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS, no membership)
//! and a random password, makes it the owner of the temporary database, and
//! pg_restore *logs in* as it: with `SET ROLE` alone the dump's code could
//! `RESET ROLE` back to the superuser that connected. The extensions the
//! archive needs are created first by pgbak itself, as the connecting role.
//!
//! Like the temporary database, the role is marked as a live run's (a comment
//! and a session-level advisory lock keyed by its oid), dropped when the run
//! ends, and swept by the next run when its run died.

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::client::{quote_ident, quote_literal};
use super::url::ConnSettings;
use crate::error::finding;
use crate::ui;

/// Names of throwaway roles start so.
pub const PREFIX: &str = "pgbak_verify_";

/// High half of the advisory lock key a live verify holds for its role
/// ("pgbr"); the low half is the role's oid.
const LOCK_CLASS: i64 = 0x7067_6272;

const OWNER_MARK: &str = "pgbak verify: pid ";

/// A throwaway role of this run, created on the server.
#[derive(Debug, Clone)]
pub struct VerifyRole {
    pub name: String,
    password: String,
}

impl VerifyRole {
    /// How the role reaches `dbname` on the server of `admin`: the same host,
    /// port and TLS, its own user and password.
    pub fn conn(&self, admin: &ConnSettings, dbname: &str) -> ConnSettings {
        let mut conn = admin.with_dbname(dbname);
        conn.user = self.name.clone();
        conn.password = Some(self.password.clone());
        conn
    }
}

/// What the connecting role may do, as the catalog says.
struct Powers {
    superuser: bool,
    createdb: bool,
    createrole: bool,
}

async fn powers(client: &Client) -> Result<Powers> {
    let row = client
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_catalog.pg_roles \
              WHERE rolname = current_user",
            &[],
        )
        .await
        .context("reading the connecting role's attributes")?;
    Ok(Powers {
        superuser: row.get(0),
        createdb: row.get(1),
        createrole: row.get(2),
    })
}

/// Creates the throwaway role on `client`'s server, locks and marks it as
/// this run's on `client` (a session that lives as long as the run), and
/// stores its name in `slot` as soon as it exists. A connecting role that
/// may not create roles and databases is a [`crate::error::Finding`].
pub async fn create(
    client: &Client,
    conn: &ConnSettings,
    server_num: u32,
    slot: &mut Option<String>,
) -> Result<VerifyRole> {
    let powers = powers(client).await?;
    let may = powers.superuser || (powers.createdb && powers.createrole);
    if !may {
        return Err(finding(format!(
            "user {:?} may not create databases and roles on {}: verify restores into a \
             temporary database as a throwaway unprivileged role it creates, so it needs \
             CREATEDB and CREATEROLE (or a superuser); or verify with --target-url (another \
             server) or --ephemeral (a throwaway local cluster)",
            conn.user,
            conn.endpoint()
        )));
    }
    let password = crate::pg::ephemeral::random_password()?;
    let name = format!(
        "{PREFIX}{}",
        &crate::pg::ephemeral::random_password()?[..12]
    );
    // The verifier, not the password, goes to the server (and any statement log).
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    *slot = Some(name.clone());
    let created = client
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION \
             NOBYPASSRLS PASSWORD {}",
            quote_ident(&name),
            quote_literal(&verifier)
        ))
        .await;
    if let Err(err) = created {
        *slot = None;
        return Err(finding(format!(
            "creating the throwaway role {name} on {}: {}",
            conn.endpoint(),
            err.as_db_error()
                .map_or_else(|| err.to_string(), |d| d.message().to_owned())
        )));
    }
    mark_owner(client, &name).await;
    if !powers.superuser {
        // A CREATEROLE role administers the roles it creates; to make one the
        // owner of a database it must also be able to SET ROLE to it. That
        // lets pgbak's role act as the throwaway one, never the other way.
        let grant = if server_num >= 160_000 {
            "GRANT {} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE"
        } else {
            "GRANT {} TO CURRENT_USER"
        };
        client
            .batch_execute(&grant.replace("{}", &quote_ident(&name)))
            .await
            .with_context(|| format!("letting {:?} act as {name}", conn.user))?;
    }
    Ok(VerifyRole { name, password })
}

/// Takes the advisory lock for `role` on `client`, then writes the mark.
async fn mark_owner(client: &Client, role: &str) {
    let locked = client
        .execute(
            "SELECT pg_catalog.pg_advisory_lock(($1::bigint << 32) | oid::bigint) \
               FROM pg_catalog.pg_roles WHERE rolname = $2",
            &[&LOCK_CLASS, &role],
        )
        .await;
    if let Err(err) = locked {
        ui::debug(&format!("locking {role} as this run's: {err}"));
        return;
    }
    let sql = format!(
        "COMMENT ON ROLE {} IS {}",
        quote_ident(role),
        quote_literal(&format!(
            "{OWNER_MARK}{} on {}",
            std::process::id(),
            crate::settings::host_name()
        ))
    );
    if let Err(err) = client.batch_execute(&sql).await {
        ui::debug(&format!("marking {role} as this run's: {err}"));
    }
}

/// Drops the throwaway roles of verify runs that died: marked ones no live
/// run holds the lock of, and that own no database any more (the sweep of
/// temporary databases runs first; a database kept with --no-cleanup keeps
/// its role).
pub async fn sweep_dead_runs(client: &Client) {
    let rows = match client
        .query(
            "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
              WHERE r.rolname LIKE 'pgbak\\_verify\\_%' \
                AND pg_catalog.shobj_description(r.oid, 'pg_authid') LIKE 'pgbak verify: pid %' \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database d WHERE d.datdba = r.oid) \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
                                 WHERE l.locktype = 'advisory' AND l.granted \
                                   AND l.classid = $1::bigint::oid AND l.objid = r.oid \
                                   AND l.objsubid = 1)",
            &[&LOCK_CLASS],
        )
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            ui::debug(&format!("looking for leftover throwaway roles: {err}"));
            return;
        }
    };
    for row in rows {
        let role: String = row.get(0);
        ui::info(&format!(
            "dropping the throwaway role {role} left by a verify run that died"
        ));
        if let Err(err) = client
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
            .await
        {
            ui::warn(&format!("could not drop the role {role}: {err}"));
        }
    }
}

/// Drops `role` over a fresh connection (after its database is gone).
pub async fn drop(admin: &ConnSettings, role: &str) -> Result<()> {
    let client = super::client::connect(admin).await?;
    client
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
        .await
        .with_context(|| format!("dropping the role {role}"))
}

/// Keeps `role` on purpose (`--no-cleanup`): unmarked, no sweep takes it.
pub async fn keep(admin: &ConnSettings, role: &str) {
    if let Ok(client) = super::client::connect(admin).await {
        let sql = format!(
            "COMMENT ON ROLE {} IS 'pgbak verify --no-cleanup'",
            quote_ident(role)
        );
        let _ = client.batch_execute(&sql).await;
    }
}

/// Creates, as the connecting role in the temporary database, the extensions
/// the archive creates (`wanted`: name and schema, from its table of
/// contents): pg_restore's own `CREATE EXTENSION IF NOT EXISTS` then finds
/// them. A schema that does not exist yet is created owned by `role`, so the
/// restore can create its objects in it.
pub async fn create_extensions(
    copy: &Client,
    role: &str,
    wanted: &[(String, String)],
) -> Result<()> {
    for (extension, schema) in wanted {
        copy.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {0} AUTHORIZATION {1}; \
             CREATE EXTENSION IF NOT EXISTS {2} WITH SCHEMA {0}",
            quote_ident(schema),
            quote_ident(role),
            quote_ident(extension)
        ))
        .await
        .map_err(|err| {
            finding(format!(
                "creating the extension {extension} (schema {schema}) for the copy: {}",
                err.as_db_error()
                    .map_or_else(|| err.to_string(), |d| d.message().to_owned())
            ))
        })?;
    }
    Ok(())
}
