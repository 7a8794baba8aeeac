//! Worker output, supervise's own lines and events, written by dedicated threads.
//!
//! Writing to our stdout/stderr, to log files or to the events file can block (a full pipe, a slow
//! disk). None of that may stall the engine, which runs on one thread and must keep sampling, so
//! every write happens on a writer thread fed through a channel, one thread per destination so a
//! stalled console cannot hold up the log files or the events. Worker lines hold permits of a
//! byte budget per destination until they are written: when one falls behind, readers stop reading
//! the pipes and the workers block in `write(2)`, so memory stays bounded and no line is dropped.
//! Events take no permits (they are few and must never wait). Supervise's own lines about them
//! (see [`crate::events::human`]) go to stderr through the console thread, in order with the
//! worker lines there; they never wait either, and past a small budget they are dropped and
//! counted rather than queued without end.
//!
//! Each line is also kept, as it is read, in its instance's ring buffer for `supervise logs` (see
//! [`Buffers`]): a copy into memory already there, on the engine's thread, that never waits.
//!
//! A destination that fails is retried: a log file after a second (its lines meanwhile dropped
//! and counted), the events file likewise, with an `events_lost` event as its first line once it
//! can be written again.

use std::io::{self, IsTerminal as _};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::events::{human, Event};
use crate::plan::{EventsTarget, Plan};

mod buffers;
mod console;
mod events_file;
mod files;
pub mod json;
mod ring;

pub use buffers::{Buffer, Buffers, Follower, Item, RecentLine, FOLLOW_BUDGET, REPLY_MAX};
use console::{Console, Notes};
pub use console::{TracingLine, TracingLines};
use events_file::EventsFile;
use files::LogFiles;
pub use ring::MIN_CAPACITY as MIN_BUFFER;

/// Longest line forwarded as one; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;
/// With `--log-format json`, the longest line read as one, then written in parts of at most
/// [`json::MAX_JSON_LINE`]; a longer one is cut into lines of this size.
pub const MAX_JSON_READ: usize = 256 * 1024;
/// Pipe read sizes: quiet workers, and workers that fill the small buffer.
const READ_SMALL: usize = 8 * 1024;
const READ_LARGE: usize = 64 * 1024;
/// Bytes of worker output that may wait for one destination at once.
pub const BUDGET: usize = 1 << 20;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Who wrote a line: a worker instance.
#[derive(Debug)]
pub struct Source {
    pub program: String,
    pub instance: u32,
    prefix: Vec<u8>,
}

impl Source {
    /// The lines of `program`'s instance, forwarded after `name[instance] ` when `prefix`.
    #[must_use]
    pub fn new(program: &str, instance: u32, prefix: bool) -> Arc<Self> {
        Arc::new(Self {
            program: program.to_owned(),
            instance,
            prefix: if prefix {
                format!("{program}[{instance}] ").into_bytes()
            } else {
                Vec::new()
            },
        })
    }
}

/// A worker line on its way to one destination; the permit returns its bytes to the budget once
/// the line is written.
struct Line {
    src: Arc<Source>,
    stream: Stream,
    bytes: Arc<[u8]>,
    /// When it was read, with `--timestamps`.
    read_at: Option<SystemTime>,
    /// When it was read (for `--log-format json`'s `ts`).
    at: SystemTime,
    _permit: OwnedSemaphorePermit,
}

/// What a writer thread is sent: worker lines, and (the console's) supervise's own lines.
enum Msg {
    Line(Line),
    Note(String),
}

/// One destination: a channel to its thread and the byte budget of lines in flight.
#[derive(Debug, Clone)]
struct Lane {
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<Semaphore>,
}

impl Lane {
    async fn send(
        &self,
        src: &Arc<Source>,
        stream: Stream,
        bytes: &Arc<[u8]>,
        read_at: Option<SystemTime>,
        at: SystemTime,
    ) -> bool {
        let cost = u32::try_from(bytes.len().clamp(1, BUDGET)).unwrap_or(1);
        let Ok(permit) = self.budget.clone().acquire_many_owned(cost).await else {
            return false;
        };
        self.tx
            .send(Msg::Line(Line {
                src: src.clone(),
                stream,
                bytes: bytes.clone(),
                read_at,
                at,
                _permit: permit,
            }))
            .is_ok()
    }
}

