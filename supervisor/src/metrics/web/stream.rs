//! The dashboard's live stream (Server-Sent Events): a `status` message every
//! [`STATUS_EVERY`] (and [`AFTER_EVENT`] after an event, so that what it changed shows at
//! once), an `event` message for each event as it happens, and, when the page asked
//! for an instance's log (`?logs=NAME[/INSTANCE]`), its last lines then each new one as a `log`
//! message. What the page does not take in time is skipped and counted (`skipped`), never
//! queued without end; a write that does not complete within [`WRITE_TIMEOUT`] ends the stream,
//! and so does the page going away.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;

use super::Dashboard;
use crate::admin::Call;
use crate::logs::{Buffers, Item, RecentLine};

/// How often the page is sent a status snapshot.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Time one write to the page may take; a page that does not read is cut off.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon after an event the page is sent a fresh status (events come in bursts: a restart
/// is `stopping`, `exited`, `restarting`, `started`).
const AFTER_EVENT: Duration = Duration::from_millis(100);
/// Log lines a new stream starts with.
const FIRST_LINES: usize = 100;

/// A stream asked for, holding its place among [`super::MAX_STREAMS`] until it ends.
pub struct Ask {
    logs: Option<(String, Option<u32>)>,
    open: Rc<Cell<usize>>,
}

impl Ask {
    pub(super) fn new(logs: Option<(String, Option<u32>)>, open: Rc<Cell<usize>>) -> Self {
        open.set(open.get() + 1);
        Self { logs, open }
    }
}

impl Drop for Ask {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}

/// A log line as the page and `/api/logs` get it.
pub(crate) fn log_json(l: &RecentLine) -> serde_json::Value {
    serde_json::json!({
        "program": &*l.program,
        "instance": l.instance,
        "stream": l.stream,
        "text": String::from_utf8_lossy(&l.bytes),
    })
}

/// One message: `event: NAME` and one `data:` line (JSON has no line breaks in it).
fn message(out: &mut Vec<u8>, name: &str, data: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Serves the stream until the page goes away, does not read, or the supervisor ends.
pub(crate) async fn run(
    stream: TcpStream,
    calls: &tokio::sync::mpsc::UnboundedSender<Call>,
    d: &Dashboard,
    ask: Ask,
) {
    let (mut read, mut write) = stream.into_split();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         Connection: close\r\nX-Accel-Buffering: no\r\n{}\r\nretry: 2000\n\n",
        crate::metrics::SAFE_HEADERS
    )
    .into_bytes();
    let mut events = d.recent.follow();
    let follower = match &ask.logs {
        None => None,
        Some((program, instance)) => match d.buffers.select(program, *instance) {
            Ok(selected) => {
                for l in Buffers::recent(&selected, FIRST_LINES) {
                    message(&mut out, "log", &log_json(&l).to_string());
                }
                Some(d.buffers.follow(program, *instance, &selected))
            }
            Err(why) => {
                message(
                    &mut out,
                    "logend",
                    &serde_json::json!({ "message": why }).to_string(),
                );
                None
            }
        },
    };
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scratch = [0u8; 256];
    let mut follower_open = follower.is_some();
    // Lines were left in the follower's queue when the last batch was full.
    let mut more_logs = false;
    // A status snapshot is due early: an event just happened.
    let mut soon: Option<tokio::time::Instant> = None;
    loop {
        if !out.is_empty() {
            let wrote = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&out)).await;
            if !matches!(wrote, Ok(Ok(()))) {
                return;
            }
            out.clear();
        }
        if more_logs {
            if let Some(f) = &follower {
                more_logs = drain(f, &mut out, &mut follower_open);
                continue;
            }
        }
        tokio::select! {
            _ = tick.tick() => match super::state(calls).await {
                Some(s) => message(&mut out, "status", &s.to_string()),
                None => return,
            },
            () = sleep_until(soon) => {
                soon = None;
                tick.reset();
                match super::state(calls).await {
                    Some(s) => message(&mut out, "status", &s.to_string()),
                    None => return,
                }
            },
            got = events.recv() => match got {
                Ok(line) => {
                    message(&mut out, "event", &line);
                    // What the event changed shows at once, not at the next tick.
                    soon.get_or_insert_with(|| tokio::time::Instant::now() + AFTER_EVENT);
                }
                Err(RecvError::Lagged(n)) => {
                    message(&mut out, "skipped", &serde_json::json!({ "events": n }).to_string());
                }
                Err(RecvError::Closed) => return,
            },
            () = async {
                match &follower {
                    Some(f) if follower_open => f.changed().await,
                    _ => std::future::pending().await,
                }
            } => {
                if let Some(f) = &follower {
                    more_logs = drain(f, &mut out, &mut follower_open);
                }
            },
            // The page sends nothing: end of file (or an error) is its going away.
            got = read.read(&mut scratch) => {
                if !matches!(got, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

/// Completes at `at`, or never.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Bytes of messages gathered before a write.
const BATCH: usize = 64 * 1024;

/// Moves the follower's queued lines into `out`, up to [`BATCH`]; true if some are left.
fn drain(f: &Rc<crate::logs::Follower>, out: &mut Vec<u8>, open: &mut bool) -> bool {
    while out.len() < BATCH {
        match f.pop() {
            Some(Item::Line(l)) => message(out, "log", &log_json(&l).to_string()),
            Some(Item::Skipped(n)) => message(
                out,
                "skipped",
                &serde_json::json!({ "lines": n }).to_string(),
            ),
            None => {
                if let Some(why) = f.closed().filter(|_| *open) {
                    message(
                        out,
                        "logend",
                        &serde_json::json!({ "message": why }).to_string(),
                    );
                    *open = false;
                }
                return false;
            }
        }
    }
    true
}
