//! Where verify restores the copy: a temporary database on the source server
//! or on `--target-url`, or one in a throwaway `--ephemeral` cluster; and
//! removing it again (or, with `--no-cleanup`, saying what was left).

use anyhow::Result;
use tokio_postgres::Client;

use super::report::{CheckId, Report};
use super::{Run, Target};
use crate::pg::client::{self, quote_ident, ServerVersion};
use crate::pg::ephemeral::{Cleanup, Ephemeral};
use crate::pg::tempdb;
use crate::pg::tools::PgTools;
use crate::pg::url::ConnSettings;
use crate::signals::Signals;
use crate::storage::BackupName;
use crate::ui;

/// The temporary database and, for --ephemeral, the cluster holding it:
/// whatever exists of it is removed when the run ends, whichever way.
pub struct Place {
    admin: ConnSettings,
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
    /// A connection setting for the temporary database.
    pub copy_conn: ConnSettings,
    pub name: String,
    pub server_major: u32,
    /// Restore with owners and privileges (the globals were replayed first).
    pub owners: bool,
}

/// Connects to the server of `--target-url` (or the source's). Ok(None) when
/// it cannot be reached: the report then says verify could not run.
pub async fn connect(
    run: &Run<'_>,
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

/// Step 4: the temporary database, on `server` or (None) in a throwaway
/// cluster started from `tools`, where the globals beside the dump are
/// replayed first. `place` holds what exists as soon as it exists, so a
/// signal at any point still removes it.
pub async fn prepare(
    run: &Run<'_>,
    server: Option<Server>,
    tools: &PgTools,
    signals: &mut Signals,
    report: &mut Report,
    place: &mut Option<Place>,
) -> Result<Option<Prepared>> {
    let mut owners = false;
    let server = match server {
        Some(server) => server,
        None => {
            let cluster = match signals
                .guard(Ephemeral::start(
                    tools,
                    if run.opts.no_cleanup {
                        Cleanup::Keep
                    } else {
                        Cleanup::Remove
                    },
                ))
                .await
            {
                Ok(cluster) => cluster,
                Err(err) => return could_not_run(err, report),
            };
            let conn = cluster.conn("postgres");
            *place = Some(Place {
                admin: conn.clone(),
                database: None,
                cluster: Some(cluster),
                lock_holder: None,
            });
            let client = signals.guard(client::connect(&conn)).await?;
            let version = client::server_version(&client).await?;
            owners = crate::commands::globals::into_ephemeral(
                &client,
                &conn,
                run.located(),
                run.meta(),
                &run.opts.decrypt(),
                run.backup.source.encrypted(),
                signals,
            )
            .await;
            Server {
                conn,
                client,
                version,
            }
        }
    };
    report.target = Some(match place.as_ref().and_then(|p| p.cluster.as_ref()) {
        Some(cluster) => format!("throwaway cluster in {}", cluster.dir.display()),
        None => server.conn.endpoint(),
    });
    if place.as_ref().is_none_or(|p| p.cluster.is_none()) {
        tempdb::sweep_dead_runs(&server.client).await;
    }
    // The place is known before CREATE DATABASE runs: a signal in between still drops it.
    let slot = &mut place
        .get_or_insert_with(|| Place {
            admin: server.conn.clone(),
            database: None,
            cluster: None,
            lock_holder: None,
        })
        .database;
    let created = signals
        .guard(tempdb::create(
            &server.client,
            &base_name(run),
            &server.conn,
            slot,
        ))
        .await;
    let Some(name) = report.settle(CheckId::TempDb, created, "no temporary database")? else {
        return Ok(None);
    };
    report.temp_database = Some(name.clone());
    report.pass(
        CheckId::TempDb,
        format!(
            "{} on {}",
            quote_ident(&name),
            report.target.clone().unwrap_or_default()
        ),
    );
    let prepared = Prepared {
        copy_conn: server.conn.with_dbname(&name),
        name,
        server_major: server.version.major(),
        owners,
    };
    // The session that created it holds its advisory lock until the run ends:
    // no other run's sweep drops a live run's database.
    if let Some(place) = place.as_mut() {
        place.lock_holder = Some(server.client);
    }
    Ok(Some(prepared))
}

/// The database name the temporary one is named after: meta.json's, else the
/// file name's, else the connection's.
fn base_name(run: &Run<'_>) -> String {
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
pub async fn remove(no_cleanup: bool, place: Place, report: &mut Report) {
    // The advisory lock is held to the end: until the database is dropped or
    // unmarked, no other run's sweep may take it for a dead run's.
    let Place {
        admin,
        database,
        cluster,
        lock_holder: _held,
    } = place;
    if no_cleanup {
        let mut left = Vec::new();
        if let Some(db) = &database {
            tempdb::keep(&admin, db).await;
            left.push(format!(
                "temporary database {} on {} (drop it with: psql -d postgres -c 'DROP DATABASE {} WITH (FORCE)')",
                quote_ident(db),
                admin.endpoint(),
                quote_ident(db).replace('\'', "'\\''")
            ));
        }
        if let Some(cluster) = cluster {
            left.push(format!(
                "throwaway cluster in {} (socket there, port {}; remove it with: {})",
                cluster.dir.display(),
                admin.port,
                cluster.removal_hint()
            ));
            cluster.leave();
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
        match tempdb::drop(&admin, db).await {
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
}
