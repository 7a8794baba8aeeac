//! The exec checks under way, shared by the worker tasks that run them and the orphan scan.
//!
//! A check's processes are the check's, not orphans: its root is a child of the supervisor
//! but no worker, and what it leaves behind is reparented to the supervisor (a child
//! subreaper) like a worker's orphans are. Such a process belongs to the check whose process
//! group it is in (while the check's root is unreaped: the group id cannot have been reused)
//! or whose mark it carries: every check runs with `SUPERVISE_CHECK=<mark>` in its
//! environment, a mark of its own, which its descendants inherit even after `setsid`. Only a
//! process started no earlier than the check's root can be the check's, so older ones are
//! never read. The orphan scan hands what a check left to the check, which kills it with the
//! rest of its tree.
//!
//! A process in the middle of `execve` shows an empty environment: its new image is in place,
//! its environment not set up yet. Its mark is then unknown, not absent: it is looked at again,
//! so that a check's descendant caught there is neither missed by its check nor reported as an
//! orphan.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The environment variable that marks a check's processes.
pub const MARK: &str = "SUPERVISE_CHECK";

/// The exec checks under way, shared (single-threaded) by the worker tasks and the engine.
pub type Trees = Rc<RefCell<Running>>;

/// The exec checks under way.
#[derive(Debug, Default)]
pub struct Running {
    checks: Vec<Entry>,
}

/// One exec check under way.
#[derive(Debug)]
struct Entry {
    /// The command's pid, which leads its process group.
    root: i32,
    /// The command's start time (clock ticks since boot, /proc/PID/stat's field 22).
    start: u64,
    /// The root has not been reaped: its group id is still its own.
    unreaped: bool,
    mark: String,
    /// Orphans the scan attributed to the check, for it to adopt at its next look.
    handed: Vec<i32>,
}

/// What a process's environment says of its mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Is(Vec<u8>),
    /// None, or the environment cannot be read (the process is gone or exiting, or not ours
    /// to read).
    Absent,
    /// The environment reads empty: mid-`execve`, or empty indeed. Ask again in a moment.
    Unknown,
}

/// Whose a process is, as far as the checks can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The check rooted at this pid's.
    Check(i32),
    /// No check's.
    No,
    /// Cannot be told yet (its mark is [`Mark::Unknown`]).
    Later,
}

impl Entry {
    /// Whether a process in group `pgid`, started at `start`, is this check's; `mark` reads
    /// its mark, only when its group and start time do not tell.
    fn claims(&self, pgid: i32, start: u64, mark: impl FnOnce() -> Mark) -> Claim {
        if self.unreaped && pgid == self.root {
            return Claim::Check(self.root);
        }
        if start < self.start {
            return Claim::No;
        }
        match mark() {
            Mark::Is(m) if m == self.mark.as_bytes() => Claim::Check(self.root),
            Mark::Is(_) | Mark::Absent => Claim::No,
            Mark::Unknown => Claim::Later,
        }
    }
}

impl Running {
    /// A check started: `root` leads its group, started at `start`, and its processes carry
    /// `mark`.
    pub(super) fn add(&mut self, root: i32, start: u64, mark: &str) {
        self.checks.retain(|e| e.root != root);
        self.checks.push(Entry {
            root,
            start,
            unreaped: true,
            mark: mark.to_owned(),
            handed: Vec::new(),
        });
    }

    /// The check is over: nothing of it is left.
    pub(super) fn remove(&mut self, root: i32) {
        self.checks.retain(|e| e.root != root);
    }

    /// The check's root was reaped: from now on only its mark attributes a process to it.
    pub(super) fn reaped(&mut self, root: i32) {
        if let Some(e) = self.checks.iter_mut().find(|e| e.root == root) {
            e.unreaped = false;
        }
    }

    /// The orphans handed to the check since its last look.
    pub(super) fn take_handed(&mut self, root: i32) -> Vec<i32> {
        self.checks
            .iter_mut()
            .find(|e| e.root == root)
            .map(|e| std::mem::take(&mut e.handed))
            .unwrap_or_default()
    }

