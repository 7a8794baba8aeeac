//! Per-worker network probe: which TCP and UDP sockets each worker's process tree holds, how
//! much they move, and how slow their peers are, from one sock_diag dump per tick for all
//! workers (sock_diag(7), the interface `ss -ti` uses; no packet capture, no root).
//!
//! # Theory of operation
//! Each tick, [`NetProbe::tick`] is given every worker's live pids (as its [`probe::tree`]
//! found them). It maps each pid's `socket:[INODE]` fd links to inodes ([`inodes`], cached per
//! process), dumps every TCP socket with its `tcp_info` and every UDP socket of the
//! supervisor's network namespace ([`diag`], four netlink dump requests on one kept-open
//! socket), and attributes each dumped socket to the worker whose tree holds its inode. A
//! socket held by several processes of one tree counts once; one held by two workers counts
//! for both.
//!
//! Byte counters (`tcpi_bytes_acked`, `tcpi_bytes_received`) are per socket and vanish with it,
//! so rates come from per-socket deltas: each socket's last counters are kept with its inode
//! and checked against its cookie (unique for the socket's life; inode numbers get reused). A
//! socket new since the last tick contributes all it has moved, one seen before the
//! difference. Totals only grow.
//!
//! What a dump cannot see — a connection opened and closed between two ticks, and what a seen
//! socket moved after its last dump — comes from the kernel's destroy messages, when the probe
//! is subscribed to them ([`NetProbe::subscribe_destroyed`]): each closed TCP socket's final
//! counters, attributed by cookie or by the worker's listener that accepted it ([`closed`]).
//! Without the subscription a socket that closed adds nothing after its last dump.
//!
//! The cost of a tick is the kernel's dump plus one hash lookup per dumped socket; a socket
//! nobody holds is skipped after reading its inode. Fd links are read only when a process's
//! fds may have changed ([`inodes`]). Figures: `cargo bench -p supervisor --bench sockdiag`, and
//! for the destroy messages `--bench destroy`.
//!
//! # Caveats
//! - Only the supervisor's network namespace is dumped: a worker in its own namespace shows no
//!   sockets.
//! - Another user's processes cannot have their fds read (ptrace access rules, proc(5)); they
//!   are counted in [`NetSample::unreadable`].
//! - The fd cache may attribute a socket late (see [`inodes`]); a socket attributed late brings
//!   its whole past traffic into one interval.
//! - TIME_WAIT and SYN_RECV sockets are not dumped: no process holds them.
//! - A destroy message has no inode, uid or cgroup: an outbound connection that lived and died
//!   between two ticks cannot be told from another process's and is counted per probe as
//!   unattributed ([`ClosedStats`]).
//! - While every socket the workers hold is inert (not shown by the last dump: sockets not bound
//!   yet), a dump runs only every [`FULL_DUMP_EVERY`] ticks; a socket created unbound and bound
//!   later is seen up to that many ticks late. Unix and netlink sockets (every worker's channel)
//!   are not held at all for this ([`inodes`]): workers that hold no other socket cost no dump.
//!
//! [`probe::tree`]: crate::probe::tree

pub mod allow;
pub mod closed;
pub mod destroy;
pub mod diag;
pub mod inodes;
pub mod listen;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub use allow::{violations, AllowList, PatternError, PortList, Violation};
pub use closed::ClosedStats;
pub use destroy::{DestroyStats, Destroyed, Drained};
pub use diag::{DumpStats, Proto, SockRecord};

use closed::Closed;
use destroy::DestroySocket;
use diag::{is_unspecified, Dumper};
use inodes::FdTable;
use table::Table;

/// `TCP_ESTABLISHED` and `TCP_LISTEN` (`include/net/tcp_states.h`).
const ESTABLISHED: u8 = 1;
const LISTEN: u8 = 10;

