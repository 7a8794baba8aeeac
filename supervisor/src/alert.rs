//! Alerts: chosen events handed to a command (`exec`, the event as JSON on stdin), POSTed to a
//! webhook, and/or sent to Alertmanager as alerts that stay firing while their condition holds,
//! rate-limited, on a thread of their own.
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
//! Alertmanager ([`alertmanager`]) gets each alert as one of its own, with labels and an
//! `endsAt`; those that stand for a condition (a `fatal`, a finding) are held by a [`book::Book`]
//! on the thread, sent again every minute, and resolved by the event that ends the condition (a
//! `started`, a `stopped`, a `cleared`). Those ends must not be lost to a full queue or the rate
//! limit, or an alert would fire for ever: [`Alerter::offer_event`] notes them in a small table
//! (one entry per instance and kind, the latest) that the thread empties each time it wakes, and
//! wakes it when it holds alerts. Events are numbered as offered, so the thread can tell which
//! came first whichever road each took.
//!
//! # Caveats
//! Plain HTTP only (no TLS); name resolution has no deadline of its own. A command runs as a
//! child of the supervisor: the engine's orphan scan should skip [`Alerter::child_pid`] (also
//! its process group), and its reaper may reap it first (its status is then not logged).
//! Alertmanager: a resolution whose POST fails (twice) is not tried again; the alert then ends
//! at the `endsAt` of its last sending, at most [`alertmanager::HOLD_FOR`] later, as do the
//! alerts of a supervisor that stops or dies. The thread is one for all targets: a slow command
//! or webhook delays the re-sending too, and past [`alertmanager::HOLD_FOR`] Alertmanager takes
//! a still-held alert for resolved until it is sent again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::events::Event;

pub mod alertmanager;
pub mod book;
pub mod exec;
pub mod http;
pub mod rate;

use alertmanager::{Alert, End, Post};

/// The `[alert]` table is the plan's ([`crate::plan::alert`]).
pub use crate::plan::alert::{AlertSpec, Rate, SpecError, Webhook};

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
    /// Events offered so far: each one's number orders it against the others.
    seq: AtomicU64,
    /// Alertmanager: the ends offered since the thread last looked, by [`End::key`].
    ends: Mutex<HashMap<End, (u64, End)>>,
    /// Alertmanager: alerts held firing (so an end is worth waking the thread for).
    held: AtomicUsize,
}

enum Msg {
    Alert {
        /// Index into `on`.
        kind: usize,
        json: String,
        /// The event's number and its Alertmanager alert, when there is an Alertmanager.
        manager: Option<(u64, Alert)>,
    },
    /// Ends are waiting in [`Shared::ends`].
    Wake,
}

