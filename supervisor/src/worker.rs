//! One task per worker instance: spawn, watch, stop, decide, back off, spawn again.
//!
//! `Starting -> Running -> Stopping -> Exited -> Backoff -> Starting`, or `Fatal` once the
//! program's restart intensity is exceeded, or `Stopped` for good.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use crate::events::{Event, Kind, Reason};
use crate::logs::{Output, Source, Stream};
use crate::orphans;
use crate::plan::{Measure, ProgramSpec};
use crate::policy::{self, AfterExit, History, MemoryVerdict, MemoryWatch};
use crate::probe::tree::{Tree, TreeSample};
use crate::reaper::{Exit, Reaper};
use crate::spawn::spawn;

/// What the engine can ask of a worker task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop gracefully (stop signal, grace, SIGKILL) and do not start again.
    Stop,
    /// Stop at once with SIGKILL and do not start again (a second TERM/INT to the supervisor).
    Kill,
    /// Restart now, gracefully.
    Restart(Reason),
}

/// How a worker task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// The last exit of its process, if it ever ran.
    pub last_exit: Option<Exit>,
    /// The program exceeded its restart intensity.
    pub fatal: bool,
}

/// State shared between a worker task and the engine (single-threaded: `Rc` + `Cell`).
#[derive(Debug, Default)]
pub struct Shared {
    /// Pid of the running worker process (its process group id too).
    pub pid: Cell<Option<i32>>,
    /// Orphans the engine attributed to this worker, to be tracked from the next sample on.
    pub adopt: RefCell<Vec<i32>>,
    /// Last sample of the tree.
    pub last: Cell<Option<TreeSample>>,
}

/// State of a program shared by its replicas.
#[derive(Debug, Default)]
pub struct ProgramState {
    pub history: RefCell<History>,
    pub fatal: Cell<bool>,
}

/// Everything a worker task needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub spec: Rc<ProgramSpec>,
    pub instance: u32,
    pub program: Rc<ProgramState>,
    pub shared: Rc<Shared>,
    pub reaper: Rc<Reaper>,
    pub output: Output,
    pub sample_every: Duration,
    pub roots: orphans::Roots,
}

/// How a running incarnation ended.
enum Ending {
    /// It exited on its own.
    Exited(Exit),
    /// The supervisor stopped it to restart it.
    Restart(Reason, Exit),
    /// The supervisor stopped it for good.
    Stopped(Exit),
}

/// An ended incarnation: how, and which pid it had (none if it could not be spawned).
struct Ended {
    how: Ending,
    pid: Option<i32>,
}

impl Ctx {
    fn event(&self, pid: Option<i32>, kind: Kind) {
        self.output
            .event(&Event::now(&self.spec.name, self.instance, pid, kind));
    }