/// Distinct outbound peers kept per worker; more are counted in
/// [`NetSample::remotes_omitted`].
pub const MAX_REMOTES: usize = 1024;
/// Distinct listening addresses kept per worker.
pub const MAX_LISTEN: usize = 256;
/// Default of [`NetProbe::set_rescan_every`].
pub const RESCAN_EVERY: u32 = 60;
/// While every held socket is inert, a dump every this many ticks still runs: a socket that
/// was not bound yet when it was judged inert (unseen by a dump) is seen within this many ticks
/// once it connects or listens.
pub const FULL_DUMP_EVERY: u64 = 10;
/// Destroy datagrams read per tick period at most (see [`NetProbe::drain_destroyed`]): past it
/// the kernel's queue fills and what overflows is counted as lost, rather than the supervisor
/// spending its time on a host that closes sockets faster than this.
pub const DESTROY_PER_TICK: usize = 50_000;

/// Whether closed sockets are counted from the kernel's destroy messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyMode {
    /// Not asked for yet ([`NetProbe::subscribe_destroyed`]).
    Off,
    /// Subscribed; the receive buffer the kernel granted, bytes.
    Subscribed { rcvbuf: usize },
    /// The kernel refused the subscription (or it was turned off): why.
    Unavailable(String),
}

/// The probe's own figures on closed sockets: the subscription, and what its messages gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyStatus {
    pub mode: DestroyMode,
    pub socket: DestroyStats,
    pub closed: ClosedStats,
}

/// Why a tick has no sample.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("sock_diag socket: {0}")]
    Io(io::Error),
    #[error("sock_diag dump did not finish before its deadline")]
    Timeout,
    #[error("sock_diag dump failed: errno {0}")]
    Kernel(i32),
    #[error("malformed sock_diag reply: {0}")]
    Malformed(&'static str),
    #[error("sock_diag datagram of {0} bytes truncated (buffer grown for the next tick)")]
    Truncated(usize),
}

/// An outbound peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Remote {
    pub proto: Proto,
    /// IPv4-mapped IPv6 addresses are given as IPv4.
    pub addr: SocketAddr,
}

/// One worker's sockets at one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetSample {
    /// TCP sockets by state.
    pub listening: u32,
    pub established: u32,
    /// SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, CLOSE.
    pub other: u32,
    pub udp: u32,
    /// Sums of `tcpi_bytes_acked` / `tcpi_bytes_received` over the live TCP sockets (the
    /// kernel counts the SYN of a connection the worker opened as one acknowledged byte).
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Everything moved since the probe first saw this worker, closed sockets included.
    pub acked_total: u64,
    pub received_total: u64,
    /// Bytes per second since the previous tick; `None` on the worker's first tick.
    pub acked_per_sec: Option<f64>,
    pub received_per_sec: Option<f64>,
    /// Mean and largest smoothed RTT (`tcpi_rtt`) over established sockets, µs.
    pub rtt_mean_us: Option<u32>,
    pub rtt_max_us: Option<u32>,
    /// TCP listening addresses, sorted (at most [`MAX_LISTEN`]).
    pub listen: Vec<SocketAddr>,
    /// Outbound peers, sorted, distinct (at most [`MAX_REMOTES`]).
    pub remotes: Vec<Remote>,
    pub remotes_omitted: u32,
    /// Pids whose fds could not be read (another user's).
    pub unreadable: u32,
}

impl NetSample {
    /// TCP sockets that are not listeners: what `net.max_connections` limits.
    #[must_use]
    pub fn connections(&self) -> u32 {
        self.established.saturating_add(self.other)
    }

