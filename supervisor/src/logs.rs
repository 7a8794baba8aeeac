//! Worker output and events, written by dedicated threads.
//!
//! Writing to our stdout/stderr, to log files or to the events file can block (a full pipe, a slow
//! disk). None of that may stall the engine, which runs on one thread and must keep sampling, so
//! every write happens on a writer thread fed through a channel, one thread per destination so a
//! stalled console cannot hold up the log files or the events. Worker lines hold permits of a
//! byte budget per destination until they are written: when one falls behind, readers stop reading
//! the pipes and the workers block in `write(2)`, so memory stays bounded and no line is dropped.
//! Events take no permits (they are few and must never wait).
//!
//! A destination that fails is retried: a log file after a second (its lines meanwhile dropped
//! and counted), the events file likewise, with an `events_lost` event as its first line once it
//! can be written again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::events::{Event, Kind};
use crate::plan::{EventsTarget, LogSpec};

mod events_file;

use events_file::EventsFile;

/// Longest line forwarded as one; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;
/// Pipe read sizes: quiet workers, and workers that fill the small buffer.
const READ_SMALL: usize = 8 * 1024;
const READ_LARGE: usize = 64 * 1024;
/// Bytes of worker output that may wait for one destination at once.
pub const BUDGET: usize = 1 << 20;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    #[must_use]
    pub fn new(program: &str, instance: u32) -> Arc<Self> {
        Arc::new(Self {
            program: program.to_owned(),
            instance,
            prefix: format!("{program}[{instance}] ").into_bytes(),
        })
    }
}

/// A worker line on its way to one destination; the permit returns its bytes to the budget once
/// the line is written.
struct Line {
    src: Arc<Source>,
    stream: Stream,
    bytes: Arc<[u8]>,
    _permit: OwnedSemaphorePermit,
}

/// One destination: a channel to its thread and the byte budget of lines in flight.
#[derive(Debug, Clone)]
struct Lane {
    tx: mpsc::UnboundedSender<Line>,
    budget: Arc<Semaphore>,
}

impl Lane {
    async fn send(&self, src: &Arc<Source>, stream: Stream, bytes: &Arc<[u8]>) -> bool {
        let cost = u32::try_from(bytes.len().clamp(1, MAX_LINE)).unwrap_or(1);
        let Ok(permit) = self.budget.clone().acquire_many_owned(cost).await else {
            return false;
        };
        self.tx
            .send(Line {
                src: src.clone(),
                stream,
                bytes: bytes.clone(),
                _permit: permit,
            })
            .is_ok()
    }
}

/// Handle to the writer threads.
#[derive(Debug, Clone)]
pub struct Output {
    console: Lane,
    files: Option<Lane>,
    events: Option<std::sync::mpsc::Sender<String>>,
    /// Offered every event (`[alert]`); it filters, queues and never blocks.
    alerts: Option<Arc<crate::alert::Alerter>>,
}

/// Joins the writer threads once every [`Output`] handle is gone.
#[derive(Debug)]
pub struct OutputThreads(Vec<JoinHandle<()>>);

impl OutputThreads {
    /// Waits until everything sent has been written, for at most `limit`: a console nobody reads
    /// must not keep the supervisor from exiting. Call after dropping all handles.
    pub fn join(self, limit: Duration) {
        let end = Instant::now() + limit;
        while self.0.iter().any(|t| !t.is_finished()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.0.into_iter().filter(JoinHandle::is_finished) {
            let _ = t.join();
        }
    }
}

fn writer_thread<M: Send + 'static>(
    name: &str,
    mut handle: impl FnMut(M) + Send + 'static,
    mut flush: impl FnMut() + Send + 'static,
) -> io::Result<(mpsc::UnboundedSender<M>, JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<M>();
    let t = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Some(m) = rx.blocking_recv() {
                handle(m);
                // Drain what is queued, then flush once: one write(2) per burst, not per line.
                while let Ok(m) = rx.try_recv() {
                    handle(m);
                }
                flush();
            }
        })?;
    Ok((tx, t))
}

fn lane(tx: mpsc::UnboundedSender<Line>) -> Lane {
    Lane {
        tx,
        budget: Arc::new(Semaphore::new(BUDGET)),
    }
}

