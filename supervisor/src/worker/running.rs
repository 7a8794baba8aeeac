//! One running incarnation of a worker: its tree, its samples, its channel and segment, and how
//! it is stopped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use child_sdk::proto::{self, Limits, SupervisorMsg};
use child_sdk::segment;

use super::{Command, Ctx, Ending};
use crate::channel::{self, Channel, Packet};
use crate::crosscheck::{Claims, CrossCheck};
use crate::events::{Kind, Reason, Report};
use crate::leak::{LeakVerdict, LeakWatch};
use crate::logs::{Source, Stream};
use crate::orphans;
use crate::plan::{Measure, OnLeak};
use crate::policy::{self, Heartbeat, MemoryVerdict, MemoryWatch, PressureWatch};
use crate::probe::tree::{Tree, TreeSample};
use crate::reaper::Exit;
use crate::session::{Action, Session, Welcome};
use crate::spawn::Inherit;
use crate::status::Phase;

/// What a worker inherits to talk to the supervisor, and our ends of it.
pub(super) struct Ipc {
    pub channel: Channel,
    pub segment: segment::Reader,
}

impl Ipc {
    /// Creates a channel pair and a segment: ours, and the fds the worker inherits. A failure here
    /// (no memfd, fd exhaustion) costs the worker its channel, not its supervision.
    pub fn prepare() -> Option<(Self, Inherit)> {
        let made = (|| -> std::io::Result<_> {
            let (ours, theirs) = channel::pair()?;
            let (segment_fd, reader) = segment::create()?;
            Ok((
                Self {
                    channel: Channel::new(ours)?,
                    segment: reader,
                },
                Inherit {
                    channel: theirs,
                    segment: segment_fd,
                },
            ))
        })();
        made.map_err(|e| tracing::warn!(error = %e, "no channel or segment for this worker"))
            .ok()
    }
}

/// The state of one running incarnation between events.
struct Watch {
    pid: i32,
    tree: Tree,
    memory: MemoryWatch,
    pressure: PressureWatch,
    /// Recent (time, bytes) samples: the growth rate for adaptive sampling is measured against
    /// the oldest one, so a worker that grows in steps is not mistaken for flat between steps.
    recent: VecDeque<(Instant, u64)>,
    session: Session,
    ipc: Option<Ipc>,
    /// A future heartbeat was reported once already.
    implausible_heartbeat: bool,
    cross: CrossCheck,
    leak: Option<LeakWatch>,
    /// The segment's last read, kept so each tick's read reuses its allocations.
    snap: segment::Snapshot,
}

