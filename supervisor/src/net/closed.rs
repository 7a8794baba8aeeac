//! Closed sockets: whose they were and what they moved after the last dump, from the kernel's
//! destroy messages ([`super::destroy`]).
//!
//! A destroy message names its socket by cookie and addresses only (no inode, uid or cgroup),
//! so it is attributed in this order:
//! 1. **By cookie, still in the table**: a dump saw the socket and its holder still holds the
//!    inode as far as the fd cache knows (the fds have not been re-read since the close). The
//!    worker gets the final counters less those of the last dump.
//! 2. **By cookie, departed**: a dump saw the socket, then its holder's fd list dropped it (the
//!    table kept its last counters and worker here). Same difference.
//! 3. **By listener**: never dumped (it lived between two ticks), and its local address and
//!    port are those of a listener some worker held at the last dump: a connection that
//!    worker's tree accepted. All its counters go to that worker. A pre-forked server's
//!    children share the listener, so they are one worker. When listeners of several workers
//!    match (`SO_REUSEPORT`), the kernel's choice cannot be known: unattributed.
//! 4. **Unattributed**: anything else that moved bytes. Outbound connections a worker opened and
//!    closed between two ticks look exactly like every other process's sockets in the
//!    namespace; their sum is kept per supervisor, never credited to a worker by guess.
//!
//! Credits wait in `pending` until the worker's next tick, which adds them to its totals and
//! its rates. A credit for a worker that is no longer ticked (its process ended before its
//! sockets were freed) is counted as unattributed (`late`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::destroy::{DestroySocket, Destroyed, Drained};
use super::table::{Fast, Held, Table};
use super::{DestroyMode, DestroyStatus, NetProbe, DESTROY_PER_TICK};
use std::io;

/// How long a departed socket's last counters wait for its destroy message: a closed socket
/// can linger, orphaned, while its last data or FIN is retransmitted.
pub const DEPARTED_TTL: Duration = Duration::from_secs(600);
/// Departed sockets kept at most; the oldest go first.
pub const MAX_DEPARTED: usize = 1 << 16;

/// Counts of the destroy messages handled, since the probe started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClosedStats {
    /// TCP destroy messages read.
    pub events: u64,
    /// Attributed by cookie (seen by a dump), and by a worker's listener.
    pub by_cookie: u64,
    pub by_listener: u64,
    /// Nothing moved (listeners, sockets that never connected, refused connections): ignored.
    pub empty: u64,
    /// Sockets whose bytes no worker could be given, and their bytes: never seen, no worker's
    /// listener (among them `ambiguous`: the listeners of several workers) or `late`.
    pub unattributed: u64,
    pub unattributed_acked: u64,
    pub unattributed_received: u64,
    pub ambiguous: u64,
    /// Credits of workers no longer ticked when their turn came.
    pub late: u64,
    /// Departed sockets forgotten before their destroy message came (TTL or capacity).
    pub expired: u64,
}

#[derive(Debug)]
struct Departed<K> {
    key: K,
    acked: u64,
    received: u64,
}

/// The state kept between ticks for closed sockets.
#[derive(Debug)]
pub struct Closed<K> {
    /// Cookie → inode of each table entry a dump has shown.
    live: HashMap<u64, u32, Fast>,
    departed: HashMap<u64, Departed<K>, Fast>,
    /// Departure order, for expiry.
    queue: VecDeque<(Instant, u64)>,
    /// Listening sockets of the last dump by (port, address): whose, or several workers'.
    listeners: HashMap<(u16, IpAddr), Owner<K>, Fast>,
    /// Bytes credited to each worker since its last tick.
    pending: HashMap<K, (u64, u64)>,
    stats: ClosedStats,
}

impl<K> Default for Closed<K> {
    fn default() -> Self {
        Self {
            live: HashMap::default(),
            departed: HashMap::default(),
            queue: VecDeque::new(),
            listeners: HashMap::default(),
            pending: HashMap::new(),
            stats: ClosedStats::default(),
        }
    }
}

/// Whose listener a local address is.
#[derive(Debug, Clone)]
enum Owner<K> {
    One(K),
    Several,
    None,
}

impl<K: Clone + Eq + Hash> Closed<K> {
    #[must_use]
    pub fn stats(&self) -> ClosedStats {
        self.stats
    }

    /// Sockets known by cookie (in the table, and departed).
    #[must_use]
    pub fn known(&self) -> (usize, usize) {
        (self.live.len(), self.departed.len())
    }

