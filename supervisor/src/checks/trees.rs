//! The exec checks under way, shared by the worker tasks that run them and the orphan scan.
//!
//! A check's processes are the check's, not orphans: its root is a child of the supervisor
//! but no worker, and what it leaves behind is reparented to the supervisor (a child
//! subreaper) like a worker's orphans are. Such a process belongs to the check whose process
//! group it is in (while the check's root is unreaped: the group id cannot have been reused)
//! or whose mark it carries: every check runs with `SUPERVISE_CHECK=<mark>` in its
//! environment, a mark of its own, which its descendants inherit even after `setsid`. The
//! orphan scan hands what a check left to the check, which kills it with the rest of its tree.

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
    /// The root has not been reaped: its group id is still its own.
    unreaped: bool,
    mark: String,
    /// Orphans the scan attributed to the check, for it to adopt at its next look.
    handed: Vec<i32>,
}

impl Running {
    /// A check started: `root` leads its group, and its processes carry `mark`.
    pub(super) fn add(&mut self, root: i32, mark: &str) {
        self.checks.retain(|e| e.root != root);
        self.checks.push(Entry {
            root,
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

    /// The root of the check that a process in group `pgid` belongs to, if any; `mark` reads
    /// the process's mark, only when its group does not tell.
    pub fn claimant(&self, pgid: i32, mark: impl FnOnce() -> Option<Vec<u8>>) -> Option<i32> {
        if self.checks.is_empty() {
            return None;
        }
        if let Some(e) = self.checks.iter().find(|e| e.unreaped && e.root == pgid) {
            return Some(e.root);
        }
        let theirs = mark()?;
        self.checks
            .iter()
            .find(|e| e.mark.as_bytes() == theirs.as_slice())
            .map(|e| e.root)
    }

    /// Hands orphan `pid` to the check rooted at `root`.
    pub fn hand(&mut self, root: i32, pid: i32) {
        if let Some(e) = self.checks.iter_mut().find(|e| e.root == root) {
            e.handed.push(pid);
        }
    }
}

/// Whether a process in group `pgid`, whose mark `theirs` reads, belongs to the check rooted at
/// `root` (`unreaped` while it is) with mark `mark`.
pub(super) fn belongs(
    root: i32,
    unreaped: bool,
    mark: &str,
    pgid: i32,
    theirs: impl FnOnce() -> Option<Vec<u8>>,
) -> bool {
    (unreaped && pgid == root) || theirs().is_some_and(|t| t == mark.as_bytes())
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

/// The mark in `pid`'s initial environment, if it has one.
#[must_use]
pub fn mark_of(pid: i32) -> Option<Vec<u8>> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    mark_in(&env).map(<[u8]>::to_vec)
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
    fn a_process_belongs_to_a_check_by_its_group_while_the_root_is_unreaped_or_by_its_mark() {
        // (unreaped, pgid, their mark) for the check rooted at 100 with mark "9.1".
        for (unreaped, pgid, theirs, want) in [
            (true, 100, Some(&b"9.1"[..]), true),
            (true, 100, None, true),
            (true, 200, None, false),
            (true, 200, Some(b"9.1"), true),
            (true, 200, Some(b"9.2"), false),
            (false, 100, None, false),
            (false, 100, Some(b"9.1"), true),
            (false, 100, Some(b"9.1 "), false),
            (false, 200, Some(b""), false),
        ] {
            assert_eq!(
                belongs(100, unreaped, "9.1", pgid, || theirs.map(<[u8]>::to_vec)),
                want,
                "unreaped {unreaped}, pgid {pgid}, mark {theirs:?}"
            );
        }
    }

    #[test]
    fn the_scan_hands_a_check_what_it_left() {
        let mut r = Running::default();
        let never = || -> Option<Vec<u8>> { panic!("the mark is read only when needed") };
        assert_eq!(r.claimant(100, never), None, "no check, no read");
        r.add(100, "9.1");
        r.add(300, "9.2");
        assert_eq!(r.roots().collect::<Vec<_>>(), [100, 300]);
        assert_eq!(r.claimant(100, never), Some(100), "in its group");
        assert_eq!(r.claimant(7, || Some(b"9.2".to_vec())), Some(300));
        assert_eq!(r.claimant(7, || Some(b"9.3".to_vec())), None);
        assert_eq!(r.claimant(7, || None), None);
        r.reaped(100);
        assert_eq!(r.roots().collect::<Vec<_>>(), [300]);
        assert_eq!(r.claimant(100, || None), None, "its group id may be reused");
        assert_eq!(r.claimant(100, || Some(b"9.1".to_vec())), Some(100));
        r.hand(100, 555);
        r.hand(100, 556);
        r.hand(42, 557);
        assert_eq!(r.take_handed(100), [555, 556]);
        assert!(r.take_handed(100).is_empty());
        r.remove(100);
        assert_eq!(r.claimant(7, || Some(b"9.1".to_vec())), None);
        assert_eq!(r.take_handed(100), Vec::<i32>::new());
    }

    #[test]
    fn marks_differ() {
        let (a, b) = (new_mark(), new_mark());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}.", std::process::id())), "{a}");
    }
}
