//! The dashboard: one page at `/` on the metrics address, its script and style built into the
//! binary, kept up to date by one server-push stream (Server-Sent Events at `/api/stream`).
//!
//! # Theory of operation
//! The page shows what `supervise status`, `top` and `supervise logs` show, from the same
//! sources: the engine's status snapshot (asked for on its channel, as `/metrics` does), the
//! recent events ([`crate::events::recent`]), the kept hour of memory ([`crate::trail`]) and
//! the log buffers ([`crate::logs::Buffers`]). The stream sends a status snapshot every second,
//! each event as it happens, and the log lines of the instance the page has selected (a new
//! selection opens a new stream). Nothing waits for a slow page: events and log lines it does
//! not take are skipped and counted, and a write that does not complete within
//! `stream::WRITE_TIMEOUT` ends the stream.
//!
//! # Safe by default
//! Each rule is enforced here and has a test that fails without it (`tests/dashboard.rs`,
//! `tests/browser.rs`):
//! - Read-only unless a token is configured (`--http-token FILE`, `http_token`): the actions
//!   (`restart`, `stop`, `start`, `signal`) are refused with `403` otherwise.
//! - Actions only as `POST`, with the token as `Authorization: Bearer` (`401` without it or
//!   with another), `Content-Type: application/json` (which no cross-site form can send), and
//!   from the page's own origin (`Origin` and `Sec-Fetch-Site` checked: `403`). A `GET` changes
//!   nothing: `405`.
//! - Bound to loopback, the dashboard answers only requests that name a loopback host
//!   (`localhost`, `127.0.0.1`, `[::1]`), so that a page of another site whose name was made to
//!   resolve to 127.0.0.1 (DNS rebinding) cannot read it.
//! - Everything a worker controls (log lines, `STATUS=`, event text) is put on the page as text
//!   (`textContent`), never as markup, and the page's Content-Security-Policy allows only its
//!   own script: a worker printing `<script>` shows those characters.
//! - No endpoint runs a command; no request is answered with anything but what the page shows.
//! - Live streams are capped ([`MAX_STREAMS`]) and are among the connections the metrics
//!   server's cap makes give way to a newcomer, so pages cannot starve `/healthz`.
//!
//! # Caveats
//! No TLS: the token crosses the network in the clear unless the address is loopback (or behind
//! a TLS proxy). The token is read at start; a reload does not change it.

pub(crate) mod actions;
mod assets;
pub(crate) mod stream;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::TcpStream;

use crate::admin::{Request, Response};
use crate::events::recent::Recent;
use crate::logs::Buffers;
use crate::metrics::{ask, header, Answer, Asked, Method, Server};
use crate::plan::HttpToken;

/// Live streams served at once; one more is answered `503`.
pub const MAX_STREAMS: usize = 16;
/// Events the page starts with.
const EVENTS_SHOWN: usize = 200;
/// Log lines an answer or a new stream starts with, at most.
const LOG_LINES: usize = 200;

/// What the dashboard serves from, and its rules.
pub struct Dashboard {
    pub(crate) recent: Arc<Recent>,
    pub(crate) buffers: Rc<Buffers>,
    token: Option<HttpToken>,
    /// The listener is on a loopback address: requests must name a loopback host.
    loopback: bool,
    /// `--history` is on (the charts start from the file).
    history: bool,
    /// Live streams open.
    streams: Rc<Cell<usize>>,
}

impl Dashboard {
    #[must_use]
    pub fn new(
        recent: Arc<Recent>,
        buffers: Rc<Buffers>,
        token: Option<HttpToken>,
        bound: SocketAddr,
        history: bool,
    ) -> Self {
        Self {
            recent,
            buffers,
            token,
            loopback: bound.ip().is_loopback(),
            history,
            streams: Rc::default(),
        }
    }
}

/// What a dashboard request gets: an answer, or the live stream.
pub(crate) enum Outcome {
    Answer(Answer),
    Stream(stream::Ask),
}

/// The paths of the actions.
const ACTIONS: [&str; 4] = ["/api/restart", "/api/stop", "/api/start", "/api/signal"];

