//! `--history FILE`: every sampling tick's figures, appended compactly, for `supervise report`.
//!
//! # Theory of operation
//! [`History::record`] runs on the engine's thread once per tick. It copies the numbers it needs
//! into a small message (names are interned, so no string is allocated) and hands it to a writer
//! thread over a bounded channel; when the writer is behind, the tick is dropped and counted,
//! never waited for. The writer encodes each burst of queued ticks and appends it with one
//! `write(2)`. A failing write (a full disk) is reported once per episode and the ticks are
//! dropped until writes succeed again; supervision never notices. [`read`] decodes a file (and
//! its rotated predecessor) into per-instance time series, restart marks and finding marks.
//!
//! # Format, version 1
//! All integers are unsigned LEB128 varints unless said otherwise; *signed* ones are
//! zigzag-encoded first. A file is a sequence of **segments**; each run of the supervisor, each
//! rotation and each recovery from a write error starts one, so a segment is self-contained:
//!
//! ```text
//! segment = MAGIC frame*                 MAGIC = 89 73 76 68 69 73 74 0a  ("\x89svhist\n")
//! frame   = len body crc                 len: 1..=1 MiB; crc: CRC-32C of body, 4 bytes LE
//! body    = kind:u8 payload
//! ```
//!
//! | kind | payload |
//! |---|---|
//! | 1 header (first frame of a segment) | `version:u8` (1), `flags:u8` (bit 0: continues the previous segment's run), `unix_ms` |
//! | 2 name | `id`, `len` (at most 1024), UTF-8 bytes: a program name, restart reason or finding kind, referred to by `id` in this segment |
//! | 3 slot | `slot`, `name id`, `instance`: one worker instance |
//! | 4 tick | signed `dt` (ms since the previous tick, or since the header's `unix_ms`), `n`, then `n` entries |
//! | 5 limit | `name id`, `unix_ms`, `bytes` (0: none): a program's memory limit |
//! | 6 findings | `slot`, `k`, then `k` pairs of `name id` (a finding's kind), `count`: the findings raised about one instance, by kind, as of the tick before (absolute, only those that changed) |
//! | 7 own findings | `k`, then `k` pairs of `name id`, `count`: the findings raised about the supervisor as a whole (`disk` for a watched directory, `notify_dropped`), as of the tick before (or the header) |
//!
//! An entry is `slot`, `flags:u8`, then the fields its flags name, in this order: bit 0 `pid`
//! (0: no process), bit 1 `state:u8` (index of starting, running, stopping, backoff, stopped,
//! fatal), bit 2 RSS, bit 3 PSS, bit 4 heap (each a signed delta in KiB from this slot's previous
//! value of that figure in the segment, from 0), bit 5 CPU (tenths of a percent of one core),
//! bit 6 restart counts: `k`, then `k` pairs of `name id`, `count` (absolute, only those that
//! changed). Pid and state are written only when they change; a figure whose bit is clear is
//! absent in that sample (no process, PSS not measured, no SDK). Bit 7 is reserved.
//!
//! A tick is followed by a kind 6 frame for each instance whose finding counts changed in it,
//! and kind 7 when the supervisor's own did. A segment restates the counts that are not zero:
//! an instance's after its first tick in the segment, the supervisor's own right after the
//! header. Kinds 6 and 7 came after the first version-1 readers, which skip them (and so show
//! no findings) and read everything else as before.
//!
//! Frames of unknown kind are skipped. Anything else that does not decode (a torn tail after a
//! SIGKILL, a torn frame before a later run's segment, damage) is skipped up to the next MAGIC
//! and counted in [`Series::ignored_bytes`]. A steady worker costs about 4 bytes per sample.
//!
//! Restart marks are derived when reading: a rise in a reason's count is a restart for that
//! reason (a header without the continuation flag resets the counts to zero: a new run); a new
//! pid that no count explains is a restart of reason `restart`. Finding marks likewise: a rise
//! in a kind's count is that many findings of that kind. Counts restated at the start of a
//! continuation whose run began in a file no longer there are a baseline, not news. A sample
//! with a new pid starts a new process: its figures are not joined to the previous process's.
//!
//! # Caveats
//! With a size limit, FILE is renamed to FILE.1 (replacing it) before a write would take it past
//! the limit, so the two together hold at most about twice the limit. Times are wall-clock: a
//! clock stepped back shows as time going backwards. [`read`] keeps at most
//! [`MAX_POINTS`] points per instance, merging neighbours into wider time
//! buckets (memory: the bucket's largest; CPU: its mean).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::status::Phase;
use crate::status::WorkerStatus;