    fn reset(&mut self) {
        let (mut listen, mut remotes) = (
            std::mem::take(&mut self.listen),
            std::mem::take(&mut self.remotes),
        );
        listen.clear();
        remotes.clear();
        *self = Self {
            listen,
            remotes,
            ..Self::default()
        };
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    pub dump: DumpStats,
    /// Sockets attributed to some worker.
    pub attributed: u32,
    /// Processes whose fd links were re-read, and the links read.
    pub rescans: u32,
    pub links: u32,
}

#[derive(Debug)]
struct WorkerState {
    acked_total: u64,
    received_total: u64,
    at: Instant,
    tick: u64,
}

/// Per-worker scratch of one tick.
#[derive(Debug, Default)]
struct Acc {
    /// (local port, peer) of every TCP non-listener and connected UDP socket.
    conns: Vec<(u16, Remote)>,
    listen_ports: Vec<u16>,
    rtt_sum: u64,
    rtt_n: u32,
    acked: u64,
    received: u64,
}

/// The probe: the netlink socket, the fd cache and the per-socket history. `K` names a worker
/// instance (the engine's key); samples come back in the order the workers were given.
pub struct NetProbe<K> {
    dumper: Dumper,
    fds: FdTable,
    table: Table,
    state: HashMap<K, WorkerState>,
    acc: Vec<Acc>,
    tick: u64,
    destroy: Option<DestroySocket>,
    /// The counts of a destroy socket given up.
    destroy_was: DestroyStats,
    mode: DestroyMode,
    closed: Closed<K>,
    /// Worker keys by index as of the table's last build.
    keys: Vec<K>,
    /// Listeners of this tick's dump: (address, worker index).
    listeners: Vec<(SocketAddr, u32)>,
    /// Destroy datagrams read since the last tick.
    read_this_tick: usize,
}

impl<K> std::fmt::Debug for NetProbe<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetProbe")
            .field("dumper", &self.dumper)
            .field("pids", &self.fds.len())
            .field("sockets", &self.table.map.len())
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash> Default for NetProbe<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> NetProbe<K> {
    /// A probe; the netlink socket opens on the first tick.
    #[must_use]
    pub fn new() -> Self {
        Self {
            dumper: Dumper::new(),
            fds: FdTable::new(RESCAN_EVERY),
            table: Table::default(),
            state: HashMap::new(),
            acc: Vec::new(),
            tick: 0,
            destroy: None,
            destroy_was: DestroyStats::default(),
            mode: DestroyMode::Off,
            closed: Closed::default(),
            keys: Vec::new(),
            listeners: Vec::new(),
            read_this_tick: 0,
        }
    }

    /// Re-read every process's fd links at least every `n` ticks (default [`RESCAN_EVERY`];
    /// 1 re-reads every tick). See [`inodes`] for what the cache misses in between.
    pub fn set_rescan_every(&mut self, n: u32) {
        self.fds.set_rescan_every(n);
    }

    /// Longest the dumps of one tick may take together (default 500 ms); past it the tick
    /// fails with [`NetError::Timeout`]. The socket is never blocked on otherwise.
    pub fn set_deadline(&mut self, d: std::time::Duration) {
        self.dumper.set_deadline(d);
    }

    /// One tick for all workers: `out[i]` becomes the sample of `workers[i]` (its key and the
    /// pids of its tree). Workers absent from a tick are forgotten (their totals restart).
    /// On error `out` holds partial counts; the traffic read before the error still goes into
    /// the workers' totals, not into the next tick's rates.
    pub fn tick(
        &mut self,
        workers: &[(K, &[i32])],
        out: &mut Vec<NetSample>,
    ) -> Result<TickStats, NetError> {
        self.tick_counted(workers, &[], out)
    }

    /// [`NetProbe::tick`] with each process's open fds already known: `fds[i][j]` for the
    /// process `workers[i].1[j]` (a tree's sample reads them), so the probe does not ask the
    /// kernel again whether its links may have changed. A worker without counts (`fds` shorter,
    /// or a list of another length) is asked about as [`NetProbe::tick`] does.
    pub fn tick_counted(
        &mut self,
        workers: &[(K, &[i32])],
        fds: &[&[u64]],
        out: &mut Vec<NetSample>,
    ) -> Result<TickStats, NetError> {
        self.tick += 1;
        let tick = self.tick;
        // What closed since the last tick first, against the table as the last tick built it.
        self.read_this_tick = 0;
        self.drain_destroyed(DESTROY_PER_TICK);
        out.resize_with(workers.len(), NetSample::default);
        self.acc.resize_with(workers.len(), Acc::default);
        self.table.next.clear();
        for (i, (key, pids)) in workers.iter().enumerate() {
            let w = u32::try_from(i).unwrap_or(u32::MAX);
            out[i].reset();
            let a = &mut self.acc[i];
            a.conns.clear();
            a.listen_ports.clear();
            (a.rtt_sum, a.rtt_n, a.acked, a.received) = (0, 0, 0, 0);
            if let Some((acked, received)) = self.closed.take(key) {
                (a.acked, a.received) = (acked, received);
            }
            let counts = fds.get(i).copied().filter(|c| c.len() == pids.len());
            for (j, &pid) in pids.iter().enumerate() {
                let count = counts.map(|c| c[j]);
                match self.fds.sockets_counted(pid, tick, count) {
                    Ok(_) => self.table.next.push((w, pid)),
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        out[i].unreadable += 1;
                    }
                    // Gone since the tree was sampled: nothing to attribute.
                    Err(_) => {}
                }
            }
        }
        self.closed.settle();
        self.fds.sweep(tick);
        let scan = self.fds.take_stats();
        let keys_changed = self.table.keep_dropped
            && (self.keys.len() != workers.len()
                || self.keys.iter().zip(workers).any(|(k, (w, _))| k != w));
        if self
            .table
            .build(&self.fds, scan.changed > 0 || keys_changed, tick)
        {
            let now = Instant::now();
            for h in &self.table.dropped {
                if let Some(key) = self.keys.get(h.worker as usize) {
                    self.closed.dropped(h, key.clone(), now);
                }
            }
            if self.table.keep_dropped {
                self.keys.clear();
                self.keys.extend(workers.iter().map(|(k, _)| k.clone()));
            }
        }

        let mut attributed = 0usize;
        let mut carried = 0usize;
        let track = self.table.keep_dropped;
        self.listeners.clear();
        let (table, acc, closed, keys, listeners) = (
            &mut self.table,
            &mut self.acc,
            &mut self.closed,
            &self.keys,
            &mut self.listeners,
        );
        // Every socket the workers hold is inert (not shown by the last dump): dump only every
        // `FULL_DUMP_EVERY` ticks; no socket held that a dump could show (Unix and netlink
        // sockets are not listed, see `inodes`): no dump at all. The kernel walks every bucket
        // of its TCP hash tables for a dump, sockets or not (tcp_diag_dump was half the CPU of
        // an idle supervisor of 20 `sleep` workers, and still 38 % of it with a dump every 10
        // ticks). A new socket changes its process's fd count, which re-reads that process's
        // links next tick, and a new inode is not inert.
        let skip =
            table.map.is_empty() || (table.all_inert() && !tick.is_multiple_of(FULL_DUMP_EVERY));
        let dump = if skip {
            Ok(DumpStats::default())
        } else {
            self.dumper.dump_socks(|raw| {
                let inode = raw.inode();
                let Some(h) = table.map.get_mut(&inode) else {
                    return;
                };
                let Some(rec) = raw.record() else { return };
                attributed += 1;
                carried += usize::from(h.was_live(tick));
                let info = rec.info.unwrap_or_default();
                let old = (h.seen != 0).then_some(*h);
                let delta = h.update(
                    rec.cookie,
                    info.bytes_acked.unwrap_or(0),
                    info.bytes_received.unwrap_or(0),
                    tick,
                );
                let w = h.worker;
                if track && rec.proto == Proto::Tcp {
                    closed.shown(inode, old, rec.cookie, || keys.get(w as usize).cloned());
                    if rec.state == LISTEN {
                        listeners.push((rec.local, w));
                        listeners.extend(table.also(inode).map(|o| (rec.local, o)));
                    }
                }
                account(&rec, delta, w as usize, &mut out[..], acc);
                for w in table.also(rec.inode) {
                    account(&rec, delta, w as usize, &mut out[..], acc);
                }
            })
        };
        let dump = match dump {
            Ok(d) => {
                self.table.mark_gone(&mut self.fds, carried, tick);
                if !skip {
                    self.table.mark_inert(tick);
                    if track {
                        self.closed.set_listeners(&self.listeners, &self.keys);
                    }
                }
                d
            }
            Err(e) => {
                self.table.live = attributed;
                for ((key, _), a) in workers.iter().zip(&self.acc) {
                    if let Some(st) = self.state.get_mut(key) {
                        st.acked_total = st.acked_total.saturating_add(a.acked);
                        st.received_total = st.received_total.saturating_add(a.received);
                    }
                }
                return Err(e);
            }
        };
        self.table.live = attributed;

        let now = Instant::now();
        for (i, (key, _)) in workers.iter().enumerate() {
            let (s, a) = (&mut out[i], &mut self.acc[i]);
            let st = match self.state.get_mut(key) {
                Some(st) => {
                    let dt = now.duration_since(st.at).as_secs_f64();
                    if dt > 0.0 {
                        s.acked_per_sec = Some(a.acked as f64 / dt);
                        s.received_per_sec = Some(a.received as f64 / dt);
                    }
                    st
                }
                None => self.state.entry(key.clone()).or_insert(WorkerState {
                    acked_total: 0,
                    received_total: 0,
                    at: now,
                    tick,
                }),
            };
            st.acked_total = st.acked_total.saturating_add(a.acked);
            st.received_total = st.received_total.saturating_add(a.received);
            (st.at, st.tick) = (now, tick);
            s.acked_total = st.acked_total;
            s.received_total = st.received_total;
            if a.rtt_n > 0 {
                s.rtt_mean_us = u32::try_from(a.rtt_sum / u64::from(a.rtt_n)).ok();
            }
            finish(s, a);
        }
        self.state.retain(|_, st| st.tick == tick);
        self.closed.expire(now);
        Ok(TickStats {
            dump,
            attributed: u32::try_from(attributed).unwrap_or(u32::MAX),
            rescans: scan.rescans,
            links: scan.links,
        })
    }
}

