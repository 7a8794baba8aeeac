//! Deleted-but-open files: disk space a process tree still holds after the files were unlinked.
//!
//! An unlinked file keeps its blocks until the last fd on it closes (unlink(2)), so a worker that
//! deletes a log it still writes fills the disk while `du` finds nothing. The only place it shows
//! is the fd table: /proc/PID/fd/N is a magic link whose readlink(2) text is the path the file
//! was opened by with " (deleted)" appended once it is unlinked, and stat(2) through it follows
//! the link to the open file itself (proc(5)), so `st_blocks` is the space really held. Contents
//! are never read.
//!
//! Cost: one readlink per fd, and one stat per fd whose link says " (deleted)". The
//! `deleted_scan` group of `cargo bench -p supervisor --bench disk` measures a process with
//! 1,000 open fds; [`DeletedScan`] rescans each process only every [`DEFAULT_EVERY`] and at most
//! a budget of fds per call, so the cost is spread over ticks.
//!
//! Between two rescans, the files a rescan found are re-measured at every call: one `fstatat`
//! through the kept-open `/proc/PID/fd` directory per file (a few µs), so a deleted file that
//! grows shows it within a sampling period. A file whose fd now names something else (closed,
//! or the number reused) is dropped until the next rescan finds it again.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};

/// How long a process's scan is reused before its fds are read again.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);
/// Fds read per [`DeletedScan::update`] at most; the rest waits for the next calls. The
/// `deleted_scan` bench puts a scan at about 1 µs per fd, 2 µs per fd that is a deleted file
/// (0.9 ms and 1.8 ms for 1,000 fds on a 2-core VM): about 1–2 ms per call at most.
pub const DEFAULT_BUDGET: usize = 1024;
/// Fds read in one process at most; past it the scan is partial.
pub const MAX_FDS_PER_PID: usize = 65_536;
/// Deleted files kept per process at most; past it the scan is partial.
pub const MAX_HELD_PER_PID: usize = 1024;
/// readlink(2) buffer: a link text this long or longer may be cut, and is skipped.
const LINK_BUF: usize = 4096 + 1;
const DELETED: &[u8] = b" (deleted)";

/// One deleted file held open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFile {
    pub pid: i32,
    pub fd: i32,
    pub dev: u64,
    pub ino: u64,
    /// Apparent size (`st_size`), bytes.
    pub size: u64,
    /// Space held on disk (`st_blocks` * 512), bytes.
    pub allocated: u64,
    /// The path it had, without the " (deleted)" suffix (lossy UTF-8).
    pub path: String,
}

/// What one process's fd table showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidScan {
    /// Fds looked at.
    pub fds: usize,
    /// A limit ([`MAX_FDS_PER_PID`], [`MAX_HELD_PER_PID`]) was reached or the listing failed
    /// part way: there may be more.
    pub truncated: bool,
}

/// Appends to `out` (after clearing it) the deleted regular files `pid` holds open. Fails with
/// `NotFound` when the process is gone and `PermissionDenied` when its fds are not ours to read
/// (ptrace access mode, proc(5)). Memfds (`/memfd:NAME (deleted)`) are memory, not disk, and
/// are skipped, as are files with links left elsewhere (`st_nlink` > 0: `du` still sees them).
pub fn scan_pid(pid: i32, out: &mut Vec<HeldFile>) -> io::Result<PidScan> {
    let mut link = vec![0u8; LINK_BUF];
    let mut scan = Scan::start(pid, std::mem::take(out))?;
    scan.step(&mut link, usize::MAX);
    *out = scan.files;
    Ok(scan.stats)
}

/// One process's fd table, read a slice at a time: the listing stays open between steps, so
/// a process with many fds costs a bounded time per call.
#[derive(Debug)]
struct Scan {
    pid: i32,
    dir: File,
    entries: std::fs::ReadDir,
    files: Vec<HeldFile>,
    stats: PidScan,
}

impl Scan {
    fn start(pid: i32, mut files: Vec<HeldFile>) -> io::Result<Self> {
        files.clear();
        let dir = File::open(format!("/proc/{pid}/fd"))?;
        // List through our own fd on the directory, so the listing and the readlinks below are
        // of one process even if the pid were reused meanwhile.
        let entries = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
        Ok(Self {
            pid,
            dir,
            entries,
            files,
            stats: PidScan::default(),
        })
    }

