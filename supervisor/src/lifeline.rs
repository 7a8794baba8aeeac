//! The lifeline: a tiny process that outlives a SIGKILLed supervisor just long enough to kill the
//! descendants that `PR_SET_PDEATHSIG` cannot reach (the death signal is not inherited across
//! `fork`, so a grandchild that double-forked away would survive its supervisor).
//!
//! The supervisor starts it once (its own binary, `supervise __lifeline`) with a pipe on its stdin
//! and writes `PID STARTTIME` for every process it tracks in a worker's tree. The lifeline opens a
//! pidfd for each (after checking the start time, so a reused pid is never taken) and blocks on
//! the pipe. If the pipe reaches end-of-file, the supervisor is gone: it SIGKILLs every pidfd it
//! holds and exits. A supervisor that shuts down cleanly kills the lifeline first (its final sweep
//! kills all its children), so nothing is killed twice.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The supervisor's end: a non-blocking pipe to the lifeline.
#[derive(Debug)]
pub struct Lifeline {
    pipe: File,
    /// The lifeline's pid (a child of the supervisor, not a worker: orphan scans skip it).
    pub pid: i32,
}

impl Lifeline {
    /// Starts the lifeline process.
    pub fn start() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("__lifeline")
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group) is
            // for the supervisor to act on, and must not kill the lifeline on the way.
            .process_group(0);
        // SAFETY: runs in the forked child before exec and calls only sigprocmask(2), which is
        // async-signal-safe.
        unsafe { cmd.pre_exec(crate::signals::restore_in_child) };
        let child = cmd.spawn()?;
        // Writing must never block the engine: a stuck lifeline loses registrations, no more.
        let flags = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(Self {
            pipe: File::from(write),
            pid: i32::try_from(child.id()).map_err(io::Error::other)?,
        })
    }

    /// Registers a process to kill if the supervisor dies.
    pub fn watch(&self, pid: i32, starttime: u64) {
        let _ = (&self.pipe).write_all(format!("{pid} {starttime}\n").as_bytes());
    }
}

/// The lifeline process itself: `supervise __lifeline`. Returns when stdin closes, after killing
/// every registered process that is still alive.
pub fn serve() {
    // It holds a pidfd per process it protects (as supervise does, and its workers do not).
    let _ = crate::spawn::raise_fd_limit();
    let mut held: Vec<OwnedFd> = Vec::new();
    for line in BufReader::new(io::stdin().lock()).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let (Some(Ok(pid)), Some(Ok(start))) = (
            words.next().map(str::parse::<i32>),
            words.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        // SAFETY: pidfd_open(pid, 0) returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let Ok(fd) = i32::try_from(fd) else { continue };
        if fd < 0 {
            continue;
        }
        // SAFETY: the kernel just returned this fd; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The pid must still be the process that was registered (same start time).
        if starttime(pid) == Some(start) {
            held.push(fd);
        }
        if held.len() > 4096 {
            held.retain(alive);
        }
    }
    for fd in &held {
        // SAFETY: pidfd_send_signal on a pidfd we hold; a process that already exited is ESRCH.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

fn alive(fd: &OwnedFd) -> bool {
    // A pidfd polls readable once its process has exited.
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd with no timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 0 }
}

fn starttime(pid: i32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    crate::probe::parse::stat(&stat).map(|s| s.starttime)
}