    /// A dump showed the table entry of `inode`, which held `old` (its cookie and counters
    /// before this dump, if a dump showed it before) and now holds `cookie`. A changed cookie is
    /// a new socket on a reused inode number: the old one is gone and departs.
    pub fn shown(
        &mut self,
        inode: u32,
        old: Option<Held>,
        cookie: u64,
        key: impl FnOnce() -> Option<K>,
    ) {
        match old {
            Some(h) if h.cookie == cookie => {}
            Some(h) => {
                if self.live.remove(&h.cookie).is_some() {
                    if let Some(key) = key() {
                        self.depart(h.cookie, key, h.acked, h.received, Instant::now());
                    }
                }
                self.live.insert(cookie, inode);
            }
            None => {
                self.live.insert(cookie, inode);
            }
        }
    }

    /// A table rebuild dropped `h` (its holders no longer hold it), last held by `key`.
    pub fn dropped(&mut self, h: &Held, key: K, now: Instant) {
        if h.seen != 0 && self.live.remove(&h.cookie).is_some() {
            self.depart(h.cookie, key, h.acked, h.received, now);
        }
    }

    fn depart(&mut self, cookie: u64, key: K, acked: u64, received: u64, now: Instant) {
        self.departed.insert(
            cookie,
            Departed {
                key,
                acked,
                received,
            },
        );
        self.queue.push_back((now, cookie));
        self.expire(now);
    }

    /// Forgets departed sockets past [`DEPARTED_TTL`] or [`MAX_DEPARTED`].
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, cookie)) = self.queue.front() {
            let old = now.saturating_duration_since(at) >= DEPARTED_TTL;
            if !old && self.queue.len() <= MAX_DEPARTED {
                break;
            }
            self.queue.pop_front();
            if self.departed.remove(&cookie).is_some() {
                self.stats.expired += 1;
            }
        }
    }

    /// The listeners of the last complete dump: (address, worker index), `keys` naming the
    /// workers by index.
    pub fn set_listeners(&mut self, found: &[(SocketAddr, u32)], keys: &[K]) {
        self.listeners.clear();
        for &(addr, w) in found {
            let Some(key) = keys.get(w as usize) else {
                continue;
            };
            let at = (addr.port(), addr.ip().to_canonical());
            let owner = self.listeners.entry(at).or_insert(Owner::None);
            *owner = match &*owner {
                Owner::None => Owner::One(key.clone()),
                Owner::One(k) if k == key => continue,
                _ => Owner::Several,
            };
        }
    }

    /// The worker whose listener accepted a connection on `local`: an exact address first (the
    /// kernel prefers it too), else a wildcard one.
    fn owner(&self, local: &SocketAddr) -> Owner<K> {
        let port = local.port();
        let at = |ip: IpAddr| self.listeners.get(&(port, ip));
        if let Some(exact) = at(local.ip().to_canonical()) {
            return exact.clone();
        }
        let any4 = at(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let any6 = at(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        match (any4, any6) {
            (Some(o), None) | (None, Some(o)) => o.clone(),
            (Some(Owner::One(a)), Some(Owner::One(b))) if a == b => Owner::One(a.clone()),
            (Some(_), Some(_)) => Owner::Several,
            (None, None) => Owner::None,
        }
    }

    fn credit(&mut self, key: K, acked: u64, received: u64) {
        let p = self.pending.entry(key).or_default();
        p.0 = p.0.saturating_add(acked);
        p.1 = p.1.saturating_add(received);
    }

    fn unattributed(&mut self, acked: u64, received: u64) {
        self.stats.unattributed += 1;
        self.stats.unattributed_acked = self.stats.unattributed_acked.saturating_add(acked);
        self.stats.unattributed_received =
            self.stats.unattributed_received.saturating_add(received);
    }

    /// Attributes one destroyed socket. `table` and `keys` (worker index → key, as of the
    /// table's last build) answer for sockets still in the table.
    pub fn destroyed(&mut self, d: &Destroyed, table: &mut Table, keys: &[K]) {
        self.stats.events += 1;
        let (acked, received) = (d.acked.unwrap_or(0), d.received.unwrap_or(0));
        if let Some(inode) = self.live.remove(&d.cookie) {
            if let Some(h) = table.map.get_mut(&inode).filter(|h| h.cookie == d.cookie) {
                let delta = (
                    acked.saturating_sub(h.acked),
                    received.saturating_sub(h.received),
                );
                // Final: a later look at this entry (a rebuild dropping it) adds nothing.
                (h.acked, h.received) = (acked, received);
                let first = h.worker;
                self.stats.by_cookie += 1;
                for w in std::iter::once(first).chain(table.also(inode)) {
                    if let Some(k) = keys.get(w as usize) {
                        self.credit(k.clone(), delta.0, delta.1);
                    }
                }
                return;
            }
        }
        if let Some(dep) = self.departed.remove(&d.cookie) {
            self.stats.by_cookie += 1;
            self.credit(
                dep.key,
                acked.saturating_sub(dep.acked),
                received.saturating_sub(dep.received),
            );
            return;
        }
        if acked == 0 && received == 0 {
            self.stats.empty += 1;
            return;
        }
        match self.owner(&d.local) {
            Owner::One(k) => {
                self.stats.by_listener += 1;
                self.credit(k, acked, received);
            }
            Owner::Several => {
                self.stats.ambiguous += 1;
                self.unattributed(acked, received);
            }
            Owner::None => self.unattributed(acked, received),
        }
    }

    /// What was credited to `key` since its last tick.
    pub fn take(&mut self, key: &K) -> Option<(u64, u64)> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending.remove(key)
    }

    /// After every ticked worker took its credits: what is left belongs to workers no longer
    /// ticked.
    pub fn settle(&mut self) {
        for (_, (acked, received)) in std::mem::take(&mut self.pending) {
            self.stats.late += 1;
            self.unattributed(acked, received);
        }
    }

    /// Forgets everything about sockets (the subscription ended): nothing pending is lost.
    pub fn clear_sockets(&mut self) {
        self.live.clear();
        self.departed.clear();
        self.queue.clear();
    }
}

