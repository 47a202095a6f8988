//! SIGINT and SIGTERM while a long step runs: the step is abandoned (its
//! children killed, its temporary files and databases removed by the caller)
//! and pgbak exits 130 or 143. `--timeout` ends a run the same way, exit 1.
//!
//! Guarded steps wait on [`Signals::recv`]. Everything else (retention
//! deletions, checks, alerting) calls [`check`] between its steps, and races
//! its network waits against the stop ([`unless_stopped`], or
//! [`unless_interrupted`] for the report of a run's end): once pgbak handles
//! SIGTERM itself the kernel no longer ends the process, so a signal that
//! arrives outside a guarded step must still stop the run, promptly.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    /// The run's `--timeout` passed.
    Timeout,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Timeout => "--timeout",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => crate::error::SIGINT,
            Signal::Terminate => crate::error::SIGTERM,
            Signal::Timeout => crate::error::FAILED,
        }
    }

    /// What the error line says.
    pub fn describe(self) -> String {
        match self {
            Signal::Timeout => format!(
                "stopped: the run took longer than --timeout {}",
                deadline().map_or_else(String::new, |(_, limit)| {
                    humantime::format_duration(limit).to_string()
                })
            ),
            sig => format!("interrupted by {}", sig.name()),
        }
    }
}

/// The first signal received by the process, 0 when none (1 SIGINT, 2 SIGTERM).
static RECEIVED: AtomicU8 = AtomicU8::new(0);
/// Every SIGINT/SIGTERM received, the first and the later ones; the latest (1, 2).
static COUNT: AtomicU32 = AtomicU32::new(0);
static LATEST: AtomicU8 = AtomicU8::new(0);
/// Wakes the waiters of [`unless_stopped`] and [`unless_interrupted`].
static ARRIVED: Notify = Notify::const_new();
static DEADLINE: OnceLock<(Instant, Duration)> = OnceLock::new();
static WATCHER: OnceLock<()> = OnceLock::new();

/// Sets the whole run's time limit (`--timeout`); call once, at the start.
pub fn set_timeout(limit: Duration) {
    let _ = DEADLINE.set((Instant::now() + limit, limit));
}

fn deadline() -> Option<(Instant, Duration)> {
    DEADLINE.get().copied()
}

/// The signal (or timeout) that should stop the run now, if any.
pub fn pending() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        1 => return Some(Signal::Interrupt),
        2 => return Some(Signal::Terminate),
        _ => {}
    }
    deadline()
        .is_some_and(|(at, _)| Instant::now() >= at)
        .then_some(Signal::Timeout)
}

/// Fails with the interruption when a signal arrived or the timeout passed:
/// call it before every step that deletes, sends or starts something.
pub fn check() -> anyhow::Result<()> {
    match pending() {
        Some(sig) => Err(crate::error::interrupted(sig)),
        None => Ok(()),
    }
}

/// Records every SIGINT/SIGTERM for [`check`], on a task of its own so it is
/// seen while the caller is busy in synchronous code.
fn start_watcher() -> anyhow::Result<()> {
    if WATCHER.get().is_some() {
        return Ok(());
    }
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let _ = WATCHER.set(());
    tokio::spawn(async move {
        loop {
            let code = tokio::select! {
                _ = interrupt.recv() => 1,
                _ = terminate.recv() => 2,
            };
            let _ = RECEIVED.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
            LATEST.store(code, Ordering::SeqCst);
            COUNT.fetch_add(1, Ordering::SeqCst);
            ARRIVED.notify_waiters();
        }
    });
    Ok(())
}

/// Resolves when the run's `--timeout` passes (never without one).
async fn deadline_passed() {
    match deadline() {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once a signal has arrived (at once when one already has) or the
/// run's `--timeout` passed.
async fn stopped() -> Signal {
    loop {
        let arrived = ARRIVED.notified();
        if let Some(sig) = pending() {
            return sig;
        }
        tokio::select! {
            () = arrived => {}
            () = deadline_passed() => {}
        }
    }
}

/// Runs `work` (retention, a check: steps outside a guard that wait on the
/// network or delete) unless the run is stopped first, also by a signal that
/// already arrived; then `work` is dropped between two of its requests or
/// inside one, and the error names the signal.
pub async fn unless_stopped<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        biased;
        sig = stopped() => Err(crate::error::interrupted(sig)),
        result = work => result,
    }
}

/// Runs `work` (sending the alert or heartbeat that reports the run's end)
/// unless a SIGINT/SIGTERM arrives while it runs: the signal that ended the
/// run is what is being reported and must not suppress the report, but a new
/// one (systemd stopping the unit, an operator's Ctrl-C) ends it at once.
pub async fn unless_interrupted<T>(work: impl Future<Output = T>) -> Result<T, Signal> {
    let before = COUNT.load(Ordering::SeqCst);
    let interrupted = async {
        loop {
            let arrived = ARRIVED.notified();
            if COUNT.load(Ordering::SeqCst) > before {
                return match LATEST.load(Ordering::SeqCst) {
                    1 => Signal::Interrupt,
                    _ => Signal::Terminate,
                };
            }
            arrived.await;
        }
    };
    tokio::select! {
        sig = interrupted => Err(sig),
        out = work => Ok(out),
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is created.
///
/// It waits on the one record the watcher keeps, not on signal streams of its
/// own: a step that ends on a signal has then counted it, so the report of
/// that end ([`unless_interrupted`]) does not take it for a new one.
pub struct Signals(());

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        start_watcher()?;
        Ok(Signals(()))
    }

    /// Resolves at the next SIGINT or SIGTERM, at once when one already
    /// arrived, or when the run's `--timeout` passes.
    pub async fn recv(&mut self) -> Signal {
        stopped().await
    }

    /// Runs `work` unless a signal arrives first; then `work` is dropped (which
    /// kills its children) and the error says which signal.
    pub async fn guard<T>(
        &mut self,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = work => result,
            sig = self.recv() => Err(crate::error::interrupted(sig)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Timeout.exit_code(), 1);
    }
}
