//! Orphans: processes reparented to the supervisor (a child subreaper) after their parent died,
//! typically the grandchild of a worker that double-forked. Each is attributed back to the worker
//! whose process group it is in or, if it left the group (setsid), whose `SUPERVISE_NAME` and
//! `SUPERVISE_INSTANCE` it inherited.

use crate::probe::proc::{environ_has, parse_pids};

/// Pids of the supervisor's own children (workers and adopted orphans alike).
#[must_use]
pub fn our_children() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(b) = std::fs::read(t.path().join("children")) {
                parse_pids(&b, &mut out);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The children of the supervisor's main thread, read each tick through a kept-open
/// `/proc/self/task/PID/children`: every worker and the lifeline (the engine spawns them on this
/// thread), and every orphan reparented to us (the kernel hands orphans to a subreaper's
/// thread-group leader while it lives: `find_new_reaper` in kernel/exit.c). One `pread` instead
/// of listing every thread and opening each one's file; children other threads fork (an alert
/// command) are not orphans and are left out. [`our_children`] sees those too.
#[derive(Debug)]
pub struct MainChildren {
    files: Option<crate::probe::proc::ProcFiles>,
    buf: crate::probe::proc::Buf,
}

impl MainChildren {
    #[must_use]
    pub fn new() -> Self {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        Self {
            files: crate::probe::proc::ProcFiles::open(me).ok(),
            buf: crate::probe::proc::Buf::default(),
        }
    }

    /// The pids, sorted; every thread's list when the file could not be kept open.
    pub fn read(&mut self) -> Vec<i32> {
        let Some(files) = &self.files else {
            return our_children();
        };
        let mut out = Vec::new();
        files.children(&mut self.buf, 1, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Default for MainChildren {
    fn default() -> Self {
        Self::new()
    }
}

/// What identifies a worker instance to its orphans.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The running worker's pid, which is also its process group id.
    pub root: Option<i32>,
    pub name: &'a str,
    pub instance: u32,
}

/// The process group of `pid`, or `None` if it is gone.
#[must_use]
pub fn pgid_of(pid: i32) -> Option<i32> {
    stat_of(pid).map(|s| s.pgrp)
}

/// What /proc/PID/stat says of `pid`, or `None` if it is gone: one read.
#[must_use]
pub fn stat_of(pid: i32) -> Option<crate::probe::parse::Stat> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    crate::probe::parse::stat(&stat)
}

/// What /proc/PID/stat says of `pid` while it lives: `None` once it is gone, a zombie, or
/// exiting (its address space already released: `vsize` 0, which no live user process has, and
/// its environment no longer readable). A dying process is nobody's orphan.
#[must_use]
pub fn living_stat_of(pid: i32) -> Option<crate::probe::parse::Stat> {
    stat_of(pid).filter(|s| !matches!(s.state, b'Z' | b'X') && s.vsize != 0)
}

impl Owner<'_> {
    /// True when `pid` (with process group `pgid`) descends from this worker.
    #[must_use]
    pub fn claims(&self, pid: i32, pgid: i32) -> bool {
        if self.root == Some(pgid) {
            return true;
        }
        let instance = self.instance.to_string();
        environ_has(
            pid,
            &[
                (child_sdk::ENV_NAME, self.name),
                (child_sdk::ENV_INSTANCE, &instance),
            ],
        ) == Some(true)
    }
}

/// The pids of every running worker (not orphans): shared by the worker tasks, which add and
/// remove their own, so that a look for orphans skips them without reading their /proc files.
pub type Roots = std::rc::Rc<std::cell::RefCell<std::collections::HashSet<i32>>>;

/// Our children that are not worker roots: the orphans.
#[must_use]
pub fn orphans(roots: &Roots) -> Vec<i32> {
    let roots = roots.borrow();
    our_children()
        .into_iter()
        .filter(|p| !roots.contains(p))
        .collect()
}

/// The orphans that belong to `owner`.
#[must_use]
pub fn claim(owner: &Owner<'_>, roots: &Roots) -> Vec<i32> {
    orphans(roots)
        .into_iter()
        .filter(|&pid| pgid_of(pid).is_some_and(|pgid| owner.claims(pid, pgid)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgid_of_self_and_gone() {
        let me = i32::try_from(std::process::id()).expect("pid");
        // SAFETY: getpgrp has no preconditions.
        assert_eq!(pgid_of(me), Some(unsafe { libc::getpgrp() }));
        assert_eq!(pgid_of(i32::MAX), None);
    }
}
