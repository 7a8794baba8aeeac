//! Which worker holds which socket inode, and each socket's counters at its last dump: one
//! hash lookup per dumped socket answers both "whose is it?" and "what did it move since?".
//!
//! The table is rebuilt only when some worker's pids or some process's socket list changed;
//! a rebuild carries each socket's history over, so deltas survive it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::inodes::FdTable;

/// Multiplicative hashing (as rustc's FxHash) for kernel-assigned inode numbers: no caller
/// controls them, and SipHash would be a visible share of a tick.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

pub type Fast = BuildHasherDefault<FastHasher>;

/// One socket inode held by a worker.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Index of the first worker holding it (others are in [`Table::shared`]).
    pub worker: u32,
    /// A process of that worker holding it.
    pub pid: i32,
    /// At the last dump that showed it (tick 0: never shown).
    pub cookie: u64,
    pub acked: u64,
    pub received: u64,
    pub seen: u64,
    /// The last complete dump did not show it: not a TCP or UDP socket of this namespace (a
    /// Unix or netlink socket, such as every worker's channel), or one not bound yet.
    pub inert: bool,
}

impl Held {
    /// Shown by the dump of the tick before `tick`.
    #[must_use]
    pub fn was_live(&self, tick: u64) -> bool {
        self.seen != 0 && self.seen + 1 == tick
    }

    /// Records this tick's counters; returns what the socket moved since its last dump: all it
    /// has when it is new (another cookie: the inode number was reused), never negative.
    pub fn update(&mut self, cookie: u64, acked: u64, received: u64, tick: u64) -> (u64, u64) {
        let delta = if self.seen != 0 && self.cookie == cookie {
            (
                acked.saturating_sub(self.acked),
                received.saturating_sub(self.received),
            )
        } else {
            (acked, received)
        };
        (self.cookie, self.acked, self.received, self.seen) = (cookie, acked, received, tick);
        delta
    }
}

/// The inode table of all workers.
#[derive(Debug, Default)]
pub struct Table {
    pub map: HashMap<u32, Held, Fast>,
    spare: HashMap<u32, Held, Fast>,
    /// Further (inode, worker) holders of sockets held by more than one worker, sorted.
    pub shared: Vec<(u32, u32)>,
    /// (worker, pid) of the last build, and of this tick.
    layout: Vec<(u32, i32)>,
    pub next: Vec<(u32, i32)>,
    /// Entries the last tick's dump showed.
    pub live: usize,
    /// Whether a rebuild keeps the entries it drops in `dropped` (for destroy messages).
    pub keep_dropped: bool,
    /// Entries the last rebuild dropped that a dump had shown (their holders no longer hold
    /// them), with the worker index of the build before.
    pub dropped: Vec<Held>,
}

impl Table {
    /// Rebuilds from the cached socket lists of `self.next`'s pids if the layout changed or
    /// `lists_changed`. Returns whether it rebuilt.
    pub fn build(&mut self, fds: &FdTable, lists_changed: bool, tick: u64) -> bool {
        if !lists_changed && self.next == self.layout {
            return false;
        }
        std::mem::swap(&mut self.layout, &mut self.next);
        std::mem::swap(&mut self.map, &mut self.spare);
        self.map.clear();
        self.shared.clear();
        for &(w, pid) in &self.layout {
            for &ino in fds.cached(pid) {
                match self.map.entry(ino) {
                    Entry::Vacant(v) => {
                        let mut h = self.spare.get(&ino).copied().unwrap_or(Held {
                            worker: w,
                            pid,
                            cookie: 0,
                            acked: 0,
                            received: 0,
                            seen: 0,
                            inert: false,
                        });
                        (h.worker, h.pid) = (w, pid);
                        v.insert(h);
                    }
                    Entry::Occupied(o) => {
                        if o.get().worker != w {
                            self.shared.push((ino, w));
                        }
                    }
                }
            }
        }
        self.dropped.clear();
        if self.keep_dropped {
            let map = &self.map;
            self.dropped.extend(
                self.spare
                    .iter()
                    .filter(|(ino, h)| h.seen != 0 && !map.contains_key(ino))
                    .map(|(_, h)| *h),
            );
        }
        self.spare.clear();
        self.shared.sort_unstable();
        self.shared.dedup();
        self.live = self.map.values().filter(|h| h.was_live(tick)).count();
        true
    }

    /// After a complete dump at `tick`: what it did not show is inert until a dump shows it.
    pub fn mark_inert(&mut self, tick: u64) {
        for h in self.map.values_mut() {
            h.inert = h.seen != tick;
        }
    }

    /// Whether no held socket could be in a dump (all inert, or none held).
    #[must_use]
    pub fn all_inert(&self) -> bool {
        self.map.values().all(|h| h.inert)
    }

    /// Further workers holding `inode`.
    pub fn also(&self, inode: u32) -> impl Iterator<Item = u32> + '_ {
        let from = self.shared.partition_point(|&(ino, _)| ino < inode);
        self.shared[from..]
            .iter()
            .take_while(move |(ino, _)| *ino == inode)
            .map(|&(_, w)| w)
    }

    /// After a tick whose dump showed `carried` of the last tick's `live` sockets: the holders
    /// of the sockets that left the dump (closed) are re-read next tick.
    pub fn mark_gone(&self, fds: &mut FdTable, carried: usize, tick: u64) {
        if carried >= self.live {
            return;
        }
        for h in self.map.values().filter(|h| h.was_live(tick)) {
            fds.mark_dirty(h.pid);
        }
    }
}