/// Answers a request for anything but `/metrics` and the probes.
pub(crate) async fn route(
    server: &Server,
    asked: &Asked<'_>,
    stream: &mut TcpStream,
) -> io::Result<Outcome> {
    let d = &server.dashboard;
    let answer = |a: Answer| Ok(Outcome::Answer(a));
    let ours = matches!(asked.path, "/" | "/index.html" | "/app.js" | "/app.css")
        || asked.path.starts_with("/api/");
    if !ours {
        return answer(Answer::text(404, "not found"));
    }
    if !host_allowed(header(asked.head, "host").as_deref(), d.loopback) {
        return answer(Answer::text(
            403,
            "this dashboard is bound to loopback and answers only to localhost, 127.0.0.1 or [::1]",
        ));
    }
    if ACTIONS.contains(&asked.path) {
        if asked.method != Method::Post {
            return answer(Answer::text(405, "actions are POST requests").with("Allow", "POST"));
        }
        return answer(actions::post(server, asked, stream).await?);
    }
    if asked.method == Method::Post {
        return answer(Answer::text(405, "method not allowed"));
    }
    let q = |key: &str| query(asked.query, key);
    let target = || {
        let program = q("program")?;
        let instance = q("instance").and_then(|i| i.parse().ok());
        Some((program, instance))
    };
    let lines = q("lines").and_then(|n| n.parse().ok());
    match asked.path {
        "/" | "/index.html" => answer(assets::page()),
        "/app.js" => answer(assets::script()),
        "/app.css" => answer(assets::style()),
        "/api/info" => answer(json(
            200,
            &serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "actions": d.token.is_some(),
                "history": d.history,
                "max_streams": MAX_STREAMS,
                "page_bytes": assets::TOTAL_BYTES,
            }),
        )),
        "/api/state" => answer(match state(&server.calls).await {
            Some(s) => json(200, &s),
            None => Answer::text(503, "the supervisor is shutting down"),
        }),
        "/api/memory" => answer(
            match ask(
                &server.calls,
                Request::Memory {
                    program: q("program"),
                    instance: q("instance").and_then(|i| i.parse().ok()),
                },
            )
            .await
            {
                Some(Response::Memory { series }) => {
                    json(200, &serde_json::json!({ "series": series }))
                }
                _ => Answer::text(503, "the supervisor is shutting down"),
            },
        ),
        "/api/events" => {
            let target = target();
            let lines = d.recent.lines(
                target.as_ref().map(|t| t.0.as_str()),
                target.as_ref().and_then(|t| t.1),
                lines
                    .unwrap_or(EVENTS_SHOWN)
                    .min(crate::events::recent::MAX_EVENTS),
            );
            let events: Vec<serde_json::Value> = lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            answer(json(200, &serde_json::json!({ "events": events })))
        }
        "/api/logs" => {
            let Some((program, instance)) = target() else {
                return answer(Answer::text(
                    400,
                    "which program? ?program=NAME[&instance=N]",
                ));
            };
            answer(match d.buffers.select(&program, instance) {
                Ok(selected) => {
                    let lines: Vec<serde_json::Value> =
                        Buffers::recent(&selected, lines.unwrap_or(LOG_LINES).min(LOG_LINES))
                            .iter()
                            .map(stream::log_json)
                            .collect();
                    json(200, &serde_json::json!({ "lines": lines }))
                }
                Err(message) => Answer::text(404, message),
            })
        }
        "/api/stream" if asked.method == Method::Head => answer(Answer {
            content_type: "text/event-stream",
            ..Answer::text(200, "")
        }),
        "/api/stream" => {
            if d.streams.get() >= MAX_STREAMS {
                return answer(Answer::text(
                    503,
                    format!("{MAX_STREAMS} live pages are open, the most this supervisor serves"),
                ));
            }
            let logs = q("logs").map(|t| match t.split_once('/') {
                Some((p, i)) => (p.to_owned(), i.parse().ok()),
                None => (t, None),
            });
            Ok(Outcome::Stream(stream::Ask::new(logs, d.streams.clone())))
        }
        _ => answer(Answer::text(404, "not found")),
    }
}

/// The status snapshot as the page reads it.
pub(crate) async fn state(
    calls: &tokio::sync::mpsc::UnboundedSender<crate::admin::Call>,
) -> Option<serde_json::Value> {
    match ask(calls, Request::Status).await? {
        Response::Status {
            workers,
            supervisor,
        } => Some(serde_json::json!({ "workers": workers, "supervisor": supervisor })),
        _ => None,
    }
}

/// A JSON answer.
pub(crate) fn json(status: u16, value: &impl Serialize) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Answer {
        status,
        content_type: "application/json",
        body: body.into(),
        head_only: false,
        varies: false,
        headers: Vec::new(),
    }
}

/// Whether a request naming `host` (its `Host` header) may be answered: any, unless the
/// listener is on loopback; then only a loopback name or address, so that a site whose name
/// was made to resolve to 127.0.0.1 (DNS rebinding) gets nothing. No `Host` at all is no
/// browser's request (they always send one): allowed.
#[must_use]
pub fn host_allowed(host: Option<&str>, loopback: bool) -> bool {
    if !loopback {
        return true;
    }
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || after.starts_with(':') => inside,
            _ => return false,
        },
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request comes from the page's own origin: a browser says where a request comes
/// from (`Origin`, and `Sec-Fetch-Site` in current ones); a client that is no browser (curl)
/// sends neither and needs the token all the same.
#[must_use]
pub fn same_origin(origin: Option<&str>, fetch_site: Option<&str>, host: Option<&str>) -> bool {
    if let Some(site) = fetch_site {
        if !matches!(site.trim(), "same-origin" | "none") {
            return false;
        }
    }
    match origin {
        None => true,
        Some(o) => host.is_some_and(|h| o.trim().eq_ignore_ascii_case(&format!("http://{h}"))),
    }
}

/// The value of `key` in a query string, percent-decoded (invalid UTF-8 replaced).
#[must_use]
pub fn query(q: &str, key: &str) -> Option<String> {
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
