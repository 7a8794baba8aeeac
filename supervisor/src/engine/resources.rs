//! The engine's per-tick probes across all workers: each worker tree's sockets (one sock_diag
//! dump for all of them) and its network policy, what it holds on disk (deleted-but-open
//! files), its I/O rates and block-I/O delay, and the watched directories.
//!
//! They run on the engine's tick, which shares its grid with the workers' own samples, over the
//! member pids each worker task publishes in [`crate::worker::Shared::members`]; the results go
//! back into each worker's `Shared` for `status`, `top` and the metrics.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use super::Engine;
use crate::disk::{self, DeletedScan, DirState, DirWatcher, Growing, GrowthWatch, IoRates};
use crate::events::{Event, Kind, Reason};
use crate::net::{self, NetProbe, NetSample};
use crate::plan::OnViolation;
use crate::status::{ClosedSockets, SupervisorStatus, WatchedDir};
use crate::worker::Command;

/// Ticks between reads of block-I/O delay (a stat file per thread of every member).
const BLKIO_EVERY: u32 = 5;

/// Per worker incarnation.
struct Probe {
    pid: i32,
    deleted: DeletedScan,
    growth: GrowthWatch,
    io: IoRates,
    blkio: Buf,
    /// Policy breaches already reported for this incarnation (each is reported once).
    breaches: HashSet<String>,
}

type Buf = Vec<u8>;

/// State of the probes between ticks.
#[derive(Default)]
pub(super) struct Resources {
    /// A notice for people about how the probes could be set up, taken once by the engine.
    pub notice: Option<String>,
    probes: HashMap<u64, Probe>,
    ticks: u32,
    net: NetProbe<u64>,
    net_out: Vec<NetSample>,
    /// The dump failed last tick (reported once per episode).
    net_failing: bool,
    dirs: Option<DirWatcher>,
    dirs_seen: u64,
    /// The latest state of each watched directory, for the metrics.
    pub dir_states: Vec<DirState>,
    /// Which watched directories are in a `disk` finding now (reported once per crossing).
    dir_alarm: Vec<bool>,
}

/// How a read of the socket destroy messages ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DestroyRead {
    /// Nothing queued: wait for readiness.
    Empty,
    /// More may be queued: read again.
    More,
    /// This tick period's share is read: wait for the next tick.
    Paused,
    /// The subscription was given up (a read failed): stop waiting on it.
    Gone,
}

/// Destroy datagrams read per wake of the engine loop, so that a burst of closing sockets
/// shares the loop with everything else.
const DESTROY_PER_WAKE: usize = 256;
/// Least time between two reads of the destroy socket once it is empty: messages are taken in
/// batches rather than one wake (and three syscalls) each. The kernel queues what comes
/// meanwhile: 2,000 connections a second are 100 messages in 25 ms, where the receive buffer
/// holds thousands.
pub(super) const DESTROY_GAP: std::time::Duration = std::time::Duration::from_millis(25);

impl Resources {
    /// Joins the kernel's socket destroy groups, so that connections shorter than a tick are
    /// counted; says once, here, when that is not possible, and returns the socket to wait on.
    pub fn start_net(&mut self, destroy_events: bool) -> Option<AsyncFd<OwnedFd>> {
        if !destroy_events {
            tracing::info!("closed TCP sockets are counted from samples only, as configured");
            self.net.refuse_destroyed(
                "turned off ([sample] destroy_events = false, --no-destroy-events)".into(),
            );
            return None;
        }
        match self.net.subscribe_destroyed() {
            Ok(()) => {
                tracing::info!("closed TCP sockets are counted from the kernel's destroy messages");
                if let net::DestroyMode::Subscribed { rcvbuf } = self.net.destroy_status().mode {
                    if rcvbuf < net::destroy::RCVBUF {
                        self.notice = Some(format!(
                            "closed connections are counted from the kernel's messages through a \
                             buffer of {} KiB, not the {} KiB wanted (raising it needs \
                             CAP_NET_ADMIN, or net.core.rmem_max of at least that): a burst of \
                             closing sockets may overflow it, and what is lost is counted",
                            rcvbuf / 1024,
                            net::destroy::RCVBUF / 1024
                        ));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot join sock_diag's socket destroy groups: network totals come from \
                     samples only and miss connections shorter than a tick"
                );
                return None;
            }
        }
        let fd = self
            .net
            .destroy_fd()
            .and_then(|fd| fd.try_clone_to_owned().ok());
        // SAFETY: an `OwnedFd` is open for as long as it is owned and `as_raw_fd` always returns
        // the same number, which is what `register` requires of its inner value.
        match fd.map(|fd| unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)) {
            Some(Ok(fd)) => Some(fd),
            // Read at each tick instead: messages past the buffer are lost, and counted.
            Some(Err(e)) => {
                tracing::warn!(error = %e, "socket destroy messages are read at each tick only");
                None
            }
            None => None,
        }
    }