    /// The pids of the checks' commands not reaped yet: children of the supervisor, but
    /// nobody's orphans.
    pub fn roots(&self) -> impl Iterator<Item = i32> + '_ {
        self.checks.iter().filter(|e| e.unreaped).map(|e| e.root)
    }

    /// Which check a process in group `pgid`, started at `start`, belongs to; `mark` reads its
    /// mark, at most once and only when its group and start time do not tell.
    pub fn claimant(&self, pgid: i32, start: u64, mark: impl FnOnce() -> Mark) -> Claim {
        if let Some(e) = self.checks.iter().find(|e| e.unreaped && e.root == pgid) {
            return Claim::Check(e.root);
        }
        if !self.checks.iter().any(|e| start >= e.start) {
            return Claim::No;
        }
        let mark = mark();
        let mut later = false;
        for e in &self.checks {
            match e.claims(pgid, start, || mark.clone()) {
                Claim::Check(root) => return Claim::Check(root),
                Claim::Later => later = true,
                Claim::No => {}
            }
        }
        if later {
            Claim::Later
        } else {
            Claim::No
        }
    }

    /// Whether a process in group `pgid`, started at `start`, belongs to the check rooted at
    /// `root` (as [`Running::claimant`] tells, for that check alone).
    pub(super) fn claims(
        &self,
        root: i32,
        pgid: i32,
        start: u64,
        mark: impl FnOnce() -> Mark,
    ) -> Claim {
        self.checks
            .iter()
            .find(|e| e.root == root)
            .map_or(Claim::No, |e| e.claims(pgid, start, mark))
    }

    /// Hands orphan `pid` to the check rooted at `root`.
    pub fn hand(&mut self, root: i32, pid: i32) {
        if let Some(e) = self.checks.iter_mut().find(|e| e.root == root) {
            e.handed.push(pid);
        }
    }
}

/// A mark no other check of this supervisor has had, nor one of another supervisor (its pid
/// is in it).
pub(super) fn new_mark() -> String {
    thread_local! {
        static NEXT: Cell<u64> = const { Cell::new(0) };
    }
    let n = NEXT.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n
    });
    format!("{}.{n}", std::process::id())
}

/// The mark in `pid`'s initial environment. An empty environment is [`Mark::Unknown`]: it is
/// also what a process shows between `execve`'s switch to its new image and the copying of its
/// environment there (`mm->env_end` still 0, or still `env_start`), whatever it will be.
#[must_use]
pub fn mark_of(pid: i32) -> Mark {
    match crate::probe::proc::read_environ(pid) {
        Err(_) => Mark::Absent,
        Ok(env) if env.is_empty() => Mark::Unknown,
        Ok(env) => mark_in(&env).map_or(Mark::Absent, |m| Mark::Is(m.to_vec())),
    }
}