/// Handle to the writer threads.
#[derive(Debug, Clone)]
pub struct Output {
    console: Lane,
    files: Option<Lane>,
    events: Option<std::sync::mpsc::Sender<String>>,
    /// Supervise's own line for each event, unless `--quiet`.
    notes: Option<Notes>,
    /// Offered every event (`[alert]`); it filters, queues and never blocks.
    alerts: Option<Arc<crate::alert::Alerter>>,
    /// `--timestamps`: worker lines carry the time they were read.
    timestamps: bool,
    /// Longest line read as one ([`MAX_LINE`], or [`MAX_JSON_READ`] with `--log-format json`).
    max_line: usize,
    /// The recent events, for `top` and the dashboard.
    recent: Arc<crate::events::recent::Recent>,
}

/// Joins the writer threads once every [`Output`] handle is gone.
#[derive(Debug)]
pub struct OutputThreads(Vec<JoinHandle<()>>);

impl OutputThreads {
    /// Waits until everything sent has been written, for at most `limit`: a console nobody reads
    /// must not keep the supervisor from exiting. Call after dropping all handles.
    pub fn join(self, limit: Duration) {
        // `tracing` holds a handle too: from here on its lines go straight to stderr.
        console::release_tracing();
        let end = Instant::now() + limit;
        while self.0.iter().any(|t| !t.is_finished()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.0.into_iter().filter(JoinHandle::is_finished) {
            let _ = t.join();
        }
    }
}

/// Starts a thread that hands each message of `rx` to `handle`, and calls `flush` after each
/// burst.
fn writer_thread(
    name: &str,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    mut handle: impl FnMut(Msg) + Send + 'static,
    mut flush: impl FnMut() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let t =
        crate::signals::spawn_thread(std::thread::Builder::new().name(name.into()), move || {
            while let Some(m) = rx.blocking_recv() {
                handle(m);
                // Drain what is queued, then flush once: one write(2) per burst, not per line.
                while let Ok(m) = rx.try_recv() {
                    handle(m);
                }
                flush();
            }
        })?;
    Ok(t)
}

fn lane(tx: mpsc::UnboundedSender<Msg>) -> Lane {
    Lane {
        tx,
        budget: Arc::new(Semaphore::new(BUDGET)),
    }
}

/// Whether lines for people on our stderr get colours: only on a terminal, and never with
/// `NO_COLOR` set to anything (<https://no-color.org>).
#[must_use]
pub fn colour_on_stderr() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Output {
    /// Opens the events file and the log dir (errors here are the user's to fix, before anything
    /// runs) and starts the threads.
    pub fn start(plan: &Plan) -> io::Result<(Self, OutputThreads)> {
        let mut threads = Vec::new();
        let events = match &plan.events {
            None => None,
            Some(target) => {
                let sink = match target {
                    EventsTarget::Stderr => EventsFile::new(target.clone(), Box::new(io::stderr())),
                    EventsTarget::File(path) => {
                        EventsFile::open(target.clone(), plan.events_rotation).map_err(|e| {
                            io::Error::new(e.kind(), format!("events file {}: {e}", path.display()))
                        })?
                    }
                };
                let (tx, rx) = std::sync::mpsc::channel();
                threads.push(crate::signals::spawn_thread(
                    std::thread::Builder::new().name("events".into()),
                    move || sink.run(&rx),
                )?);
                Some(tx)
            }
        };
        let (console_tx, console_rx) = mpsc::unbounded_channel::<Msg>();
        let json = plan.log_format == crate::plan::LogFormat::Json;
        let says = Notes::new(
            console_tx.clone(),
            human::Style {
                colour: colour_on_stderr(),
                millis: plan.timestamps,
            },
            json,
        );
        // The events themselves on stderr (`--events -`) say it all there: no second telling.
        let notes =
            (!plan.quiet && plan.events != Some(EventsTarget::Stderr)).then(|| says.clone());
        let files = match &plan.log {
            None => None,
            Some(spec) => {
                std::fs::create_dir_all(&spec.dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("log dir {}: {e}", spec.dir.display()))
                })?;
                let logs = Rc2::new(LogFiles::new(spec.clone(), events.clone(), notes.clone()));
                let flusher = logs.clone();
                let (tx, rx) = mpsc::unbounded_channel();
                let t = writer_thread(
                    "logs",
                    rx,
                    move |m: Msg| {
                        if let Msg::Line(l) = m {
                            logs.with(|f| f.write(&l.src, l.stream, &l.bytes, l.read_at));
                        }
                    },
                    move || flusher.with(LogFiles::flush_all),
                )?;
                threads.push(t);
                Some(lane(tx))
            }
        };
        let console = Rc2::new(Console::new(says.budget(), json));
        let flusher = console.clone();
        threads.push(writer_thread(
            "console",
            console_rx,
            move |m: Msg| console.with(|c| c.write(m)),
            move || flusher.with(Console::flush),
        )?);
        says.carry_tracing();
        Ok((
            Self {
                console: lane(console_tx),
                files,
                events,
                notes,
                alerts: None,
                timestamps: plan.timestamps,
                max_line: if json { MAX_JSON_READ } else { MAX_LINE },
                recent: Arc::default(),
            },
            OutputThreads(threads),
        ))
    }

    /// Queues an event line, its line for people, and offers it to the alerter; never blocks.
    pub fn event(&self, e: &Event<'_>) {
        if let Some(notes) = &self.notes {
            notes.event(e);
        }
        let line = e.to_line();
        self.recent.push(e.program, e.instance, &line);
        if let Some(a) = &self.alerts {
            a.offer_event(e, &line);
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(line);
        }
    }

    /// Queues a notice for people on stderr (a line as the event lines are, with no event in the
    /// events file): what supervise could not set up as it wanted, say. Never blocks.
    pub fn notice(&self, text: &str) {
        if let Some(notes) = &self.notes {
            notes.notice(text);
        }
    }

    /// The recent events, kept for `top` and the dashboard.
    #[must_use]
    pub fn recent(&self) -> Arc<crate::events::recent::Recent> {
        self.recent.clone()
    }

    /// Sends every event from now on to `alerts` too (set before the first worker starts, so
    /// every handle carries it).
    pub fn alert_to(&mut self, alerts: Arc<crate::alert::Alerter>) {
        self.alerts = Some(alerts);
    }

    /// Reads one worker pipe to EOF, forwarding each line, and keeping it in the instance's
    /// `kept` buffer for `supervise logs`. Runs as a local task.
    pub async fn forward(self, src: Arc<Source>, stream: Stream, fd: OwnedFd, kept: Rc<Buffer>) {
        let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
            return;
        };
        // None until the worker writes (a quiet worker's pipes cost no heap), then small (one
        // buffer per pipe per worker adds up), grown once a read fills it: a worker flooding its
        // output is then read in 64 KiB gulps, which keeps the engine's thread free to sample
        // everyone on time.
        let mut buf = Vec::new();
        let mut line: Vec<u8> = Vec::new();
        let mut read_at = None;
        let mut at = SystemTime::UNIX_EPOCH;
        let max_line = self.max_line;
        loop {
            if buf.is_empty() {
                if pipe.readable().await.is_err() {
                    break;
                }
                buf = vec![0u8; READ_SMALL];
            }
            let n = match pipe.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // A line is stamped with the time the read that completed it returned.
            at = SystemTime::now();
            read_at = self.timestamps.then_some(at);
            if n == buf.len() && buf.len() < READ_LARGE {
                buf.resize(READ_LARGE, 0);
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let room = max_line - line.len();
                match rest.iter().take(room).position(|&b| b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&rest[..i]);
                        rest = &rest[i + 1..];
                    }
                    None if rest.len() < room => {
                        line.extend_from_slice(rest);
                        break;
                    }
                    None => {
                        line.extend_from_slice(&rest[..room]);
                        rest = &rest[room..];
                    }
                }
                if !self
                    .send_line(
                        &src,
                        stream,
                        std::mem::take(&mut line),
                        (read_at, at),
                        &kept,
                    )
                    .await
                {
                    return;
                }
            }
        }
        if !line.is_empty() {
            self.send_line(&src, stream, line, (read_at, at), &kept)
                .await;
        }
    }

    async fn send_line(
        &self,
        src: &Arc<Source>,
        stream: Stream,
        bytes: Vec<u8>,
        (read_at, at): (Option<SystemTime>, SystemTime),
        kept: &Buffer,
    ) -> bool {
        let bytes: Arc<[u8]> = bytes.into();
        // Kept as it is read, before any destination can make the forwarder wait.
        kept.push(stream, &bytes, read_at);
        if let Some(files) = &self.files {
            if !files.send(src, stream, &bytes, read_at, at).await {
                return false;
            }
        }
        self.console.send(src, stream, &bytes, read_at, at).await
    }
}

/// `2026-11-28T20:33:49.123Z `: the stamp `--timestamps` puts before a worker line.
fn stamp(t: SystemTime) -> String {
    format!("{} ", humantime::format_rfc3339_millis(t))
}

/// State owned by one writer thread and shared by its handle and flush closures (both run on that
/// thread only, one at a time).
struct Rc2<T>(Arc<std::sync::Mutex<T>>);

impl<T> Clone for Rc2<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Rc2<T> {
    fn new(t: T) -> Self {
        Self(Arc::new(std::sync::Mutex::new(t)))
    }

    fn with(&self, f: impl FnOnce(&mut T)) {
        // Never contended (one thread); a poisoned lock still holds usable writers.
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }
}