    /// Reads what the destroy socket has queued, a bounded amount.
    pub fn read_destroyed(&mut self) -> DestroyRead {
        let more = self.net.drain_destroyed(DESTROY_PER_WAKE) == net::Drained::Budget;
        if self.net.destroy_fd().is_none() {
            DestroyRead::Gone
        } else if self.net.destroy_paused() {
            DestroyRead::Paused
        } else if more {
            DestroyRead::More
        } else {
            DestroyRead::Empty
        }
    }

    /// Whether this tick period's share of destroy messages has been read: the next read waits
    /// for the tick.
    pub fn destroy_paused(&self) -> bool {
        self.net.destroy_paused()
    }

    /// What `status` says about the supervisor itself.
    pub fn supervisor_status(&self) -> SupervisorStatus {
        let d = self.net.destroy_status();
        let rcvbuf = match d.mode {
            net::DestroyMode::Subscribed { rcvbuf } => u64::try_from(rcvbuf).ok(),
            _ => None,
        };
        let (mode, why) = match d.mode {
            net::DestroyMode::Subscribed { .. } => ("events", None),
            net::DestroyMode::Off => ("sampling", Some("not subscribed".to_owned())),
            net::DestroyMode::Unavailable(why) => ("sampling", Some(why)),
        };
        let c = d.closed;
        SupervisorStatus {
            closed_sockets: ClosedSockets {
                mode: mode.to_owned(),
                why,
                events: c.events,
                by_cookie: c.by_cookie,
                by_listener: c.by_listener,
                unattributed: c.unattributed,
                unattributed_sent_bytes: c.unattributed_acked,
                unattributed_received_bytes: c.unattributed_received,
                lost: d.socket.lost,
                malformed: d.socket.malformed,
                rcvbuf_bytes: rcvbuf,
            },
            watched_dirs: self.dir_states.iter().map(WatchedDir::from).collect(),
            host: None,
        }
    }

    /// Starts watching `dirs` (replacing any watcher: a reload).
    pub fn watch(&mut self, dirs: Vec<disk::WatchDir>) {
        self.dirs = None;
        self.dir_states.clear();
        self.dir_alarm.clear();
        self.dirs_seen = 0;
        if dirs.is_empty() {
            return;
        }
        match DirWatcher::start(dirs, disk::dirs::DEFAULT_ENTRY_LIMIT) {
            Ok(w) => self.dirs = Some(w),
            Err(e) => tracing::error!(error = %e, "cannot watch directories"),
        }
    }
}

impl Engine {
    /// One tick of the cross-worker probes.
    pub(super) fn probe_resources(&mut self) {
        let now = Instant::now();
        let res = &mut self.resources;
        res.ticks = res.ticks.wrapping_add(1);
        // Without delay accounting (the kernel's default) every thread's field 42 is 0: walking
        // the threads' stat files would cost a worker as much as its whole memory sample.
        let blkio_due = res.ticks % BLKIO_EVERY == 1 && disk::io::delay_accounting() != Some(false);
        res.probes.retain(|id, p| {
            self.slots
                .get(id)
                .is_some_and(|s| s.shared.pid.get() == Some(p.pid))
        });
        for (id, slot) in &self.slots {
            let sh = &slot.shared;
            let Some(pid) = sh.pid.get() else {
                continue;
            };
            let members = sh.members.borrow();
            if members.is_empty() {
                continue;
            }
            let p = res.probes.entry(*id).or_insert_with(|| Probe {
                pid,
                deleted: DeletedScan::new(disk::deleted::DEFAULT_EVERY),
                growth: GrowthWatch::default(),
                io: IoRates::new(),
                blkio: Vec::new(),
                breaches: HashSet::new(),
            });
            let mut d = sh.disk.get();
            let held = p.deleted.update(members.iter().copied(), now);
            d.deleted_bytes = held.allocated;
            d.deleted_files = held.files;
            let growing = p
                .growth
                .observe(p.deleted.files(), now, self.plan.deleted_growth);
            for g in growing {
                crate::worker::note_finding(sh, Growing::KIND);
                self.output.event(&Event::now(
                    &slot.spec.name,
                    slot.instance,
                    Some(g.file.pid),
                    Kind::Finding {
                        kind: Growing::KIND,
                        detail: g.detail(),
                        numbers: [
                            ("bytes", g.file.allocated),
                            ("bytes_per_s", g.rate as u64),
                            ("limit_per_s", g.limit),
                        ]
                        .into(),
                    },
                ));
            }
            if let Some(last) = sh.last.get() {
                if let Some(r) = p.io.update(last.io_at, last.read_bytes, last.write_bytes) {
                    d.read_bytes_per_s = r.read_per_s;
                    d.write_bytes_per_s = r.write_per_s;
                }
                d.read_bytes = last.read_bytes;
                d.write_bytes = last.write_bytes;
            }
            if blkio_due {
                d.blkio_delay_s = members
                    .iter()
                    .filter_map(|&m| disk::io::blkio_delay(m, &mut p.blkio).ok())
                    .sum();
            }
            sh.disk.set(d);
        }
        self.probe_net();
        self.watch_dirs();
    }

