//! The events sink (`--events FILE`, or `-` for stderr), owned by the "events" thread.
//!
//! A regular file is rotated as the log files are (`--events-max`, `--events-keep`): before a
//! line would take it past its bound, FILE.N becomes FILE.N+1 (the oldest dropped), FILE becomes
//! FILE.1, and a fresh FILE is opened. A crash loop writes some 430 bytes of events a restart, so
//! an unbounded file grows by tens of MiB an hour. Anything else (stderr, a pipe, a device) is
//! never rotated.
//!
//! A write that fails (a full disk, a file system gone read-only) does not end the stream: the
//! sink counts the events it cannot write, tries again a second later (on a timer, so it resumes
//! even when no event comes), reopening the file by its path, and once a write succeeds its
//! first line is an `events_lost` event with the count, before anything else. As the history
//! does, it reports the trouble once per episode (`tracing`), not once per event. A line torn by a
//! failed write is ended before the next one, so every later line parses.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::events::{Event, Kind};
use crate::plan::{EventsRotation, EventsTarget};

/// How long after a failure the next write is tried.
const RETRY: Duration = Duration::from_secs(1);

pub(super) struct EventsFile {
    target: EventsTarget,
    /// `None` after a failure, until reopened.
    out: Option<Box<dyn Write + Send>>,
    /// While failing: when to try again. Events sent before then are counted as lost.
    retry_at: Option<Instant>,
    lost: u64,
    /// Failing since the last successful write (reported once per episode).
    failing: bool,
    /// The destination may end in a partial line (a failed write cut one short).
    torn: bool,
    rotation: EventsRotation,
    /// What the open file holds, bytes.
    size: u64,
    /// The open destination is a regular file (the only kind rotated).
    regular: bool,
}

impl EventsFile {
    /// A sink writing to `out`, already open on `target`, never rotated.
    pub(super) fn new(target: EventsTarget, out: Box<dyn Write + Send>) -> Self {
        Self {
            target,
            out: Some(out),
            retry_at: None,
            lost: 0,
            failing: false,
            torn: false,
            rotation: EventsRotation { max: 0, keep: 0 },
            size: 0,
            regular: false,
        }
    }

    /// A sink for `target`, opened now (an error is the user's to fix before anything runs).
    pub(super) fn open(target: EventsTarget, rotation: EventsRotation) -> io::Result<Self> {
        let mut sink = Self {
            rotation,
            ..Self::new(target, Box::new(io::sink()))
        };
        sink.out = Some(sink.reopen()?);
        Ok(sink)
    }

    /// Writes every line sent until all senders are gone, retrying after failures.
    pub(super) fn run(mut self, rx: &Receiver<String>) {
        loop {
            let got = match self.retry_at {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match got {
                Ok(line) => self.write(&line, Instant::now()),
                Err(RecvTimeoutError::Timeout) => {
                    self.resume(Instant::now());
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // One last try, so a count still pending is not lost with the supervisor.
        if self.lost > 0 && !self.resume(Instant::now()) {
            tracing::error!(
                events = %self.describe(),
                lost = self.lost,
                "{} events could not be written",
                self.lost
            );
        }
    }

    /// Writes one event line, or counts it as lost.
    pub(super) fn write(&mut self, line: &str, now: Instant) {
        if self.retry_at.is_some_and(|at| now < at) || !self.resume(now) {
            self.lost += 1;
            return;
        }
        if let Err(e) = self.put(line) {
            self.failed(&e, now);
            self.lost += 1;
        }
    }

    /// Makes the sink writable again if it failed: reopens it and writes the `events_lost`
    /// line. `false` (and another wait) if that fails.
    fn resume(&mut self, now: Instant) -> bool {
        self.retry_at = None;
        if self.out.is_none() {
            match self.reopen() {
                Ok(w) => self.out = Some(w),
                Err(e) => {
                    self.failed(&e, now);
                    return false;
                }
            }
        }
        if self.lost == 0 {
            return true;
        }
        let lost = Event::now(
            "supervise",
            0,
            i32::try_from(std::process::id()).ok(),
            Kind::EventsLost { count: self.lost },
        );
        if let Err(e) = self.put(&lost.to_line()) {
            self.failed(&e, now);
            return false;
        }
        tracing::warn!(
            events = %self.describe(),
            lost = self.lost,
            "writing events again; {} were lost",
            self.lost
        );
        self.lost = 0;
        self.failing = false;
        true
    }

    fn reopen(&mut self) -> io::Result<Box<dyn Write + Send>> {
        match &self.target {
            EventsTarget::Stderr => Ok(Box::new(io::stderr())),
            EventsTarget::File(path) => {
                let open = |read| {
                    OpenOptions::new()
                        .read(read)
                        .create(true)
                        .append(true)
                        .open(path)
                };
                // Read too, to see how it ends; a file we may only write is written all the same.
                let f = match open(true) {
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => open(false)?,
                    f => f?,
                };
                // Whatever the file ends with (a line torn by our failed write, or by someone
                // else's), the next line starts on a line of its own.
                let meta = f.metadata()?;
                let len = meta.len();
                let mut last = [b'\n'];
                if len > 0 && f.read_exact_at(&mut last, len - 1).is_ok() {
                    self.torn = last[0] != b'\n';
                } else if len == 0 {
                    self.torn = false;
                }
                self.size = len;
                self.regular = meta.is_file();
                Ok(Box::new(f))
            }
        }
    }

    /// Writes `line` whole, after a newline if the last write was torn; first rotates the file
    /// if the line would take it past its bound.
    fn put(&mut self, line: &str) -> io::Result<()> {
        let need = line.len() as u64 + u64::from(self.torn);
        if self.regular
            && self.rotation.max > 0
            && self.size > 0
            && self.size.saturating_add(need) > self.rotation.max
        {
            self.rotate()?;
        }
        let Some(w) = self.out.as_mut() else {
            return Err(io::Error::other("not open"));
        };
        let with_end;
        let bytes = if self.torn {
            with_end = format!("\n{line}");
            with_end.as_bytes()
        } else {
            line.as_bytes()
        };
        let mut done = 0;
        let written = loop {
            if done == bytes.len() {
                break Ok(());
            }
            match w.write(&bytes[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.size += done as u64;
        match written {
            Ok(()) => self.torn = false,
            Err(_) => self.torn |= done > 0,
        }
        written
    }

    /// Shifts the rotated files by one, makes the live file FILE.1 and opens a fresh one.
    fn rotate(&mut self) -> io::Result<()> {
        let EventsTarget::File(path) = &self.target else {
            return Ok(());
        };
        let path = path.clone();
        if let Some(mut w) = self.out.take() {
            w.flush()?;
        }
        super::files::rotate(&path, self.rotation.keep)?;
        self.out = Some(self.reopen()?);
        Ok(())
    }

    fn failed(&mut self, e: &io::Error, now: Instant) {
        if !self.failing {
            self.failing = true;
            tracing::error!(
                events = %self.describe(),
                error = %e,
                "cannot write events; retrying every second and counting the lost ones"
            );
        }
        self.out = None;
        self.retry_at = Some(now + RETRY);
    }

    fn describe(&self) -> String {
        match &self.target {
            EventsTarget::Stderr => "stderr".to_owned(),
            EventsTarget::File(p) => p.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
