//! The lifecycle of one worker instance as a pure state machine: inputs (the process exited, a
//! sample's verdict, an operator's command, a stop, a kill, a timer) come in with the time, and
//! the next phase and the actions to carry out go out. The worker task ([`crate::worker`]) only
//! executes the actions and feeds every input back, so no command can be read and dropped on the
//! way: each one lands here, in whatever phase the instance is, and the table in the tests says
//! what it does there.
//!
//! ```text
//!             Begin                        Exited (root left on its own)
//!  Starting ─────────▶ Running ─────────────────────────────┐
//!     ▲  Spawn              │ Restart(reason) / Stop / Kill   ▼
//!     │                     └──────────────────────▶ Stopping ── TreeGone ──▶ Deciding
//!     │                                               (asked → signalled → killing)     │
//!     │          Timer / operator restart                                              │
//!     ├──────────────────────────── Backoff ◀── Restart(delay > 0) ────────────────────┤
//!     └──────────────────────────────────────── Restart(delay = 0) ────────────────────┤
//!                                              Stopped ◀── Done, or any stop for good ─┤
//!                                              Fatal   ◀── intensity exceeded ─────────┘
//! ```
//!
//! Precedence is total: **kill > stop for good > restart**. A stop or kill that arrives while a
//! tree is being stopped to restart it turns that stop into one for good (the signals already
//! sent are not sent again, and the grace already running is not extended); a kill skips the
//! rest of the grace. A restart that arrives during a stop for good is refused (the engine
//! answers the operator; here it changes nothing). An operator's restart during a worker's
//! backoff starts it at once; during the clean-up of what an exited worker left behind, it makes
//! the next start immediate whatever the restart mode says.
//!
//! How a tree is stopped: a worker that speaks the protocol is asked with `Shutdown`; otherwise
//! the stop signal goes out once (to the process group in `group` mode, to the root alone in
//! `main` mode). When the root has left, what remains gets the stop signal (`group`) or SIGKILL
//! (`main`). When the grace runs out, SIGKILL. A hung worker gets the heartbeat signal on its
//! root and only the heartbeat's grace: it cannot honour a polite request.

use std::time::{Duration, Instant};

use crate::events::{Kind, Reason};
use crate::plan::StopMode;
use crate::policy::AfterExit;
use crate::reaper::Exit;
use crate::signals::Sig;
use crate::status;

/// How long SIGKILLed processes may take to disappear before the stop ends without them (a
/// process in uninterruptible sleep cannot die until its I/O returns).
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// What the machine needs to know of the program's stop policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub stop_signal: Sig,
    pub grace: Duration,
    pub mode: StopMode,
    /// Sent to the root of a worker found hung, and how long it has before SIGKILL.
    pub hung_signal: Sig,
    pub hung_grace: Duration,
    /// The restart intensity's window (for the `fatal` event).
    pub within: Duration,
    /// How long an instance leaving for a graceful restart stays up, not ready, before its stop
    /// signal (`stop.drain`): time for a load balancer to stop sending to it.
    pub drain: Duration,
}

/// Who a stop signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whom {
    /// Every process of the tree, once: the process group in one `killpg`, then the members
    /// outside it.
    Tree,
    /// The root process alone.
    Root,
    /// Every member but the root (which has exited), once each.
    Leftovers,
}

/// What the worker task must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a new process; answer with [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn,
    /// Ask the root over the channel to stop within `grace`; answer with
    /// [`Input::ShutdownUndelivered`] if the message could not go out.
    Shutdown { grace: Duration },
    /// Send `sig` to `whom`; processes found later in the tree get it too, once each.
    Signal { sig: Sig, whom: Whom },
    /// SIGKILL the whole tree now, and every process found in it from now on.
    Kill,
    /// Report this.
    Event(Kind),
    /// Ask the restart policy what follows this exit; answer with [`Input::Decided`].
    Decide {
        exit: Exit,
        requested: Option<Reason>,
    },
    /// The instance is done: the task ends.
    Finish,
}

