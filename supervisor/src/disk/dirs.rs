//! Watched directories: their size, measured like `du -sx` on a background thread, and the space
//! left on the filesystem each lives on.
//!
//! A walk of a big tree takes seconds (one stat per entry; see the `dir_walk` bench) and must
//! never stall the sampling loop, so [`DirWatcher`] walks on its own thread and the engine only
//! copies the latest results. The walk does not follow symlinks (lstat semantics: a link counts
//! its own blocks), does not cross into other filesystems (an entry on another device is neither
//! counted nor entered), counts a hard-linked inode once, and counts allocated blocks
//! (`st_blocks` * 512, stat(2)), so sparse files count what they really use. Errors (a
//! directory we may not read) are counted and the walk goes on: the result is then partial, a
//! lower bound. The configured path itself is followed if it is a symlink: the operator named it.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::WatchDir;

/// Entries looked at per walk at most, unless told otherwise; past it the walk is partial.
pub const DEFAULT_ENTRY_LIMIT: u64 = 1_000_000;
/// statvfs is cheap (no I/O): the free space is refreshed this often, or every `every` if less.
pub const FS_EVERY: Duration = Duration::from_secs(5);
/// Longest error text kept.
const MAX_ERROR: usize = 512;

/// What one walk found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirUsage {
    /// Space allocated to the directory and everything under it, bytes (what `du -sx` says).
    pub bytes: u64,
    /// Sum of apparent sizes, bytes (`du -sx --apparent-size`).
    pub apparent: u64,
    /// Entries looked at, the directory itself included.
    pub entries: u64,
    /// Entries or directories that could not be read.
    pub errors: u64,
    /// The first of those errors.
    pub first_error: Option<String>,
    /// The walk stopped at its entry limit (or was told to stop).
    pub truncated: bool,
    pub took: Duration,
}

impl DirUsage {
    /// Some of the tree was not counted: the numbers are a lower bound.
    #[must_use]
    pub fn partial(&self) -> bool {
        self.errors > 0 || self.truncated
    }

    fn error(&mut self, path: &Path, e: &io::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            let mut text = format!("{}: {e}", path.display());
            if text.len() > MAX_ERROR {
                let mut end = MAX_ERROR;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            self.first_error = Some(text);
        }
    }

    fn count(&mut self, m: &std::fs::Metadata) {
        self.bytes = self.bytes.saturating_add(m.blocks().saturating_mul(512));
        self.apparent = self.apparent.saturating_add(m.len());
    }
}

/// Measures `root` (blocking: call it off the engine's thread). Fails only when `root` itself
/// cannot be stat'ed; everything below that is counted or reported in the result. Looks at most
/// at `limit` entries, and stops early once `stop` is set.
pub fn dir_usage(root: &Path, limit: u64, stop: &AtomicBool) -> io::Result<DirUsage> {
    let start = Instant::now();
    let meta = std::fs::metadata(root)?;
    let dev = meta.dev();
    let mut u = DirUsage {
        entries: 1,
        ..DirUsage::default()
    };
    u.count(&meta);
    // Inodes with more than one link, seen so far (as `du` does, only those need remembering).
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    let mut pending: Vec<PathBuf> = Vec::new();
    if meta.is_dir() {
        pending.push(root.to_path_buf());
    }
    'walk: while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                u.error(&dir, &e);
                continue;
            }
        };
        for entry in entries {
            if u.entries >= limit || stop.load(Ordering::Relaxed) {
                u.truncated = true;
                break 'walk;
            }
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    u.error(&dir, &e);
                    break;
                }
            };
            // DirEntry::metadata is fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW): lstat semantics.
            let m = match entry.metadata() {
                Ok(m) => m,
                // Removed since the listing: nothing to count.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    u.error(&entry.path(), &e);
                    continue;
                }
            };
            u.entries += 1;
            if m.dev() != dev {
                continue;
            }
            if !m.is_dir() && m.nlink() > 1 && !linked.insert((m.dev(), m.ino())) {
                continue;
            }
            u.count(&m);
            if m.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    u.took = start.elapsed();
    Ok(u)
}

/// Space on the filesystem holding a path (statvfs(3)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsUsage {
    /// Size of the filesystem, bytes.
    pub total: u64,
    /// Free for unprivileged users, bytes (`f_bavail`: the root reserve excluded).
    pub available: u64,
    /// Used, percent, as `df` computes Use%: used / (used + available), so a filesystem whose
    /// only free space is the root reserve reads 100.
    pub used_percent: f64,
}

impl FsUsage {
    /// From statvfs counts, all in units of `f_frsize`.
    #[must_use]
    pub fn from_counts(frsize: u64, blocks: u64, free: u64, available: u64) -> Self {
        let used = blocks.saturating_sub(free);
        let denom = used.saturating_add(available);
        let used_percent = if denom == 0 {
            0.0
        } else {
            used as f64 * 100.0 / denom as f64
        };
        Self {
            total: blocks.saturating_mul(frsize),
            available: available.saturating_mul(frsize),
            used_percent,
        }
    }
}

