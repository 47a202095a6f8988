//! Where verify restores the copy: a temporary database on the source server
//! or on `--target-url`, or one in a throwaway `--ephemeral` cluster, owned
//! by a throwaway unprivileged role that pg_restore logs in as
//! ([`crate::pg::verify_role`]); and removing both again (or, with
//! `--no-cleanup`, saying what was left).

use anyhow::Result;
use tokio_postgres::Client;

use super::report::{CheckId, Report};
use super::{Target, Verifying};
use crate::pg::client::{self, quote_ident, ServerVersion};
use crate::pg::ephemeral::{Cleanup, Ephemeral};
use crate::pg::tempdb;
use crate::pg::tools::PgTools;
use crate::pg::url::ConnSettings;
use crate::pg::verify_role::{self, VerifyRole};
use crate::signals::Signals;
use crate::storage::BackupName;
use crate::ui;

/// The temporary database and, for --ephemeral, the cluster holding it:
/// whatever exists of it is removed when the run ends, whichever way.
pub struct TempTarget {
    admin: ConnSettings,
    /// The throwaway role, once created (on a shared server: dropped at the end).
    role: Option<String>,
    database: Option<String>,
    cluster: Option<Ephemeral>,
    /// The session holding the temporary database's advisory lock.
    lock_holder: Option<Client>,
}

/// A server to restore into, connected (not the throwaway cluster).
pub struct Server {
    pub conn: ConnSettings,
    pub client: Client,
    pub version: ServerVersion,
}

/// The temporary database, created and locked as this run's.
pub struct Prepared {
    /// pgbak's own connection setting for the temporary database.
    pub copy_conn: ConnSettings,
    /// How pg_restore connects: as the throwaway role, into the temporary database.
    pub restore_conn: ConnSettings,
    /// The throwaway role (owner of the temporary database).
    pub role: String,
    pub name: String,
    pub server_major: u32,
}

/// Connects to the server of `--target-url` (or the source's). Ok(None) when
/// it cannot be reached: the report then says verify could not run.
pub async fn connect(
    run: &Verifying<'_>,
    signals: &mut Signals,
    report: &mut Report,
) -> Result<Option<Server>> {
    let conn = match &run.opts.target {
        Target::Url(conn) => conn,
        _ => &run.opts.conn,
    };
    let connected = signals
        .guard(async {
            let client = client::connect(conn).await?;
            let version = client::server_version(&client).await?;
            Ok((client, version))
        })
        .await;
    match connected {
        Ok((client, version)) => Ok(Some(Server {
            conn: conn.clone(),
            client,
            version,
        })),
        Err(err) => could_not_run(err, report),
    }
}

/// A failure to reach any server: an interruption goes up, anything else
/// fails the temp-database check and marks the run as one that could not run.
fn could_not_run<T>(err: anyhow::Error, report: &mut Report) -> Result<Option<T>> {
    if crate::error::exit_code(&err) != crate::error::FAILED {
        return Err(err);
    }
    let why = crate::error::one_line(&err);
    report.fail(CheckId::TempDb, why.clone());
    report.skip_rest("no server to restore into");
    report.could_not_run = Some(why);
    Ok(None)
}