/// What happens to a worker instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    /// The task begins: start the first process (unless a stop came first).
    Begin,
    Spawned,
    SpawnFailed,
    /// The worker learnt the protocol (hello) or lost its channel.
    Speaks(bool),
    /// The root process exited (it is reaped).
    Exited(Exit),
    /// The root is reaped and no process of the tree is left.
    TreeGone,
    /// Restart gracefully (a sample's verdict, or an operator's `Manual`).
    Restart(Reason),
    /// Restart, with the tree SIGKILLed at once.
    KillRestart(Reason),
    /// Stop for good; `signal` overrides the stop signal (single-command mode forwards the
    /// signal the supervisor received).
    Stop {
        signal: Option<Sig>,
    },
    /// Stop for good with SIGKILL at once.
    Kill,
    /// `Shutdown` could not be sent: fall back to the stop signal.
    ShutdownUndelivered,
    /// The time passed the deadline the machine asked for.
    Timer,
    /// The restart policy's answer to [`Action::Decide`].
    Decided(AfterExit),
}

/// Why a tree is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// To start it again.
    Restart(Reason),
    /// For good.
    ForGood,
    /// The root exited on its own: what it left behind is cleaned up before deciding.
    Exited,
}

/// How far a stop has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not ready any more, nothing sent yet: the drain before a graceful restart.
    Draining,
    /// `Shutdown` was sent: no signal until the root leaves.
    Asked,
    /// The stop (or heartbeat) signal went out.
    Signalled,
    /// SIGKILL went out.
    Killing,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Starting,
    Running,
    Stopping {
        cause: Cause,
        stage: Stage,
        /// The root's exit, once it is reaped.
        root: Option<Exit>,
        /// End of the grace (or, while killing, of [`KILL_WAIT`]).
        deadline: Instant,
        /// An operator asked for a restart while an exited worker's leftovers were cleaned up.
        manual: bool,
    },
    /// Waiting for the restart policy's answer about `exit`.
    Deciding {
        exit: Exit,
        manual: bool,
        for_good: bool,
    },
    Backoff {
        until: Instant,
    },
    Stopped,
    Fatal,
}

/// The lifecycle of one worker instance.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    cfg: Config,
    phase: Phase,
    /// The running worker speaks the protocol (and is asked to stop with `Shutdown`).
    speaks: bool,
    /// The last exit of a process of this instance.
    last_exit: Option<Exit>,
}

