//! The HTTP/1.x the metrics server speaks: reading a request head, the request line and its
//! headers, and writing an answer. Small and strict on purpose (see the module above).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::MAX_HEAD;

/// One answer to send.
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: std::borrow::Cow<'static, [u8]>,
    pub head_only: bool,
    /// The body depends on the request's `Accept` header (`Vary: Accept`, for caches).
    pub varies: bool,
    /// More header lines (`Allow`, `WWW-Authenticate`); their values are ours, never a
    /// client's.
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(crate) fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        body.push('\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes().into(),
            head_only: false,
            varies: false,
            headers: Vec::new(),
        }
    }

    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// HTTP methods this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
}

/// A request as read: its method, path and query, its head, and what came after the head.
pub(crate) struct Asked<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: &'a str,
    pub head: &'a [u8],
    pub rest: &'a [u8],
}

/// Headers every answer carries: nothing of this server is to be framed, sniffed, referred
/// from or read by another origin, and its pages run only their own scripts.
pub(crate) const SAFE_HEADERS: &str = "X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
Cross-Origin-Resource-Policy: same-origin\r\n\
Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'\r\n";

/// Writes an answer's head (and, but for `HEAD`, its body), and ends the connection.
pub(crate) async fn send(stream: &mut TcpStream, answer: &Answer) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{SAFE_HEADERS}",
        answer.status,
        reason_phrase(answer.status),
        answer.content_type,
        answer.body.len()
    );
    if answer.status == 405 && !answer.headers.iter().any(|(k, _)| *k == "Allow") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    if answer.varies {
        out.push_str("Vary: Accept\r\n");
    }
    for (k, v) in &answer.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !answer.head_only {
        bytes.extend_from_slice(&answer.body);
    }
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head (an empty line), or just the first line when it is
/// not a request line: what was read, and where the head ends in it (what follows, the empty
/// line left out, is the start of a body); `None` if the head is longer than [`MAX_HEAD`]. A
/// client that closes its side early gets whatever it sent judged as a head.
pub(super) async fn read_head(stream: &mut TcpStream) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            let end = head.len();
            return Ok(Some((head, end)));
        }
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        let tail = &head[scan_from..];
        if let Some(end) = find_end(tail) {
            let sep = if tail[end..].starts_with(b"\r\n\r\n") {
                4
            } else {
                2
            };
            let end = scan_from + end;
            head.drain(end..end + sep);
            return Ok(Some((head, end)));
        }
        // A first line that is not a request line is answered at once, whatever follows.
        if let Some(nl) = head.iter().position(|&b| b == b'\n') {
            if parse_request_line(&head[..nl]).is_err() {
                let end = head.len();
                return Ok(Some((head, end)));
            }
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// Where the head ends in `bytes` (`\r\n\r\n` or a bare `\n\n`), if it does.
pub(super) fn find_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len())
        .find(|&i| bytes[i..].starts_with(b"\r\n\r\n") || bytes[i..].starts_with(b"\n\n"))
}

/// `(method, target)` of a request line `METHOD SP TARGET SP HTTP/1.x`, or the error answer.
pub(super) fn parse_request_line(head: &[u8]) -> Result<(Method, &str), Answer> {
    let bad = || Answer::text(400, "bad request");
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| bad())?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || !target.starts_with('/') {
        return Err(bad());
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(Answer::text(405, "method not allowed"));
        }
        _ => return Err(bad()),
    };
    Ok((method, target))
}

/// The value of header `name` (lower case) in a request head, several joined with `, ` as
/// RFC 9110 allows for list-valued fields; `None` if absent. Lines that are not UTF-8 are skipped.
pub(crate) fn header(head: &[u8], name: &str) -> Option<String> {
    let values: Vec<&str> = head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}