impl Output {
    /// Opens the events file and the log dir (errors here are the user's to fix, before anything
    /// runs) and starts the threads.
    pub fn start(
        events: Option<&EventsTarget>,
        log: Option<&LogSpec>,
    ) -> io::Result<(Self, OutputThreads)> {
        let mut threads = Vec::new();
        let events = match events {
            None => None,
            Some(target) => {
                let sink = match target {
                    EventsTarget::Stderr => EventsFile::new(target.clone(), Box::new(io::stderr())),
                    EventsTarget::File(path) => EventsFile::new(
                        target.clone(),
                        Box::new(
                            OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(path)
                                .map_err(|e| {
                                    io::Error::new(
                                        e.kind(),
                                        format!("events file {}: {e}", path.display()),
                                    )
                                })?,
                        ),
                    ),
                };
                let (tx, rx) = std::sync::mpsc::channel();
                threads.push(
                    std::thread::Builder::new()
                        .name("events".into())
                        .spawn(move || sink.run(&rx))?,
                );
                Some(tx)
            }
        };
        let files = match log {
            None => None,
            Some(spec) => {
                std::fs::create_dir_all(&spec.dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("log dir {}: {e}", spec.dir.display()))
                })?;
                let logs = Rc2::new(LogFiles {
                    spec: spec.clone(),
                    files: HashMap::new(),
                    events: events.clone(),
                });
                let flusher = logs.clone();
                let (tx, t) = writer_thread(
                    "logs",
                    move |l: Line| logs.with(|f| f.write(&l.src, l.stream, &l.bytes)),
                    move || flusher.with(LogFiles::flush_all),
                )?;
                threads.push(t);
                Some(lane(tx))
            }
        };
        let console = Console {
            stdout: Some(BufWriter::with_capacity(64 * 1024, io::stdout())),
            stderr: Some(BufWriter::with_capacity(64 * 1024, io::stderr())),
        };
        let console = Rc2::new(console);
        let flusher = console.clone();
        let (tx, t) = writer_thread(
            "console",
            move |l: Line| console.with(|c| c.write(&l)),
            move || flusher.with(Console::flush),
        )?;
        threads.push(t);
        Ok((
            Self {
                console: lane(tx),
                files,
                events,
                alerts: None,
            },
            OutputThreads(threads),
        ))
    }

    /// Queues an event line, and offers it to the alerter; never blocks.
    pub fn event(&self, e: &Event<'_>) {
        if self.events.is_none() && self.alerts.is_none() {
            return;
        }
        let line = e.to_line();
        if let Some(a) = &self.alerts {
            a.offer(&line, e.kind.name());
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(line);
        }
    }

    /// Sends every event from now on to `alerts` too (set before the first worker starts, so
    /// every handle carries it).
    pub fn alert_to(&mut self, alerts: Arc<crate::alert::Alerter>) {
        self.alerts = Some(alerts);
    }

    /// Reads one worker pipe to EOF, forwarding each line. Runs as a local task.
    pub async fn forward(self, src: Arc<Source>, stream: Stream, fd: OwnedFd) {
        let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
            return;
        };
        // Small while the worker is quiet (one buffer per pipe per worker adds up), grown once a
        // read fills it: a worker flooding its output is then read in 64 KiB gulps, which keeps
        // the engine's thread free to sample everyone on time.
        let mut buf = vec![0u8; READ_SMALL];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if n == buf.len() && buf.len() < READ_LARGE {
                buf.resize(READ_LARGE, 0);
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let room = MAX_LINE - line.len();
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
                    .send_line(&src, stream, std::mem::take(&mut line))
                    .await
                {
                    return;
                }
            }
        }
        if !line.is_empty() {
            self.send_line(&src, stream, line).await;
        }
    }

    async fn send_line(&self, src: &Arc<Source>, stream: Stream, bytes: Vec<u8>) -> bool {
        let bytes: Arc<[u8]> = bytes.into();
        if let Some(files) = &self.files {
            if !files.send(src, stream, &bytes).await {
                return false;
            }
        }
        self.console.send(src, stream, &bytes).await
    }
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

struct Console {
    stdout: Option<BufWriter<io::Stdout>>,
    stderr: Option<BufWriter<io::Stderr>>,
}

impl Console {
    fn write(&mut self, l: &Line) {
        let slot = match l.stream {
            Stream::Stdout => &mut self.stdout as &mut dyn ConsoleSlot,
            Stream::Stderr => &mut self.stderr,
        };
        slot.write_line(&l.src.prefix, &l.bytes);
    }

    fn flush(&mut self) {
        (&mut self.stdout as &mut dyn ConsoleSlot).flush_or_close();
        (&mut self.stderr as &mut dyn ConsoleSlot).flush_or_close();
    }
}

/// Our stdout or stderr, `None` once it failed (a closed pipe): forwarding there stops, log
/// files and supervision go on.
trait ConsoleSlot {
    fn write_line(&mut self, prefix: &[u8], line: &[u8]);
    fn flush_or_close(&mut self);
}

impl<W: Write> ConsoleSlot for Option<W> {
    fn write_line(&mut self, prefix: &[u8], line: &[u8]) {
        if let Some(w) = self {
            if w.write_all(prefix)
                .and_then(|()| w.write_all(line))
                .and_then(|()| w.write_all(b"\n"))
                .is_err()
            {
                *self = None;
            }
        }
    }

    fn flush_or_close(&mut self) {
        if let Some(w) = self {
            if w.flush().is_err() {
                *self = None;
            }
        }
    }
}

