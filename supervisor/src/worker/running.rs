//! One running incarnation of a worker: its tree, its samples, its channel and segment, and how
//! it is stopped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::time::sleep_until;

use child_sdk::proto::{self, Limits, SupervisorMsg};
use child_sdk::segment;

use super::verdict::refresh_report;
use super::watch::{Ipc, Watch};
use super::{millis, Ctx};
use crate::channel::Packet;
use crate::crosscheck::CrossCheck;
use crate::events::{Kind, Reason};
use crate::lifecycle::{Input, Whom};
use crate::logs::{Source, Stream};
use crate::orphans;
use crate::plan::{Measure, ReadyHow};
use crate::policy::{MemoryWatch, PressureWatch};
use crate::probe::tree::{Reach, Tree};
use crate::reaper::Exit;
use crate::session::{Action, Session, Welcome};
use crate::signals::Sig;

/// A root that exits 0 within this long after its start while processes of its tree run on has
/// daemonized: a real worker that finishes its job that fast would leave nothing running.
pub(super) const DAEMONIZED_WITHIN: Duration = Duration::from_secs(1);

/// One running process of a worker instance and everything watched about it.
pub(super) struct Incarnation {
    w: Watch,
    /// The root's exit, until it is reaped.
    exit_rx: Option<oneshot::Receiver<Exit>>,
    started: Instant,
    /// When to sample next.
    next: tokio::time::Instant,
    /// Copy the worker's stdout and stderr to the supervisor's outputs until EOF (none for a
    /// stream it writes to supervise's terminal itself).
    forwarders: [Option<tokio::task::JoinHandle<()>>; 2],
}

impl Incarnation {
    pub fn pid(&self) -> i32 {
        self.w.pid
    }

    /// The root process has not been reaped yet.
    pub fn root_unreaped(&self) -> bool {
        self.exit_rx.is_some()
    }
}

/// The root's exit, once the reaper has it; never, with no process or once reaped.
pub(super) async fn exit(inc: Option<&mut oneshot::Receiver<Exit>>) -> Exit {
    match inc {
        // The reaper dropped our sender: cannot happen while it runs; taken as killed.
        Some(rx) => rx.await.unwrap_or(Exit::Signal(libc::SIGKILL)),
        None => std::future::pending().await,
    }
}

/// The parts of a running incarnation that [`Ctx::next_input`] waits on side by side: the
/// root's exit, and the samples and channel.
pub(super) fn parts(
    inc: &mut Option<Incarnation>,
) -> (
    Option<&mut oneshot::Receiver<Exit>>,
    Option<(&mut Watch, &mut tokio::time::Instant)>,
) {
    match inc {
        Some(i) => (i.exit_rx.as_mut(), Some((&mut i.w, &mut i.next))),
        None => (None, None),
    }
}

impl Ctx {
    /// The limits a worker that speaks the protocol is told.
    fn limits(&self) -> Limits {
        Limits {
            memory_max: self.spec.memory.map(|m| m.max),
            memory_warn_at: self
                .spec
                .memory
                .and_then(|m| m.warn_at.map(|w| (m.max as f64 * w) as u64)),
            measure: match self.spec.memory.map_or(Measure::Rss, |m| m.measure) {
                Measure::Rss => proto::Measure::Rss,
                Measure::Pss => proto::Measure::Pss,
            },
        }
    }

    /// The running incarnation follows a spec a reload changed in place (`old` was the spec):
    /// the next sample is judged by the new memory limit and leak rule (their counts start
    /// over), the checks take on their new timings, and a worker that speaks the protocol is
    /// sent its new `Limits`.
    pub(super) fn updated(&self, i: &mut Incarnation, old: &crate::plan::ProgramSpec) {
        let w = &mut i.w;
        if old.leak != self.spec.leak {
            w.leak = None;
        }
        if old.memory != self.spec.memory {
            w.memory = MemoryWatch::default();
            w.pressure = PressureWatch::default();
            if w.session.speaks() {
                self.send(w, &SupervisorMsg::Limits(self.limits()));
            }
        }
        if old.ready != self.spec.ready || old.health != self.spec.health {
            w.checks
                .update(self.spec.ready.clone(), self.spec.health.clone());
        }
    }

