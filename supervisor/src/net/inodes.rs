//! Which sockets a process holds: the `socket:[INODE]` links of /proc/PID/fd (proc(5)).
//!
//! Unix and netlink sockets are left out of a process's list: no TCP or UDP dump can show them
//! (a socket's protocol is its `system.sockprotoname` attribute, read once per socket fd at a
//! re-read), so a worker holding only its channel holds nothing to dump for.
//!
//! Reading the links costs one readlinkat(2) per open fd: for a worker with many fds, more than
//! the dump itself (the sockdiag bench's `tick_rescan_every_tick`). So each process's list is
//! cached and read again only when it may have changed:
//! - the fd count changed (the size that stat(2) reports for /proc/PID/fd, Linux 6.2+; on older
//!   kernels the entries are counted, which costs a getdents(2) but no readlink). The engine
//!   passes the count its tree sample read this tick ([`FdTable::sockets_counted`]), so it is
//!   not asked for twice;
//! - the caller marked the process dirty (a socket it held left the dump: closed);
//! - or the list is `rescan_every` ticks old.
//!
//! A socket is known from its creation (its link exists before it binds or connects), so the
//! cache misses only a socket that replaces a non-socket fd within one tick: a close and a
//! socket(2) between two ticks, or a dup2(2) of a socket over a file (same count, and nothing
//! left the dump). That socket is unattributed until the periodic re-read: the trade-off
//! between how late such a socket may be seen and how often a worker with many fds costs a
//! full read. The periodic re-reads are staggered by pid so they do not all land on one tick.
//!
//! The directory is opened once and kept: an fd on /proc/PID/fd keeps referring to that very
//! process, so after it dies stat(2) fails (ENOENT) and the entry is dropped, even if the pid
//! number has been reused.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

/// Links read per process per re-read, at most: a process with more fds has the rest ignored
/// rather than stalling the tick.
pub const MAX_FDS: usize = 1 << 16;

/// What the last ticks' reads cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Processes whose fd links were read again.
    pub rescans: u32,
    /// readlinkat(2) calls.
    pub links: u32,
    /// Processes whose socket list changed (or appeared, or went away).
    pub changed: u32,
}

#[derive(Debug)]
struct PidFds {
    dir: File,
    /// fd count at the last re-read.
    count: u64,
    /// Socket inodes, sorted, without duplicates (dup(2)ed fds share one).
    inodes: Vec<u32>,
    /// Ticks since the last re-read.
    age: u32,
    dirty: bool,
    /// Tick this entry was last asked for.
    seen: u64,
}

/// The cached socket inodes of every process asked about.
#[derive(Debug)]
pub struct FdTable {
    pids: HashMap<i32, PidFds>,
    rescan_every: u32,
    stats: ScanStats,
    scratch: Vec<u32>,
}

impl FdTable {
    /// A table that re-reads each process's links at least every `rescan_every` ticks (at
    /// least 1: every tick).
    #[must_use]
    pub fn new(rescan_every: u32) -> Self {
        Self {
            pids: HashMap::new(),
            rescan_every: rescan_every.max(1),
            stats: ScanStats::default(),
            scratch: Vec::new(),
        }
    }

    pub fn set_rescan_every(&mut self, n: u32) {
        self.rescan_every = n.max(1);
    }

    /// The socket inodes `pid` holds (sorted), re-reading its fd links if they may have
    /// changed. `NotFound` once the process is gone; `PermissionDenied` for another user's.
    pub fn sockets(&mut self, pid: i32, tick: u64) -> io::Result<&[u32]> {
        self.sockets_counted(pid, tick, None)
    }

    /// [`FdTable::sockets`] with the process's fd count already known (`Some`, read by whoever
    /// sampled it this tick): the directory is not asked for it again.
    pub fn sockets_counted(
        &mut self,
        pid: i32,
        tick: u64,
        count: Option<u64>,
    ) -> io::Result<&[u32]> {
        let every = self.rescan_every;
        if let Entry::Vacant(v) = self.pids.entry(pid) {
            let dir = File::open(format!("/proc/{pid}/fd"))?;
            // Staggered: the periodic re-reads of many processes spread over `every` ticks.
            let age = pid.unsigned_abs() % every;
            v.insert(PidFds {
                dir,
                count: u64::MAX,
                inodes: Vec::new(),
                age,
                dirty: true,
                seen: tick,
            });
        }
        let Some(e) = self.pids.get_mut(&pid) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        if let Err(err) = refresh(e, tick, every, count, &mut self.stats, &mut self.scratch) {
            self.pids.remove(&pid);
            self.stats.changed += 1;
            return Err(err);
        }
        Ok(self.cached(pid))
    }

    /// The socket inodes `pid` held at its last re-read (empty if unknown).
    #[must_use]
    pub fn cached(&self, pid: i32) -> &[u32] {
        self.pids.get(&pid).map_or(&[][..], |e| &e.inodes)
    }