impl<K: Clone + Eq + Hash> NetProbe<K> {
    /// Joins the kernel's TCP destroy groups, so that closed sockets are counted to their last
    /// byte ([`super::destroy`]). On failure the probe goes on sampling as before, and
    /// [`NetProbe::destroy_status`] says why.
    pub fn subscribe_destroyed(&mut self) -> io::Result<()> {
        match DestroySocket::subscribe() {
            Ok(s) => {
                self.mode = DestroyMode::Subscribed { rcvbuf: s.rcvbuf() };
                self.destroy = Some(s);
                self.table.keep_dropped = true;
                Ok(())
            }
            Err(e) => {
                self.refuse_destroyed(format!("the kernel refused the subscription: {e}"));
                Err(e)
            }
        }
    }

    /// Counts closed sockets from samples only, saying why.
    pub fn refuse_destroyed(&mut self, why: String) {
        if let Some(s) = self.destroy.take() {
            self.destroy_was = s.stats();
        }
        self.mode = DestroyMode::Unavailable(why);
        self.table.keep_dropped = false;
        self.closed.clear_sockets();
    }

    /// The subscription and its counts.
    #[must_use]
    pub fn destroy_status(&self) -> DestroyStatus {
        DestroyStatus {
            mode: self.mode.clone(),
            socket: self
                .destroy
                .as_ref()
                .map_or(self.destroy_was, DestroySocket::stats),
            closed: self.closed.stats(),
        }
    }

    /// Whether this tick period's [`DESTROY_PER_TICK`] datagrams have been read: nothing more
    /// is read before the next tick.
    #[must_use]
    pub fn destroy_paused(&self) -> bool {
        self.destroy.is_some() && self.read_this_tick >= DESTROY_PER_TICK
    }

    /// The destroy socket, to wait for it to be readable (non-blocking; read it with
    /// [`NetProbe::drain_destroyed`]).
    #[must_use]
    pub fn destroy_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.destroy.as_ref().map(AsFd::as_fd)
    }

    /// Reads at most `budget` queued destroy datagrams and attributes them; their bytes join
    /// the workers' totals at the next tick. `Drained::Budget` when more may be queued, or when
    /// [`DESTROY_PER_TICK`] is reached (then nothing more is read until the next tick: wait for
    /// it rather than for readiness).
    pub fn drain_destroyed(&mut self, budget: usize) -> Drained {
        let Some(sock) = self.destroy.as_mut() else {
            return Drained::Empty;
        };
        let left = DESTROY_PER_TICK.saturating_sub(self.read_this_tick);
        if left == 0 {
            return Drained::Budget;
        }
        let before = sock.stats().datagrams;
        let (closed, table, keys) = (&mut self.closed, &mut self.table, &self.keys);
        let got = sock.read(budget.min(left), |d| closed.destroyed(d, table, keys));
        let read = sock.stats().datagrams.saturating_sub(before);
        self.read_this_tick = self
            .read_this_tick
            .saturating_add(usize::try_from(read).unwrap_or(usize::MAX));
        match got {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "socket destroy messages cannot be read; sampling only");
                self.refuse_destroyed(format!("reading them failed: {e}"));
                Drained::Empty
            }
        }
    }
}

#[cfg(test)]
mod tests;