    /// Looks at up to `max` more fds. Returns how many, and whether the table is done.
    fn step(&mut self, link: &mut [u8], max: usize) -> (usize, bool) {
        let mut looked = 0;
        while looked < max {
            let Some(entry) = self.entries.next() else {
                return (looked, true);
            };
            let Ok(entry) = entry else {
                self.stats.truncated = true;
                return (looked, true);
            };
            if self.stats.fds >= MAX_FDS_PER_PID {
                self.stats.truncated = true;
                return (looked, true);
            }
            self.stats.fds += 1;
            looked += 1;
            self.look(&entry.file_name().into_vec(), link);
        }
        (looked, false)
    }

    fn look(&mut self, name: &[u8], link: &mut [u8]) {
        let Some(fd) = std::str::from_utf8(name)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            return;
        };
        let Ok(name) = CString::new(name) else {
            return;
        };
        // Closed since the listing: nothing held.
        let Some(text) = readlink_at(&self.dir, &name, link) else {
            return;
        };
        if !is_deleted_file_link(text) {
            return;
        }
        let path = String::from_utf8_lossy(&text[..text.len() - DELETED.len()]).into_owned();
        // No AT_SYMLINK_NOFOLLOW: stat the open file the magic link points at.
        let Ok(st) = fstatat(&self.dir, name.as_c_str(), AtFlags::empty()) else {
            return;
        };
        let regular =
            SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        if !regular || st.st_nlink != 0 {
            return;
        }
        if self.files.len() >= MAX_HELD_PER_PID {
            self.stats.truncated = true;
            return;
        }
        self.files.push(HeldFile {
            pid: self.pid,
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            allocated: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
            path,
        });
    }
}

/// A link text naming an unlinked file on a filesystem: absolute, ending in " (deleted)", and
/// not a memfd (whose text is `/memfd:NAME (deleted)`). Sockets, pipes and anon inodes read as
/// `socket:[N]`, `pipe:[N]`, `anon_inode:[...]` and never start with '/'.
fn is_deleted_file_link(text: &[u8]) -> bool {
    text.starts_with(b"/") && text.ends_with(DELETED) && !text.starts_with(b"/memfd:")
}

/// readlinkat(2) into `buf`; `None` on error or when the text may have been cut.
fn readlink_at<'a>(dir: &File, name: &CString, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: `dir` is an open directory fd, `name` is NUL-terminated, and `buf` is writable for
    // `buf.len()` bytes; readlinkat writes at most that many and returns how many it wrote.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    // readlink(2) truncates silently: a text filling the buffer may be cut.
    if n >= buf.len() {
        return None;
    }
    buf.get(..n)
}

/// Totals over a tree, each (device, inode) counted once however many fds and processes hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Distinct deleted files held open.
    pub files: u64,
    /// Space they hold, bytes (`st_blocks` * 512): what `df` counts and `du` cannot see.
    pub allocated: u64,
    /// Their apparent sizes, bytes.
    pub size: u64,
    /// The one holding the most space.
    pub largest: Option<HeldFile>,
    /// Some member's fds could not all be read (not ours, or a limit): a lower bound.
    pub partial: bool,
    /// Members whose fds have been read to the end at least once, of `pids` in the tree: the
    /// others (new, or with more fds than the budget) are counted from a later call on.
    pub scanned: u32,
    pub pids: u32,
}

#[derive(Debug)]
struct Cached {
    /// When the last complete scan ended (`None`: none yet).
    at: Option<Instant>,
    files: Vec<HeldFile>,
    partial: bool,
    /// A scan under way, continued by the next calls.
    scan: Option<Scan>,
    /// The process's fd directory, kept open while it holds deleted files, to re-measure them.
    dir: Option<File>,
}

impl Cached {
    /// Re-measures the files found by the last scan through their fds. Returns the fstatat
    /// calls made.
    fn refresh(&mut self) -> usize {
        let Some(dir) = &self.dir else { return 0 };
        let n = self.files.len();
        self.files.retain_mut(|f| {
            let Ok(name) = CString::new(f.fd.to_string()) else {
                return false;
            };
            match fstatat(dir, name.as_c_str(), AtFlags::empty()) {
                Ok(st) if st.st_dev == f.dev && st.st_ino == f.ino && st.st_nlink == 0 => {
                    f.size = u64::try_from(st.st_size).unwrap_or(0);
                    f.allocated = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
                    true
                }
                // Closed, another file at that number, or linked again: the next rescan says.
                _ => false,
            }
        });
        if self.files.is_empty() {
            self.dir = None;
        }
        n
    }
}