struct LogFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    /// Set after a failure: lines are dropped until this instant, then opening is tried again.
    retry_at: Option<Instant>,
    dropped: u64,
}

/// The log files of every worker stream, owned by the "logs" thread.
struct LogFiles {
    spec: LogSpec,
    files: HashMap<(String, u32, Stream), LogFile>,
    /// Where a write failure is reported.
    events: Option<std::sync::mpsc::Sender<String>>,
}

impl LogFiles {
    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (key, f) in &mut self.files {
            if let Some(out) = f.out.as_mut() {
                if let Err(e) = out.flush() {
                    failed.push((key.clone(), e));
                }
            }
        }
        for (key, e) in failed {
            self.failed(&key, &e);
        }
    }

    fn write(&mut self, src: &Source, stream: Stream, bytes: &[u8]) {
        let spec = &self.spec;
        let key = (src.program.clone(), src.instance, stream);
        let f = self.files.entry(key.clone()).or_insert_with(|| LogFile {
            path: spec.dir.join(format!(
                "{}.{}.{}.log",
                src.program,
                src.instance,
                stream.as_str()
            )),
            out: None,
            size: 0,
            retry_at: None,
            dropped: 0,
        });
        if let Some(t) = f.retry_at {
            if Instant::now() < t {
                f.dropped += 1;
                return;
            }
            f.retry_at = None;
        }
        match f.append(spec, bytes) {
            Ok(()) => {}
            Err(e) => {
                f.dropped += 1;
                self.failed(&key, &e);
            }
        }
    }

    /// A write failed (disk full, permissions): report it, drop lines for a second, then retry.
    fn failed(&mut self, key: &(String, u32, Stream), e: &io::Error) {
        let Some(f) = self.files.get_mut(key) else {
            return;
        };
        f.out = None;
        f.retry_at = Some(Instant::now() + Duration::from_secs(1));
        if let Some(tx) = &self.events {
            let ev = Event::now(
                &key.0,
                key.1,
                None,
                Kind::LogError {
                    path: f.path.display().to_string(),
                    error: e.to_string(),
                },
            );
            let _ = tx.send(ev.to_line());
        }
    }
}

impl LogFile {
    /// Appends one line, rotating first when it would not fit.
    fn append(&mut self, spec: &LogSpec, bytes: &[u8]) -> io::Result<()> {
        let need = bytes.len() as u64 + 1;
        if self.out.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = file.metadata()?.len();
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        if self.size > 0 && self.size + need > spec.max {
            if let Some(mut out) = self.out.take() {
                out.flush()?;
            }
            rotate(&self.path, spec.keep)?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        if self.dropped > 0 {
            let note = format!(
                "supervise: {} lines dropped while this log could not be written\n",
                self.dropped
            );
            out.write_all(note.as_bytes())?;
            self.size += note.len() as u64;
            self.dropped = 0;
        }
        out.write_all(bytes)?;
        out.write_all(b"\n")?;
        self.size += need;
        Ok(())
    }
}

/// Shifts `path.N` to `path.N+1` (dropping those past `keep`) and `path` to `path.1`.
fn rotate(path: &std::path::Path, keep: u32) -> io::Result<()> {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.log");
        for i in 0..5 {
            std::fs::write(&p, format!("gen {i}")).expect("write");
            rotate(&p, 2).expect("rotate");
        }
        assert!(!p.exists());
        let read =
            |n: u32| std::fs::read_to_string(dir.path().join(format!("a.log.{n}"))).expect("read");
        assert_eq!(read(1), "gen 4");
        assert_eq!(read(2), "gen 3");
        assert!(!dir.path().join("a.log.3").exists());
    }

    #[test]
    fn writer_rotates_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = LogSpec {
            dir: dir.path().to_owned(),
            max: 1024,
            keep: 2,
        };
        let mut w = LogFiles {
            spec,
            files: HashMap::new(),
            events: None,
        };
        let src = Source::new("p", 0);
        for i in 0..100 {
            w.write(
                &src,
                Stream::Stdout,
                format!("line {i:03} {}", "x".repeat(90)).as_bytes(),
            );
        }
        w.flush_all();
        let live = dir.path().join("p.0.stdout.log");
        let size = |p: &std::path::Path| std::fs::metadata(p).expect("exists").len();
        assert!(size(&live) <= 1024);
        assert!(size(&dir.path().join("p.0.stdout.log.1")) <= 1024);
        assert!(size(&dir.path().join("p.0.stdout.log.2")) <= 1024);
        assert!(!dir.path().join("p.0.stdout.log.3").exists());
        let last = std::fs::read_to_string(&live).expect("read");
        assert!(
            last.trim_end()
                .ends_with(&format!("line 099 {}", "x".repeat(90))),
            "{last}"
        );
    }
}
