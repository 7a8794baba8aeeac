//! A worker's whole process tree: the worker, every descendant, and the orphans the engine
//! attributes back to it after they double-forked away and were reparented to the supervisor.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use super::proc::{ticks_per_second, Buf, ProcFiles, ProcSample};

/// Totals over a tree at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeSample {
    pub at: Instant,
    /// Live processes in the tree.
    pub procs: u32,
    /// Sum of the members' RSS, bytes.
    pub rss: u64,
    /// Sum of the members' PSS, bytes, when asked for.
    pub pss: Option<u64>,
    /// CPU time of the live members, seconds.
    pub cpu_seconds: f64,
    /// CPU use since the previous sample, percent of one core.
    pub cpu_percent: f64,
    pub threads: u64,
    pub fds: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// When the I/O counters were last read (they are read every few samples): rates over them
    /// must use this instant, not `at`.
    pub io_at: Instant,
    /// Sum of the members' virtual sizes, bytes.
    pub vsize: u64,
    /// State letter of the worker process itself (`R`, `S`, `D`, `Z`, `T`, ...; 0 once gone).
    pub root_state: u8,
}

/// Periodic samples ([`Tree::tick`]) between reads of the figures memory enforcement does not
/// need (stat: CPU time, state, threads; /proc/PID/io). Every tick reads what it does need:
/// each member's resident memory (statm) and children, so a tree past its limit and a new member
/// are seen at the first tick after; and its fd count, which the socket probe reuses.
const SLOW_EVERY: u32 = 4;

#[derive(Debug)]
struct Member {
    files: ProcFiles,
    last: ProcSample,
    /// Resident memory when it joined the tree: what its growth is measured from.
    first_rss: u64,
    fds: u64,
    /// Already had a stop signal (see [`Tree::stop_signal`]).
    signalled: bool,
}

/// The tracked process tree of one worker.
pub struct Tree {
    root: i32,
    members: BTreeMap<i32, Member>,
    found: Vec<i32>,
    queue: Vec<i32>,
    queued: HashSet<i32>,
    prev_cpu: Option<(Instant, u64)>,
    /// CPU use over the last two samples that read every member's stat.
    cpu_percent: f64,
    /// Samples taken, for [`SLOW_EVERY`].
    samples: u32,
    io_at: Option<Instant>,
    /// Told of every member as it joins (the lifeline).
    on_join: Option<OnJoin>,
    /// The root has been reaped: its pid (and so its process group id) may be reused.
    root_reaped: bool,
    /// The stop signal under way, for members found after it went out.
    stop: Option<Delivery>,
    /// SIGKILL to every member, now and as they are found.
    killing: bool,
}

thread_local! {
    /// One read buffer for every tree sampled on this thread (the engine's): a buffer of its
    /// own per tree was a resident page per worker.
    static SCRATCH: std::cell::RefCell<Option<Buf>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's scratch buffer (a fresh one if it is already in use).
fn with_scratch<R>(f: impl FnOnce(&mut Buf) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s.borrow_mut().take()).unwrap_or_default();
    let r = f(&mut buf);
    SCRATCH.with(|s| *s.borrow_mut() = Some(buf));
    r
}

/// What a tree tells of each member as it joins.
type OnJoin = Box<dyn Fn(&Joined)>;

/// A process that joined a tree: who it is, and the process group and session it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub pid: i32,
    /// Start time, clock ticks since boot: with the pid, a unique identity.
    pub starttime: u64,
    pub pgid: i32,
    pub sid: i32,
}

impl Joined {
    fn of(pid: i32, s: &ProcSample) -> Self {
        Self {
            pid,
            starttime: s.starttime,
            pgid: s.pgid,
            sid: s.sid,
        }
    }
}

/// Who a stop signal is for (see [`Tree::stop_signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every process, once each: the process group in one `killpg`, then the members outside it.
    All,
    /// The root alone.
    Root,
    /// Every member but the root, once each.
    Leftovers,
}

