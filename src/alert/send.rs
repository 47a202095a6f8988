//! Sending to webhooks and heartbeat URLs: one HTTP client with a
//! per-attempt timeout, retries with backoff on what another attempt may fix
//! (timeouts, connection errors, 429, 5xx), and a bound on the whole.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use backon::{ExponentialBuilder, Retryable};
use serde_json::Value;

use super::body::truncate;

/// One attempt may take this long (connecting included).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// All attempts and the waits between them together: a receiver that hangs
/// cannot hold the run longer than this.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request went wrong, and whether another attempt may help.
#[derive(Debug)]
struct AttemptError {
    retry: bool,
    error: anyhow::Error,
}

/// A client for webhooks: per-attempt timeout, no URL in its errors.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT.min(Duration::from_secs(5)))
        .user_agent(concat!("pgbak/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// POSTs `body` as JSON, retrying (with backoff) on timeouts, connection
/// errors, 429 and 5xx; gives up after [`TOTAL_TIMEOUT`]. Returns the number
/// of attempts made.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Result<usize> {
    let bytes = serde_json::to_vec(body).context("encoding the webhook body")?;
    post(client, url, "application/json", bytes).await
}

/// GETs `url` with the same retries and bound (heartbeats).
pub async fn get(client: &reqwest::Client, url: &str) -> Result<usize> {
    send(|| client.get(url)).await
}

/// POSTs `body` as plain text with the same retries and bound (heartbeats with a log).
pub async fn post_text(client: &reqwest::Client, url: &str, body: String) -> Result<usize> {
    post(client, url, "text/plain; charset=utf-8", body.into_bytes()).await
}

/// POSTs `body` as `content_type` with the retries and bound of [`send`].
async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    body: Vec<u8>,
) -> Result<usize> {
    send(|| {
        client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.clone())
    })
    .await
}

async fn send(request: impl Fn() -> reqwest::RequestBuilder) -> Result<usize> {
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let attempt = || async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = request().send().await.map_err(|e| AttemptError {
            retry: e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
            error: anyhow::Error::new(e.without_url()),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text = truncate(text.trim(), 200);
        Err(AttemptError {
            retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            error: anyhow!("the receiver answered {status}: {text:?}"),
        })
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(4))
        .with_max_times(5)
        .with_jitter();
    let retried = attempt
        .retry(backoff)
        .when(|e: &AttemptError| e.retry)
        .notify(|e: &AttemptError, wait: Duration| {
            crate::ui::warn(&format!(
                "webhook attempt failed ({}); retrying in {:.1}s",
                crate::error::one_line(&e.error),
                wait.as_secs_f64()
            ));
        });
    let made = || attempts.load(std::sync::atomic::Ordering::Relaxed);
    match tokio::time::timeout(TOTAL_TIMEOUT, retried).await {
        Ok(Ok(())) => Ok(made()),
        Ok(Err(e)) => Err(e.error.context(format!("after {} attempt(s)", made()))),
        Err(_) => Err(anyhow!(
            "no answer within {}s ({} attempt(s))",
            TOTAL_TIMEOUT.as_secs(),
            made()
        )),
    }
}
