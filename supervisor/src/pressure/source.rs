//! Where host readings come from: the kernel (`/proc/pressure/memory`, `/proc/meminfo`), or a
//! recorded trace replayed against the clock (tests and drills: a machine need not be starved to
//! see what supervise would do).
//!
//! A trace is text: snapshots, each opened by `@ MS` (milliseconds after the replay starts) and
//! followed by the lines of `/proc/pressure/memory` and `/proc/meminfo` as the kernel prints
//! them (only `some`, `full`, `MemTotal` and `MemAvailable` are read). `#` starts a comment.
//! Before the first snapshot's time nothing is read; after the last one, it stays.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{sample_from, HostSample};

/// Longest trace read (a day of one reading a second is about 20 MiB: traces are short).
pub const MAX_TRACE: u64 = 16 << 20;

/// A source of host readings.
#[derive(Debug)]
pub enum Source {
    Kernel(Kernel),
    Trace(Trace),
}

impl Source {
    /// The reading now, if there is one.
    pub fn read(&mut self, now: Instant) -> Option<HostSample> {
        match self {
            Source::Kernel(k) => k.read(),
            Source::Trace(t) => t.at(now),
        }
    }

    /// The path a worker watches for pressure (`MEMORY_PRESSURE_WATCH`) when the readings are
    /// the kernel's.
    #[must_use]
    pub fn is_kernel(&self) -> bool {
        matches!(self, Source::Kernel(_))
    }
}

/// The kernel's files, kept open and read with one `pread` each.
#[derive(Debug)]
pub struct Kernel {
    psi: File,
    meminfo: File,
    buf: Vec<u8>,
}

/// Where the kernel keeps the host's memory pressure.
pub const PSI_MEMORY: &str = "/proc/pressure/memory";

impl Kernel {
    /// Opens the files; fails where the kernel has no PSI (built without it, or `psi=0`).
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            psi: File::open(PSI_MEMORY)?,
            meminfo: File::open("/proc/meminfo")?,
            buf: vec![0; 8192],
        })
    }

    fn read(&mut self) -> Option<HostSample> {
        let n = self.psi.read_at(&mut self.buf, 0).ok()?;
        let psi = self.buf[..n].to_vec();
        let n = self.meminfo.read_at(&mut self.buf, 0).ok()?;
        sample_from(&psi, &self.buf[..n])
    }
}

/// A recorded trace, replayed from the moment it was loaded.
#[derive(Debug)]
pub struct Trace {
    start: Instant,
    snapshots: Vec<(Duration, HostSample)>,
}

impl Trace {
    /// Loads the trace at `path` (a regular file, at most [`MAX_TRACE`]); replay starts now.
    pub fn load(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() || meta.len() > MAX_TRACE {
            return Err(format!(
                "{}: not a regular file of at most {MAX_TRACE} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, Instant::now()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a trace whose replay starts at `start`.
    pub fn parse(text: &str, start: Instant) -> Result<Self, String> {
        let mut snapshots = Vec::new();
        let mut current: Option<(Duration, String)> = None;
        let finish = |cur: Option<(Duration, String)>,
                      out: &mut Vec<(Duration, HostSample)>|
         -> Result<(), String> {
            if let Some((at, body)) = cur {
                let sample = sample_from(body.as_bytes(), body.as_bytes()).ok_or_else(|| {
                    format!(
                        "the snapshot @ {} needs a `some` PSI line, MemTotal and MemAvailable",
                        at.as_millis()
                    )
                })?;
                out.push((at, sample));
            }
            Ok(())
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(ms) = line.strip_prefix('@') {
                let ms: u64 = ms
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {}: `@ MILLISECONDS` expected", i + 1))?;
                let at = Duration::from_millis(ms);
                if current.as_ref().is_some_and(|(t, _)| at < *t)
                    || snapshots.last().is_some_and(|(t, _)| at < *t)
                {
                    return Err(format!("line {}: snapshots out of order", i + 1));
                }
                finish(current.take(), &mut snapshots)?;
                current = Some((at, String::new()));
            } else if let Some((_, body)) = &mut current {
                body.push_str(line);
                body.push('\n');
            } else {
                return Err(format!(
                    "line {}: a snapshot starts with `@ MILLISECONDS`",
                    i + 1
                ));
            }
        }
        finish(current, &mut snapshots)?;
        if snapshots.is_empty() {
            return Err("no snapshot".into());
        }
        Ok(Self { start, snapshots })
    }

    /// The latest snapshot at or before `now`.
    #[must_use]
    pub fn at(&self, now: Instant) -> Option<HostSample> {
        let elapsed = now.saturating_duration_since(self.start);
        let i = self.snapshots.partition_point(|(t, _)| *t <= elapsed);
        i.checked_sub(1).map(|i| self.snapshots[i].1)
    }
}
