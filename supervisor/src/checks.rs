//! Running a readiness or health [`Check`]: a TCP connect, an HTTP GET, or a command. Each try is
//! bounded by its timeout and never blocks the runtime: connects and reads are async, and a
//! command's exit comes from the supervisor's one reaper.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::orphans::Roots;
use crate::plan::Check;
use crate::reaper::{Exit, Reaper};

/// Longest HTTP status line read.
const MAX_STATUS_LINE: usize = 1024;

/// Tries `check` once; `Err` says why it failed.
pub async fn run(
    check: &Check,
    timeout: Duration,
    reaper: &Reaper,
    roots: &Roots,
) -> Result<(), String> {
    match check {
        Check::Tcp { host, port } => {
            tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), *port)))
                .await
                .map_err(|_| format!("no connection to {host}:{port} within {timeout:?}"))?
                .map_err(|e| format!("{host}:{port}: {e}"))?;
            Ok(())
        }
        Check::Http { host, port, path } => {
            let status = tokio::time::timeout(timeout, http_get(host, *port, path))
                .await
                .map_err(|_| format!("no answer from {host}:{port} within {timeout:?}"))??;
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(format!("GET {path} answered {status}"))
            }
        }
        Check::Exec(argv) => exec(argv, timeout, reaper, roots).await,
    }
}

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

/// Runs `argv` (its own process group, no stdio, the supervisor's original signal mask); Ok if it
/// exits 0 within `timeout`, else its group is SIGKILLed.
async fn exec(
    argv: &[String],
    timeout: Duration,
    reaper: &Reaper,
    roots: &Roots,
) -> Result<(), String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "empty command".to_owned())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    crate::spawn::helper_pre_exec(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    // `child` is dropped without wait(): the reaper owns every exit status.
    drop(child);
    let mut exit_rx = reaper.watch(pid);
    // A child of ours, but nobody's orphan.
    roots.borrow_mut().insert(pid);
    let waited = tokio::time::timeout(timeout, &mut exit_rx).await;
    let result = match waited {
        Ok(Ok(Exit::Code(0))) => Ok(()),
        Ok(Ok(Exit::Code(c))) => Err(format!("{program} exited with code {c}")),
        Ok(Ok(Exit::Signal(s))) => Err(format!("{program} died of signal {s}")),
        Ok(Err(_)) => Err(format!("{program}: exit status lost")),
        Err(_) => {
            // SAFETY: killpg(2) on the group the command leads; it is unreaped (we never got its
            // exit), so the group id cannot have been reused.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
            // Reaped before it leaves the roots, or the orphan scan would take it for a stray.
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut exit_rx).await;
            Err(format!("{program} did not finish within {timeout:?}"))
        }
    };
    roots.borrow_mut().remove(&pid);
    result
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