    /// One sock_diag dump for every running worker, then each worker's network policy.
    fn probe_net(&mut self) {
        let res = &mut self.resources;
        let mut ids: Vec<u64> = Vec::with_capacity(self.slots.len());
        let members: Vec<_> = self
            .slots
            .iter()
            .filter(|(_, s)| s.shared.pid.get().is_some())
            .map(|(id, s)| {
                ids.push(*id);
                (*id, s.shared.members.borrow(), s.shared.member_fds.borrow())
            })
            .collect();
        let workers: Vec<(u64, &[i32])> = members.iter().map(|(id, m, _)| (*id, &m[..])).collect();
        // The fd counts the trees' samples read: no second fstat per process.
        let fds: Vec<&[u64]> = members.iter().map(|(_, _, f)| &f[..]).collect();
        let result = res.net.tick_counted(&workers, &fds, &mut res.net_out);
        drop(fds);
        drop(workers);
        drop(members);
        match result {
            Ok(_) => res.net_failing = false,
            Err(e) => {
                if !res.net_failing {
                    tracing::warn!(error = %e, "no socket figures this tick");
                }
                res.net_failing = true;
                return;
            }
        }
        for (id, sample) in ids.iter().zip(res.net_out.iter()) {
            let Some(slot) = self.slots.get(id) else {
                continue;
            };
            let sh = &slot.shared;
            if let (Some(policy), Some(p)) = (&slot.spec.net, res.probes.get_mut(id)) {
                let breaches = net::violations(
                    sample,
                    policy.allow.as_ref(),
                    policy.listen_allow.as_ref(),
                    policy.max_connections,
                );
                let mut act = false;
                for b in breaches {
                    let text = b.to_string();
                    if p.breaches.len() >= 64 || !p.breaches.insert(text.clone()) {
                        continue;
                    }
                    act = true;
                    crate::worker::note_finding(sh, b.finding());
                    self.output.event(&Event::now(
                        &slot.spec.name,
                        slot.instance,
                        sh.pid.get(),
                        Kind::Finding {
                            kind: b.finding(),
                            detail: text,
                            numbers: [("connections", u64::from(sample.connections()))].into(),
                        },
                    ));
                }
                if act {
                    let cmd = match policy.on_violation {
                        OnViolation::Warn => None,
                        OnViolation::Restart => Some(Command::Restart(Reason::Net)),
                        OnViolation::Kill => Some(Command::KillRestart(Reason::Net)),
                    };
                    if let Some(cmd) = cmd {
                        let _ = slot.cmds.send(cmd);
                    }
                }
            }
            sh.net.replace(Some(sample.clone()));
        }
    }

    /// Takes the watched directories' new measurements, if any, and reports each directory
    /// crossing into a `disk` finding once.
    fn watch_dirs(&mut self) {
        let res = &mut self.resources;
        let Some(w) = &res.dirs else { return };
        let generation = w.generation();
        if generation == res.dirs_seen {
            return;
        }
        res.dirs_seen = generation;
        res.dir_states = w.snapshot();
        res.dir_alarm.resize(res.dir_states.len(), false);
        let mut events = Vec::new();
        let mut cleared = Vec::new();
        for (state, alarm) in res.dir_states.iter().zip(res.dir_alarm.iter_mut()) {
            let finding = disk::verdict(&state.dir, state.usage.as_ref(), state.fs.as_ref());
            match (finding, *alarm) {
                (Some(f), false) => {
                    *alarm = true;
                    crate::worker::count_finding(&mut self.own_findings, disk::DiskFinding::KIND);
                    events.push(f.to_event_kind());
                }
                (None, true) => {
                    *alarm = false;
                    cleared.push(state.dir.path.display().to_string());
                }
                _ => {}
            }
        }
        // Said after every directory of this round is judged, so that `remaining` is right.
        let remaining = res.dir_alarm.iter().filter(|&&a| a).count();
        let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        events.extend(cleared.into_iter().map(|path| Kind::Cleared {
            kind: disk::DiskFinding::KIND,
            detail: format!("{path} is back under its limits"),
            remaining,
        }));
        for kind in events {
            self.output.event(&Event::now("supervise", 0, None, kind));
        }
    }
}
