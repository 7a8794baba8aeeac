//! Alerts: chosen events handed to a command (`exec`, the event as JSON on stdin) and/or POSTed
//! to a webhook, rate-limited, on a thread of their own.
//!
//! # Theory of operation
//! The engine calls [`Alerter::offer`] with each event it emits. `offer` only filters by kind and
//! `try_send`s a copy into a bounded queue ([`AlertSpec::queue`] events): it never blocks, never
//! panics, and a full queue drops the event and counts it. A dedicated std thread takes events
//! one at a time, asks a per-kind token bucket ([`rate::Limiter`], `rate = "10/1m"`) whether the
//! alert may go, and delivers it: the command runs with a deadline and is killed and reaped
//! after it ([`exec`]), and the webhook gets one POST with a deadline ([`http`]) and at most one
//! retry a second later. Alerts held back by the limit, and those dropped on a full queue, are
//! summarized per kind once the bucket has a token again, as an alert of their own:
//!
//! ```json
//! {"ts":"…","event":"alerts_suppressed","program":"supervise","instance":0,"pid":null,"kind":"finding","suppressed":12}
//! ```
//!
//! # Caveats
//! Plain HTTP only (no TLS); name resolution has no deadline of its own. A command runs as a
//! child of the supervisor: the engine's orphan scan should skip [`Alerter::child_pid`] (also
//! its process group), and its reaper may reap it first (its status is then not logged).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub mod exec;
pub mod http;
pub mod rate;
pub mod spec;

pub use spec::{AlertSpec, Rate, SpecError, Webhook};

/// Largest event accepted, bytes; a larger one is dropped and counted.
pub const MAX_EVENT: usize = 64 * 1024;
/// Pause before the one retry of a failed POST.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The `event` name of a summary of held-back alerts.
pub const SUPPRESSED: &str = "alerts_suppressed";

/// Counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertStats {
    /// Alerts delivered (every target succeeded).
    pub sent: u64,
    /// Alerts whose delivery failed (a command that failed or timed out, a webhook without 2xx).
    pub failed: u64,
    /// Held back by the rate limit.
    pub suppressed: u64,
    /// Dropped on a full queue (or too large).
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Shared {
    /// Per kind of `on`, dropped since the thread last looked.
    dropped_by_kind: Vec<AtomicU64>,
    child: AtomicI32,
    sent: AtomicU64,
    failed: AtomicU64,
    suppressed: AtomicU64,
    dropped: AtomicU64,
    /// Alerts queued or being delivered.
    pending: AtomicU64,
}

struct Msg {
    /// Index into `on`.
    kind: usize,
    json: String,
}

/// The handle the engine keeps. Dropping it lets the thread finish the queued alerts and exit.
#[derive(Debug)]
pub struct Alerter {
    tx: Option<SyncSender<Msg>>,
    on: Vec<&'static str>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Msg")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Alerter {
    /// Starts the alert thread. If the thread cannot be started, alerts are dropped and counted
    /// (and the failure logged): alerting never stops supervision.
    #[must_use]
    pub fn start(spec: AlertSpec) -> Alerter {
        let shared = Arc::new(Shared {
            dropped_by_kind: spec.on.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        });
        let on = spec.on.clone();
        let (tx, rx) = mpsc::sync_channel(spec.queue.max(1));
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("alert".into())
            .spawn(move || {
                Worker {
                    spec,
                    shared: thread_shared,
                }
                .run(&rx)
            });
        let (tx, thread) = match spawned {
            Ok(t) => (Some(tx), Some(t)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the alert thread; alerts are dropped");
                (None, None)
            }
        };
        Alerter {
            tx,
            on,
            shared,
            thread,
        }
    }

    /// Hands an event (one JSON object, as [`crate::events::Event::to_line`] writes it) to the
    /// alert thread if `kind` (its `event` name) is one of `on`. Never blocks.
    pub fn offer(&self, event_json: &str, kind: &str) {
        let Some(i) = self.on.iter().position(|k| *k == kind) else {
            return;
        };
        let dropped = || {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = self.shared.dropped_by_kind.get(i) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        };
        let Some(tx) = &self.tx else {
            dropped();
            return;
        };
        if event_json.len() > MAX_EVENT {
            dropped();
            return;
        }
        let msg = Msg {
            kind: i,
            json: event_json.trim_end().to_owned(),
        };
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(msg) {
            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            dropped();
        }
    }

