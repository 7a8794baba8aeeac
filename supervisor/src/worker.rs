//! One task per worker instance: spawn, watch, stop, decide, back off, spawn again.
//!
//! `Starting -> Running -> Stopping -> Exited -> Backoff -> Starting`, or `Fatal` once the
//! program's restart intensity is exceeded, or `Stopped` for good.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::events::{Event, Kind, Reason};
use crate::logs::{Output, Source};
use crate::orphans;
use crate::plan::ProgramSpec;
use crate::policy::{self, AfterExit, History};
use crate::probe::tree::TreeSample;
use crate::reaper::{Exit, Reaper};
use crate::spawn::spawn;
use crate::status::Phase;

/// What the engine can ask of a worker task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop gracefully (stop signal, grace, SIGKILL) and do not start again.
    Stop,
    /// Stop at once with SIGKILL and do not start again (a second TERM/INT to the supervisor).
    Kill,
    /// Restart now, gracefully.
    Restart(Reason),
    /// Restart now, the tree SIGKILLed without a grace period.
    KillRestart(Reason),
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
    /// Pids of the tree's live members as of the last sample (empty when not running): what the
    /// engine's per-tick probes (sockets, deleted files, block I/O) attribute to this worker.
    pub members: RefCell<Vec<i32>>,
    /// Disk figures of this incarnation's tree (deleted-but-open files, I/O rates, block-I/O
    /// delay), written by the engine's probes.
    pub disk: Cell<crate::disk::WorkerDisk>,
    /// Sockets of this incarnation's tree as of the engine's last dump.
    pub net: RefCell<Option<crate::net::NetSample>>,
    /// The worker said `Ready` (this incarnation).
    pub ready: Cell<bool>,
    /// The worker said hello: it speaks the protocol (this incarnation).
    pub speaks: Cell<bool>,
    /// The worker's latest self-report from its segment (this incarnation, SDK workers only).
    pub report: RefCell<Option<crate::events::Report>>,
    /// Where in its lifecycle the instance is.
    pub phase: Cell<Phase>,
    /// When the running process was started.
    pub started: Cell<Option<Instant>>,
    /// Restarts of this instance so far.
    pub restarts: Cell<u32>,
    /// The same, by reason (indexed by [`Reason::index`]).
    pub restarts_by: Cell<[u64; Reason::ALL.len()]>,
    /// Kinds of the findings raised about this instance, latest last (at most 8 kept).
    pub findings: RefCell<Vec<&'static str>>,
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
    /// Kills the trees' escaped descendants if the supervisor is SIGKILLed.
    pub lifeline: Option<Rc<crate::lifeline::Lifeline>>,
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

/// Remembers a finding's kind among the instance's latest (at most 8 kept).
pub(crate) fn note_finding(shared: &Shared, kind: &'static str) {
    let mut findings = shared.findings.borrow_mut();
    if findings.len() == 8 {
        findings.remove(0);
    }
    findings.push(kind);
}

impl Ctx {
    fn event(&self, pid: Option<i32>, kind: Kind) {
        if let Kind::Finding { kind: f, .. } = &kind {
            note_finding(&self.shared, f);
        }
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
                self.shared.phase.set(Phase::Fatal);
                return End {
                    last_exit,
                    fatal: true,
                };
            }
            self.shared.phase.set(Phase::Starting);
            let (ipc, inherit) = running::Ipc::prepare().unzip();
            let spawned = spawn(&self.spec, self.instance, inherit.as_ref());
            // The worker's ends now live in the worker; ours must not keep them open.
            drop(inherit);
            let Ended { how, pid } = match spawned {
                Ok(child) => Ended {
                    pid: Some(child.pid),
                    how: self.supervise(child, ipc, &src, &mut cmds).await,
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
                Ending::Stopped(exit) => return self.stopped(pid, Some(exit)),
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
                AfterExit::Done => return self.stopped(pid, last_exit),
                AfterExit::Fatal { restarts } => {
                    self.program.fatal.set(true);
                    self.shared.phase.set(Phase::Fatal);
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
                    self.shared.phase.set(Phase::Backoff);
                    self.shared.restarts.set(self.shared.restarts.get() + 1);
                    let mut by = self.shared.restarts_by.get();
                    by[reason.index()] += 1;
                    self.shared.restarts_by.set(by);
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
                    if !matches!(cmd, Some(Command::Restart(_) | Command::KillRestart(_))) {
                        return self.stopped(pid, last_exit);
                    }
                }
            }
        }
    }

    /// Ends the task with the instance stopped for good.
    fn stopped(&self, pid: Option<i32>, last_exit: Option<Exit>) -> End {
        self.shared.phase.set(Phase::Stopped);
        self.event(pid, Kind::Stopped);
        End {
            last_exit,
            fatal: false,
        }
    }
}

/// A uniform number in [0, 1) for backoff jitter; quality does not matter, independence between
/// replicas does (they must not restart in lockstep).
/// The first point at least `every / 2` from now on a grid of period `every` that every worker
/// and the engine's own tick share, so one wake-up a period samples them all (one timer expiry
/// and one context switch, not one per worker). Intervals between such points average `every`.
pub(crate) fn on_grid(every: Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = tokio::time::Instant::from_std(*EPOCH.get_or_init(Instant::now));
    let period = every.as_nanos().max(1);
    let earliest = (tokio::time::Instant::now() + every / 2)
        .duration_since(epoch)
        .as_nanos();
    let at = earliest.div_ceil(period).saturating_mul(period);
    epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

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

mod running;
