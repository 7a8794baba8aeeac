//! Running a readiness or health [`Check`]: a TCP connect, an HTTP GET, or a command. Each try is
//! bounded by its timeout and never blocks the runtime: connects and reads are async, and a
//! command's exit comes from the supervisor's one reaper. A command is tracked as a tree, as a
//! worker is, and nothing of it outlives its try (see `checks/exec.rs`).

use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::orphans::Roots;
use crate::plan::Check;
use crate::reaper::Reaper;

mod exec;
pub mod trees;

pub use trees::Trees;

/// What a check needs of the supervisor.
#[derive(Debug, Clone)]
pub struct Env {
    /// A command's exit.
    pub reaper: Rc<Reaper>,
    /// A command is a child of the supervisor but no orphan.
    pub roots: Roots,
    /// Where the orphan scan finds the commands under way, and hands them what they left.
    pub trees: Trees,
    /// Told of every process of a command's tree.
    pub lifeline: Option<Rc<crate::lifeline::Lifeline>>,
    /// How often a command's tree is looked at while it runs (the workers' sampling period).
    pub sample_every: Duration,
}

/// Tries `check` once; `Err` says why it failed. A `cancel` that fires (or whose sender is
/// dropped: the worker's incarnation is over) ends the try at once, its command's tree killed.
pub async fn run(
    check: &Check,
    timeout: Duration,
    env: &Env,
    mut cancel: oneshot::Receiver<()>,
) -> Result<(), String> {
    match check {
        Check::Tcp { host, port } => cancellable(&mut cancel, tcp(host, *port, timeout)).await,
        Check::Http { host, port, path } => {
            cancellable(&mut cancel, http(host, *port, path, timeout)).await
        }
        Check::Exec(argv) => exec::exec(argv, &[], timeout, env, &mut cancel).await,
        // Judged against the worker's own tree, where its pids are known (`worker::ready`).
        Check::Listen { port } => Err(format!("listen:{port} is judged with the worker's tree")),
    }
}

/// Runs `argv` as an exec check does, with `vars` added to its environment: Ok if it exits 0
/// within `timeout`; nothing of it outlives the call.
pub async fn exec_with(
    argv: &[String],
    vars: &[(String, String)],
    timeout: Duration,
    env: &Env,
    mut cancel: oneshot::Receiver<()>,
) -> Result<(), String> {
    exec::exec(argv, vars, timeout, env, &mut cancel).await
}

/// `try_` unless `cancel` fires first.
async fn cancellable(
    cancel: &mut oneshot::Receiver<()>,
    try_: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::select! {
        r = try_ => r,
        _ = cancel => Err("cancelled".to_owned()),
    }
}

/// A connection to `host:port` is accepted within `timeout`.
async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("no connection to {host}:{port} within {timeout:?}"))?
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    Ok(())
}

/// `GET path` answers 2xx or 3xx within `timeout`.
async fn http(host: &str, port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let status = tokio::time::timeout(timeout, http_get(host, port, path))
        .await
        .map_err(|_| format!("no answer from {host}:{port} within {timeout:?}"))??;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

/// Longest HTTP status line read.
const MAX_STATUS_LINE: usize = 1024;

/// `GET path` over HTTP/1.0; the status code of the answer.
async fn http_get(host: &str, port: u16, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: supervise\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    status_code(&buf).ok_or_else(|| {
        format!(
            "{host}:{port}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(40)])
        )
    })
}

/// The code of an HTTP status line (`HTTP/1.x NNN ...`).
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    if !words.next()?.starts_with(b"HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nx"),
            Some(503)
        );
        assert_eq!(status_code(b"HTTP/1.1 301\r\n"), Some(301));
        for bad in [
            &b""[..],
            b"200 OK",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 abc",
            b"SSH-2.0-x",
        ] {
            assert_eq!(status_code(bad), None, "{bad:?}");
        }
    }
}