/// A stop signal on its way through a tree.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    sig: i32,
    reach: Reach,
    /// When the process group was signalled, in the clock ticks since boot that
    /// `/proc/PID/stat` counts start times in: a member of the group that started no later was
    /// reached by that `killpg`.
    group_at: Option<u64>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("root", &self.root)
            .field("members", &self.members.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Tree {
    /// Starts tracking the tree rooted at `root` (a worker just spawned).
    pub fn new(root: i32) -> Self {
        let mut t = Self {
            root,
            members: BTreeMap::new(),
            found: Vec::new(),
            queue: Vec::new(),
            queued: HashSet::new(),
            prev_cpu: None,
            cpu_percent: 0.0,
            samples: 0,
            io_at: None,
            on_join: None,
            root_reaped: false,
            stop: None,
            killing: false,
        };
        t.adopt(root);
        t
    }

    /// Calls `f` for every member from now on (the root included).
    pub fn on_join(&mut self, f: impl Fn(&Joined) + 'static) {
        for (pid, m) in &self.members {
            f(&Joined::of(*pid, &m.last));
        }
        self.on_join = Some(Box::new(f));
    }

    #[must_use]
    pub fn root(&self) -> i32 {
        self.root
    }

    /// Adds `pid` (an orphan attributed to this worker). Returns false if it is already gone.
    pub fn adopt(&mut self, pid: i32) -> bool {
        if self.members.contains_key(&pid) {
            return true;
        }
        with_scratch(|buf| self.adopt_with(pid, buf))
    }

    /// [`Tree::adopt`] with a read buffer the caller holds (a sample already has this thread's).
    fn adopt_with(&mut self, pid: i32, buf: &mut Buf) -> bool {
        match ProcFiles::open(pid) {
            Ok(files) => match files.sample(buf) {
                Ok(last) => {
                    if let Some(f) = &self.on_join {
                        f(&Joined::of(pid, &last));
                    }
                    self.members.insert(
                        pid,
                        Member {
                            fds: files.fd_count(),
                            files,
                            first_rss: last.rss,
                            last,
                            signalled: false,
                        },
                    );
                    true
                }
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    #[must_use]
    pub fn contains(&self, pid: i32) -> bool {
        self.members.contains_key(&pid)
    }

    /// Pids currently tracked (as of the last sample).
    pub fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.members.keys().copied()
    }

    /// Pids currently tracked with their open fds, as of the last sample.
    pub fn pids_fds(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.members.iter().map(|(&pid, m)| (pid, m.fds))
    }

    /// Every member's resident memory as of the last sample, and when it joined.
    pub fn growth(&self) -> impl Iterator<Item = crate::policy::MemberGrowth> + '_ {
        self.members
            .iter()
            .map(|(&pid, m)| crate::policy::MemberGrowth {
                pid,
                rss: m.last.rss,
                first_rss: m.first_rss,
            })
    }

    /// Sends `sig` to the member `pid` alone, through its pidfd (never to a process that reused
    /// its pid). False if it is not a member or the signal could not be sent.
    pub fn signal_member(&self, pid: i32, sig: i32) -> bool {
        self.members
            .get(&pid)
            .is_some_and(|m| m.files.signal(sig).is_ok())
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Re-reads every member, drops the dead, discovers new descendants, and sums it all.
    /// `pss` also walks smaps_rollup of each member (expensive; only when asked).
    pub fn sample(&mut self, pss: bool) -> TreeSample {
        self.look(pss, true)
    }

    /// The periodic sample: [`Tree::sample`] reading only what memory enforcement needs (each
    /// member's resident memory and children) and its fd count, and the rest (stat, I/O) every
    /// `SLOW_EVERY`th tick. Between those, CPU time, threads, state and the I/O counters are
    /// those of the last read, and a member that became a zombie counts with no memory until
    /// then.
    pub fn tick(&mut self, pss: bool) -> TreeSample {
        self.look(pss, false)
    }

    fn look(&mut self, pss: bool, full: bool) -> TreeSample {
        let at = Instant::now();
        let mut total = TreeSample {
            at,
            procs: 0,
            rss: 0,
            pss: pss.then_some(0),
            cpu_seconds: 0.0,
            cpu_percent: 0.0,
            threads: 0,
            fds: 0,
            read_bytes: 0,
            write_bytes: 0,
            io_at: at,
            vsize: 0,
            root_state: 0,
        };
        let mut cpu_ticks = 0u64;
        let slow = self.samples.is_multiple_of(SLOW_EVERY);
        self.samples = self.samples.wrapping_add(1);
        if slow {
            self.io_at = Some(at);
        }
        total.io_at = self.io_at.unwrap_or(at);
        let mut buf = SCRATCH.with(|s| s.borrow_mut().take()).unwrap_or_default();
        // Reused between samples: no allocation per tick once the tree's size is known.
        let mut queue = std::mem::take(&mut self.queue);
        let mut queued = std::mem::take(&mut self.queued);
        queue.clear();
        queued.clear();
        queue.extend(self.members.keys().copied());
        queued.extend(queue.iter().copied());
        let mut i = 0;
        while i < queue.len() {
            let pid = queue[i];
            i += 1;
            let fresh = !self.members.contains_key(&pid);
            if fresh && !self.adopt_with(pid, &mut buf) {
                continue;
            }
            let Some(m) = self.members.get_mut(&pid) else {
                continue;
            };
            let read = if full || slow || fresh {
                m.files.sample_quick(&mut buf)
            } else {
                m.files
                    .rss(&mut buf)
                    .map(|rss| ProcSample { rss, ..m.last })
            };
            let mut s = match read {
                Ok(s) if s.state != b'Z' || pid == self.root => s,
                // Gone (reaped: ESRCH) or a zombie whose parent will reap it: nothing to count.
                _ => {
                    self.members.remove(&pid);
                    continue;
                }
            };
            // The fd count every time (one fstat): the socket probe takes it from here to know
            // when a process's fd links may have changed.
            if !fresh {
                m.fds = m.files.fd_count();
            }
            if slow && !fresh {
                (s.read_bytes, s.write_bytes) = m.files.io(&mut buf).unwrap_or((0, 0));
            } else {
                (s.read_bytes, s.write_bytes) = (m.last.read_bytes, m.last.write_bytes);
            }
            m.last = s;
            total.procs += 1;
            total.rss = total.rss.saturating_add(s.rss);
            total.threads += s.threads;
            total.read_bytes = total.read_bytes.saturating_add(s.read_bytes);
            total.write_bytes = total.write_bytes.saturating_add(s.write_bytes);
            total.vsize = total.vsize.saturating_add(s.vsize);
            if pid == self.root {
                total.root_state = s.state;
            }
            cpu_ticks = cpu_ticks.saturating_add(s.cpu_ticks);
            total.fds += m.fds;
            if let Some(p) = total.pss.as_mut() {
                *p = p.saturating_add(m.files.pss(&mut buf).unwrap_or(0));
            }
            self.found.clear();
            m.files.children(&mut buf, s.threads, &mut self.found);
            for &c in &self.found {
                if queued.insert(c) {
                    queue.push(c);
                }
            }
        }
        self.queue = queue;
        self.queued = queued;
        SCRATCH.with(|s| *s.borrow_mut() = Some(buf));
        let hz = ticks_per_second() as f64;
        total.cpu_seconds = cpu_ticks as f64 / hz;
        // CPU use only between two reads of every member's stat.
        if full || slow {
            if let Some((t0, c0)) = self.prev_cpu {
                let dt = at.duration_since(t0).as_secs_f64();
                if dt > 0.0 {
                    self.cpu_percent = (cpu_ticks.saturating_sub(c0) as f64 / hz) / dt * 100.0;
                }
            }
            self.prev_cpu = Some((at, cpu_ticks));
        }
        total.cpu_percent = self.cpu_percent;
        total
    }

    /// The root has been reaped: no more `killpg` on its id, which may now be reused.
    pub fn root_reaped(&mut self) {
        self.root_reaped = true;
    }

    /// Sends a stop signal so that each process it is for gets it exactly once: with
    /// [`Reach::All`], one `killpg` to the worker's process group (while the root is unreaped,
    /// its group id cannot have been reused), then each member outside the group through its
    /// pidfd. Members found later get it from [`Tree::deliver_late`]. Members that are stopped
    /// (state `T`) are continued after it, as systemd does, so they can act on it. Returns how
    /// many deliveries
    /// succeeded. Call after a fresh [`Tree::sample`].
    pub fn stop_signal(&mut self, sig: i32, reach: Reach) -> usize {
        let mut n = 0;
        let mut group_at = None;
        if reach == Reach::All && !self.root_reaped {
            // SAFETY: killpg(2) on the worker's own group (the worker leads it, spawned with
            // process_group(0)), whose id cannot be reused while the worker is unreaped.
            if unsafe { libc::killpg(self.root, sig) } == 0 {
                n += 1;
                group_at = Some(boot_ticks());
            }
        }
        self.stop = Some(Delivery {
            sig,
            reach,
            group_at,
        });
        let root = self.root;
        for (&pid, m) in &mut self.members {
            if m.signalled || !reaches(reach, root, pid) {
                continue;
            }
            m.signalled = true;
            let covered = group_at.is_some() && m.last.pgid == root;
            if !covered && m.files.signal(sig).is_ok() {
                n += 1;
            }
            if m.last.state == b'T' {
                let _ = m.files.signal(libc::SIGCONT);
            }
        }
        n
    }

    /// SIGKILLs every member (and the group while the root is unreaped), now and, through
    /// [`Tree::deliver_late`], every member found from now on. Returns the members killed.
    pub fn kill(&mut self) -> usize {
        self.killing = true;
        self.deliver_late()
    }

    /// After a fresh sample during a stop: members found since the stop signal went out get it
    /// once (unless the `killpg` reached them: in the group, started before it); while killing,
    /// every member gets SIGKILL again (idempotent; catches late forks and adoptions).
    pub fn deliver_late(&mut self) -> usize {
        let mut n = 0;
        if self.killing {
            if !self.root_reaped {
                // SAFETY: as in `stop_signal`.
                unsafe { libc::killpg(self.root, libc::SIGKILL) };
            }
            for m in self.members.values_mut() {
                if m.files.signal(libc::SIGKILL).is_ok() {
                    n += 1;
                }
            }
            return n;
        }
        let Some(d) = self.stop else { return 0 };
        let root = self.root;
        for (&pid, m) in &mut self.members {
            if m.signalled || !reaches(d.reach, root, pid) {
                continue;
            }
            m.signalled = true;
            let covered = d
                .group_at
                .is_some_and(|at| m.last.pgid == root && m.last.starttime <= at);
            if !covered && m.files.signal(d.sig).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Members other than the root that are still alive, after a fresh look.
    pub fn survivors(&mut self) -> usize {
        self.sample(false);
        self.members.keys().filter(|&&p| p != self.root).count()
    }
}

/// Whether a stop signal for `reach` is for member `pid` of the tree rooted at `root`.
fn reaches(reach: Reach, root: i32, pid: i32) -> bool {
    match reach {
        Reach::All => true,
        Reach::Root => pid == root,
        Reach::Leftovers => pid != root,
    }
}

/// Now, in clock ticks since boot (the unit and clock of `starttime` in /proc/PID/stat).
fn boot_ticks() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let hz = ticks_per_second();
    u64::try_from(ts.tv_sec).unwrap_or(0) * hz
        + u64::try_from(ts.tv_nsec).unwrap_or(0) * hz / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A tick that reads no stat still finds a member born since the last tick, and still sees
    /// memory the tree took since: what memory enforcement needs is read at every tick.
    #[test]
    fn a_tick_between_full_reads_finds_new_members_and_new_memory() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let mut tree = Tree::new(me);
        // The first tick reads everything; the next ones, until the 4th, read no stat.
        tree.tick(false);
        let before = tree.tick(false);
        let mut kid = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let kid_pid = i32::try_from(kid.id()).expect("pid");
        let mut held = vec![0u8; 64 << 20];
        for page in held.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&mut held);
        let after = tree.tick(false);
        assert_eq!(tree.samples, 3, "the third tick: not one that reads stat");
        assert!(tree.contains(kid_pid), "the new child is found at once");
        assert!(
            after.rss >= before.rss + (48 << 20),
            "64 MiB taken: {} -> {}",
            before.rss,
            after.rss
        );
        assert!(after.threads >= 1 && after.fds >= 3);
        drop(held);
        kid.kill().expect("kill");
        kid.wait().expect("wait");
    }

    #[test]
    fn tree_of_this_process_counts_its_children() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let mut tree = Tree::new(me);
        let before = tree.sample(false);
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                Command::new("sleep")
                    .arg("30")
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect();
        let kid_pids: Vec<i32> = kids
            .iter()
            .map(|k| i32::try_from(k.id()).expect("pid"))
            .collect();
        let with = tree.sample(true);
        for k in &kid_pids {
            assert!(
                tree.contains(*k),
                "child {k} found through the children files"
            );
        }
        // Other tests of this binary may fork too: count at least us and our two.
        assert!(with.procs >= 3);
        assert!(with.rss >= before.rss / 2);
        assert!(with.pss.is_some_and(|p| p > 0));
        assert!(with.threads >= 3 && with.fds >= 3);
        assert!(with.cpu_seconds >= 0.0 && with.cpu_percent >= 0.0);
        for k in &mut kids {
            k.kill().expect("kill");
            k.wait().expect("wait");
        }
        tree.sample(false);
        for k in &kid_pids {
            assert!(!tree.contains(*k), "reaped child {k} dropped");
        }
    }
}
