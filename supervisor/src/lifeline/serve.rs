//! The lifeline process itself: `supervise-lifeline` (or `supervise __lifeline`).
//!
//! One `poll` waits on the pipe from the supervisor and on every pidfd held: a pidfd polls
//! readable once its process has exited, and is closed then, so the fds held are the living
//! members' and nothing wakes the lifeline but a registration or an exit. When the pipe reaches
//! end-of-file, the supervisor is gone, and everything watched is killed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::Msg;

/// A line longer than this is no registration: it is skipped.
const MAX_LINE: usize = 256;
/// A scan of /proc for the members of watched sessions is repeated while it finds some (a
/// member may have forked meanwhile), at most this many times.
const MAX_SCANS: usize = 10;

/// A process watched through a pidfd.
struct Held {
    pid: i32,
    start: u64,
    fd: OwnedFd,
}

/// A watched process group or session: its leader's start time, and the registrations that
/// hold it (a tree, the orphan scan): it is watched until each has said `f`.
#[derive(Debug, Clone, Copy)]
struct Led {
    start: u64,
    count: u32,
}

/// Counts one more registration of `id` led by a process that started at `start`. A different
/// start time is a different leader (the id was reused): the old entry is replaced.
fn register(map: &mut HashMap<i32, Led>, id: i32, start: u64) {
    let led = map.entry(id).or_insert(Led { start, count: 0 });
    if led.start != start {
        *led = Led { start, count: 0 };
    }
    led.count = led.count.saturating_add(1);
}

/// One registration of `id` is done with it.
fn unregister(map: &mut HashMap<i32, Led>, id: i32) {
    if let Some(led) = map.get_mut(&id) {
        led.count = led.count.saturating_sub(1);
        if led.count == 0 {
            map.remove(&id);
        }
    }
}

/// Who the lifeline is, and whose groups and sessions it must never kill.
#[derive(Debug, Clone, Copy)]
struct Own {
    pid: i32,
    pgid: i32,
    sid: i32,
    parent_pgid: i32,
    parent_sid: i32,
}

impl Own {
    fn now() -> Self {
        // SAFETY: getpid, getppid, getpgid and getsid have no preconditions; for the parent
        // they return -1 if it is already gone, which matches no id.
        unsafe {
            let parent = libc::getppid();
            Self {
                pid: libc::getpid(),
                pgid: libc::getpgid(0),
                sid: libc::getsid(0),
                parent_pgid: libc::getpgid(parent),
                parent_sid: libc::getsid(parent),
            }
        }
    }

    /// A group the lifeline may watch: not its own, nor the supervisor's, nor init's.
    fn may_watch_group(&self, id: i32) -> bool {
        id > 1 && id != self.pgid && id != self.parent_pgid && id != self.pid
    }

    /// A session the lifeline may watch: not its own (the supervisor's, a terminal's), nor
    /// init's.
    fn may_watch_session(&self, id: i32) -> bool {
        id > 1 && id != self.sid && id != self.parent_sid && id != self.pid
    }
}

/// Everything the lifeline watches.
struct Watch {
    own: Own,
    held: Vec<Held>,
    /// `(pid, start)` of every held process, to take each once.
    known: HashSet<(i32, u64)>,
    /// Processes no pidfd could be opened for (out of fds): checked by start time at the end.
    unheld: Vec<(i32, u64)>,
    /// `unheld` is pruned of the dead when it reaches this length.
    prune_unheld_at: usize,
    /// Process group id -> the start time of its leader, and how many registrations hold it.
    groups: HashMap<i32, Led>,
    /// Session id -> likewise.
    sessions: HashMap<i32, Led>,
    /// Errors already reported (errno), so each is said once.
    reported: HashSet<i32>,
}

