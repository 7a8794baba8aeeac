//! One process as the kernel sees it, through /proc files kept open between samples.
//!
//! Opening /proc/PID/stat once and `pread`ing it each tick is 3–5x cheaper than open/read/close
//! (DESIGN.md §8), and an fd opened on /proc/PID keeps referring to *that* process: once it dies,
//! reads fail with ESRCH even if the pid number is reused, so a kept-open file can never report a
//! stranger's numbers.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use super::parse;

use procfs_core::process::MemoryMaps;
use procfs_core::FromRead;

/// Kernel facts about one process at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    pub ppid: i32,
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Process state letter from /proc/PID/stat (`R`, `S`, `D`, `Z`, `T`, ...).
    pub state: u8,
    /// Resident set size, bytes.
    pub rss: u64,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Start time since boot, clock ticks: with the pid, a unique identity.
    pub starttime: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
    /// Bytes read and written at the storage layer (`read_bytes`/`write_bytes`); 0 when unreadable.
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Block-I/O delay, clock ticks (0 unless the kernel keeps delay accounting).
    pub blkio_ticks: u64,
}

/// Reusable scratch space for reading /proc files without allocating per sample.
#[derive(Debug)]
pub struct Buf(Vec<u8>);

impl Default for Buf {
    fn default() -> Self {
        Self(vec![0; 4096])
    }
}

impl Buf {
    /// Reads the whole file from offset 0, growing the buffer if the file is larger.
    fn pread<'a>(&'a mut self, f: &File) -> io::Result<&'a [u8]> {
        let mut len = 0;
        loop {
            if len == self.0.len() {
                // /proc files we read are small; cap growth so a surprise can't eat memory.
                if self.0.len() >= 1 << 20 {
                    return Err(io::Error::other("/proc file larger than 1 MiB"));
                }
                self.0.resize(self.0.len() * 2, 0);
            }
            let room = self.0.len() - len;
            let n = f.read_at(&mut self.0[len..], len as u64)?;
            len += n;
            // A /proc record file (stat, statm, io) is generated whole and handed out in one
            // read when it fits: a short read ending its last line is the end, and saves the
            // second read that would only return 0 (half the syscalls of a tick).
            if n == 0 || (n < room && self.0[len - 1] == b'\n') {
                return Ok(&self.0[..len]);
            }
        }
    }
}

/// The open /proc files of one process.
#[derive(Debug)]
pub struct ProcFiles {
    pub pid: i32,
    stat: File,
    statm: File,
    /// None when /proc/PID/io is not readable (another user's setuid program, say).
    io: Option<File>,
    /// Opened on first PSS read: most supervisors never need it.
    smaps_rollup: Option<File>,
    fd_dir: Option<File>,
    children: Option<File>,
    /// pidfd, so signals can never reach a process that reused this pid.
    pidfd: Option<OwnedFd>,
}

fn open_in(dir: &File, name: &str) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), name);
    File::open(path)
}

impl ProcFiles {
    /// Opens the files of `pid`. Fails with `NotFound` if the process is gone.
    pub fn open(pid: i32) -> io::Result<Self> {
        let dir = File::open(format!("/proc/{pid}"))?;
        let stat = open_in(&dir, "stat")?;
        let statm = open_in(&dir, "statm")?;
        let io = open_in(&dir, "io").ok();
        let fd_dir = open_in(&dir, "fd").ok();
        let children = open_in(&dir, &format!("task/{pid}/children")).ok();
        Ok(Self {
            pid,
            stat,
            statm,
            io,
            smaps_rollup: None,
            fd_dir,
            children,
            pidfd: pidfd_open(pid),
        })
    }

    /// stat + statm + io: the cheap per-tick sample.
    pub fn sample(&self, buf: &mut Buf) -> io::Result<ProcSample> {
        let mut s = self.sample_quick(buf)?;
        (s.read_bytes, s.write_bytes) = self.io(buf).unwrap_or((0, 0));
        Ok(s)
    }