/// The value of `SUPERVISE_CHECK=` in an environment block (`NAME=VALUE` entries, each ended by
/// a NUL); the first one, as `getenv` finds.
fn mark_in(environ: &[u8]) -> Option<&[u8]> {
    environ.split(|&b| b == 0).find_map(|entry| {
        entry
            .strip_prefix(MARK.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is(m: &[u8]) -> Mark {
        Mark::Is(m.to_vec())
    }

    #[test]
    fn the_mark_is_read_from_odd_environments() {
        for (env, want) in [
            (&b"A=1\0SUPERVISE_CHECK=42.7\0B=2\0"[..], Some(&b"42.7"[..])),
            (b"SUPERVISE_CHECK=42.7", Some(b"42.7")),
            (b"SUPERVISE_CHECK=\0", Some(b"")),
            (b"SUPERVISE_CHECK=1\0SUPERVISE_CHECK=2\0", Some(b"1")),
            (b"SUPERVISE_CHECKS=1\0", None),
            (b"XSUPERVISE_CHECK=1\0", None),
            (b"SUPERVISE_CHECK\0", None),
            (b"", None),
            (b"\0\0\xff\xfe=\0SUPERVISE_CHECK=\xff\0", Some(b"\xff")),
        ] {
            assert_eq!(mark_in(env), want, "{:?}", String::from_utf8_lossy(env));
        }
    }

    #[test]
    fn a_process_is_a_checks_by_its_group_while_the_root_is_unreaped_or_by_its_mark() {
        // The check rooted at 100, started at tick 50, with mark "9.1"; a process in group
        // `pgid` started at `start`, whose mark reads `mark` (`None`: must not be read).
        for (unreaped, pgid, start, mark, want) in [
            (true, 100, 10, None, Claim::Check(100)),
            (true, 100, 60, None, Claim::Check(100)),
            (true, 200, 60, Some(is(b"9.1")), Claim::Check(100)),
            (true, 200, 50, Some(is(b"9.1")), Claim::Check(100)),
            (true, 200, 49, None, Claim::No),
            (true, 200, 60, Some(is(b"9.2")), Claim::No),
            (true, 200, 60, Some(Mark::Absent), Claim::No),
            (true, 200, 60, Some(Mark::Unknown), Claim::Later),
            (false, 100, 60, Some(Mark::Absent), Claim::No),
            (false, 100, 60, Some(is(b"9.1")), Claim::Check(100)),
            (false, 100, 60, Some(is(b"9.1 ")), Claim::No),
            (false, 100, 60, Some(is(b"")), Claim::No),
            (false, 100, 60, Some(Mark::Unknown), Claim::Later),
            (false, 100, 49, None, Claim::No),
        ] {
            let mut r = Running::default();
            r.add(100, 50, "9.1");
            if !unreaped {
                r.reaped(100);
            }
            let read = || mark.clone().expect("the mark is read only when needed");
            let what = format!("unreaped {unreaped}, pgid {pgid}, start {start}, mark {mark:?}");
            assert_eq!(r.claims(100, pgid, start, read), want, "{what}");
            assert_eq!(r.claimant(pgid, start, read), want, "claimant: {what}");
        }
    }

    #[test]
    fn the_scan_hands_a_check_what_it_left() {
        let mut r = Running::default();
        let never = || -> Mark { panic!("the mark is read only when needed") };
        assert_eq!(r.claimant(100, 99, never), Claim::No, "no check, no read");
        r.add(100, 50, "9.1");
        r.add(300, 70, "9.2");
        assert_eq!(r.roots().collect::<Vec<_>>(), [100, 300]);
        assert_eq!(
            r.claimant(100, 99, never),
            Claim::Check(100),
            "in its group"
        );
        assert_eq!(
            r.claimant(7, 40, never),
            Claim::No,
            "older than every check"
        );
        assert_eq!(r.claimant(7, 80, || is(b"9.2")), Claim::Check(300));
        assert_eq!(
            r.claimant(7, 60, || is(b"9.2")),
            Claim::No,
            "older than 9.2"
        );
        assert_eq!(r.claimant(7, 60, || is(b"9.1")), Claim::Check(100));
        assert_eq!(r.claimant(7, 80, || is(b"9.3")), Claim::No);
        assert_eq!(r.claimant(7, 80, || Mark::Absent), Claim::No);
        assert_eq!(r.claimant(7, 80, || Mark::Unknown), Claim::Later);
        r.reaped(100);
        assert_eq!(r.roots().collect::<Vec<_>>(), [300]);
        assert_eq!(
            r.claimant(100, 60, || Mark::Absent),
            Claim::No,
            "its group id may be reused"
        );
        assert_eq!(r.claimant(100, 60, || is(b"9.1")), Claim::Check(100));
        r.hand(100, 555);
        r.hand(100, 556);
        r.hand(42, 557);
        assert_eq!(r.take_handed(100), [555, 556]);
        assert!(r.take_handed(100).is_empty());
        r.remove(100);
        assert_eq!(r.claimant(7, 80, || is(b"9.1")), Claim::No);
        assert_eq!(r.claims(100, 7, 80, || is(b"9.1")), Claim::No);
        assert_eq!(r.take_handed(100), Vec::<i32>::new());
    }

    #[test]
    fn marks_of_real_processes() {
        // This process has an environment (cargo's, at least): known.
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(matches!(mark_of(me), Mark::Is(_) | Mark::Absent));
        assert_eq!(mark_of(i32::MAX), Mark::Absent, "gone");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .env(MARK, "7.7")
            .spawn()
            .expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        // Until its exec is done, it shows this process's environment, or none.
        let mut mark = mark_of(pid);
        for _ in 0..500 {
            if mark == is(b"7.7") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            mark = mark_of(pid);
        }
        assert_eq!(mark, is(b"7.7"));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let mut bare = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .spawn()
            .expect("sleep");
        let pid = i32::try_from(bare.id()).expect("pid");
        let mut mark = mark_of(pid);
        for _ in 0..500 {
            // Its command line is set up just before its (empty) environment: then it is done.
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
            {
                mark = mark_of(pid);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(mark, Mark::Unknown, "an empty environment tells nothing");
        bare.kill().expect("kill");
        bare.wait().expect("wait");
    }

    #[test]
    fn marks_differ() {
        let (a, b) = (new_mark(), new_mark());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}.", std::process::id())), "{a}");
    }
}