/// statvfs(3) of the filesystem holding `path`.
// The statvfs fields are 32-bit on some targets and u64 on others.
#[allow(clippy::useless_conversion)]
pub fn fs_usage(path: &Path) -> io::Result<FsUsage> {
    let s = nix::sys::statvfs::statvfs(path)?;
    Ok(FsUsage::from_counts(
        u64::from(s.fragment_size()),
        u64::from(s.blocks()),
        u64::from(s.blocks_free()),
        u64::from(s.blocks_available()),
    ))
}

/// The latest known state of one watched directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DirState {
    pub dir: WatchDir,
    /// The last finished walk (`None` until the first one ends).
    pub usage: Option<DirUsage>,
    /// When that walk ended.
    pub measured_at: Option<Instant>,
    /// The filesystem's space, refreshed every [`FS_EVERY`] (or `every` if less).
    pub fs: Option<FsUsage>,
    /// Why the last walk or statvfs failed (the directory is missing, say); cleared when they work.
    pub error: Option<String>,
}

/// Measures watched directories on a background thread.
///
/// Dropping it tells the thread to stop (a walk in progress ends at its next entry); nothing
/// waits for it.
#[derive(Debug)]
pub struct DirWatcher {
    states: Arc<Mutex<Vec<DirState>>>,
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    _wake: mpsc::Sender<()>,
}

impl DirWatcher {
    /// Starts the thread; the first walks begin at once. `entry_limit` bounds each walk
    /// ([`DEFAULT_ENTRY_LIMIT`]).
    pub fn start(dirs: Vec<WatchDir>, entry_limit: u64) -> io::Result<Self> {
        let states: Vec<DirState> = dirs
            .into_iter()
            .map(|dir| DirState {
                dir,
                usage: None,
                measured_at: None,
                fs: None,
                error: None,
            })
            .collect();
        let states = Arc::new(Mutex::new(states));
        let generation = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, sleep) = mpsc::channel();
        let run = Runner {
            states: Arc::clone(&states),
            generation: Arc::clone(&generation),
            stop: Arc::clone(&stop),
            limit: entry_limit,
        };
        crate::signals::spawn_thread(
            std::thread::Builder::new().name("disk-watch".into()),
            move || run.run(&sleep),
        )?;
        Ok(Self {
            states,
            generation,
            stop,
            _wake: wake,
        })
    }

    /// Bumped each time a result lands: compare with the last value seen to skip
    /// [`DirWatcher::snapshot`] when nothing changed.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A copy of every directory's state. The thread holds the lock only to store a result.
    #[must_use]
    pub fn snapshot(&self) -> Vec<DirState> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping `_wake` then ends the thread's sleep.
    }
}

struct Runner {
    states: Arc<Mutex<Vec<DirState>>>,
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    limit: u64,
}

impl Runner {
    fn run(&self, sleep: &mpsc::Receiver<()>) {
        let dirs: Vec<WatchDir> = self
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|s| s.dir.clone())
            .collect();
        let now = Instant::now();
        let mut walk_due = vec![now; dirs.len()];
        let mut fs_due = vec![now; dirs.len()];
        loop {
            for (i, dir) in dirs.iter().enumerate() {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let now = Instant::now();
                if walk_due[i] <= now {
                    let usage = dir_usage(&dir.path, self.limit, &self.stop);
                    let fs = fs_usage(&dir.path);
                    let done = Instant::now();
                    walk_due[i] = done + dir.every;
                    fs_due[i] = done + FS_EVERY.min(dir.every);
                    self.store(i, |s| {
                        s.error = None;
                        match usage {
                            Ok(u) => {
                                s.usage = Some(u);
                                s.measured_at = Some(done);
                            }
                            Err(e) => s.error = Some(format!("{}: {e}", dir.path.display())),
                        }
                        set_fs(s, fs);
                    });
                } else if fs_due[i] <= now {
                    let fs = fs_usage(&dir.path);
                    fs_due[i] = Instant::now() + FS_EVERY.min(dir.every);
                    self.store(i, |s| set_fs(s, fs));
                }
            }
            let next = walk_due.iter().chain(&fs_due).min().copied();
            let wait = next.map_or(FS_EVERY, |t| t.saturating_duration_since(Instant::now()));
            if let Err(RecvTimeoutError::Disconnected) = sleep.recv_timeout(wait) {
                return;
            }
        }
    }

    fn store(&self, i: usize, f: impl FnOnce(&mut DirState)) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = states.get_mut(i) {
            f(s);
        }
        drop(states);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

fn set_fs(s: &mut DirState, fs: io::Result<FsUsage>) {
    match fs {
        Ok(fs) => s.fs = Some(fs),
        Err(e) => {
            s.fs = None;
            s.error
                .get_or_insert_with(|| format!("statvfs {}: {e}", s.dir.path.display()));
        }
    }
}

#[cfg(test)]
mod tests;