/// Step 4: the throwaway role and the temporary database it owns, on
/// `server` or (None) in a throwaway cluster started from `tools`, where the
/// globals beside the dump are replayed first (the roles policies name then
/// exist). `place` holds what exists as soon as it exists, so a signal at any
/// point still removes it.
pub async fn prepare(
    run: &Verifying<'_>,
    server: Option<Server>,
    tools: &PgTools,
    signals: &mut Signals,
    report: &mut Report,
    place: &mut Option<TempTarget>,
) -> Result<Option<Prepared>> {
    let server = match server {
        Some(server) => server,
        None => match start_cluster(run, tools, signals, report, place).await? {
            Some(server) => server,
            None => return Ok(None),
        },
    };
    report.target = Some(match place.as_ref().and_then(|p| p.cluster.as_ref()) {
        Some(cluster) => format!("throwaway cluster in {}", cluster.dir.display()),
        None => server.conn.endpoint(),
    });
    if place.as_ref().is_none_or(|p| p.cluster.is_none()) {
        tempdb::sweep_dead_runs(&server.client).await;
        verify_role::sweep_dead_runs(&server.client).await;
    }
    // The place is known before CREATE ROLE/DATABASE run: a signal in between still drops them.
    let place = place.get_or_insert_with(|| TempTarget {
        admin: server.conn.clone(),
        role: None,
        database: None,
        cluster: None,
        lock_holder: None,
    });
    let role = signals
        .guard(verify_role::create(
            &server.client,
            &server.conn,
            server.version.num,
            &mut place.role,
        ))
        .await;
    let no_db = "no temporary database";
    let Some(role) = report.settle(CheckId::TempDb, role, no_db)? else {
        return Ok(None);
    };
    let created = signals
        .guard(tempdb::create(
            &server.client,
            &base_name(run),
            &server.conn,
            &mut place.database,
            Some(&role.name),
        ))
        .await;
    // The session that created them holds their advisory locks until the run
    // ends: no other run's sweep drops a live run's database or role.
    let Some(name) = report.settle(CheckId::TempDb, created, no_db)? else {
        place.lock_holder = Some(server.client);
        return Ok(None);
    };
    place.lock_holder = Some(server.client);
    report.temp_database = Some(name.clone());
    let restore_conn = role.conn(&server.conn, &name);
    let login = signals.guard(login_check(&restore_conn, &role)).await;
    if report.settle(CheckId::TempDb, login, no_db)?.is_none() {
        return Ok(None);
    }
    report.pass(
        CheckId::TempDb,
        format!(
            "{} on {}, restored as the throwaway role {} (no superuser, no privilege)",
            quote_ident(&name),
            report.target.clone().unwrap_or_default(),
            role.name
        ),
    );
    Ok(Some(Prepared {
        copy_conn: server.conn.with_dbname(&name),
        restore_conn,
        role: role.name,
        name,
        server_major: server.version.major(),
    }))
}

/// The throwaway cluster, started and recorded in `place`, with the globals
/// beside the dump replayed; connected as its superuser. None when it could
/// not start (the report says why).
async fn start_cluster(
    run: &Verifying<'_>,
    tools: &PgTools,
    signals: &mut Signals,
    report: &mut Report,
    place: &mut Option<TempTarget>,
) -> Result<Option<Server>> {
    let cleanup = if run.opts.no_cleanup {
        Cleanup::Keep
    } else {
        Cleanup::Remove
    };
    let started = signals
        .guard(Ephemeral::start(tools, cleanup, &run.opts.ephemeral_user))
        .await;
    let cluster = match started {
        Ok(cluster) => cluster,
        Err(err) => return could_not_run(err, report),
    };
    let conn = cluster.conn("postgres");
    *place = Some(TempTarget {
        admin: conn.clone(),
        role: None,
        database: None,
        cluster: Some(cluster),
        lock_holder: None,
    });
    let client = signals.guard(client::connect(&conn)).await?;
    let version = client::server_version(&client).await?;
    // Roles first (as the cluster's superuser, from the globals backup): the
    // policies of the copy name them. The copy itself is restored without
    // owners and privileges, as the throwaway role, like on any server.
    crate::commands::globals::into_ephemeral(
        &client,
        &conn,
        run.located(),
        run.meta(),
        &run.opts.decrypt(),
        run.backup.source.encrypted(),
        signals,
    )
    .await;
    Ok(Some(Server {
        conn,
        client,
        version,
    }))
}

