//! Cancelling what pgbak's own session is running on the server, as libpq's
//! PQcancel does: a new connection carrying the session's key. pgbak's
//! sessions read the catalog and count rows, and such a read waits for a
//! table lock like any reader. A backend waiting for a lock does not notice
//! that its client is gone, so when pgbak stops waiting (a signal, a failed
//! dump) it cancels the query rather than leave it queued for the lock,
//! holding its transaction's snapshot.

use std::future::Future;

use tokio_postgres::{CancelToken, Client};

use super::url::{ConnSettings, Host};
use crate::signals::Signals;

/// Cancels what `client`'s session is running, as libpq's PQcancel does (a
/// new connection carrying the session's key). A backend waiting for a lock
/// does not notice that its client is gone, so a query pgbak stops waiting
/// for is cancelled, not left queued for the lock. Best effort, and bounded
/// ([`LIMIT`]): a failure is logged, and a session with nothing running
/// ignores it.
pub async fn cancel(client: &Client, settings: &ConnSettings) {
    cancel_with(&client.cancel_token(), settings).await;
}

/// `work` on `client`'s session unless a signal comes first
/// ([`Signals::guard`]); on any way out but success, what the session runs
/// is cancelled ([`cancel`]): a read waiting for a table lock goes too.
pub async fn guarded<T>(
    signals: &mut Signals,
    client: &Client,
    settings: &ConnSettings,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = signals.guard(work).await;
    if result.is_err() {
        cancel(client, settings).await;
    }
    result
}

/// [`cancel`] with the session's token, taken while the client was at hand
/// (the client itself may be in a task that is being aborted).
pub async fn cancel_with(token: &CancelToken, settings: &ConnSettings) {
    if tokio::time::timeout(LIMIT, send(token, settings))
        .await
        .is_err()
    {
        crate::ui::debug("cancelling pgbak's query timed out");
    }
}

/// The longest a stopping run waits for its cancel request to be sent.
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn send(token: &CancelToken, settings: &ConnSettings) {
    let tls = match settings.host {
        Host::Socket(_) => Ok(None),
        Host::Tcp(_) => super::tls::client_config(settings),
    };
    let cancelled = match tls {
        Ok(None) => token.cancel_query(tokio_postgres::NoTls).await,
        Ok(Some(tls)) => {
            token
                .cancel_query(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
        }
        Err(err) => {
            crate::ui::debug(&format!("not cancelling pgbak's query: {err:#}"));
            return;
        }
    };
    if let Err(err) = cancelled {
        crate::ui::debug(&format!("cancelling pgbak's query: {err}"));
    }
}
