//! The one place that calls `waitpid`: it reaps every child of the supervisor (workers and the
//! orphans reparented to it as a child subreaper) and hands each worker's status to its task.
//!
//! Nothing else may wait for children (no `tokio::process`, no `Child::wait`): a `waitpid(-1)`
//! here would steal their statuses.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the code, or 128 + the signal number.
    #[must_use]
    pub fn as_shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    #[must_use]
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// Registry of the pids whose exit someone awaits.
#[derive(Debug, Default)]
pub struct Reaper {
    waiters: RefCell<HashMap<i32, oneshot::Sender<Exit>>>,
    /// Leaders whose process group is SIGKILLed as they exit (see [`Reaper::watch_group`]).
    groups: RefCell<HashSet<i32>>,
}

impl Reaper {
    /// Registers interest in `pid`'s exit. Call right after spawning, before yielding to the
    /// runtime, so the status cannot be reaped unseen.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(pid, tx);
        rx
    }

    /// Like [`Reaper::watch`], for a child that leads its own process group (spawned with
    /// `process_group(0)`): when it exits, whatever is left in its group is SIGKILLed before it
    /// is reaped, while the group's id cannot have been reused. What an exec check started and
    /// left in its group ends with it, to the instant.
    pub fn watch_group(&self, pid: i32) -> oneshot::Receiver<Exit> {
        self.groups.borrow_mut().insert(pid);
        self.watch(pid)
    }

    /// Reaps every child that has exited. Returns the pids reaped that nobody awaited (orphans).
    ///
    /// libc's `waitpid`, not nix's: nix turns a status into its `Signal` enum, which has no
    /// realtime signals (32 and up), and answers an error for a process killed by one, after the
    /// kernel has reaped it; its exit was then lost, and a worker killed by a forwarded `RTMIN`
    /// was never seen to end.
    pub fn reap(&self) -> Vec<i32> {
        let mut orphans = Vec::new();
        loop {
            // While a group leader is watched, each exited child is first looked at without
            // being reaped (one more syscall per exit, only then).
            let next = if self.groups.borrow().is_empty() {
                -1
            } else {
                match exited_child() {
                    Some(pid) => {
                        if self.groups.borrow_mut().remove(&pid) {
                            // SAFETY: killpg(2) on the group `pid` leads; `pid` is an unreaped
                            // child of ours, so the id cannot have been reused.
                            unsafe { libc::killpg(pid, libc::SIGKILL) };
                        }
                        pid
                    }
                    None => -1,
                }
            };
            let mut status = 0;
            // SAFETY: waitpid(2) writes the status into a local; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(next, &mut status, libc::WNOHANG) };
            if pid == 0 {
                break;
            }
            if pid < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break; // ECHILD: no children at all
            }
            let Some(exit) = exit_of(status) else {
                continue;
            };
            self.groups.borrow_mut().remove(&pid);
            let waiter = self.waiters.borrow_mut().remove(&pid);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => orphans.push(pid),
            }
        }
        orphans
    }

    /// Reaps on every SIGCHLD, forever. `sigchld` must be registered before the first spawn.
    pub async fn run(&self, mut sigchld: tokio::signal::unix::Signal, on_orphan: impl Fn(i32)) {
        loop {
            for pid in self.reap() {
                on_orphan(pid);
            }
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    }
}

/// A child that has exited, left unreaped (`waitid` with `WNOWAIT`), if there is one.
fn exited_child() -> Option<i32> {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into the one we own, and
    // leaves its pid 0 when no child has exited (WNOHANG).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid(2) on any child, into `info`; WNOWAIT leaves the child waitable.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
    // SAFETY: waitid filled `info` for a child's exit (or left it zeroed): si_pid is valid.
    let pid = unsafe { info.si_pid() };
    (pid > 0).then_some(pid)
}

/// How a process ended, from a `waitpid` status: `None` for a stop or a continue (not asked for,
/// so not expected).
fn exit_of(status: i32) -> Option<Exit> {
    if libc::WIFEXITED(status) {
        Some(Exit::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(Exit::Signal(libc::WTERMSIG(status)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        // Statuses as the kernel packs them (wait(2)): code << 8, the signal (| 0x80 with a core),
        // 0x7f | signal << 8 for a stop, 0xffff for a continue.
        for (status, want) in [
            (0, Some(Exit::Code(0))),
            (3 << 8, Some(Exit::Code(3))),
            (255 << 8, Some(Exit::Code(255))),
            (libc::SIGTERM, Some(Exit::Signal(libc::SIGTERM))),
            (libc::SIGABRT | 0x80, Some(Exit::Signal(libc::SIGABRT))),
            (32, Some(Exit::Signal(32))),
            (33, Some(Exit::Signal(33))),
            (64, Some(Exit::Signal(64))),
            (0x7f | libc::SIGSTOP << 8, None),
            (0xffff, None),
        ] {
            assert_eq!(exit_of(status), want, "{status:#x}");
        }
        assert_eq!(Exit::Signal(32).as_shell_code(), 160);
    }
}
