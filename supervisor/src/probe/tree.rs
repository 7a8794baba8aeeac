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

/// Samples between reads of the slow-changing figures (open fds, /proc/PID/io): each costs as
/// much as the stat read that memory enforcement needs every tick.
const SLOW_EVERY: u32 = 4;

#[derive(Debug)]
struct Member {
    files: ProcFiles,
    last: ProcSample,
    fds: u64,
    /// Already sent the current stop signal (see [`Tree::signal_new`]).
    signalled: bool,
}

/// The tracked process tree of one worker.
pub struct Tree {
    root: i32,
    members: BTreeMap<i32, Member>,
    buf: Buf,
    found: Vec<i32>,
    queue: Vec<i32>,
    queued: HashSet<i32>,
    prev_cpu: Option<(Instant, u64)>,
    /// Samples taken, for [`SLOW_EVERY`].
    samples: u32,
    io_at: Option<Instant>,
    /// Told `(pid, starttime)` of every member as it joins (the lifeline).
    on_join: Option<Box<dyn Fn(i32, u64)>>,
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
            buf: Buf::default(),
            found: Vec::new(),
            queue: Vec::new(),
            queued: HashSet::new(),
            prev_cpu: None,
            samples: 0,
            io_at: None,
            on_join: None,
        };
        t.adopt(root);
        t
    }

    /// Calls `f(pid, starttime)` for every member from now on (the root included).
    pub fn on_join(&mut self, f: impl Fn(i32, u64) + 'static) {
        for (pid, m) in &self.members {
            f(*pid, m.last.starttime);
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
        match ProcFiles::open(pid) {
            Ok(files) => match files.sample(&mut self.buf) {
                Ok(last) => {
                    if let Some(f) = &self.on_join {
                        f(pid, last.starttime);
                    }
                    self.members.insert(
                        pid,
                        Member {
                            fds: files.fd_count(),
                            files,
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

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Re-reads every member, drops the dead, discovers new descendants, and sums it all.
    /// `pss` also walks smaps_rollup of each member (expensive; only when asked).
    pub fn sample(&mut self, pss: bool) -> TreeSample {
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
            if fresh && !self.adopt(pid) {
                continue;
            }
            let Some(m) = self.members.get_mut(&pid) else {
                continue;
            };
            let mut s = match m.files.sample_quick(&mut self.buf) {
                Ok(s) if s.state != b'Z' || pid == self.root => s,
                // Gone (reaped: ESRCH) or a zombie whose parent will reap it: nothing to count.
                _ => {
                    self.members.remove(&pid);
                    continue;
                }
            };
            if slow && !fresh {
                m.fds = m.files.fd_count();
                (s.read_bytes, s.write_bytes) = m.files.io(&mut self.buf).unwrap_or((0, 0));
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
                *p = p.saturating_add(m.files.pss(&mut self.buf).unwrap_or(0));
            }
            self.found.clear();
            m.files.children(&mut self.buf, s.threads, &mut self.found);
            for &c in &self.found {
                if queued.insert(c) {
                    queue.push(c);
                }
            }
        }
        self.queue = queue;
        self.queued = queued;
        let hz = ticks_per_second() as f64;
        total.cpu_seconds = cpu_ticks as f64 / hz;
        if let Some((t0, c0)) = self.prev_cpu {
            let dt = at.duration_since(t0).as_secs_f64();
            if dt > 0.0 {
                total.cpu_percent = (cpu_ticks.saturating_sub(c0) as f64 / hz) / dt * 100.0;
            }
        }
        self.prev_cpu = Some((at, cpu_ticks));
        total
    }

    /// Sends `sig` to every tracked member through its pidfd, and to the worker's process group
    /// while the worker is unreaped (its pid, and so its group id, cannot have been reused).
    /// Returns how many deliveries succeeded.
    pub fn signal(&mut self, sig: i32, root_unreaped: bool) -> usize {
        let mut n = 0;
        if root_unreaped {
            // SAFETY: killpg(2) on the worker's own group (the worker is its leader, spawned with
            // process_group(0)).
            if unsafe { libc::killpg(self.root, sig) } == 0 {
                n += 1;
            }
        }
        for m in self.members.values_mut() {
            m.signalled = true;
            if m.files.signal(sig).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Sends `sig` to the members that have not been sent one yet (found since the last
    /// [`Tree::signal`]), so a graceful stop signal reaches late arrivals exactly once.
    pub fn signal_new(&mut self, sig: i32) {
        for m in self.members.values_mut().filter(|m| !m.signalled) {
            m.signalled = true;
            let _ = m.files.signal(sig);
        }
    }

    /// Members other than the root that are still alive, after a fresh look.
    pub fn survivors(&mut self) -> usize {
        self.sample(false);
        self.members.keys().filter(|&&p| p != self.root).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

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