/// Serves until stdin closes, then kills everything watched. Returns after that.
pub fn serve() {
    let _ = crate::spawn::raise_fd_limit();
    // Reports go to a pipe the supervisor reads: never block on it.
    // SAFETY: fcntl on fd 1 only changes its flags.
    unsafe {
        let flags = libc::fcntl(1, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(1, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    let mut w = Watch {
        own: Own::now(),
        held: Vec::new(),
        known: HashSet::new(),
        unheld: Vec::new(),
        prune_unheld_at: 64,
        groups: HashMap::new(),
        sessions: HashMap::new(),
        reported: HashSet::new(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut fds: Vec<libc::pollfd> = Vec::new();
    // Start-up is over: what it touched of the binary need not stay resident (see `trim`).
    crate::trim::resident();
    loop {
        fds.clear();
        fds.push(libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        });
        fds.extend(w.held.iter().map(|h| libc::pollfd {
            fd: h.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: `fds` holds `nfds` initialised pollfds of fds we own; no timeout.
        if unsafe { libc::poll(fds.as_mut_ptr(), nfds, -1) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                // Cannot wait on the pidfds (no memory?): wait on the pipe alone, by blocking
                // in read below; exits are pruned again once poll works.
                w.report(e.raw_os_error().unwrap_or(0), &format!("poll: {e}"));
                fds.truncate(1);
                fds[0].revents = libc::POLLIN;
            } else {
                continue;
            }
        }
        // Exited: close their pidfds. From the end, so `swap_remove` moves only entries
        // already looked at.
        for i in (1..fds.len()).rev() {
            if fds[i].revents != 0 {
                let gone = w.held.swap_remove(i - 1);
                w.known.remove(&(gone.pid, gone.start));
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        // SAFETY: read into a buffer we own, at most its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        let n = match usize::try_from(n) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                // The pipe is unreadable: take it as the supervisor being gone.
                break;
            }
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(b);
                } else {
                    skipping = true;
                }
                continue;
            }
            if !skipping {
                if let Some(msg) = Msg::parse(&line) {
                    w.take(msg);
                }
            }
            line.clear();
            skipping = false;
        }
    }
    w.kill_all();
}

impl Watch {
    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Process { pid, start } => self.hold(pid, start),
            Msg::Leader {
                id,
                start,
                group,
                session,
            } => {
                if group && self.own.may_watch_group(id) {
                    register(&mut self.groups, id, start);
                }
                if session && self.own.may_watch_session(id) {
                    register(&mut self.sessions, id, start);
                }
            }
            Msg::Forget { id } => {
                unregister(&mut self.groups, id);
                unregister(&mut self.sessions, id);
            }
        }
    }

    fn hold(&mut self, pid: i32, start: u64) {
        if pid == self.own.pid || self.known.contains(&(pid, start)) {
            return;
        }
        // SAFETY: pidfd_open(pid, 0) returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let Ok(fd) =
            i32::try_from(fd)
                .map_err(drop)
                .and_then(|fd| if fd < 0 { Err(()) } else { Ok(fd) })
        else {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // Gone already: nothing to protect.
                Some(libc::ESRCH) => {}
                errno => {
                    // Out of fds (or memory): watched by pid and start time, which a pid
                    // reused within the last instant could fool.
                    if may_be(pid, start) {
                        self.unheld.push((pid, start));
                        self.prune_unheld();
                    }
                    self.report(
                        errno.unwrap_or(0),
                        &format!("cannot hold a pidfd for pid {pid} ({e}); watching it by pid and start time"),
                    );
                }
            }
            return;
        };
        // SAFETY: the kernel just returned this fd; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The pid must still be the process that was registered (same start time).
        if starttime(pid) == Some(start) {
            self.known.insert((pid, start));
            self.held.push(Held { pid, start, fd });
        }
    }

    fn prune_unheld(&mut self) {
        if self.unheld.len() >= self.prune_unheld_at {
            self.unheld.retain(|&(pid, start)| may_be(pid, start));
            self.prune_unheld_at = (self.unheld.len() * 2).max(64);
        }
    }

    /// Says it once per errno, on stdout (the supervisor's to read).
    fn report(&mut self, errno: i32, text: &str) {
        if self.reported.insert(errno) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", text.replace('\n', " "));
            let _ = out.flush();
        }
    }

    /// The supervisor is gone: SIGKILL every watched group, process and session member.
    fn kill_all(&mut self) {
        self.take_new_leaders();
        for h in &self.held {
            // SAFETY: pidfd_send_signal on a pidfd we hold; a process that already exited is
            // ESRCH.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    h.fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
        // Their fds are free for reading /proc from now on (they may have been all there were).
        self.held.clear();
        for &(pid, start) in &self.unheld {
            if starttime(pid) == Some(start) {
                // SAFETY: kill(2) on the registered process, checked by its start time.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // A group or session whose leader's pid now belongs to another process was emptied
        // and its id reused: not ours any more.
        let still_ours = |id: i32, led: &Led| starttime(id).is_none_or(|s| s == led.start);
        self.groups.retain(|&id, led| still_ours(id, led));
        self.sessions.retain(|&id, led| still_ours(id, led));
        for &id in self.groups.keys() {
            // SAFETY: killpg(2) on a group a worker's tree led (checked above).
            unsafe { libc::killpg(id, libc::SIGKILL) };
        }
        if !self.sessions.is_empty() {
            let mut killed = HashSet::new();
            for _ in 0..MAX_SCANS {
                if self.kill_sessions(&mut killed) == 0 {
                    break;
                }
            }
        }
    }

    /// Held processes that lead a group or session they did not lead when they were registered
    /// (an orphan the supervisor saw a moment before it called `setsid`) have it watched now,
    /// before they are killed: what they forked in it since dies too. Read by pid, checked by
    /// start time.
    fn take_new_leaders(&mut self) {
        for h in &self.held {
            let Some(stat) = crate::orphans::stat_of(h.pid).filter(|s| s.starttime == h.start)
            else {
                continue;
            };
            if stat.session == h.pid && self.own.may_watch_session(h.pid) {
                register(&mut self.sessions, h.pid, h.start);
            }
            if stat.pgrp == h.pid && self.own.may_watch_group(h.pid) {
                register(&mut self.groups, h.pid, h.start);
            }
        }
    }

    /// SIGKILLs every process (but the lifeline) whose session is watched, or whose group is
    /// (a member the `killpg` may have missed while it forked); returns how many it had not
    /// killed before.
    fn kill_sessions(&self, killed_before: &mut HashSet<i32>) -> usize {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let mut killed = 0;
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == self.own.pid {
                continue;
            }
            let Some(stat) = crate::orphans::stat_of(pid) else {
                continue;
            };
            if stat.state == b'Z' {
                continue;
            }
            if self.sessions.contains_key(&stat.session) || self.groups.contains_key(&stat.pgrp) {
                // SAFETY: kill(2) on a process of a watched session or group.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 && killed_before.insert(pid) {
                    killed += 1;
                }
            }
        }
        killed
    }
}

fn starttime(pid: i32) -> Option<u64> {
    crate::orphans::stat_of(pid).map(|s| s.starttime)
}

/// False once `pid` is known to be gone or another process; true while it cannot be told (its
/// stat unreadable for want of fds, say).
fn may_be(pid: i32, start: u64) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(bytes) => crate::probe::parse::stat(&bytes).is_some_and(|s| s.starttime == start),
        Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_watched_until_every_registrant_is_done() {
        let mut m = HashMap::new();
        register(&mut m, 42, 7);
        register(&mut m, 42, 7);
        unregister(&mut m, 42);
        assert_eq!(m.get(&42).map(|l| l.count), Some(1));
        unregister(&mut m, 42);
        assert!(m.is_empty());
        // Once more than registered: nothing to undo.
        unregister(&mut m, 42);
        assert!(m.is_empty());
    }

    #[test]
    fn a_new_leader_of_an_id_replaces_the_old_one() {
        let mut m = HashMap::new();
        register(&mut m, 42, 7);
        register(&mut m, 42, 7);
        register(&mut m, 42, 9);
        assert_eq!(m.get(&42).map(|l| (l.start, l.count)), Some((9, 1)));
    }

    #[test]
    fn never_its_own_nor_the_supervisors_group_or_session() {
        let own = Own {
            pid: 10,
            pgid: 10,
            sid: 3,
            parent_pgid: 5,
            parent_sid: 3,
        };
        for id in [0, 1, -4, 10, 5] {
            assert!(!own.may_watch_group(id), "{id}");
        }
        for id in [0, 1, -4, 10, 3] {
            assert!(!own.may_watch_session(id), "{id}");
        }
        assert!(own.may_watch_group(42) && own.may_watch_session(42));
    }
}
