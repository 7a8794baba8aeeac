//! The console: our stdout and stderr, written by one thread. Worker lines go to the stream they
//! came from, prefixed `name[instance] ` (but the one instance of a single command's); supervise's
//! own lines (about events, and `tracing`'s) go to stderr, whole, in order with the worker lines
//! there. With `--log-format json` every line is a JSON object (see [`super::json`]).

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::{stamp, Line, Msg, Stream};
use crate::events::{human, Event};

/// Bytes of supervise's own lines that may wait for a stalled stderr; more are dropped (and
/// counted) rather than queued without end. Some 600 lines.
const NOTES_BUDGET: usize = 64 * 1024;

/// What the lines waiting for the console hold, and what was dropped.
#[derive(Debug, Default)]
pub(super) struct NotesBudget {
    queued: AtomicUsize,
    dropped: AtomicU64,
}

/// Supervise's own lines, on their way to stderr. Sending never blocks.
#[derive(Debug, Clone)]
pub(super) struct Notes {
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<NotesBudget>,
    style: human::Style,
    /// `--log-format json`.
    json: bool,
}

impl Notes {
    pub(super) fn new(tx: mpsc::UnboundedSender<Msg>, style: human::Style, json: bool) -> Self {
        Self {
            tx,
            budget: Arc::default(),
            style,
            json,
        }
    }

    pub(super) fn budget(&self) -> Arc<NotesBudget> {
        self.budget.clone()
    }

    /// Queues the event's line, if it has one.
    pub(super) fn event(&self, e: &Event<'_>) {
        let line = if self.json {
            super::json::event_line(e)
        } else {
            human::line(e, self.style)
        };
        if let Some(line) = line {
            let _ = self.send(line);
        }
    }

    /// Queues a notice of supervise's own, as its event lines look (a JSON object with
    /// `--log-format json`).
    pub(super) fn notice(&self, text: &str) {
        let line = if self.json {
            super::json::own_line("warning", text, &serde_json::Map::new())
        } else {
            human::notice(text, self.style)
        };
        let _ = self.send(line);
    }

    /// Queues a line (newline included); `Err` with it back if the console is gone.
    fn send(&self, text: String) -> Result<(), String> {
        let n = text.len();
        if self.budget.queued.fetch_add(n, Ordering::Relaxed) + n > NOTES_BUDGET {
            self.budget.queued.fetch_sub(n, Ordering::Relaxed);
            self.budget.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.tx.send(Msg::Note(text)).map_err(|e| {
            self.budget.queued.fetch_sub(n, Ordering::Relaxed);
            match e.0 {
                Msg::Note(text) => text,
                Msg::Line(_) => String::new(),
            }
        })
    }

    /// From now on, `tracing`'s lines go through the console thread too.
    pub(super) fn carry_tracing(&self) {
        *TRACING.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.clone());
    }
}

/// Where [`TracingLine`]s go while a console thread runs.
static TRACING: Mutex<Option<Notes>> = Mutex::new(None);

/// `tracing` lines go straight to stderr again (the console thread is ending).
pub(super) fn release_tracing() {
    TRACING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
}

/// The writer of `tracing`'s lines (set up in `main.rs`). While the console thread runs, each
/// line is queued for it like supervise's other lines: a stalled stderr then never blocks the
/// thread that logs (the engine's, say, warning about a misbehaving worker), and a line never
/// lands inside a worker's. Before it starts and after it ends, lines go straight to stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingLines;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TracingLines {
    type Writer = TracingLine;

    fn make_writer(&'a self) -> Self::Writer {
        TracingLine(Vec::new())
    }
}

/// One `tracing` line being formatted; sent when dropped.
#[derive(Debug)]
pub struct TracingLine(Vec<u8>);

impl Write for TracingLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TracingLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0).into_owned();
        let notes = TRACING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let unsent = match notes {
            Some(n) => n.send(text).err(),
            None => Some(text),
        };
        if let Some(text) = unsent {
            let _ = io::stderr().write_all(text.as_bytes());
        }
    }
}

pub(super) struct Console {
    stdout: Option<BufWriter<io::Stdout>>,
    stderr: Option<BufWriter<io::Stderr>>,
    notes: Arc<NotesBudget>,
    /// `--log-format json`.
    json: bool,
}

impl Console {
    pub(super) fn new(notes: Arc<NotesBudget>, json: bool) -> Self {
        Self {
            stdout: Some(BufWriter::with_capacity(64 * 1024, io::stdout())),
            stderr: Some(BufWriter::with_capacity(64 * 1024, io::stderr())),
            notes,
            json,
        }
    }

    pub(super) fn write(&mut self, m: Msg) {
        match m {
            Msg::Line(l) => self.line(&l),
            Msg::Note(text) => self.note(&text),
        }
    }

    fn line(&mut self, l: &Line) {
        let slot = match l.stream {
            Stream::Stdout => &mut self.stdout as &mut dyn ConsoleSlot,
            Stream::Stderr => &mut self.stderr,
        };
        if self.json {
            for line in super::json::worker_lines(
                &l.src.program,
                l.src.instance,
                l.stream.as_str(),
                &l.bytes,
                l.at,
            ) {
                slot.write_parts(&[line.as_bytes()]);
            }
            return;
        }
        match l.read_at {
            Some(t) => slot.write_parts(&[stamp(t).as_bytes(), &l.src.prefix, &l.bytes, b"\n"]),
            None => slot.write_parts(&[&l.src.prefix, &l.bytes, b"\n"]),
        }
    }

    fn note(&mut self, text: &str) {
        self.notes.queued.fetch_sub(text.len(), Ordering::Relaxed);
        let dropped = self.notes.dropped.swap(0, Ordering::Relaxed);
        let slot = &mut self.stderr as &mut dyn ConsoleSlot;
        if dropped > 0 {
            let words =
                format!("{dropped} of its own lines were dropped while stderr was not read");
            let says = if self.json {
                super::json::own_line("warning", &words, &serde_json::Map::new())
            } else {
                format!("supervise: {words}\n")
            };
            slot.write_parts(&[says.as_bytes()]);
        }
        slot.write_parts(&[text.as_bytes()]);
    }

    pub(super) fn flush(&mut self) {
        (&mut self.stdout as &mut dyn ConsoleSlot).flush_or_close();
        (&mut self.stderr as &mut dyn ConsoleSlot).flush_or_close();
    }
}

/// Our stdout or stderr, `None` once it failed (a closed pipe): forwarding there stops, log
/// files and supervision go on.
trait ConsoleSlot {
    fn write_parts(&mut self, parts: &[&[u8]]);
    fn flush_or_close(&mut self);
}

impl<W: Write> ConsoleSlot for Option<W> {
    fn write_parts(&mut self, parts: &[&[u8]]) {
        if let Some(w) = self {
            if parts.iter().try_for_each(|p| w.write_all(p)).is_err() {
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
