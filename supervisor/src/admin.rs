//! The control socket: a Unix socket (mode 0600) the running supervisor serves, and the client
//! side of `supervise status|restart|stop|start|reload|logs`.
//!
//! One JSON request per connection, one JSON response back, each a single line; only `logs`
//! answers with a stream of lines (see [`logs()`]). Requests are handled by the engine's
//! own loop (through a channel), so they see and change the same state the workers do, with no
//! locks. A `start`, `stop` or `restart` with `wait_ms` is answered once the action has completed
//! (or the wait ran out), the engine keeping the reply meanwhile (see `engine/wait.rs`). At most
//! [`MAX_CONNECTIONS`] are served at once, followers and waiting clients included, so clients
//! cannot take every file descriptor the supervisor has; at the cap, the connection that has
//! waited longest for its request is closed to let a new one in (see [`crate::connections`]),
//! so clients that trickle their requests cannot lock `supervise status` out. A waiting client
//! is never closed so: at most [`MAX_WAITING`] wait at once, and one more is answered
//! [`Response::Busy`] before its action is taken. So is a client closed before its request was
//! read (a burst of newcomers). [`call_within`] asks again after a pause, within its own time.

use std::future::Future;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::connections::{Conn, Connections};
use crate::logs::Buffers;
use crate::status::WorkerStatus;

mod logs;

pub use logs::{logs, LogLines};

/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;
/// Time a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Time a whole exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; past it, the one that has waited longest for its request is
/// closed to make room.
pub const MAX_CONNECTIONS: usize = 32;
/// Of those, the most that may wait for their action to complete (`--wait`) at once: the rest
/// are kept for everyone else (`status`, a probe, a newcomer's request).
pub const MAX_WAITING: usize = 24;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    /// Restart every instance of `program`, or just `instance`.
    Restart {
        program: String,
        instance: Option<u32>,
        /// Answer once every replacement is up, or after this many ms (see [`Request::wait`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Send `signal` (a number) to every instance of `program`, or just `instance`: to each
    /// one's main process, or with `group` to its whole process group.
    Signal {
        program: String,
        instance: Option<u32>,
        signal: i32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        group: bool,
    },
    /// Carry out `program`'s reload action (`reload.signal` or `reload.exec`) on every instance,
    /// or just `instance`, one at a time, each once the one before is ready again.
    ReloadProgram {
        program: String,
        instance: Option<u32>,
        /// Answer once every instance has reloaded, or after this many ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Stop every instance of `program` and keep them stopped until `start`.
    Stop {
        program: String,
        /// Answer once no process is left, or after this many ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Start a program stopped with `stop`.
    Start {
        program: String,
        /// Answer once every instance is up, or after this many ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Reload the config file, as SIGHUP does.
    Reload,
    /// Read the config file and say what reloading it would change, program by program, and
    /// what it would restart; change nothing.
    #[serde(rename = "reload-dry-run")]
    ReloadDryRun,
    /// The newest `lines` lines of every instance of `program`, or just `instance`, stdout and
    /// stderr interleaved in the order they were read; with `follow`, then each new line as it
    /// is read, until the client closes. Answered by a stream of [`Response::Line`]s (and
    /// [`Response::Skipped`]s when following), ended by [`Response::End`].
    Logs {
        program: String,
        instance: Option<u32>,
        #[serde(default = "default_lines")]
        lines: u32,
        #[serde(default)]
        follow: bool,
    },
    /// The newest `lines` events of `program` (every program if absent) and `instance` (every
    /// one if absent), oldest first, from the supervisor's memory: answered by
    /// [`Response::Events`].
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<u32>,
        #[serde(default = "default_events")]
        lines: u32,
    },
    /// The last hour of memory of `program` (every program if absent) and `instance` (every one
    /// if absent): answered by [`Response::Memory`].
    Memory {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<u32>,
    },
    /// Internal (the metrics server's `/readyz`), not accepted on the socket: `Ok` when every
    /// program not stopped by an operator has all its replicas running and, where they speak the
    /// protocol, ready; else `Error` with the first reason.
    #[serde(skip)]
    Ready,
}

fn default_lines() -> u32 {
    DEFAULT_LINES
}

fn default_events() -> u32 {
    DEFAULT_EVENTS
}

/// Events an `events` request gets when it does not say how many.
pub const DEFAULT_EVENTS: u32 = 20;
/// Most events one answer carries.
pub const MAX_EVENTS_ANSWERED: u32 = 1000;

/// Lines `logs` shows when not told how many: the flag's default ([`crate::plan::DEFAULT_LINES`]).
pub use crate::plan::DEFAULT_LINES;
/// Longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Request {
    /// Sets the wait of a waited request (`start`, `stop`, `restart` with `wait_ms`).
    fn set_wait(&mut self, wait: Duration) {
        if let Request::Start { wait_ms, .. }
        | Request::Stop { wait_ms, .. }
        | Request::Restart { wait_ms, .. } = self
        {
            if wait_ms.is_some() {
                *wait_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
            }
        }
    }

    /// How long the client waits for its action to complete (`--wait`), at most [`MAX_WAIT`].
    #[must_use]
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Request::Start { wait_ms, .. }
            | Request::Stop { wait_ms, .. }
            | Request::Restart { wait_ms, .. }
            | Request::ReloadProgram { wait_ms, .. } => {
                wait_ms.map(|ms| Duration::from_millis(ms).min(MAX_WAIT))
            }
            _ => None,
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    Status {
        workers: Vec<WorkerStatus>,
        /// Figures of the supervisor itself (closed sockets, watched directories, the host).
        #[serde(default)]
        supervisor: Box<crate::status::SupervisorStatus>,
    },
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
    /// A waited action (`wait_ms`) has completed.
    Done {
        message: String,
    },
    /// One line a worker wrote (`logs`), as read (invalid UTF-8 replaced).
    Line {
        program: String,
        instance: u32,
        stream: crate::logs::Stream,
        text: String,
        /// When it was read (RFC 3339, UTC, milliseconds), with `--timestamps`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<String>,
    },
    /// `logs` with `follow`: this many lines were dropped here, as the client did not read
    /// fast enough.
    Skipped {
        lines: u64,
    },
    /// The answer to `events`: each event as its JSON line has it, oldest first.
    Events {
        events: Vec<serde_json::Value>,
    },
    /// The answer to `memory`.
    Memory {
        series: Vec<crate::trail::MemorySeries>,
    },
    /// The end of a `logs` answer; `message` says why, when it ends a follow.
    End {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The request was refused untouched, nothing done: [`MAX_WAITING`] clients already wait,
    /// or [`MAX_CONNECTIONS`] are open and this one was closed before its request was read. Ask
    /// again.
    Busy {
        message: String,
    },
}

/// A request on its way to the engine, with where to send the answer.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The default socket path: `$XDG_RUNTIME_DIR/supervise.sock`, else `/run/supervise.sock` for
/// root, else `/tmp/supervise-UID.sock`.
#[must_use]
pub fn default_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("supervise.sock");
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        PathBuf::from("/run/supervise.sock")
    } else {
        PathBuf::from(format!("/tmp/supervise-{uid}.sock"))
    }
}