/// Counts one socket for worker `w`; `delta` is what it moved since the last tick.
fn account(rec: &SockRecord, delta: (u64, u64), w: usize, out: &mut [NetSample], acc: &mut [Acc]) {
    let (Some(s), Some(a)) = (out.get_mut(w), acc.get_mut(w)) else {
        return;
    };
    a.acked = a.acked.saturating_add(delta.0);
    a.received = a.received.saturating_add(delta.1);
    let peer = || Remote {
        proto: rec.proto,
        addr: SocketAddr::new(rec.remote.ip().to_canonical(), rec.remote.port()),
    };
    if rec.proto == Proto::Udp {
        s.udp += 1;
        if !is_unspecified(&rec.remote) {
            a.conns.push((rec.local.port(), peer()));
        }
        return;
    }
    match rec.state {
        LISTEN => {
            s.listening += 1;
            a.listen_ports.push(rec.local.port());
            if s.listen.len() < MAX_LISTEN {
                s.listen.push(rec.local);
            }
            return;
        }
        ESTABLISHED => s.established += 1,
        _ => s.other += 1,
    }
    if !is_unspecified(&rec.remote) {
        a.conns.push((rec.local.port(), peer()));
    }
    let Some(info) = rec.info else { return };
    if let (ESTABLISHED, Some(rtt)) = (rec.state, info.rtt_us) {
        a.rtt_sum += u64::from(rtt);
        a.rtt_n += 1;
        s.rtt_max_us = Some(s.rtt_max_us.map_or(rtt, |m| m.max(rtt)));
    }
    s.bytes_acked = s.bytes_acked.saturating_add(info.bytes_acked.unwrap_or(0));
    s.bytes_received = s
        .bytes_received
        .saturating_add(info.bytes_received.unwrap_or(0));
}

/// Sorts the lists and splits inbound connections (accepted by one of the worker's listeners)
/// from outbound ones.
fn finish(s: &mut NetSample, a: &mut Acc) {
    s.listen.sort_unstable();
    s.listen.dedup();
    a.listen_ports.sort_unstable();
    a.listen_ports.dedup();
    let ports = &a.listen_ports;
    s.remotes.extend(
        a.conns
            .iter()
            .filter(|(local, r)| r.proto == Proto::Udp || ports.binary_search(local).is_err())
            .map(|&(_, r)| r),
    );
    s.remotes.sort_unstable();
    s.remotes.dedup();
    if s.remotes.len() > MAX_REMOTES {
        s.remotes_omitted = u32::try_from(s.remotes.len() - MAX_REMOTES).unwrap_or(u32::MAX);
        s.remotes.truncate(MAX_REMOTES);
    }
}