    /// stat + statm only, with the I/O counters left at 0: the tick's read between the less
    /// frequent reads of /proc/PID/io (whose permission check and text cost as much as stat's).
    pub fn sample_quick(&self, buf: &mut Buf) -> io::Result<ProcSample> {
        let bad = |what| io::Error::new(io::ErrorKind::InvalidData, format!("unparsable {what}"));
        let stat = parse::stat(buf.pread(&self.stat)?).ok_or_else(|| bad("stat"))?;
        let resident =
            parse::statm_resident(buf.pread(&self.statm)?).ok_or_else(|| bad("statm"))?;
        Ok(ProcSample {
            ppid: stat.ppid,
            pgid: stat.pgrp,
            sid: stat.session,
            state: stat.state,
            rss: resident.saturating_mul(page_size()),
            cpu_ticks: stat.utime.saturating_add(stat.stime),
            threads: stat.num_threads,
            starttime: stat.starttime,
            vsize: stat.vsize,
            read_bytes: 0,
            write_bytes: 0,
            blkio_ticks: stat.blkio_ticks,
        })
    }

    /// Resident memory alone, bytes (statm): what a periodic sample needs every time, the rest
    /// of [`ProcFiles::sample_quick`] (stat) being read less often. A zombie reads as 0.
    pub fn rss(&self, buf: &mut Buf) -> io::Result<u64> {
        let resident = parse::statm_resident(buf.pread(&self.statm)?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable statm"))?;
        Ok(resident.saturating_mul(page_size()))
    }

    /// Storage-layer `read_bytes` and `write_bytes`; `None` when /proc/PID/io is unreadable.
    pub fn io(&self, buf: &mut Buf) -> Option<(u64, u64)> {
        parse::io(buf.pread(self.io.as_ref()?).ok()?)
    }

    /// Proportional set size in bytes, from smaps_rollup (walks page tables: ~10 µs per resident MiB).
    pub fn pss(&mut self, buf: &mut Buf) -> io::Result<u64> {
        if self.smaps_rollup.is_none() {
            self.smaps_rollup = Some(File::open(format!("/proc/{}/smaps_rollup", self.pid))?);
        }
        let Some(f) = &self.smaps_rollup else {
            return Ok(0);
        };
        let maps = MemoryMaps::from_read(buf.pread(f)?).map_err(proc_err)?;
        Ok(maps
            .0
            .iter()
            .filter_map(|m| m.extension.map.get("Pss"))
            .sum())
    }

    /// Number of open fds: the size the kernel reports for /proc/PID/fd (Linux 6.2+), else a count
    /// of its entries.
    pub fn fd_count(&self) -> u64 {
        let Some(dir) = &self.fd_dir else { return 0 };
        match dir.metadata() {
            Ok(m) if m.size() > 0 => m.size(),
            _ => {
                std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count() as u64)
            }
        }
    }