/// Binds the socket (mode 0600). A live supervisor already answering there is an error; a stale
/// socket file left by a dead one is replaced.
pub fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{}: another supervise is running there; choose another --admin path",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    // Created with no permissions for others from the start (no window with a looser mode).
    // SAFETY: umask only changes this process's file-creation mask; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let listener = tokio::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener =
        listener.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(listener)
}

/// Serves the socket: each connection's request goes to the engine through `calls`, but for
/// `logs`, answered from `buffers` (on the same thread; nothing the engine decides is needed).
pub async fn serve(
    listener: tokio::net::UnixListener,
    calls: mpsc::UnboundedSender<Call>,
    buffers: Rc<Buffers>,
) {
    // A client closed before its request was read is told so: nothing was done, ask again.
    let mut busy = serde_json::to_vec(&Response::Busy {
        message: format!(
            "{MAX_CONNECTIONS} control connections are open, the most this supervisor serves; \
             nothing was done"
        ),
    })
    .unwrap_or_default();
    busy.push(b'\n');
    let conns = Connections::with_farewell(MAX_CONNECTIONS, MAX_WAITING, busy);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of fds or similar: do not spin on the error.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let calls = calls.clone();
        let buffers = buffers.clone();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        conns.spawn(fd, move |conn| async move {
            let _ = answer(stream, calls, &buffers, &conn).await;
        });
    }
}