    /// Re-reads `pid`'s links at its next [`FdTable::sockets`].
    pub fn mark_dirty(&mut self, pid: i32) {
        if let Some(e) = self.pids.get_mut(&pid) {
            e.dirty = true;
        }
    }

    /// Forgets the processes not asked about in `tick` (closing their directories).
    pub fn sweep(&mut self, tick: u64) {
        let before = self.pids.len();
        self.pids.retain(|_, e| e.seen == tick);
        if self.pids.len() != before {
            self.stats.changed += 1;
        }
    }

    /// Processes currently cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pids.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// The work done since the last call.
    pub fn take_stats(&mut self) -> ScanStats {
        std::mem::take(&mut self.stats)
    }
}

/// Re-reads the links of `e` if they may have changed.
fn refresh(
    e: &mut PidFds,
    tick: u64,
    every: u32,
    known: Option<u64>,
    stats: &mut ScanStats,
    scratch: &mut Vec<u32>,
) -> io::Result<()> {
    e.seen = tick;
    // A count of 0 is no count (a tree's member whose fd directory could not be read).
    let count = match known.filter(|&n| n > 0) {
        Some(n) => n,
        None => fd_count(&e.dir)?,
    };
    e.age = e.age.saturating_add(1);
    if e.dirty || count != e.count || e.age >= every {
        scan(&e.dir, scratch, stats)?;
        if *scratch != e.inodes || e.count == u64::MAX {
            std::mem::swap(scratch, &mut e.inodes);
            stats.changed += 1;
        }
        e.count = count;
        e.age = 0;
        e.dirty = false;
        stats.rescans += 1;
    }
    Ok(())
}

/// Open fds of the process: the directory's size on Linux 6.2+ (`proc_readfd_count`), else its
/// entries counted. Fails with ENOENT once the process is gone.
fn fd_count(dir: &File) -> io::Result<u64> {
    let size = dir.metadata()?.size();
    if size > 0 {
        return Ok(size);
    }
    let mut n = 0u64;
    for e in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        e?;
        n += 1;
    }
    Ok(n)
}

/// Reads every fd link of the directory and keeps the socket inodes.
pub(crate) fn scan(dir: &File, inodes: &mut Vec<u32>, stats: &mut ScanStats) -> io::Result<()> {
    inodes.clear();
    // The kept-open directory, listed through its own fd: the same process, never a pid reuser.
    let list = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let mut link = [0u8; 64];
    for entry in list.take(MAX_FDS) {
        // An fd closed between getdents and readlink is just not there any more.
        let Ok(entry) = entry else { continue };
        stats.links += 1;
        let name = entry.file_name();
        if let Some(target) = read_link_at(dir, name.as_bytes(), &mut link) {
            if let Some(ino) = parse_socket_link(target) {
                if !never_dumped(dir, name.as_bytes()) {
                    inodes.push(ino);
                }
            }
        }
    }
    inodes.sort_unstable();
    inodes.dedup();
    Ok(())
}

/// Whether the socket at fd `name` of the process whose fd directory is `dir` can never be in
/// a TCP or UDP dump: a Unix socket (every worker's channel is one) or a netlink socket, as the
/// socket's `system.sockprotoname` attribute names its protocol. Left out of a process's list,
/// such a socket can never keep the probe dumping for it. When the name cannot be read (the
/// process is gone, the kernel has no such attribute), false: the socket is kept, as before.
fn never_dumped(dir: &File, name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let Ok(path) = std::ffi::CString::new(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
    else {
        return false;
    };
    let mut proto = [0u8; 32];
    // SAFETY: a NUL-terminated path and attribute name; the kernel writes at most
    // `proto.len()` bytes into `proto`.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.sockprotoname".as_ptr(),
            proto.as_mut_ptr().cast(),
            proto.len(),
        )
    };
    n > 0 && (proto.starts_with(b"UNIX") || proto.starts_with(b"NETLINK"))
}

/// readlinkat(2) of `name` (an fd number) in `dir` into `buf`, without allocating. `None` on
/// error or when the target fills the buffer (possibly cut: never a `socket:[N]` link, whose
/// longest form is 19 bytes).
fn read_link_at<'a>(dir: &File, name: &[u8], buf: &'a mut [u8; 64]) -> Option<&'a [u8]> {
    let mut cname = [0u8; 16];
    if name.is_empty() || name.len() >= cname.len() {
        return None;
    }
    cname[..name.len()].copy_from_slice(name);
    let cname = CStr::from_bytes_until_nul(&cname).ok()?;
    // SAFETY: `dir` is an open directory fd, `cname` a NUL-terminated string that outlives the
    // call, and the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    (n < buf.len()).then(|| &buf[..n])
}

/// The inode of a `socket:[INODE]` link target (proc(5)); `None` for anything else.
#[must_use]
pub fn parse_socket_link(target: &[u8]) -> Option<u32> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
