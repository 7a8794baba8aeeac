//! The one place that calls `waitpid`: it reaps every child of the supervisor (workers and the
//! orphans reparented to it as a child subreaper) and hands each worker's status to its task.
//!
//! Nothing else may wait for children (no `tokio::process`, no `Child::wait`): a `waitpid(-1)`
//! here would steal their statuses.

use std::cell::RefCell;
use std::collections::HashMap;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
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
}

impl Reaper {
    /// Registers interest in `pid`'s exit. Call right after spawning, before yielding to the
    /// runtime, so the status cannot be reaped unseen.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(pid, tx);
        rx
    }

    /// Reaps every child that has exited. Returns the pids reaped that nobody awaited (orphans).
    pub fn reap(&self) -> Vec<i32> {
        let mut orphans = Vec::new();
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break, // ECHILD: no children at all
            };
            let waiter = self.waiters.borrow_mut().remove(&pid.as_raw());
            match waiter {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => orphans.push(pid.as_raw()),
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