/// One connection: its request within [`REQUEST_TIMEOUT`], then its answer within
/// [`EXCHANGE_TIMEOUT`] (plus the wait it asked for); `logs` keeps its own deadlines.
async fn answer(
    stream: tokio::net::UnixStream,
    calls: mpsc::UnboundedSender<Call>,
    buffers: &Buffers,
    conn: &Conn,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    let got = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    conn.request_read();
    got.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let request = match serde_json::from_str::<Request>(line.trim()) {
        Ok(request) => request,
        Err(e) => {
            let response = Response::Error {
                message: format!("bad request: {e}"),
            };
            return within(EXCHANGE_TIMEOUT, reply(&mut write, &response)).await;
        }
    };
    if let Request::Logs {
        program,
        instance,
        lines,
        follow,
    } = request
    {
        let read = reader.into_inner().into_inner();
        let ask = logs::Ask {
            program: &program,
            instance,
            lines,
            follow,
        };
        return logs::serve(read, write, buffers, ask).await;
    }
    // No await since the request was read: nothing can have closed this connection meanwhile.
    if request.wait().is_some() && !conn.wait() {
        let response = Response::Busy {
            message: format!(
                "{MAX_WAITING} clients already wait on this supervisor, the most it keeps; \
                 nothing was done"
            ),
        };
        return within(EXCHANGE_TIMEOUT, reply(&mut write, &response)).await;
    }
    let limit = EXCHANGE_TIMEOUT + request.wait().unwrap_or_default();
    within(limit, async {
        let response = ask_engine(&calls, request).await;
        reply(&mut write, &response).await
    })
    .await
}

/// The engine's answer to `request`.
async fn ask_engine(calls: &mpsc::UnboundedSender<Call>, request: Request) -> Response {
    let gone = || Response::Error {
        message: "the supervisor is shutting down".into(),
    };
    let (tx, rx) = oneshot::channel();
    if calls.send(Call { request, reply: tx }).is_err() {
        return gone();
    }
    rx.await.unwrap_or_else(|_| gone())
}

/// Writes one answer line and ends the connection.
async fn reply(write: &mut OwnedWriteHalf, response: &Response) -> io::Result<()> {
    let mut out = serde_json::to_vec(response).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// `f`, given at most `limit`.
async fn within(limit: Duration, f: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// A connection to the supervisor at `path`, or an error that says where it was looked for.
fn connect(path: &Path) -> io::Result<std::os::unix::net::UnixStream> {
    std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach a supervisor at {}: {e} (is it running? --admin PATH)",
                path.display()
            ),
        )
    })
}

/// The client side: sends one request and waits (at most 10 s) for the answer.
pub fn call(path: &Path, request: &Request) -> io::Result<Response> {
    call_within(path, request, Duration::from_secs(10))
}

/// Like [`call`], waiting at most `limit` for the answer. A request refused as
/// [`Response::Busy`] (nothing done) is sent again after a pause (50 ms, doubling up to 1 s)
/// while time is left: of its own wait, asking for what is left of it, or else of `limit`. Past
/// that, the refusal is returned as an error.
pub fn call_within(path: &Path, request: &Request, limit: Duration) -> io::Result<Response> {
    let start = std::time::Instant::now();
    let mut request = request.clone();
    let wait = request.wait();
    let mut pause = Duration::from_millis(50);
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match call_once(path, &request, left)? {
            Response::Busy { message } => {
                let spent = start.elapsed() + pause;
                if spent >= wait.unwrap_or(limit) {
                    return Ok(Response::Error {
                        message: format!(
                            "{message}; still so after {}",
                            humantime::format_duration(round_ms(start.elapsed()))
                        ),
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
                if let Some(wait) = wait {
                    request.set_wait(wait.saturating_sub(start.elapsed()));
                }
            }
            answer => return Ok(answer),
        }
    }
}

/// `d` to the millisecond, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One request and its answer, waiting at most `limit`.
fn call_once(path: &Path, request: &Request, limit: Duration) -> io::Result<Response> {
    if limit.is_zero() {
        return Err(io::Error::from(io::ErrorKind::TimedOut));
    }
    let mut stream = connect(path)?;
    stream.set_read_timeout(Some(limit))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    // A supervisor at its connection cap may have closed this one already, with a `busy`
    // answer left to read: a failed write is only the error when there is no answer.
    let wrote = stream.write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(stream).read_line(&mut answer);
    match (wrote, read) {
        (Err(e), Ok(0) | Err(_)) | (Ok(()), Err(e)) => return Err(e),
        _ => {}
    }
    serde_json::from_str(&answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}")))
}

/// The plain `status` table, fitted to `width` characters by dropping the least important
/// columns (see [`crate::columns`]); `None` shows every column.
#[must_use]
pub fn table(workers: &[WorkerStatus], width: Option<usize>) -> String {
    use crate::columns;
    let specs = columns::status_columns();
    let now = std::time::SystemTime::now();
    let cells: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            specs
                .iter()
                .map(|s| columns::cell(s.col, &[w], now))
                .collect()
        })
        .collect();
    let fit = columns::fit(&specs, &cells, width);
    let line = |texts: &dyn Fn(usize) -> String| {
        let mut l = fit
            .iter()
            .map(|&(i, w)| columns::pad(&texts(i), w, specs[i].right))
            .collect::<Vec<_>>()
            .join(" ");
        l.truncate(l.trim_end().len());
        l.push('\n');
        l
    };
    let mut out = line(&|i| specs[i].title.to_owned());
    for row in &cells {
        out.push_str(&line(&|i| row[i].clone()));
    }
    out
}