/// The handle the engine keeps. Dropping it lets the thread finish the queued alerts and exit.
#[derive(Debug)]
pub struct Alerter {
    tx: Option<SyncSender<Msg>>,
    on: Vec<&'static str>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The `host` label, when alerts go to Alertmanager.
    host: Option<String>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Alert { kind, .. } => f
                .debug_struct("Alert")
                .field("kind", kind)
                .finish_non_exhaustive(),
            Msg::Wake => f.write_str("Wake"),
        }
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
        let host = spec.alertmanager.as_ref().map(|_| alertmanager::hostname());
        let manager = spec.alertmanager.clone().map(|target| Manager {
            target,
            host: host.clone().unwrap_or_default(),
            book: book::Book::default(),
        });
        let (tx, rx) = mpsc::sync_channel(spec.queue.max(1));
        let thread_shared = Arc::clone(&shared);
        let spawned = crate::signals::spawn_thread(
            std::thread::Builder::new().name("alert".into()),
            move || {
                Worker {
                    spec,
                    shared: thread_shared,
                    manager,
                }
                .run(&rx);
            },
        );
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
            host,
        }
    }

    /// Hands an event (one JSON object, as [`crate::events::Event::to_line`] writes it) to the
    /// alert thread if `kind` (its `event` name) is one of `on`. Never blocks. Alertmanager gets
    /// only what [`Alerter::offer_event`] hands over.
    pub fn offer(&self, event_json: &str, kind: &str) {
        self.enqueue(event_json, kind, None);
    }

    /// Hands event `e` (`line` is its JSON line) to the alert thread if its kind is one of
    /// `on`, and to Alertmanager as an alert; notes it if it ends held alerts. Never blocks: the
    /// table of ends is locked only to move an entry in or out.
    pub fn offer_event(&self, e: &Event<'_>, line: &str) {
        let kind = e.kind.name();
        let Some(host) = &self.host else {
            return self.offer(line, kind);
        };
        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(end) = End::of(e) {
            self.note_end(seq, end);
        }
        if self.on.contains(&kind) {
            self.enqueue(line, kind, Some((seq, alertmanager::alert_of(e, host))));
        }
    }

    fn note_end(&self, seq: u64, end: End) {
        {
            let mut ends = self
                .shared
                .ends
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = end.key();
            if ends.get(&key).is_none_or(|(at, _)| *at < seq) {
                ends.insert(key, (seq, end));
            }
        }
        // Only held alerts can end; with none, the thread reads the table when it next wakes.
        if self.shared.held.load(Ordering::SeqCst) > 0 {
            if let Some(tx) = &self.tx {
                // Full: the thread is busy, and reads the table before it waits again.
                let _ = tx.try_send(Msg::Wake);
            }
        }
    }

    fn enqueue(&self, event_json: &str, kind: &str, manager: Option<(u64, Alert)>) {
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
        let msg = Msg::Alert {
            kind: i,
            json: event_json.trim_end().to_owned(),
            manager,
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
    manager: Option<Manager>,
}

/// Alertmanager: where, the `host` label, and the alerts held firing.
struct Manager {
    target: Webhook,
    host: String,
    book: book::Book,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let mut limiter = rate::Limiter::new(self.spec.rate);
        loop {
            // Ends noted while the last message was handled: before waiting, not after.
            self.take_ends();
            let wake_at = [
                limiter.next_summary_at(),
                self.manager.as_ref().and_then(|m| m.book.next_due()),
            ]
            .into_iter()
            .flatten()
            .min();
            let msg = match wake_at {
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
            self.take_ends();
            for (kind, n) in self.spec.on.iter().zip(&self.shared.dropped_by_kind) {
                let n = n.swap(0, Ordering::Relaxed);
                if n > 0 {
                    limiter.add_suppressed(kind, n, now);
                }
            }
            for (kind, n) in limiter.summaries(now) {
                let alert = self
                    .manager
                    .as_ref()
                    .map(|m| (0, alertmanager::suppressed(kind, n, &m.host)));
                self.deliver(&summary(kind, n), SUPPRESSED, alert);
            }
            self.resend_due(now);
            if let Some(Msg::Alert {
                kind,
                json,
                manager,
            }) = msg
            {
                if let Some(&kind) = self.spec.on.get(kind) {
                    if limiter.allow(kind, now) {
                        self.deliver(&json, kind, manager);
                    } else {
                        self.shared.suppressed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            let held = self.manager.as_ref().map_or(0, |m| m.book.held());
            self.shared.held.store(held, Ordering::SeqCst);
        }
    }

    /// Resolves the held alerts that the ends noted since the last look end.
    fn take_ends(&mut self) {
        let Some(m) = &mut self.manager else { return };
        let ends = std::mem::take(
            &mut *self
                .shared
                .ends
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if ends.is_empty() {
            return;
        }
        let mut ends: Vec<(u64, End)> = ends.into_values().collect();
        ends.sort_by_key(|(seq, _)| *seq);
        let wall = SystemTime::now();
        let resolved: Vec<Post> = ends
            .into_iter()
            .flat_map(|(seq, end)| m.book.end(seq, end, wall))
            .collect();
        if !resolved.is_empty() {
            let _ = self.post_alertmanager(&resolved, "resolved");
        }
    }

    /// Sends again the held alerts that are due, so that Alertmanager keeps them firing.
    fn resend_due(&mut self, now: Instant) {
        let Some(m) = &mut self.manager else { return };
        let due = m.book.due(now, SystemTime::now());
        if !due.is_empty() {
            let _ = self.post_alertmanager(&due, "re-sent");
        }
    }

    /// One POST of `posts` to Alertmanager, retried once; failures are logged.
    fn post_alertmanager(&self, posts: &[Post], what: &str) -> bool {
        let Some(m) = &self.manager else { return true };
        let body = alertmanager::body(posts);
        match post_retried(&m.target, body.as_bytes(), self.spec.http_timeout) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(url = %m.target.url, alerts = posts.len(), what, error = %e,
                    "cannot send alerts to Alertmanager");
                false
            }
        }
    }

    /// Runs the command, posts to the webhook and/or sends the alert to Alertmanager; failures
    /// are logged and counted.
    fn deliver(&mut self, json: &str, kind: &str, alert: Option<(u64, Alert)>) {
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
            if let Err(e) = post_retried(hook, json.as_bytes(), self.spec.http_timeout) {
                ok = false;
                tracing::warn!(url = %hook.url, event = kind, error = %e, "alert webhook failed");
            }
        }
        let post = match (&mut self.manager, alert) {
            (Some(m), Some((seq, alert))) => {
                Some(m.book.fire(seq, alert, Instant::now(), SystemTime::now()))
            }
            _ => None,
        };
        if let Some(post) = post {
            ok &= self.post_alertmanager(&[post], kind);
        }
        let counter = if ok {
            &self.shared.sent
        } else {
            &self.shared.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// POSTs `body` to `target`, once more a second later if the failure is worth it (not a 4xx).
fn post_retried(target: &Webhook, body: &[u8], timeout: Duration) -> Result<u16, http::PostError> {
    http::post(target, body, timeout).or_else(|e| {
        if !e.retry() {
            return Err(e);
        }
        std::thread::sleep(RETRY_AFTER);
        http::post(target, body, timeout)
    })
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