    /// Alerts offered and not yet delivered (or given up on). The engine waits, boundedly, for
    /// this to reach 0 before its final sweep kills what is left of its children, so the alerts
    /// of the last events (a `fatal`) are not killed with them.
    #[must_use]
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// The pid (and process group) of the alert command running now, if any.
    #[must_use]
    pub fn child_pid(&self) -> Option<i32> {
        Some(self.shared.child.load(Ordering::SeqCst)).filter(|&p| p > 0)
    }

    #[must_use]
    pub fn stats(&self) -> AlertStats {
        AlertStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            suppressed: self.shared.suppressed.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    /// Closes the queue and waits up to `limit` for the queued alerts to be delivered. True if
    /// the thread finished; if not it is left to finish on its own.
    pub fn shutdown(mut self, limit: Duration) -> bool {
        self.tx = None;
        let Some(t) = self.thread.take() else {
            return true;
        };
        let end = Instant::now() + limit;
        while !t.is_finished() {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = t.join();
        true
    }
}

struct Worker {
    spec: AlertSpec,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(&self, rx: &mpsc::Receiver<Msg>) {
        let mut limiter = rate::Limiter::new(self.spec.rate);
        loop {
            let msg = match limiter.next_summary_at() {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
            };
            let now = Instant::now();
            for (kind, n) in self.spec.on.iter().zip(&self.shared.dropped_by_kind) {
                let n = n.swap(0, Ordering::Relaxed);
                if n > 0 {
                    limiter.add_suppressed(kind, n, now);
                }
            }
            for (kind, n) in limiter.summaries(now) {
                self.deliver(&summary(kind, n), SUPPRESSED);
            }
            let Some(msg) = msg else { continue };
            if let Some(&kind) = self.spec.on.get(msg.kind) {
                if limiter.allow(kind, now) {
                    self.deliver(&msg.json, kind);
                } else {
                    self.shared.suppressed.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs the command and/or posts to the webhook; failures are logged and counted.
    fn deliver(&self, json: &str, kind: &str) {
        let mut ok = true;
        if let Some(argv) = &self.spec.exec {
            let input = format!("{json}\n");
            let run = exec::run(
                argv,
                input.as_bytes(),
                kind,
                self.spec.exec_timeout,
                &self.shared.child,
            );
            match run {
                Ok(o) if o.ok() => {
                    tracing::debug!(command = %argv[0], event = kind, output = %o.output, "alert command done");
                }
                Ok(o) => {
                    ok = false;
                    tracing::warn!(command = %argv[0], event = kind, exit = ?o.exit, timed_out = o.timed_out,
                        output = %o.output, "alert command failed");
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(command = %argv[0], event = kind, error = %e, "cannot run the alert command");
                }
            }
        }
        if let Some(hook) = &self.spec.webhook {
            let timeout = self.spec.http_timeout;
            let posted = http::post(hook, json.as_bytes(), timeout).or_else(|e| {
                if !e.retry() {
                    return Err(e);
                }
                std::thread::sleep(RETRY_AFTER);
                http::post(hook, json.as_bytes(), timeout)
            });
            if let Err(e) = posted {
                ok = false;
                tracing::warn!(url = %hook.url, event = kind, error = %e, "alert webhook failed");
            }
        }
        let counter = if ok {
            &self.shared.sent
        } else {
            &self.shared.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The summary alert: `n` alerts of `kind` held back.
fn summary(kind: &str, n: u64) -> String {
    serde_json::json!({
        "ts": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "event": SUPPRESSED,
        "program": "supervise",
        "instance": 0,
        "pid": null,
        "kind": kind,
        "suppressed": n,
    })
    .to_string()
}

#[cfg(test)]
mod tests;