mod codec;
mod front;
mod reader;
mod series;
mod writer;

#[cfg(test)]
mod tests;

pub use series::{MAX_MARKS, MAX_POINTS};

/// Ticks that may wait for the writer; more are dropped.
const QUEUE: usize = 64;
/// How long [`History::close`] waits for the writer to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The history writer: hand it each tick's statuses with [`History::record`].
pub struct History {
    tx: Option<mpsc::SyncSender<front::Msg>>,
    front: Mutex<front::Front>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl History {
    /// Opens (creating it, or appending to an earlier run's) the history file and starts the
    /// writer thread. `max_bytes`: rotate to FILE.1 before the file would pass this size.
    ///
    /// # Errors
    /// The file cannot be created or opened for appending, or it exists and is not a history
    /// file (so that a mistyped path never gets binary appended to someone's text).
    pub fn open(path: &Path, max_bytes: Option<u64>) -> io::Result<History> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(context)?;
        let size = file.metadata().map_err(context)?.len();
        if size > 0 {
            let mut head = [0u8; codec::MAGIC.len()];
            let n = usize::try_from(size).unwrap_or(usize::MAX).min(head.len());
            file.seek(SeekFrom::Start(0)).map_err(context)?;
            file.read_exact(&mut head[..n]).map_err(context)?;
            if head[..n] != codec::MAGIC[..n] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: exists and is not a supervise history file; choose another path",
                        path.display()
                    ),
                ));
            }
            if n < codec::MAGIC.len() {
                // Only a signature cut short by a crash: nothing to keep.
                file.set_len(0).map_err(context)?;
            }
        }
        let size = file.metadata().map_err(context)?.len();
        let dropped = Arc::new(AtomicU64::new(0));
        let w = writer::Writer::new(path, file, size, max_bytes, dropped.clone());
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = crate::signals::spawn_thread(
            std::thread::Builder::new().name("history".into()),
            move || w.run(&rx),
        )
        .map_err(context)?;
        Ok(History {
            tx: Some(tx),
            front: Mutex::new(front::Front::default()),
            dropped,
            thread: Some(thread),
        })
    }

    /// Records one tick: every instance's status at `unix_ms`. Never blocks on the file: when
    /// the writer is behind, the tick is dropped (and counted).
    pub fn record(&self, unix_ms: u64, workers: &[WorkerStatus]) {
        let Some(tx) = &self.tx else { return };
        // Only this thread takes the lock; a poisoned one still holds a usable table.
        let mut front = self.front.lock().unwrap_or_else(PoisonError::into_inner);
        let (msg, commits) = front.tick(unix_ms, workers);
        match tx.try_send(msg) {
            Ok(()) => front.commit(commits),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records the findings raised about the supervisor as a whole rather than one instance
    /// (watched directories, the notify socket), by kind, counted over its life. Call after
    /// [`History::record`] each tick; only a change is sent. Never blocks.
    pub fn own_findings(&self, by_kind: &std::collections::BTreeMap<&str, u64>) {
        let Some(tx) = &self.tx else { return };
        let mut front = self.front.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((msg, total)) = front.own(by_kind) else {
            return;
        };
        match tx.try_send(msg) {
            Ok(()) => front.commit_own(total),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records each program's memory limit (`None`: no limit), for the report's limit line.
    /// Call at start and after a reload; never blocks.
    pub fn limits<'a>(&self, limits: impl IntoIterator<Item = (&'a str, Option<u64>)>) {
        let Some(tx) = &self.tx else { return };
        let mut front = self.front.lock().unwrap_or_else(PoisonError::into_inner);
        for (program, bytes) in limits {
            if tx.try_send(front.limit(program, bytes)).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ticks dropped because the writer was behind.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the writer (waiting at most 2 s: a stalled disk must not
    /// keep the supervisor from exiting). Dropping a `History` does the same.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let end = Instant::now() + CLOSE_WAIT;
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The rotated predecessor of a history file: `FILE.1`.
#[must_use]
pub fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// What a history file holds, per worker instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// In program and instance order.
    pub workers: Vec<WorkerSeries>,
    /// Each program's latest memory limit, bytes.
    pub limits: std::collections::BTreeMap<String, u64>,
    /// When each run of the supervisor began, ms since the epoch.
    pub runs: Vec<u64>,
    /// Bytes skipped: a tail torn by a crash, or damage.
    pub ignored_bytes: u64,
    /// Segments written by a newer format version, skipped.
    pub newer_segments: u32,
    /// Instances past the number kept, skipped.
    pub series_dropped: u64,
    /// Findings about the supervisor as a whole (watched directories, the notify socket), in
    /// time order, at most [`MAX_MARKS`].
    pub findings: Vec<FindingMark>,
    /// Marks past [`MAX_MARKS`], not kept.
    pub findings_dropped: u64,
}

/// One worker instance over time.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSeries {
    pub program: String,
    pub instance: u32,
    /// In time order, at most [`MAX_POINTS`].
    pub points: Vec<Point>,
    /// In time order, at most [`MAX_MARKS`].
    pub restarts: Vec<RestartMark>,
    /// Marks past [`MAX_MARKS`], not kept.
    pub restarts_dropped: u64,
    /// In time order, at most [`MAX_MARKS`].
    pub findings: Vec<FindingMark>,
    /// Marks past [`MAX_MARKS`], not kept.
    pub findings_dropped: u64,
    /// Samples read (more than `points.len()` when neighbours were merged).
    pub samples: u64,
}

/// One sample, or a bucket of merged neighbours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Of the bucket's first sample, ms since the epoch.
    pub unix_ms: u64,
    /// Samples merged into this point.
    pub samples: u32,
    /// Memory of the whole tree, bytes (to the KiB); the bucket's largest.
    pub rss: Option<u64>,
    pub pss: Option<u64>,
    pub heap: Option<u64>,
    /// Percent of one core; the bucket's mean.
    pub cpu_percent: Option<f64>,
    /// The bucket's last known state.
    pub state: Option<Phase>,
    /// The bucket holds the first sample of a new process (a start or a restart): its figures
    /// are not to be joined to the ones before, which were another process's.
    pub new_process: bool,
}

/// A restart: when it was counted and why (`exit`, `memory`, `manual`, `hung`, `leak`, or
/// `restart` when only a new pid tells).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartMark {
    pub unix_ms: u64,
    pub reason: String,
}

/// A finding (`leak`, `hung`, `unhealthy`, `disk`, …), whether or not a restart followed: when
/// it was counted and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingMark {
    pub unix_ms: u64,
    pub kind: String,
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a supervise history file (it does not start with the history signature)", path.display())]
    NotHistory { path: PathBuf },
}

/// Reads `path`, preceded by its rotated predecessor `path.1` when there is one.
///
/// # Errors
/// `path` cannot be read, or one of the files is not a history file. Damage inside a history
/// file is not an error: it is skipped and counted in [`Series::ignored_bytes`].
pub fn read(path: &Path) -> Result<Series, HistoryError> {
    let mut r = reader::Reader::default();
    let old = rotated(path);
    match std::fs::File::open(&old) {
        Ok(f) => read_one(&mut r, &old, f)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(HistoryError::Io { path: old, source }),
    }
    let f = std::fs::File::open(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_one(&mut r, path, f)?;
    Ok(r.finish())
}

fn read_one(r: &mut reader::Reader, path: &Path, f: std::fs::File) -> Result<(), HistoryError> {
    match r.file(f) {
        Ok(reader::Start::History | reader::Start::Empty) => Ok(()),
        Ok(reader::Start::NotHistory) => Err(HistoryError::NotHistory {
            path: path.to_owned(),
        }),
        Err(source) => Err(HistoryError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}
