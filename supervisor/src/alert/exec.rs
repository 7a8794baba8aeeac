//! Running an alert command: the event on its stdin, a deadline, and nothing left behind.
//!
//! The command runs in a process group of its own with `PR_SET_PDEATHSIG(SIGKILL)` (so it dies
//! with the supervisor), the fd limit supervise started with, and `SUPERVISE_EVENT` set to the
//! event kind. Its stdin, stdout+stderr and
//! a pidfd (pidfd_open(2)) are polled together until it exits or the deadline passes; then its
//! whole group is SIGKILLed (a command that exited normally may have left background
//! processes: an alert hook must not leave anything behind) and it is reaped through the pidfd
//! (waitid(2) `P_PIDFD`), which can never reap another child. In the supervisor, the reaper's
//! `waitpid(-1)` may reap it first: the status is then unknown (`None`), and nothing is lost.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};

use crate::reaper::Exit;

/// Output kept for the log, bytes; the rest is read and discarded.
pub const MAX_OUTPUT: usize = 1024;

/// How an alert command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when something else reaped it first (the supervisor's reaper).
    pub exit: Option<Exit>,
    /// It ran past its deadline and was killed.
    pub timed_out: bool,
    /// Its first [`MAX_OUTPUT`] bytes of stdout and stderr (lossy UTF-8).
    pub output: String,
}

impl Outcome {
    /// Exited with code 0, or exited unseen (reaped elsewhere) in time.
    #[must_use]
    pub fn ok(&self) -> bool {
        !self.timed_out && self.exit.is_none_or(Exit::success)
    }
}

/// Runs `argv` with `input` on its stdin, for at most `timeout`. `running` holds its pid (also
/// its process group) while it runs, 0 otherwise. Fails only if it cannot be started.
pub fn run(
    argv: &[String],
    input: &[u8],
    event: &str,
    timeout: Duration,
    running: &AtomicI32,
) -> io::Result<Outcome> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("SUPERVISE_EVENT", event)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_w.try_clone()?))
        .stderr(Stdio::from(out_w))
        .process_group(0);
    crate::spawn::helper_pre_exec(&mut cmd);
    let spawned = cmd.spawn();
    // Our copies of the pipe's write end live in `cmd`: close them, or the read end never
    // sees end-of-file.
    drop(cmd);
    let mut child = spawned?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    running.store(pid, Ordering::SeqCst);
    let stdin = child.stdin.take();
    let outcome = watch(&mut child, pid, stdin, File::from(out_r), input, timeout);
    running.store(0, Ordering::SeqCst);
    Ok(outcome)
}

fn watch(
    child: &mut Child,
    pid: i32,
    stdin: Option<ChildStdin>,
    mut out: File,
    input: &[u8],
    timeout: Duration,
) -> Outcome {
    let mut outcome = Outcome {
        exit: None,
        timed_out: false,
        output: String::new(),
    };
    let mut kept = Vec::new();
    let _ = crate::spawn::set_nonblocking(&out);
    let mut stdin = stdin.filter(|fd| crate::spawn::set_nonblocking(fd).is_ok());
    let mut left = input;
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => Some(fd),
        // Exited and reaped already (by the supervisor's reaper): nothing to wait for.
        Err(Errno::ESRCH) => {
            drain(&mut out, &mut kept);
            outcome.output = String::from_utf8_lossy(&kept).into_owned();
            return outcome;
        }
        // No pidfds (Linux before 5.3, or out of fds): poll the child's status instead.
        Err(_) => None,
    };
    let deadline = Instant::now() + timeout;
    let mut out_open = true;
    loop {
        let now = Instant::now();
        if now >= deadline {
            outcome.timed_out = true;
            break;
        }
        let mut wait = deadline - now;
        let mut fds = Vec::with_capacity(3);
        match &pidfd {
            Some(fd) => fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
            None => wait = wait.min(Duration::from_millis(10)),
        }
        let out_at = fds.len();
        if out_open {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        let in_at = fds.len();
        if let Some(fd) = &stdin {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
        let wait = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        if let Err(e) = poll(&mut fds, wait) {
            if e != Errno::EINTR {
                // Cannot wait properly: give up on it as on a timeout.
                outcome.timed_out = true;
                break;
            }
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let exited_fd = pidfd.is_some() && ready(0);
        let out_ready = out_open && ready(out_at);
        let in_ready = stdin.is_some() && ready(in_at);
        drop(fds);
        if in_ready {
            if let Some(fd) = &mut stdin {
                match write_some(fd, left) {
                    Ok(n) => left = &left[n.min(left.len())..],
                    // EPIPE: it does not read its stdin; that is its business.
                    Err(_) => left = &[],
                }
            }
            if left.is_empty() {
                // End-of-file for the command.
                stdin = None;
            }
        }
        if out_ready && !drain(&mut out, &mut kept) {
            out_open = false;
        }
        let exited = match &pidfd {
            Some(_) => exited_fd,
            None => !matches!(child.try_wait(), Ok(None)),
        };
        if exited {
            break;
        }
    }
    drop(stdin);
    // Kill the group: on a timeout, the command and its children; after a normal exit, only what
    // it left running. The leader is not reaped yet (only we can, below, or the engine's
    // reaper), so its pid, and so its group id, cannot have been reused.
    if let Some(fd) = &pidfd {
        // SAFETY: pidfd_send_signal with a valid pidfd, a null siginfo and flags 0.
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
    // SAFETY: killpg(2) on the group the command leads (spawned with process_group(0)).
    unsafe { libc::killpg(pid, libc::SIGKILL) };
    outcome.exit = match &pidfd {
        Some(fd) => reap(fd),
        None => child.wait().ok().map(|s| match s.signal() {
            Some(sig) => Exit::Signal(sig),
            None => Exit::Code(s.code().unwrap_or(-1)),
        }),
    };
    drain(&mut out, &mut kept);
    outcome.output = String::from_utf8_lossy(&kept).into_owned();
    outcome
}

/// Waits for the SIGKILLed (or exited) command and reaps it. Blocks: SIGKILL always ends a
/// process, and this is the alert thread, not the engine.
fn reap(pidfd: &OwnedFd) -> Option<Exit> {
    loop {
        match waitid(Id::PIDFd(pidfd.as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(Exit::Signal(sig as i32)),
            Err(Errno::EINTR) | Ok(_) => {}
            // ECHILD: the supervisor's reaper got it first.
            Err(_) => return None,
        }
    }
}

/// Reads what is there, keeping the first [`MAX_OUTPUT`] bytes. False at end-of-file.
fn drain(out: &mut File, kept: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
        }
    }
}

fn write_some(fd: &mut ChildStdin, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match fd.write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            other => return other,
        }
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open(pid, 0) returns a new fd or -1 with errno set.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match i32::try_from(fd) {
        // SAFETY: the kernel just gave us this fd and nobody else owns it.
        Ok(fd) if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => Err(Errno::last()),
    }
}