impl Lifecycle {
    #[must_use]
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            phase: Phase::Starting,
            speaks: false,
            last_exit: None,
        }
    }

    /// A reload changed the program's stop policy: the next stage of a stop uses it (a stage
    /// under way, a drain or a grace, ends when it was due).
    pub fn configure(&mut self, cfg: Config) {
        self.cfg = cfg;
    }

    /// The phase as `status` shows it.
    #[must_use]
    pub fn status(&self) -> status::Phase {
        match self.phase {
            Phase::Starting => status::Phase::Starting,
            Phase::Running => status::Phase::Running,
            Phase::Stopping {
                stage: Stage::Draining,
                ..
            } => status::Phase::Draining,
            Phase::Stopping { .. } | Phase::Deciding { .. } => status::Phase::Stopping,
            Phase::Backoff { .. } => status::Phase::Backoff,
            Phase::Stopped => status::Phase::Stopped,
            Phase::Fatal => status::Phase::Fatal,
        }
    }

    /// When the machine wants [`Input::Timer`].
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline),
            Phase::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// True while a tree is being stopped (the task polls it for stragglers and its end).
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    /// True while a tree is being stopped and SIGKILL has not gone out yet: it is still sampled,
    /// and held to its memory ceiling.
    #[must_use]
    pub fn held_to_ceiling(&self) -> bool {
        matches!(
            self.phase,
            Phase::Stopping {
                stage: Stage::Draining | Stage::Asked | Stage::Signalled,
                ..
            }
        )
    }

    /// True while a tree drains before its stop signal (it is still sampled, for its ceiling).
    #[must_use]
    pub fn is_draining(&self) -> bool {
        matches!(
            self.phase,
            Phase::Stopping {
                stage: Stage::Draining,
                ..
            }
        )
    }

    /// True once the instance is stopped for good or fatal.
    #[must_use]
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Stopped | Phase::Fatal)
    }

    /// True once a stop for good (or a kill) has been received: no restart can follow.
    #[must_use]
    pub fn for_good(&self) -> bool {
        match self.phase {
            Phase::Stopping { cause, .. } => cause == Cause::ForGood,
            Phase::Deciding { for_good, .. } => for_good,
            Phase::Stopped | Phase::Fatal => true,
            _ => false,
        }
    }

    #[must_use]
    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// Handles one input at `now`.
    pub fn on(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Input::Speaks(s) = input {
            self.speaks = s;
            return out;
        }
        match self.phase {
            Phase::Starting => self.starting(input, &mut out),
            Phase::Running => self.running(input, now, &mut out),
            Phase::Stopping { .. } => self.on_stopping(input, now, &mut out),
            Phase::Deciding { .. } => self.deciding(input, now, &mut out),
            Phase::Backoff { until } => match input {
                Input::Timer if now >= until => self.spawn(&mut out),
                Input::Restart(Reason::Manual) => self.spawn(&mut out),
                Input::Stop { .. } | Input::Kill => self.stopped(&mut out),
                _ => {}
            },
            Phase::Stopped | Phase::Fatal => {}
        }
        out
    }

    fn starting(&mut self, input: Input, out: &mut Vec<Action>) {
        match input {
            Input::Begin => out.push(Action::Spawn),
            Input::Spawned => {
                self.phase = Phase::Running;
                self.speaks = false;
            }
            // As a shell reports a command it cannot run.
            Input::SpawnFailed => self.decide(Exit::Code(127), None, false, false, out),
            Input::Stop { .. } | Input::Kill => self.stopped(out),
            _ => {}
        }
    }

    fn running(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        let cfg = self.cfg;
        match input {
            Input::Exited(exit) => {
                self.last_exit = Some(exit);
                let stage = self.leftovers(out);
                self.phase = Phase::Stopping {
                    cause: Cause::Exited,
                    stage,
                    root: Some(exit),
                    deadline: now + self.stage_wait(stage, cfg.grace),
                    manual: false,
                };
            }
            Input::Restart(Reason::Hung) => {
                out.push(stopping_event(Some(Reason::Hung)));
                out.push(Action::Signal {
                    sig: cfg.hung_signal,
                    whom: Whom::Root,
                });
                self.enter_stop(
                    Cause::Restart(Reason::Hung),
                    Stage::Signalled,
                    now,
                    cfg.hung_grace,
                );
            }
            Input::Restart(reason) if !cfg.drain.is_zero() => {
                out.push(stopping_event(Some(reason)));
                self.enter_stop(Cause::Restart(reason), Stage::Draining, now, cfg.drain);
            }
            Input::Restart(reason) => {
                out.push(stopping_event(Some(reason)));
                let stage = self.ask(cfg.stop_signal, out);
                self.enter_stop(Cause::Restart(reason), stage, now, cfg.grace);
            }
            Input::KillRestart(reason) => {
                out.push(stopping_event(Some(reason)));
                out.push(Action::Kill);
                self.enter_stop(Cause::Restart(reason), Stage::Killing, now, KILL_WAIT);
            }
            Input::Stop { signal } => {
                out.push(stopping_event(None));
                let stage = self.ask(signal.unwrap_or(cfg.stop_signal), out);
                self.enter_stop(Cause::ForGood, stage, now, cfg.grace);
            }
            Input::Kill => {
                out.push(stopping_event(None));
                out.push(Action::Kill);
                self.enter_stop(Cause::ForGood, Stage::Killing, now, KILL_WAIT);
            }
            _ => {}
        }
    }

    fn on_stopping(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        let Phase::Stopping {
            mut cause,
            mut stage,
            mut root,
            mut deadline,
            mut manual,
        } = self.phase
        else {
            return;
        };
        match input {
            Input::Exited(exit) if root.is_none() => {
                root = Some(exit);
                self.last_exit = Some(exit);
                // What the root leaves behind: it has had nothing yet if the root was asked
                // (`Shutdown`) or signalled alone (`main` mode, a hung worker's signal).
                let alone = stage == Stage::Asked
                    || (stage == Stage::Signalled
                        && (self.cfg.mode == StopMode::Main
                            || cause == Cause::Restart(Reason::Hung)));
                if stage == Stage::Draining {
                    // It left during its drain: what it left gets the grace from now.
                    stage = self.leftovers(out);
                    deadline = now + self.stage_wait(stage, self.cfg.grace);
                } else if alone {
                    let next = self.leftovers(out);
                    if next == Stage::Killing {
                        deadline = now + KILL_WAIT;
                    }
                    stage = next;
                }
            }
            Input::TreeGone if root.is_some() => {
                let exit = root.unwrap_or(Exit::Code(0));
                match cause {
                    Cause::ForGood => self.stopped(out),
                    Cause::Restart(r) => self.decide(exit, Some(r), manual, false, out),
                    Cause::Exited => self.decide(exit, None, manual, false, out),
                }
                return;
            }
            Input::Timer if now >= deadline && stage == Stage::Draining => {
                stage = self.ask(self.cfg.stop_signal, out);
                deadline = now + self.stage_wait(stage, self.cfg.grace);
            }
            Input::Timer if now >= deadline => {
                if stage == Stage::Killing {
                    // SIGKILL could not end everything in time (a process stuck in the kernel).
                    // With the root reaped, the stop ends without the stragglers.
                    if root.is_some() {
                        return self.on_stopping(Input::TreeGone, now, out);
                    }
                    deadline = now + KILL_WAIT;
                } else {
                    stage = Stage::Killing;
                    deadline = now + KILL_WAIT;
                    out.push(Action::Kill);
                }
            }
            Input::ShutdownUndelivered if stage == Stage::Asked && root.is_none() => {
                out.push(Action::Signal {
                    sig: self.cfg.stop_signal,
                    whom: self.signal_whom(),
                });
                stage = Stage::Signalled;
            }
            Input::Stop { signal } if cause != Cause::ForGood => {
                out.push(stopping_event(None));
                cause = Cause::ForGood;
                // A stop for good does not wait for the drain.
                if stage == Stage::Draining {
                    stage = self.ask(signal.unwrap_or(self.cfg.stop_signal), out);
                    deadline = now + self.stage_wait(stage, self.cfg.grace);
                }
            }
            Input::Kill => {
                if cause != Cause::ForGood {
                    out.push(stopping_event(None));
                }
                cause = Cause::ForGood;
                if stage != Stage::Killing {
                    stage = Stage::Killing;
                    deadline = now + KILL_WAIT;
                    out.push(Action::Kill);
                }
            }
            Input::KillRestart(_) if stage != Stage::Killing => {
                stage = Stage::Killing;
                deadline = now + KILL_WAIT;
                out.push(Action::Kill);
            }
            // The stop under way ends in a start anyway: make it immediate.
            Input::Restart(Reason::Manual) if cause != Cause::ForGood => manual = true,
            // A draining tree that must go now (past its memory ceiling): the drain ends.
            Input::Restart(_) if stage == Stage::Draining => {
                stage = self.ask(self.cfg.stop_signal, out);
                deadline = now + self.stage_wait(stage, self.cfg.grace);
            }
            _ => {}
        }
        self.phase = Phase::Stopping {
            cause,
            stage,
            root,
            deadline,
            manual,
        };
    }

    fn deciding(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        let Phase::Deciding {
            exit,
            mut manual,
            mut for_good,
        } = self.phase
        else {
            return;
        };
        match input {
            Input::Decided(after) => {
                if for_good {
                    return self.stopped(out);
                }
                match after {
                    AfterExit::Fatal { restarts } => {
                        self.phase = Phase::Fatal;
                        out.push(Action::Event(Kind::Fatal {
                            restarts,
                            within_s: self.cfg.within.as_secs_f64(),
                        }));
                        out.push(Action::Finish);
                    }
                    AfterExit::Done if manual => {
                        out.push(restarting_event(Reason::Manual, Duration::ZERO));
                        self.spawn(out);
                    }
                    AfterExit::Done => self.stopped(out),
                    AfterExit::Restart { reason, delay } => {
                        let delay = if manual { Duration::ZERO } else { delay };
                        out.push(restarting_event(reason, delay));
                        if delay.is_zero() {
                            self.spawn(out);
                        } else {
                            self.phase = Phase::Backoff { until: now + delay };
                        }
                    }
                }
                return;
            }
            Input::Stop { .. } | Input::Kill => for_good = true,
            Input::Restart(Reason::Manual) => manual = true,
            _ => {}
        }
        self.phase = Phase::Deciding {
            exit,
            manual,
            for_good,
        };
    }

    fn decide(
        &mut self,
        exit: Exit,
        requested: Option<Reason>,
        manual: bool,
        for_good: bool,
        out: &mut Vec<Action>,
    ) {
        self.last_exit = Some(exit);
        self.phase = Phase::Deciding {
            exit,
            manual,
            for_good,
        };
        out.push(Action::Decide { exit, requested });
    }

    fn spawn(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Starting;
        out.push(Action::Spawn);
    }

    fn stopped(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Stopped;
        out.push(Action::Event(Kind::Stopped));
        out.push(Action::Finish);
    }

    fn enter_stop(&mut self, cause: Cause, stage: Stage, now: Instant, wait: Duration) {
        self.phase = Phase::Stopping {
            cause,
            stage,
            root: None,
            deadline: now + self.stage_wait(stage, wait),
            manual: false,
        };
    }

    /// The time a stage may take: the grace, or [`KILL_WAIT`] once SIGKILL went out.
    fn stage_wait(&self, stage: Stage, grace: Duration) -> Duration {
        if stage == Stage::Killing {
            KILL_WAIT
        } else {
            grace
        }
    }

    /// Asks a running root to stop: `Shutdown` if it speaks the protocol, else `sig`.
    fn ask(&self, sig: Sig, out: &mut Vec<Action>) -> Stage {
        if self.speaks {
            out.push(Action::Shutdown {
                grace: self.cfg.grace,
            });
            Stage::Asked
        } else {
            out.push(Action::Signal {
                sig,
                whom: self.signal_whom(),
            });
            Stage::Signalled
        }
    }

    fn signal_whom(&self) -> Whom {
        match self.cfg.mode {
            StopMode::Group => Whom::Tree,
            StopMode::Main => Whom::Root,
        }
    }

    /// What the root left behind when it exited: the stop signal (`group`) or SIGKILL (`main`).
    fn leftovers(&self, out: &mut Vec<Action>) -> Stage {
        match self.cfg.mode {
            StopMode::Group => {
                out.push(Action::Signal {
                    sig: self.cfg.stop_signal,
                    whom: Whom::Leftovers,
                });
                Stage::Signalled
            }
            StopMode::Main => {
                out.push(Action::Kill);
                Stage::Killing
            }
        }
    }
}

fn stopping_event(reason: Option<Reason>) -> Action {
    Action::Event(Kind::Stopping {
        reason,
        for_good: reason.is_none(),
    })
}

fn restarting_event(reason: Reason, delay: Duration) -> Action {
    Action::Event(Kind::Restarting {
        reason,
        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests;