    /// Spawns a new incarnation: channel and segment, fork and exec, output forwarders.
    pub(super) fn spawn(&self, src: &Arc<Source>) -> Result<Incarnation, String> {
        self.shared.last_pid.set(None);
        // s6's notification fd: a pipe whose write end the worker finds at that number.
        let ready_fd = match self.spec.ready.as_ref().map(|r| &r.how) {
            Some(&ReadyHow::Fd(at)) => {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| format!("cannot make the readiness pipe: {e}"))?;
                Some((read, crate::spawn::ReadyPipe { write, at }))
            }
            _ => None,
        };
        // A notification fd at 3 or 4 takes the place of the channel or the segment.
        let takes_ipc_fds = ready_fd.as_ref().is_some_and(|(_, p)| {
            p.at == crate::spawn::CHANNEL_FD || p.at == crate::spawn::SEGMENT_FD
        });
        let (ipc, inherit) = if takes_ipc_fds {
            (None, None)
        } else {
            Ipc::prepare().unzip()
        };
        let (ready_read, ready_pipe) = ready_fd.unzip();
        let spawned = crate::spawn::spawn(
            &self.spec,
            self.instance,
            crate::spawn::With {
                inherit: inherit.as_ref(),
                ready: ready_pipe.as_ref(),
                notify: self.notify.as_deref(),
                pressure: self.pressure_watch.as_ref(),
                stdio: Some(self.stdio),
            },
        );
        // The worker's ends now live in the worker; ours must not keep them open.
        drop(inherit);
        drop(ready_pipe);
        let child = spawned.map_err(|e| e.to_string())?;
        let pid = child.pid;
        let exit_rx = self.reaper.watch(pid);
        let started = Instant::now();
        self.shared.pid.set(Some(pid));
        self.shared.last_pid.set(Some(pid));
        self.shared.started.set(Some(started));
        self.shared.argv.replace(child.argv.clone());
        self.shared.ready.set(false);
        self.shared.speaks.set(false);
        self.shared.report.replace(None);
        self.shared.notified.replace(super::Notified::default());
        self.shared.disk.set(crate::disk::WorkerDisk::default());
        self.shared.net.replace(None);
        self.roots.borrow_mut().insert(pid);
        self.event(
            Some(pid),
            Kind::Started {
                command: child.argv.clone(),
            },
        );
        let forward = |stream, fd: Option<std::os::fd::OwnedFd>| {
            fd.map(|fd| {
                tokio::task::spawn_local(self.output.clone().forward(
                    src.clone(),
                    stream,
                    fd,
                    self.kept.clone(),
                ))
            })
        };
        let forwarders = [
            forward(Stream::Stdout, child.stdout),
            forward(Stream::Stderr, child.stderr),
        ];
        let welcome = Welcome {
            name: self.spec.name.clone(),
            instance: self.instance,
            heartbeat_timeout: self.spec.heartbeat.map(|h| h.timeout),
            limits: self.limits(),
        };
        Ok(Incarnation {
            w: Watch {
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
                waiting: None,
                too_soon: false,
                first_bytes: None,
                recycling: None,
                after_member: false,
                trend: None,
                host_pressure_seen: self.host_pressure.get(),
                recycle_at: self.spec.handling.schedule.every.map(|every| {
                    crate::policy::recycle_at(
                        started,
                        every,
                        self.spec.handling.schedule.jitter,
                        super::rand01(),
                    )
                }),
                recycle_requests: self.spec.handling.schedule.requests.map(|n| {
                    crate::policy::recycle_after_requests(
                        n,
                        self.spec.handling.schedule.requests_jitter,
                        super::rand01(),
                    )
                }),
                snap: segment::Snapshot::default(),
                checks: super::ready::Checks::new(
                    self.spec.ready.clone(),
                    self.spec.health.clone(),
                    ready_read,
                    crate::checks::Env {
                        reaper: self.reaper.clone(),
                        roots: self.roots.clone(),
                        trees: self.check_trees.clone(),
                        lifeline: self.lifeline.clone(),
                        sample_every: self.sample_every,
                    },
                    self.shared.clone(),
                ),
            },
            exit_rx: Some(exit_rx),
            started,
            next: tokio::time::Instant::now(),
            forwarders,
        })
    }

    /// The root was reaped: its pid is no longer ours to signal. Its exit is reported now,
    /// with its last self-report, even if what it left behind still has to be stopped.
    pub(super) fn reaped(&self, inc: &mut Option<Incarnation>, exit: Exit) {
        let Some(i) = inc else { return };
        i.exit_rx = None;
        i.w.tree.root_reaped();
        self.shared.pid.set(None);
        self.shared.counters.exited(exit);
        self.roots.borrow_mut().remove(&i.w.pid);
        let w = &mut i.w;
        // The last word from the segment, else the last good read.
        if let Some(ipc) = w.ipc.as_ref().filter(|_| w.session.speaks()) {
            refresh_report(ipc, &mut w.snap, &mut self.shared.report.borrow_mut());
        }
        let (code, signal) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
        };
        let uptime = i.started.elapsed();
        self.event(
            Some(w.pid),
            Kind::Exited {
                code,
                signal,
                uptime_s: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
                report: self.shared.report.borrow().clone(),
            },
        );
        if code == Some(0) && uptime < DAEMONIZED_WITHIN {
            self.daemonized(w);
        }
    }

    /// A root that exited 0 at once: if it left processes running, it forked into the background
    /// (a daemon started without its foreground flag), and it is said so, on a fresh look at the
    /// tree (the orphans it left are adopted first). Otherwise its leftovers would be stopped and
    /// the program end, with nothing to say why.
    fn daemonized(&self, w: &mut Watch) {
        self.adopt_orphans(&mut w.tree);
        w.tree.sample(false);
        let pids: Vec<i32> = w.tree.pids().filter(|&p| p != w.pid).collect();
        if !pids.is_empty() {
            self.event(
                Some(w.pid),
                Kind::Daemonized {
                    processes: pids.len(),
                    pids,
                },
            );
        }
    }

    /// While running: the next sample's verdict (with `sample`), or what the channel brings
    /// (read during a stop too, so a worker saying goodbye never blocks on a full queue). `None`
    /// when there is nothing for the lifecycle (a sample that found nothing wrong, a packet
    /// handled).
    pub(super) async fn watch(
        &self,
        parts: Option<(&mut Watch, &mut tokio::time::Instant)>,
        sample: bool,
        stopping: Option<bool>,
    ) -> Option<Input> {
        let Some((w, next)) = parts else {
            return std::future::pending().await;
        };
        let listening = w.ipc.is_some();
        tokio::select! {
            // A tree being stopped is still held to its ceiling: past it, a drain ends (the stop
            // signal goes out), and a stop under way turns into SIGKILL.
            () = sleep_until(*next), if stopping.is_some() => {
                *next = tokio::time::Instant::now() + super::recycle::DRAIN_SAMPLE.min(self.sample_every);
                let past = self.ceiling_tick(w);
                match stopping {
                    Some(true) => past.map(Input::Restart),
                    _ => past.map(Input::KillRestart),
                }
            }
            () = sleep_until(*next), if sample => match self.tick(w) {
                Ok(delay) if delay < self.sample_every => {
                    *next = tokio::time::Instant::now() + delay;
                    None
                }
                // A full interval ends on the grid every worker shares (see `on_grid`).
                Ok(delay) => {
                    *next = super::on_grid(delay);
                    None
                }
                Err(reason) => Some(Input::Restart(reason)),
            },
            packet = recv(&mut w.ipc), if listening => {
                let actions = match packet {
                    Ok(p) => {
                        let tree = &w.tree;
                        w.session.on_packet(&p, |pid| tree.contains(pid), Instant::now())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pid = w.pid, "channel failed");
                        vec![Action::Close]
                    }
                };
                let spoke = self.shared.speaks.get();
                self.act(w, actions);
                let speaks = self.shared.speaks.get();
                (speaks != spoke).then_some(Input::Speaks(speaks))
            }
            verdict = w.checks.next(), if sample => self.on_verdict(w, verdict),
            // Neither sampling nor a channel to read: nothing will come from here.
            else => std::future::pending().await,
        }
    }

    /// What a readiness or health verdict means for the worker.
    fn on_verdict(&self, w: &mut Watch, verdict: super::ready::Verdict) -> Option<Input> {
        use super::ready::Verdict;
        match verdict {
            Verdict::Ready(by) => {
                self.shared.ready.set(true);
                self.event(Some(w.pid), Kind::Ready { by });
                None
            }
            Verdict::NotReady(waited) => {
                self.event(
                    Some(w.pid),
                    Kind::Finding {
                        kind: "not_ready",
                        detail: "not ready within its start timeout".into(),
                        numbers: [("start_timeout_ms", millis(waited))].into(),
                    },
                );
                Some(Input::Restart(Reason::NotReady))
            }
            Verdict::Unhealthy(failures, error) => {
                self.event(
                    Some(w.pid),
                    Kind::Finding {
                        kind: "unhealthy",
                        detail: format!("health check failed: {error}"),
                        numbers: [("failures", u64::from(failures))].into(),
                    },
                );
                Some(Input::Restart(Reason::Unhealthy))
            }
        }
    }

    /// Sends a stop signal as the lifecycle asked, on a fresh look at the tree.
    pub(super) fn stop_signal(&self, i: &mut Incarnation, sig: Sig, whom: Whom) {
        self.adopt_orphans(&mut i.w.tree);
        i.w.tree.sample(false);
        let reach = match whom {
            Whom::Tree => Reach::All,
            Whom::Root => Reach::Root,
            Whom::Leftovers => Reach::Leftovers,
        };
        i.w.tree.stop_signal(sig.raw(), reach);
    }

    /// SIGKILLs the tree, on a fresh look; returns how many processes it held.
    pub(super) fn kill(&self, i: &mut Incarnation) -> usize {
        self.adopt_orphans(&mut i.w.tree);
        i.w.tree.sample(false);
        let n = i.w.tree.pids().count();
        i.w.tree.kill();
        n
    }

    /// One look at a tree being stopped: orphans it left are adopted, members found since the
    /// stop signal went out get it, and while killing everyone gets SIGKILL again. True once the
    /// root is reaped and nothing of the tree is left.
    pub(super) fn poll_stop(&self, i: &mut Incarnation) -> bool {
        self.adopt_orphans(&mut i.w.tree);
        let left = i.w.tree.survivors();
        i.w.tree.deliver_late();
        !i.root_unreaped() && left == 0
    }

    /// The incarnation is over (its tree is gone, or given up on): carry its totals, drain its
    /// output, forget it.
    pub(super) async fn ended(&self, inc: &mut Option<Incarnation>) {
        let Some(i) = inc.take() else { return };
        self.shared.too_soon.set(i.w.too_soon);
        let left = i.w.tree.pids().filter(|&p| p != i.w.pid).count();
        if left > 0 {
            tracing::warn!(
                program = %self.spec.name,
                instance = self.instance,
                processes = left,
                "processes of the tree outlived SIGKILL (stuck in the kernel?); no longer waited for"
            );
        }
        self.shared.counters.carry(&self.shared.current_totals());
        self.shared.started.set(None);
        self.shared.members.borrow_mut().clear();
        self.shared.member_fds.borrow_mut().clear();
        self.shared.member_status.borrow_mut().clear();
        // Nothing the worker wrote before it died is lost: let the pipes drain to EOF (every
        // writer is dead now), but never wait forever on a pipe some stranger still holds.
        let [out, err] = i.forwarders;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for f in [out, err].into_iter().flatten() {
                let _ = f.await;
            }
        })
        .await;
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
    /// The tree of a new worker, reporting every member to the lifeline (and, once the tree is
    /// dropped, that the groups and sessions its members led are no longer the worker's).
    fn new_tree(&self, pid: i32) -> Tree {
        crate::lifeline::watched_tree(pid, self.lifeline.clone())
    }

    /// Carries out what the session decided about a packet.
    fn act(&self, w: &mut Watch, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Reply(msg) => self.send(w, &msg),
                Action::Event(kind) => {
                    // With a readiness rule, the rule alone decides.
                    if matches!(kind, Kind::Ready { .. }) && self.spec.ready.is_none() {
                        self.shared.ready.set(true);
                    }
                    self.event(Some(w.pid), kind);
                }
                Action::Close => self.close(w),
            }
        }
        if w.session.closed() {
            self.close(w);
        }
        self.shared.speaks.set(w.session.speaks());
    }

    /// The worker closed its end (or broke the protocol): /proc alone from now on. The segment's
    /// mapping goes with the channel, after a last look at what a worker that spoke the protocol
    /// published there (a worker closes its channel as it exits).
    fn close(&self, w: &mut Watch) {
        if let Some(ipc) = w.ipc.take() {
            if self.shared.speaks.get() {
                refresh_report(&ipc, &mut w.snap, &mut self.shared.report.borrow_mut());
            }
        }
    }

    /// Sends without waiting: a worker that does not read its channel loses the message.
    pub(super) fn send(&self, w: &Watch, msg: &SupervisorMsg) {
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
    pub(super) fn ask_to_stop(&self, i: &Incarnation) -> bool {
        let w = &i.w;
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

/// The next packet of the channel, if there is one.
async fn recv(ipc: &mut Option<Ipc>) -> std::io::Result<Packet<'_>> {
    match ipc {
        Some(ipc) => ipc.channel.recv().await,
        None => std::future::pending().await,
    }
}
