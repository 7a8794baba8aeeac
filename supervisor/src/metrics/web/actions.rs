//! The dashboard's actions: `POST /api/restart|stop|start|signal` with a JSON body
//! (`{"program": "api", "instance": 0, "signal": "USR1"}`), each checked in this order: the
//! dashboard has a token at all (`403`, read-only), the request comes from the page's origin
//! (`403`), it carries the token (`401`), its body is JSON (`415`) of a stated length of at most
//! [`MAX_BODY`] (`411`, `413`) that reads as an action (`400`). Then it is the same request
//! `supervise restart|stop|start|signal` makes, answered as the control socket answers it.

use std::io;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{json, same_origin};
use crate::admin::{Request, Response};
use crate::metrics::{ask, header, Answer, Asked, Server};

/// Longest body read.
pub const MAX_BODY: usize = 4096;
/// Time a client has to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(3);

/// An action's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    program: String,
    #[serde(default)]
    instance: Option<u32>,
    /// `signal` only: a name (`USR1`, `SIGHUP`, `RTMIN+3`) or a number.
    #[serde(default)]
    signal: Option<serde_json::Value>,
}

/// The token a request carries as `Authorization: Bearer TOKEN`.
#[must_use]
pub fn bearer(value: Option<&str>) -> Option<&str> {
    let value = value?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Answers one action.
pub(crate) async fn post(
    server: &Server,
    asked: &Asked<'_>,
    stream: &mut TcpStream,
) -> io::Result<Answer> {
    let d = &server.dashboard;
    let head = asked.head;
    let Some(token) = &d.token else {
        return Ok(Answer::text(
            403,
            "this dashboard is read-only: start supervise with --http-token FILE to allow actions",
        ));
    };
    let host = header(head, "host");
    if !same_origin(
        header(head, "origin").as_deref(),
        header(head, "sec-fetch-site").as_deref(),
        host.as_deref(),
    ) {
        return Ok(Answer::text(403, "cross-origin requests are refused"));
    }
    let authorization = header(head, "authorization");
    if !bearer(authorization.as_deref()).is_some_and(|t| token.matches(t.as_bytes())) {
        return Ok(Answer::text(
            401,
            "a bearer token is needed (the one in the --http-token file)",
        )
        .with("WWW-Authenticate", "Bearer realm=\"supervise\""));
    }
    let is_json = header(head, "content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Ok(Answer::text(415, "the body must be application/json"));
    }
    let Some(length) = header(head, "content-length").and_then(|l| l.trim().parse::<usize>().ok())
    else {
        return Ok(Answer::text(411, "Content-Length is needed"));
    };
    if length > MAX_BODY {
        return Ok(Answer::text(
            413,
            format!("at most {MAX_BODY} bytes of body"),
        ));
    }
    let mut body = asked.rest[..asked.rest.len().min(length)].to_vec();
    let read = tokio::time::timeout(BODY_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while body.len() < length {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n.min(length - body.len())]);
        }
        io::Result::Ok(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) || body.len() < length {
        return Ok(Answer::text(
            400,
            "the body ended before its Content-Length",
        ));
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return Ok(Answer::text(400, format!("bad body: {e}"))),
    };
    let request = match to_request(asked.path, body) {
        Ok(r) => r,
        Err(m) => return Ok(Answer::text(400, m)),
    };
    tracing::info!(action = asked.path, ?request, "dashboard action");
    Ok(match ask(&server.calls, request).await {
        Some(Response::Ok { message } | Response::Done { message }) => {
            json(200, &serde_json::json!({ "ok": true, "message": message }))
        }
        Some(Response::Error { message }) => {
            json(409, &serde_json::json!({ "ok": false, "message": message }))
        }
        _ => Answer::text(503, "the supervisor is shutting down"),
    })
}

/// The control request an action is.
fn to_request(path: &str, b: Body) -> Result<Request, String> {
    let whole = |what: &str| {
        if b.instance.is_some() {
            Err(format!("{what} is about a whole program: no instance"))
        } else {
            Ok(())
        }
    };
    if path != "/api/signal" && b.signal.is_some() {
        return Err("only a signal action has a signal".into());
    }
    Ok(match path {
        "/api/restart" => Request::Restart {
            program: b.program,
            instance: b.instance,
            wait_ms: None,
        },
        "/api/stop" => {
            whole("stop")?;
            Request::Stop {
                program: b.program,
                wait_ms: None,
            }
        }
        "/api/start" => {
            whole("start")?;
            Request::Start {
                program: b.program,
                wait_ms: None,
            }
        }
        _ => {
            let sig = match &b.signal {
                Some(serde_json::Value::String(s)) => crate::plan::parse_signal(s)?,
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .and_then(crate::signals::Sig::from_raw)
                    .ok_or_else(|| format!("no signal numbered {n}"))?,
                _ => return Err("which signal? {\"signal\": \"USR1\"}".into()),
            };
            Request::Signal {
                program: b.program,
                instance: b.instance,
                signal: sig.raw(),
                group: false,
            }
        }
    })
}