/// The lines under the `status` table about the supervisor itself: how closed sockets are
/// counted (and what no worker could be given), and each watched directory.
#[must_use]
pub fn supervisor_lines(s: &crate::status::SupervisorStatus) -> String {
    use std::fmt::Write as _;
    let c = &s.closed_sockets;
    let mut out = String::new();
    if c.mode == "events" {
        let _ = writeln!(
            out,
            "closed sockets: counted from the kernel's destroy messages; unattributed: {} sockets, {} sent, {} received{}",
            c.unattributed,
            crate::columns::short_bytes(c.unattributed_sent_bytes as f64),
            crate::columns::short_bytes(c.unattributed_received_bytes as f64),
            if c.lost > 0 {
                format!("; {} messages lost", c.lost)
            } else {
                String::new()
            }
        );
    } else {
        let _ = writeln!(
            out,
            "closed sockets: sampled only, connections shorter than a tick are missed ({})",
            c.why.as_deref().unwrap_or("not subscribed")
        );
    }
    for d in &s.watched_dirs {
        let size = d.bytes.map_or_else(
            || "not measured yet".to_owned(),
            |b| {
                format!(
                    "{}{} allocated",
                    if d.partial { "at least " } else { "" },
                    crate::columns::short_bytes(b as f64)
                )
            },
        );
        let fs = d
            .fs_used_percent
            .map_or_else(String::new, |p| format!(", filesystem {p:.1}% used"));
        let err = d
            .error
            .as_ref()
            .map_or_else(String::new, |e| format!(" ({e})"));
        let _ = writeln!(out, "watched {}: {size}{fs}{err}", d.path);
    }
    if let Some(h) = &s.host {
        if let (Some(avail), Some(total)) = (h.mem_available_bytes, h.mem_total_bytes) {
            let pressure = h.memory_pressure.map_or_else(String::new, |p| {
                format!(
                    "; pressure (10 s) some {:.1}%, full {:.1}%",
                    p.some_avg10,
                    p.full_avg10.unwrap_or(0.0)
                )
            });
            let policy = h.pressure_policy.as_ref().map_or_else(
                || "off".to_owned(),
                |p| {
                    format!(
                        "{} at full >= {}% with under {}% available for {}s",
                        p.on, p.full, p.available, p.hold_s
                    )
                },
            );
            let _ = writeln!(
                out,
                "host memory: {} of {} available{pressure}; pressure policy: {policy}",
                crate::columns::short_bytes(avail as f64),
                crate::columns::short_bytes(total as f64),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ClosedSockets, SupervisorStatus, WatchedDir};

    #[test]
    fn supervisor_lines_say_how_closed_sockets_are_counted_and_each_directory() {
        let events = SupervisorStatus {
            closed_sockets: ClosedSockets {
                mode: "events".into(),
                unattributed: 4,
                unattributed_sent_bytes: 2 << 20,
                lost: 7,
                ..ClosedSockets::default()
            },
            watched_dirs: vec![
                WatchedDir {
                    path: "/var/log/api".into(),
                    bytes: Some(3 << 30),
                    partial: true,
                    fs_used_percent: Some(91.25),
                    ..WatchedDir::default()
                },
                WatchedDir {
                    path: "/gone".into(),
                    error: Some("No such file or directory".into()),
                    ..WatchedDir::default()
                },
            ],
            host: None,
        };
        let text = supervisor_lines(&events);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("destroy messages")
                && lines[0].contains("4 sockets, 2.0M sent, 0 received")
                && lines[0].contains("7 messages lost"),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "watched /var/log/api: at least 3.0G allocated, filesystem 91.2% used"
        );
        assert_eq!(
            lines[2],
            "watched /gone: not measured yet (No such file or directory)"
        );
        let sampled = SupervisorStatus {
            closed_sockets: ClosedSockets {
                mode: "sampling".into(),
                why: Some("turned off".into()),
                ..ClosedSockets::default()
            },
            ..SupervisorStatus::default()
        };
        assert_eq!(
            supervisor_lines(&sampled),
            "closed sockets: sampled only, connections shorter than a tick are missed (turned off)\n"
        );
    }
}