    /// Runs the worker until it is stopped for good, ends as its restart mode allows, or the
    /// program goes fatal.
    pub async fn run(self, mut cmds: mpsc::UnboundedReceiver<Command>) -> End {
        let src = Source::new(&self.spec.name, self.instance);
        let mut last_exit = None;
        loop {
            if self.program.fatal.get() {
                return End {
                    last_exit,
                    fatal: true,
                };
            }
            let Ended { how, pid } = match spawn(&self.spec, self.instance) {
                Ok(child) => Ended {
                    pid: Some(child.pid),
                    how: self.supervise(child, &src, &mut cmds).await,
                },
                Err(e) => {
                    self.event(
                        None,
                        Kind::SpawnFailed {
                            error: e.to_string(),
                        },
                    );
                    // As a shell reports a command it cannot run.
                    Ended {
                        how: Ending::Exited(Exit::Code(127)),
                        pid: None,
                    }
                }
            };
            let (exit, requested) = match how {
                Ending::Stopped(exit) => {
                    self.event(pid, Kind::Stopped);
                    return End {
                        last_exit: Some(exit),
                        fatal: false,
                    };
                }
                Ending::Exited(exit) => (exit, None),
                Ending::Restart(reason, exit) => (exit, Some(reason)),
            };
            last_exit = Some(exit);
            let rules = policy::Rules {
                mode: self.spec.restart,
                backoff: &self.spec.backoff,
                intensity: &self.spec.intensity,
            };
            let decision = rules.after_exit(
                &mut self.program.history.borrow_mut(),
                exit,
                requested,
                Instant::now(),
                rand01(),
            );
            match decision {
                AfterExit::Done => {
                    self.event(pid, Kind::Stopped);
                    return End {
                        last_exit,
                        fatal: false,
                    };
                }
                AfterExit::Fatal { restarts } => {
                    self.program.fatal.set(true);
                    self.event(
                        pid,
                        Kind::Fatal {
                            restarts,
                            within_s: self.spec.intensity.within.as_secs_f64(),
                        },
                    );
                    return End {
                        last_exit,
                        fatal: true,
                    };
                }
                AfterExit::Restart { reason, delay } => {
                    self.event(
                        pid,
                        Kind::Restarting {
                            reason,
                            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        },
                    );
                    // No timer for a zero delay: tokio rounds a timer up to its next 1 ms tick,
                    // which would double the crash-to-restart time. A stop that is already
                    // queued still wins.
                    let cmd = if delay.is_zero() {
                        match cmds.try_recv() {
                            Ok(cmd) => Some(cmd),
                            Err(mpsc::error::TryRecvError::Empty) => {
                                Some(Command::Restart(Reason::Exit))
                            }
                            Err(mpsc::error::TryRecvError::Disconnected) => None,
                        }
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => Some(Command::Restart(Reason::Exit)),
                            cmd = cmds.recv() => cmd,
                        }
                    };
                    // A restart (the delay ran out, or a manual restart during it) starts now;
                    // a stop ends the task.
                    if !matches!(cmd, Some(Command::Restart(_))) {
                        self.event(pid, Kind::Stopped);
                        return End {
                            last_exit,
                            fatal: false,
                        };
                    }
                }
            }
        }
    }

    /// Watches one running process until it ends.
    async fn supervise(
        &self,
        child: crate::spawn::Spawned,
        src: &Arc<Source>,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ending {
        let pid = child.pid;
        let mut exit_rx = self.reaper.watch(pid);
        let started = Instant::now();
        self.shared.pid.set(Some(pid));
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
        let mut tree = Tree::new(pid);
        let mut watch = MemoryWatch::default();
        let limit = self.spec.memory.map(|m| m.max);
        // Recent (time, bytes) samples: the growth rate for adaptive sampling is measured against
        // the oldest one, so a worker that grows in steps is not mistaken for flat between steps.
        let mut recent: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut next = tokio::time::Instant::now();

        let (exit, stop): (Option<Exit>, Option<(Option<Reason>, bool)>) = loop {
            tokio::select! {
                exit = &mut exit_rx => break (exit.ok(), None),
                () = sleep_until(next) => {
                    for pid in self.shared.adopt.borrow_mut().drain(..) {
                        tree.adopt(pid);
                    }
                    let s = tree.sample(self.spec.memory.is_some_and(|m| m.measure == Measure::Pss));
                    self.shared.last.set(Some(s));
                    let bytes = measured(&s);
                    let mut restart = false;
                    if let Some(spec) = &self.spec.memory {
                        match watch.observe(spec, bytes) {
                            MemoryVerdict::Ok => {}
                            MemoryVerdict::Over { count } | MemoryVerdict::Restart { count } => {
                                self.event(Some(pid), Kind::MemoryOver {
                                    bytes,
                                    limit: spec.max,
                                    measure: spec.measure.as_str(),
                                    count,
                                    of: spec.count,
                                });
                                restart = count >= spec.count;
                            }
                        }
                    }
                    if restart {
                        break (None, Some((Some(Reason::Memory), false)));
                    }
                    while recent.front().is_some_and(|&(t, _)| s.at.duration_since(t) > 2 * self.sample_every) {
                        recent.pop_front();
                    }
                    let delay = policy::next_sample(self.sample_every, limit, recent.front().copied(), (s.at, bytes));
                    recent.push_back((s.at, bytes));
                    tracing::debug!(program = %self.spec.name, instance = self.instance, pid, bytes, procs = s.procs, next_ms = delay.as_millis() as u64, "sample");
                    next = tokio::time::Instant::now() + delay;
                }
                cmd = cmds.recv() => match cmd {
                    Some(Command::Restart(reason)) => break (None, Some((Some(reason), false))),
                    Some(Command::Stop) | None => break (None, Some((None, false))),
                    Some(Command::Kill) => break (None, Some((None, true))),
                },
            }
        };

        let (exit, reason, for_good) = match (exit, stop) {
            (Some(exit), _) => {
                // Exited on its own: what it left behind goes too, before anything new starts.
                self.stop_tree(&mut tree, &mut exit_rx, Some(exit), false, cmds)
                    .await;
                (exit, None, false)
            }
            (None, Some((reason, now))) => {
                let exit = self
                    .stop_tree(&mut tree, &mut exit_rx, None, now, cmds)
                    .await;
                (exit, reason, reason.is_none())
            }
            // The reaper dropped our sender: cannot happen while it runs; treat as killed.
            (None, None) => (Exit::Signal(libc::SIGKILL), None, false),
        };
        self.shared.pid.set(None);
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
            },
        );
        match (reason, for_good) {
            (_, true) => Ending::Stopped(exit),
            (Some(r), _) => Ending::Restart(r, exit),
            (None, _) => Ending::Exited(exit),
        }
    }

    /// Stops the whole tree: the stop signal to every member, then SIGKILL to whatever is left
    /// after the grace period (at once with `now`). Returns the root's exit.
    async fn stop_tree(
        &self,
        tree: &mut Tree,
        exit_rx: &mut oneshot::Receiver<Exit>,
        mut exit: Option<Exit>,
        mut now: bool,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Exit {
        let root = tree.root();
        let mut sig = self.spec.stop.signal as i32;
        let deadline = tokio::time::Instant::now() + self.spec.stop.grace;
        let mut signalled = false;
        loop {
            // Orphans reparented to us since the last look belong to this tree too: a grandchild
            // that double-forked a moment ago must not outlive the stop.
            self.adopt_orphans(tree);
            if exit.is_some() && tree.survivors() == 0 {
                return exit.unwrap_or(Exit::Code(0));
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
            } else {
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
}

/// The figure compared with the limit.
fn measured(s: &TreeSample) -> u64 {
    s.pss.unwrap_or(s.rss)
}

/// A uniform number in [0, 1) for backoff jitter; quality does not matter, independence between
/// replicas does (they must not restart in lockstep).
fn rand01() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 32) | 1
        });
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}