/// The throwaway role must be able to log in (pg_restore connects as it):
/// a server whose pg_hba.conf refuses it is a finding naming the fix.
async fn login_check(conn: &ConnSettings, role: &VerifyRole) -> Result<()> {
    match client::connect(conn).await {
        Ok(_) => Ok(()),
        Err(err) => Err(crate::error::finding(format!(
            "the throwaway role {} that verify restores as cannot log in on {} ({}): allow \
             password (scram-sha-256) logins for roles named pgbak_verify_* in pg_hba.conf \
             for the address pgbak connects from, or verify with --ephemeral",
            role.name,
            conn.endpoint(),
            crate::error::one_line(&err)
        ))),
    }
}

/// The database name the temporary one is named after: meta.json's, else the
/// file name's, else the connection's.
fn base_name(run: &Verifying<'_>) -> String {
    run.meta()
        .map(|m| m.database.clone())
        .or_else(|| {
            run.located()
                .dump
                .file_name()
                .and_then(|n| BackupName::parse(&n.to_string_lossy()))
                .map(|n| n.database)
        })
        .unwrap_or_else(|| run.opts.conn.dbname.clone())
}

/// Drops the temporary database and stops the cluster, or with --no-cleanup
/// says what was left and how to remove it.
pub async fn remove(no_cleanup: bool, place: TempTarget, report: &mut Report) {
    // The advisory lock is held to the end: until the database is dropped or
    // unmarked, no other run's sweep may take it for a dead run's.
    let TempTarget {
        admin,
        role,
        database,
        cluster,
        lock_holder: _held,
    } = place;
    if no_cleanup {
        let mut left = Vec::new();
        if let (Some(db), None) = (&database, &cluster) {
            tempdb::keep(&admin, db).await;
            let drop_role = role
                .as_ref()
                .map(|r| format!("; DROP ROLE {}", quote_ident(r)))
                .unwrap_or_default();
            if let Some(role) = &role {
                verify_role::keep(&admin, role).await;
            }
            left.push(format!(
                "temporary database {} on {} (drop it with: psql -d postgres -c 'DROP DATABASE {} WITH (FORCE){}')",
                quote_ident(db),
                admin.endpoint(),
                quote_ident(db).replace('\'', "'\\''"),
                drop_role.replace('\'', "'\\''")
            ));
        }
        if let Some(cluster) = cluster {
            let removal = cluster.removal_hint();
            let dir = cluster.dir.display().to_string();
            let connect = cluster.leave();
            left.push(format!(
                "throwaway cluster in {dir} with database {} (socket there, port {}; {connect}; \
                 remove it with: {removal})",
                database.as_deref().map(quote_ident).unwrap_or_default(),
                admin.port,
            ));
        }
        let text = left.join("; ");
        ui::warn(&format!("--no-cleanup: left {text}"));
        report.left_in_place = Some(text);
        return;
    }
    if let Some(cluster) = cluster {
        // Removing the cluster removes the database with it.
        if let Err(err) = cluster.remove().await {
            ui::warn(&format!(
                "removing the throwaway cluster: {}",
                crate::error::one_line(&err)
            ));
        }
        return;
    }
    if let Some(db) = &database {
        drop_database(&admin, db).await;
    }
    if let Some(role) = &role {
        if let Err(err) = verify_role::drop(&admin, role).await {
            ui::error(&format!(
                "could not drop the throwaway role {role} on {}: {} (drop it by hand: DROP ROLE {})",
                admin.endpoint(),
                crate::error::one_line(&err),
                quote_ident(role)
            ));
        }
    }
}

async fn drop_database(admin: &ConnSettings, db: &str) {
    match tempdb::drop(admin, db).await {
            Ok(()) => ui::info(&format!(
                "dropped the temporary database {}",
                quote_ident(db)
            )),
            Err(err) => ui::error(&format!(
                "could not drop the temporary database {} on {}: {} (drop it by hand: DROP DATABASE {} WITH (FORCE))",
                quote_ident(db),
                admin.endpoint(),
                crate::error::one_line(&err),
                quote_ident(db)
            )),
    }
}
