//! The webhook: one JSON POST over plain HTTP/1.1, hand-written over a `TcpStream`.
//!
//! One request per connection with `Connection: close`, and only the status line of the answer
//! is read (at most [`MAX_STATUS_LINE`] bytes): no need for a general client. The whole exchange
//! (connect, send, status line) has one deadline. Name resolution (getaddrinfo(3)) happens first
//! and has no deadline of its own: use an address, or a name the local resolver answers at once.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::plan::alert::Webhook;

/// Longest status line read.
pub const MAX_STATUS_LINE: usize = 1024;

/// Why a POST did not get a 2xx.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: io::Error },
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: String, error: io::Error },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(io::Error),
    #[error("answered {0}")]
    Status(u16),
    #[error("not an HTTP answer: {0:?}")]
    BadAnswer(String),
}

impl PostError {
    /// Worth one more try: not a 4xx, which says the request itself is wrong.
    #[must_use]
    pub fn retry(&self) -> bool {
        !matches!(self, PostError::Status(code) if (400..500).contains(code))
    }
}

/// POSTs `body` (JSON) to `hook`; `Ok(status)` for a 2xx.
pub fn post(hook: &Webhook, body: &[u8], timeout: Duration) -> Result<u16, PostError> {
    let deadline = Instant::now() + timeout;
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(PostError::Timeout(timeout))
        } else {
            Ok(d)
        }
    };
    let addrs: Vec<SocketAddr> = (hook.host.as_str(), hook.port)
        .to_socket_addrs()
        .map_err(|error| PostError::Resolve {
            host: hook.host.clone(),
            error,
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(error) => last = Some((addr, error)),
        }
    }
    let mut stream = stream.ok_or_else(|| match last {
        Some((_, error)) if is_timeout(&error) => PostError::Timeout(timeout),
        Some((addr, error)) => PostError::Connect {
            addr: addr.to_string(),
            error,
        },
        None => PostError::Resolve {
            host: hook.host.clone(),
            error: io::Error::new(io::ErrorKind::NotFound, "no address"),
        },
    })?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: supervise/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        hook.path,
        hook.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream
        .set_write_timeout(Some(left()?))
        .map_err(PostError::Io)?;
    stream.write_all(&request).map_err(|e| io_err(e, timeout))?;
    let mut buf = [0u8; MAX_STATUS_LINE];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(2).any(|w| w == b"\r\n") {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(PostError::Io)?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e, timeout)),
        }
    }
    let code = status_code(&buf[..len])?;
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        Err(PostError::Status(code))
    }
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn status_code(answer: &[u8]) -> Result<u16, PostError> {
    let line = answer
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let bad = || PostError::BadAnswer(String::from_utf8_lossy(&line[..line.len().min(80)]).into());
    let mut words = line.split(|&b| b == b' ');
    if !words.next().is_some_and(|v| v.starts_with(b"HTTP/1.")) {
        return Err(bad());
    }
    let code = words.next().filter(|c| c.len() == 3).ok_or_else(bad)?;
    std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(bad)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn io_err(e: io::Error, timeout: Duration) -> PostError {
    if is_timeout(&e) {
        PostError::Timeout(timeout)
    } else {
        PostError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n").ok(), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 500 Oops\r\nX: y").ok(), Some(500));
        assert_eq!(status_code(b"HTTP/1.1 200").ok(), Some(200));
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 2000 x\r\n",
            b"HTTP/1.1 abc\r\n",
            b"HTTP/2 200\r\n",
        ] {
            assert!(
                matches!(status_code(bad), Err(PostError::BadAnswer(_))),
                "{bad:?}"
            );
        }
        assert!(!PostError::Status(404).retry());
        assert!(PostError::Status(503).retry());
        assert!(PostError::Timeout(Duration::from_secs(1)).retry());
    }
}