/// Deleted-file totals of one worker's tree, rescanning each member at most every `every`.
///
/// Cached per pid: members that left the tree are forgotten at the next [`DeletedScan::update`],
/// so a reused pid is scanned afresh once it rejoins. Each call reads at most a budget of fds
/// (a scan larger than that goes on over the next calls, the previous totals standing until it
/// ends), so the cost per call is bounded whatever the fd tables hold.
#[derive(Debug)]
pub struct DeletedScan {
    every: Duration,
    budget: usize,
    cache: HashMap<i32, Cached>,
    live: HashSet<i32>,
    seen: HashSet<(u64, u64)>,
    link: Vec<u8>,
    /// Files re-measured between rescans, since the scan began.
    refreshed: usize,
}

impl DeletedScan {
    /// Rescans a member once its last scan is `every` old ([`DEFAULT_EVERY`] is a good start).
    #[must_use]
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            budget: DEFAULT_BUDGET,
            cache: HashMap::new(),
            live: HashSet::new(),
            seen: HashSet::new(),
            // Allocated at the first scan step: a page per worker otherwise.
            link: Vec::new(),
            refreshed: 0,
        }
    }

    /// The deleted files of the live members as last measured (a file held by several
    /// processes comes once per process).
    pub fn files(&self) -> impl Iterator<Item = &HeldFile> {
        self.cache.values().flat_map(|c| c.files.iter())
    }

    /// Files re-measured between rescans so far (one `fstatat` each).
    #[must_use]
    pub fn refreshed(&self) -> usize {
        self.refreshed
    }

    /// Reads at most `fds` fds per call ([`DEFAULT_BUDGET`]).
    #[must_use]
    pub fn with_budget(mut self, fds: usize) -> Self {
        self.budget = fds.max(1);
        self
    }

    /// Goes on with the scans of the members of `pids` that are due, within the budget,
    /// re-measures the files of the others, forgets the members no longer listed, and sums the
    /// tree. Cheap when nothing is due: a hash lookup per member, an `fstatat` per deleted file
    /// held, and a sum.
    pub fn update(&mut self, pids: impl IntoIterator<Item = i32>, now: Instant) -> Deleted {
        self.live.clear();
        let mut left = self.budget;
        for pid in pids {
            if !self.live.insert(pid) {
                continue;
            }
            let c = self.cache.entry(pid).or_insert_with(|| Cached {
                at: None,
                files: Vec::new(),
                partial: false,
                scan: None,
                dir: None,
            });
            let due =
                c.at.is_none_or(|at| now.saturating_duration_since(at) >= self.every);
            if c.scan.is_none() && !due {
                self.refreshed += c.refresh();
                continue;
            }
            if left == 0 {
                continue;
            }
            if c.scan.is_none() && due {
                match Scan::start(pid, Vec::new()) {
                    Ok(s) => c.scan = Some(s),
                    Err(e) => {
                        left -= 1;
                        c.at = Some(now);
                        c.files.clear();
                        c.dir = None;
                        // A member that just exited holds nothing; one we may not read is
                        // unknown.
                        c.partial = e.kind() != io::ErrorKind::NotFound;
                        continue;
                    }
                }
            }
            let Some(scan) = c.scan.as_mut() else {
                continue;
            };
            if self.link.is_empty() {
                self.link = vec![0; LINK_BUF];
            }
            let (looked, done) = scan.step(&mut self.link, left);
            // An empty table still costs its listing.
            left = left.saturating_sub(looked.max(1));
            if done {
                if let Some(scan) = c.scan.take() {
                    c.at = Some(now);
                    c.partial = scan.stats.truncated;
                    c.files = scan.files;
                    c.dir = (!c.files.is_empty()).then_some(scan.dir);
                }
            }
        }
        let live = &self.live;
        self.cache.retain(|pid, _| live.contains(pid));
        self.total()
    }

    fn total(&mut self) -> Deleted {
        self.seen.clear();
        let scanned = self.cache.values().filter(|c| c.at.is_some()).count();
        let mut t = Deleted {
            pids: u32::try_from(self.live.len()).unwrap_or(u32::MAX),
            scanned: u32::try_from(scanned).unwrap_or(u32::MAX),
            ..Deleted::default()
        };
        let mut largest: Option<&HeldFile> = None;
        for c in self.cache.values() {
            t.partial |= c.partial;
            for f in &c.files {
                if !self.seen.insert((f.dev, f.ino)) {
                    continue;
                }
                t.files += 1;
                t.allocated = t.allocated.saturating_add(f.allocated);
                t.size = t.size.saturating_add(f.size);
                if largest.is_none_or(|l| f.allocated > l.allocated) {
                    largest = Some(f);
                }
            }
        }
        t.largest = largest.cloned();
        t
    }
}

#[cfg(test)]
mod tests;