impl Ctx {
    /// Watches one running process until it ends.
    pub(super) async fn supervise(
        &self,
        child: crate::spawn::Spawned,
        ipc: Option<Ipc>,
        src: &Arc<Source>,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ending {
        let pid = child.pid;
        let mut exit_rx = self.reaper.watch(pid);
        let started = Instant::now();
        self.shared.pid.set(Some(pid));
        self.shared.phase.set(Phase::Running);
        self.shared.started.set(Some(started));
        self.shared.ready.set(false);
        self.shared.speaks.set(false);
        self.shared.report.replace(None);
        self.shared.disk.set(crate::disk::WorkerDisk::default());
        self.shared.net.replace(None);
        self.roots.borrow_mut().insert(pid);
        self.event(
            Some(pid),
            Kind::Started {
                command: self.spec.command.clone(),
            },
        );
        let forwarders = [
            tokio::task::spawn_local(self.output.clone().forward(
                src.clone(),
                Stream::Stdout,
                child.stdout,
            )),
            tokio::task::spawn_local(self.output.clone().forward(
                src.clone(),
                Stream::Stderr,
                child.stderr,
            )),
        ];
        let welcome = Welcome {
            name: self.spec.name.clone(),
            instance: self.instance,
            heartbeat_timeout: self.spec.heartbeat_timeout,
            limits: Limits {
                memory_max: self.spec.memory.map(|m| m.max),
                memory_warn_at: self
                    .spec
                    .memory
                    .and_then(|m| m.warn_at.map(|w| (m.max as f64 * w) as u64)),
                measure: match self.spec.memory.map_or(Measure::Rss, |m| m.measure) {
                    Measure::Rss => proto::Measure::Rss,
                    Measure::Pss => proto::Measure::Pss,
                },
            },
        };
        let mut w = Watch {
            pid,
            tree: self.new_tree(pid),
            memory: MemoryWatch::default(),
            pressure: PressureWatch::default(),
            recent: VecDeque::new(),
            session: Session::new(welcome, Instant::now()),
            ipc,
            implausible_heartbeat: false,
            cross: CrossCheck::default(),
            leak: None,
            snap: segment::Snapshot::default(),
        };
        let mut next = tokio::time::Instant::now();

        let (exit, stop): (Option<Exit>, Option<(Option<Reason>, bool)>) = loop {
            let listening = w.ipc.is_some();
            tokio::select! {
                exit = &mut exit_rx => break (exit.ok(), None),
                () = sleep_until(next) => {
                    match self.tick(&mut w) {
                        Ok(delay) if delay < self.sample_every => next = tokio::time::Instant::now() + delay,
                        // A full interval ends on the grid every worker shares (see `on_grid`).
                        Ok(delay) => next = super::on_grid(delay),
                        Err(reason) => break (None, Some((Some(reason), false))),
                    }
                }
                packet = recv(&mut w.ipc), if listening => {
                    let actions = match packet {
                        Ok(p) => {
                            let tree = &w.tree;
                            w.session.on_packet(&p, |pid| tree.contains(pid), Instant::now())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, pid, "channel failed");
                            vec![Action::Close]
                        }
                    };
                    self.act(&mut w, actions);
                }
                cmd = cmds.recv() => match cmd {
                    Some(Command::Restart(reason)) => break (None, Some((Some(reason), false))),
                    Some(Command::KillRestart(reason)) => break (None, Some((Some(reason), true))),
                    Some(Command::Stop) | None => break (None, Some((None, false))),
                    Some(Command::Kill) => break (None, Some((None, true))),
                },
            }
        };

        self.shared.phase.set(Phase::Stopping);
        let (exit, reason, for_good) = match (exit, stop) {
            (Some(exit), _) => {
                // Exited on its own: what it left behind goes too, before anything new starts.
                self.stop_tree(&mut w.tree, &mut exit_rx, Some(exit), false, false, cmds)
                    .await;
                (exit, None, false)
            }
            (None, Some((reason, now))) => {
                // A worker that speaks the protocol is asked to stop with `Shutdown` instead of
                // the stop signal; it has the grace period to honour it.
                let asked = !now && self.ask_to_stop(&w);
                let exit = self
                    .stop_tree(&mut w.tree, &mut exit_rx, None, now, asked, cmds)
                    .await;
                (exit, reason, reason.is_none())
            }
            // The reaper dropped our sender: cannot happen while it runs; treat as killed.
            (None, None) => (Exit::Signal(libc::SIGKILL), None, false),
        };
        self.shared.pid.set(None);
        self.shared.started.set(None);
        self.shared.members.borrow_mut().clear();
        self.roots.borrow_mut().remove(&pid);
        // Nothing the worker wrote before it died is lost: let the pipes drain to EOF (every
        // writer is dead now), but never wait forever on a pipe some stranger still holds.
        let [out, err] = forwarders;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = out.await;
            let _ = err.await;
        })
        .await;
        let (code, signal) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
        };
        self.event(
            Some(pid),
            Kind::Exited {
                code,
                signal,
                uptime_s: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                report: {
                    // The last word from the segment, else the last good read.
                    let mut report = self.shared.report.borrow_mut();
                    if let Some(ipc) = w.ipc.as_ref().filter(|_| w.session.speaks()) {
                        refresh_report(ipc, &mut w.snap, &mut report);
                    }
                    report.clone()
                },
            },
        );
        match (reason, for_good) {
            (_, true) => Ending::Stopped(exit),
            (Some(r), _) => Ending::Restart(r, exit),
            (None, _) => Ending::Exited(exit),
        }
    }

    /// Stops the whole tree: the stop signal to every member, then SIGKILL to whatever is left
    /// after the grace period (at once with `now`). With `asked` (the root got `Shutdown`), no
    /// signal goes out until the root has exited: then the stop signal reaches what it left.
    /// Returns the root's exit.
    async fn stop_tree(
        &self,
        tree: &mut Tree,
        exit_rx: &mut oneshot::Receiver<Exit>,
        mut exit: Option<Exit>,
        mut now: bool,
        asked: bool,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Exit {
        let root = tree.root();
        let mut sig = self.spec.stop.signal as i32;
        let deadline = tokio::time::Instant::now() + self.spec.stop.grace;
        let mut signalled = asked;
        let mut asked = asked;
        loop {
            // Orphans reparented to us since the last look belong to this tree too: a grandchild
            // that double-forked a moment ago must not outlive the stop.
            self.adopt_orphans(tree);
            if exit.is_some() && tree.survivors() == 0 {
                return exit.unwrap_or(Exit::Code(0));
            }
            if asked && exit.is_some() {
                // The root honoured `Shutdown`; what it left behind gets the stop signal.
                asked = false;
                signalled = false;
            }
            if now && sig != libc::SIGKILL {
                sig = libc::SIGKILL;
                signalled = false;
                tree.sample(false);
                self.event(
                    exit.is_none().then_some(root),
                    Kind::Killed {
                        processes: tree.pids().count(),
                    },
                );
            }
            if !signalled {
                tree.signal(sig, exit.is_none());
                signalled = true;
            } else if sig == libc::SIGKILL {
                // New forks or adoptions since the last round: SIGKILL is idempotent.
                tree.signal(sig, false);
            } else if !asked {
                // Late arrivals get the stop signal too; while the root is honouring `Shutdown`,
                // its tree is left alone.
                tree.signal_new(sig);
            }
            tokio::select! {
                e = &mut *exit_rx, if exit.is_none() => { exit = Some(e.unwrap_or(Exit::Signal(libc::SIGKILL))); }
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                () = sleep_until(deadline), if !now => now = true,
                cmd = cmds.recv() => if matches!(cmd, Some(Command::Kill) | None) { now = true; },
            }
        }
    }

    /// Adds to the tree the orphans reparented to the supervisor that belong to this worker.
    fn adopt_orphans(&self, tree: &mut Tree) {
        for pid in self.shared.adopt.borrow_mut().drain(..) {
            tree.adopt(pid);
        }
        let owner = orphans::Owner {
            root: Some(tree.root()),
            name: &self.spec.name,
            instance: self.instance,
        };
        for pid in orphans::claim(&owner, &self.roots) {
            tree.adopt(pid);
        }
    }
    /// The tree of a new worker, reporting every member to the lifeline.
    fn new_tree(&self, pid: i32) -> Tree {
        let mut tree = Tree::new(pid);
        if let Some(lifeline) = self.lifeline.clone() {
            tree.on_join(move |p, start| lifeline.watch(p, start));
        }
        tree
    }

    /// One sample: the tree from /proc, the segment, and the policies over both. `Ok(delay)` until
    /// the next sample, or the reason to restart now.
    fn tick(&self, w: &mut Watch) -> Result<Duration, Reason> {
        let pid = w.pid;
        for p in self.shared.adopt.borrow_mut().drain(..) {
            w.tree.adopt(p);
        }
        let s = w
            .tree
            .sample(self.spec.memory.is_some_and(|m| m.measure == Measure::Pss));
        self.shared.last.set(Some(s));
        {
            let mut members = self.shared.members.borrow_mut();
            members.clear();
            members.extend(w.tree.pids());
        }
        let bytes = measured(&s);
        if let Some(spec) = &self.spec.memory {
            match w.memory.observe(spec, bytes) {
                MemoryVerdict::Ok => {}
                MemoryVerdict::Over { count } | MemoryVerdict::Restart { count } => {
                    self.event(
                        Some(pid),
                        Kind::MemoryOver {
                            bytes,
                            limit: spec.max,
                            measure: spec.measure.as_str(),
                            count,
                            of: spec.count,
                        },
                    );
                    if count >= spec.count {
                        return Err(Reason::Memory);
                    }
                }
            }
            if w.pressure.observe(spec, bytes) && w.session.speaks() {
                self.event(
                    Some(pid),
                    Kind::MemoryPressure {
                        bytes,
                        limit: spec.max,
                    },
                );
                let msg = SupervisorMsg::MemoryPressure {
                    bytes,
                    limit: spec.max,
                };
                self.send(w, &msg);
            }
        }
        if let Some(policy) = &self.spec.leak {
            let watch = w.leak.get_or_insert_with(|| LeakWatch::new(policy.spec));
            if let LeakVerdict::Leak {
                slope_bytes_per_s,
                growth_over_window,
                samples,
            } = watch.observe(s.at, bytes)
            {
                self.event(
                    Some(pid),
                    Kind::Finding {
                        kind: "leak",
                        detail: "the tree's memory grows steadily at or above the leak rate".into(),
                        numbers: [
                            ("slope_bytes_per_s", slope_bytes_per_s.max(0.0) as u64),
                            ("growth_over_window_bytes", growth_over_window),
                            ("window_ms", millis(policy.spec.within)),
                            ("samples", samples as u64),
                        ]
                        .into(),
                    },
                );
                match policy.on_leak {
                    OnLeak::Restart => return Err(Reason::Leak),
                    // Warned: judge afresh from here, so the next warning needs a new window.
                    OnLeak::Warn => w.leak = None,
                }
            }
        }
        let mut claims = Claims {
            heap: None,
            ready: w.session.ready,
        };
        if let Some(ipc) = &w.ipc {
            if w.session.speaks() {
                let mut report = self.shared.report.borrow_mut();
                if let Some(heap_reported) = refresh_report(ipc, &mut w.snap, &mut report) {
                    claims.heap = heap_reported
                        .then(|| report.as_ref().map(|r| r.heap_bytes))
                        .flatten();
                }
            }
            let stamp = ipc.segment.heartbeat_ns();
            match policy::heartbeat(monotonic_ns(), stamp, self.spec.heartbeat_timeout) {
                Heartbeat::Unwatched | Heartbeat::Fresh { .. } => {}
                Heartbeat::Stale { age } => {
                    let timeout = self.spec.heartbeat_timeout.unwrap_or_default();
                    self.event(
                        Some(pid),
                        Kind::Finding {
                            kind: "hung",
                            detail: "the heartbeat stopped while the process is alive".into(),
                            numbers: [
                                ("heartbeat_age_ms", millis(age)),
                                ("timeout_ms", millis(timeout)),
                            ]
                            .into(),
                        },
                    );
                    return Err(Reason::Hung);
                }
                Heartbeat::Future { ahead } => {
                    if !w.implausible_heartbeat {
                        w.implausible_heartbeat = true;
                        self.event(
                            Some(pid),
                            Kind::Finding {
                                kind: "implausible_report",
                                detail: "heartbeat stamp ahead of the clock".into(),
                                numbers: [("ahead_ms", millis(ahead))].into(),
                            },
                        );
                    }
                }
            }
        }
        for f in w.cross.observe(&s, claims) {
            self.event(
                Some(pid),
                Kind::Finding {
                    kind: f.kind,
                    detail: f.detail,
                    numbers: f.numbers,
                },
            );
        }
        while w
            .recent
            .front()
            .is_some_and(|&(t, _)| s.at.duration_since(t) > 2 * self.sample_every)
        {
            w.recent.pop_front();
        }
        let limit = self.spec.memory.map(|m| m.max);
        let delay = policy::next_sample(
            self.sample_every,
            limit,
            w.recent.front().copied(),
            (s.at, bytes),
        );
        w.recent.push_back((s.at, bytes));
        Ok(delay)
    }

    /// Carries out what the session decided about a packet.
    fn act(&self, w: &mut Watch, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Reply(msg) => self.send(w, &msg),
                Action::Event(kind) => {
                    if kind == Kind::Ready {
                        self.shared.ready.set(true);
                    }
                    self.event(Some(w.pid), kind);
                }
                Action::Close => w.ipc = None,
            }
        }
        self.shared.speaks.set(w.session.speaks());
        if w.session.closed() {
            // The worker closed its end (or broke the protocol): /proc alone from now on. The
            // segment's mapping goes with it; nothing more is read from it.
            w.ipc = None;
        }
    }

    /// Sends without waiting: a worker that does not read its channel loses the message.
    fn send(&self, w: &Watch, msg: &SupervisorMsg) {
        let Some(ipc) = &w.ipc else { return };
        match proto::encode_vec(msg) {
            Ok(bytes) => {
                if let Err(e) = ipc.channel.try_send(&bytes) {
                    tracing::debug!(error = %e, pid = w.pid, "message to worker dropped");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a supervisor message"),
        }
    }

    /// Sends `Shutdown` to a worker that speaks the protocol; true if it went out.
    fn ask_to_stop(&self, w: &Watch) -> bool {
        let Some(ipc) = &w.ipc else { return false };
        if !w.session.speaks() {
            return false;
        }
        let msg = SupervisorMsg::Shutdown {
            deadline_ms: millis(self.spec.stop.grace),
        };
        proto::encode_vec(&msg).is_ok_and(|b| ipc.channel.try_send(&b).is_ok())
    }
}

/// Reads the segment into `snap` (reused: no allocation per tick) and brings `report` up to date
/// from it, rebuilding its maps only when the set of metric names changed. Returns whether the
/// heap figures are really published (the worker installed the SDK's counting allocator), or
/// `None` if the segment does not validate (a scribbling worker), leaving `report` as it was.
fn refresh_report(
    ipc: &Ipc,
    snap: &mut segment::Snapshot,
    report: &mut Option<Report>,
) -> Option<bool> {
    ipc.segment.read_into(snap).ok()?;
    let r = report.get_or_insert_with(|| Report {
        heap_bytes: 0,
        heap_peak: 0,
        allocations: 0,
        requests: 0,
        errors: 0,
        in_flight: 0,
        metrics: std::collections::BTreeMap::new(),
        gauges: std::collections::BTreeSet::new(),
        heartbeat_age_ms: None,
    });
    r.heap_bytes = snap.heap_bytes;
    r.heap_peak = snap.heap_peak;
    r.allocations = snap.allocations;
    r.requests = snap.requests;
    r.errors = snap.errors;
    r.in_flight = snap.in_flight;
    r.heartbeat_age_ms = (snap.heartbeat_ns != 0)
        .then(|| monotonic_ns().saturating_sub(snap.heartbeat_ns) / 1_000_000);
    let same_names = r.metrics.len() == snap.metrics.len()
        && snap.metrics.iter().all(|m| r.metrics.contains_key(&m.name));
    if same_names {
        for m in &snap.metrics {
            if let Some(v) = r.metrics.get_mut(&m.name) {
                *v = m.value;
            }
        }
    } else {
        r.metrics = snap
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value))
            .collect();
    }
    if !same_names {
        r.gauges = snap
            .metrics
            .iter()
            .filter(|m| m.kind == segment::MetricKind::Gauge)
            .map(|m| m.name.clone())
            .collect();
    }
    Some(snap.heap_reported())
}

/// The next packet of the channel, if there is one.
async fn recv(ipc: &mut Option<Ipc>) -> std::io::Result<Packet<'_>> {
    match ipc {
        Some(ipc) => ipc.channel.recv().await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the SDK stamps heartbeats with.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The figure compared with the limit.
fn measured(s: &TreeSample) -> u64 {
    s.pss.unwrap_or(s.rss)
}