    /// Pids of the children of this process's threads. Reads the main thread's file (kept open)
    /// and, when the process has more threads, every thread's (children forked by another thread
    /// are listed under that thread).
    pub fn children(&self, buf: &mut Buf, threads: u64, out: &mut Vec<i32>) {
        if let Some(f) = &self.children {
            if let Ok(b) = buf.pread(f) {
                parse_pids(b, out);
            }
        }
        if threads > 1 {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
                return;
            };
            for t in tasks.flatten() {
                let name = t.file_name();
                if name.to_str().and_then(|s| s.parse::<i32>().ok()) == Some(self.pid) {
                    continue;
                }
                if let Ok(f) = File::open(t.path().join("children")) {
                    if let Ok(b) = buf.pread(&f) {
                        parse_pids(b, out);
                    }
                }
            }
        }
    }

    /// Sends `sig` to this very process (through its pidfd where the kernel has them).
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        if let Some(fd) = &self.pidfd {
            // SAFETY: pidfd_send_signal with a valid fd, a null siginfo and flags 0.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            return if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            };
        }
        // SAFETY: plain kill(2).
        if unsafe { libc::kill(self.pid, sig) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(pid, 0) returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Longest command line shown for a process (`cmdline`), in characters.
pub const MAX_COMMAND: usize = 120;

/// The command line of `pid` as one line (arguments joined by spaces, control characters
/// replaced), at most [`MAX_COMMAND`] characters; empty if it cannot be read (gone, a kernel
/// thread). Reads at most 4 KiB: a process sets its own argv and may make it anything.
#[must_use]
pub fn command_line(pid: i32) -> String {
    use std::io::Read;
    let mut raw = Vec::with_capacity(256);
    let read =
        File::open(format!("/proc/{pid}/cmdline")).and_then(|f| f.take(4096).read_to_end(&mut raw));
    if read.is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&raw);
    text.trim_end_matches('\0')
        .chars()
        .map(|c| if c == '\0' || c.is_control() { ' ' } else { c })
        .take(MAX_COMMAND)
        .collect()
}

/// Parses a space-separated list of pids, ignoring anything that is not one.
pub fn parse_pids(bytes: &[u8], out: &mut Vec<i32>) {
    for word in bytes.split(|b| b.is_ascii_whitespace()) {
        if let Some(pid) = std::str::from_utf8(word)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .filter(|&p| p > 0)
        {
            out.push(pid);
        }
    }
}

/// A process's initial environment, as one snapshot. The kernel reads it from the address space
/// the process had when the file was opened, and a read that comes after an `execve` replaced
/// that address space finds nothing: read piecewise (as `fs::read` does, from a 32-byte probe
/// on), an environment could end after its first piece and lose what came after. So it is read
/// in one call, which the kernel serves from one address space, whole (unless larger than 64
/// KiB).
pub fn read_environ(pid: i32) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = File::open(format!("/proc/{pid}/environ"))?;
    let mut buf = vec![0u8; 64 << 10];
    let n = loop {
        match f.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => break r?,
        }
    };
    if n == buf.len() {
        f.read_to_end(&mut buf)?;
    } else {
        buf.truncate(n);
    }
    Ok(buf)
}

/// Reads `NAME=VALUE` pairs of a process's initial environment; `None` when unreadable.
pub fn environ_has(pid: i32, pairs: &[(&str, &str)]) -> Option<bool> {
    let env = read_environ(pid).ok()?;
    Some(pairs.iter().all(|(k, v)| {
        env.split(|&b| b == 0).any(|entry| {
            entry.len() == k.len() + 1 + v.len()
                && entry.starts_with(k.as_bytes())
                && entry[k.len()] == b'='
                && entry.ends_with(v.as_bytes())
        })
    }))
}

fn proc_err(e: procfs_core::ProcError) -> io::Error {
    match e {
        procfs_core::ProcError::Io(e, _) => e,
        procfs_core::ProcError::NotFound(_) => io::Error::from(io::ErrorKind::NotFound),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// The system page size.
#[must_use]
pub fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

/// Clock ticks per second (USER_HZ).
#[must_use]
pub fn ticks_per_second() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let files = ProcFiles::open(me).expect("open self");
        let mut buf = Buf::default();
        let s = files.sample(&mut buf).expect("sample");
        assert!(s.rss > 0);
        assert!(s.threads >= 1);
        assert!(s.starttime > 0);
        assert!(files.fd_count() >= 3);
    }

    #[test]
    fn parse_pids_ignores_junk() {
        let mut v = Vec::new();
        parse_pids(b"12 34 x -5 0\n56 ", &mut v);
        assert_eq!(v, [12, 34, 56]);
    }

    #[test]
    fn gone_process_reads_fail() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid fits");
        let files = ProcFiles::open(pid);
        child.wait().expect("wait");
        if let Ok(files) = files {
            assert!(files.sample(&mut Buf::default()).is_err());
        }
    }
}
