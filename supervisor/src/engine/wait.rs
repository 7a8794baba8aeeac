//! `start`, `stop` and `restart` with `--wait`: the answer comes once the action has completed,
//! or says what it still waits for when the client's time runs out (the action goes on).
//!
//! The engine keeps the request's reply, with its goal and deadline, and looks at every kept one
//! on a tick of its own (every 50 ms while any is kept), as it does for rolls; nothing is held
//! in between, and a client that goes away drops its reply, which drops the wait. It is the
//! engine that answers, rather than the client polling `status`, because only the engine knows
//! what completion means: whether an instance's process started after the request, whether a
//! roll halted, whether the program went fatal or was stopped by someone else meanwhile. A
//! client reading `status` would have to guess them from pids and uptimes, and could not tell a
//! halted roll from a slow one until its time ran out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Engine;
use crate::admin::{Request, Response};
use crate::worker::Up;

/// How often kept waits are looked at.
pub(super) const WAIT_TICK: Duration = Duration::from_millis(50);

/// A reply kept until its action has completed.
#[derive(Debug)]
pub(super) struct Wait {
    program: String,
    goal: Goal,
    /// The action as the operator typed it, for the messages.
    action: String,
    timeout: Duration,
    deadline: Instant,
    reply: oneshot::Sender<Response>,
}

/// What "completed" means for the action.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// `start`: every instance up.
    Up,
    /// `stop`: no process left.
    Gone,
    /// `restart`: every instance restarted (its process started after `since`) and up.
    Restarted {
        instance: Option<u32>,
        since: Instant,
        /// The program's halted rolls when the restart was asked for.
        halts: u64,
    },
}

/// Where a wait stands.
enum Progress {
    Done(String),
    Failed(String),
    Pending(String),
}

impl Engine {
    /// Answers a control-socket request: at once, or, for a `--wait` action that was accepted,
    /// once it has completed.
    pub(super) fn on_call(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        if request == Request::Reload {
            // Answered once the config has been loaded, off this thread.
            self.ask_reload(Some(reply));
            return;
        }
        if request == Request::ReloadDryRun {
            // The same, and nothing applied.
            self.dry_run(reply);
            return;
        }
        if let (
            Request::ReloadProgram {
                program, instance, ..
            },
            Some(timeout),
        ) = (&request, request.wait())
        {
            // Answered once every instance has reloaded (`reload_program.rs`).
            let waiter = Some((reply, Instant::now() + timeout));
            if let Some(answer) = self.reload_program(program, *instance, waiter) {
                tracing::debug!(?answer, "reload-program answered at once");
            }
            return;
        }
        let Some(timeout) = request.wait() else {
            let _ = reply.send(self.handle(request));
            return;
        };
        // Taken before the action: a replacement started by it starts after this.
        let (program, goal, action) = match &request {
            Request::Start { program, .. } => (program.clone(), Goal::Up, "start".to_owned()),
            Request::Stop { program, .. } => (program.clone(), Goal::Gone, "stop".to_owned()),
            Request::Restart {
                program, instance, ..
            } => (
                program.clone(),
                Goal::Restarted {
                    instance: *instance,
                    since: Instant::now(),
                    halts: self.roll_halts.get(program).copied().unwrap_or(0),
                },
                format!("restart {}", super::control::named(program, *instance)),
            ),
            _ => {
                let _ = reply.send(self.handle(request));
                return;
            }
        };
        let action = if matches!(goal, Goal::Restarted { .. }) {
            action
        } else {
            format!("{action} {program}")
        };
        match self.handle(request) {
            Response::Ok { .. } => {
                let wait = Wait {
                    program,
                    goal,
                    action,
                    timeout,
                    deadline: Instant::now() + timeout,
                    reply,
                };
                // Already complete (a `stop` of instances that had all ended, say): no tick.
                if let Some(wait) = self.settle(wait, false) {
                    self.waits.push(wait);
                }
            }
            refused => {
                let _ = reply.send(refused);
            }
        }
    }

    /// Answers the waits that completed, failed or ran out of time; called on the wait tick.
    pub(super) fn advance_waits(&mut self) {
        let waits = std::mem::take(&mut self.waits);
        for wait in waits {
            if let Some(wait) = self.settle(wait, false) {
                self.waits.push(wait);
            }
        }
    }

    /// The supervisor is exiting: every wait gets its answer now. Returns whether any did (the
    /// caller then gives their connections a moment to write them).
    pub(super) fn end_waits(&mut self) -> bool {
        let waits = std::mem::take(&mut self.waits);
        let any = !waits.is_empty();
        for wait in waits {
            self.settle(wait, true);
        }
        any
    }

    /// Answers `wait` if it is over (or `last`), else gives it back.
    fn settle(&self, wait: Wait, last: bool) -> Option<Wait> {
        if wait.reply.is_closed() {
            // The client went away.
            return None;
        }
        let answer = match self.progress(&wait) {
            Progress::Done(message) => Response::Done { message },
            Progress::Failed(why) => Response::Error {
                message: format!("{}: {why}", wait.action),
            },
            Progress::Pending(why) if last => Response::Error {
                message: format!("{}: supervise is exiting; {why}", wait.action),
            },
            Progress::Pending(why) if Instant::now() >= wait.deadline => Response::Error {
                message: format!(
                    "{}: not done within {}: {why} (the {} goes on; `supervise status` shows where it stands)",
                    wait.action,
                    humantime::format_duration(wait.timeout),
                    wait.action.split(' ').next().unwrap_or("action"),
                ),
            },
            Progress::Pending(_) => return Some(wait),
        };
        let _ = wait.reply.send(answer);
        None
    }

    fn progress(&self, wait: &Wait) -> Progress {
        let program = wait.program.as_str();
        match wait.goal {
            Goal::Gone => {
                let left = self
                    .slots
                    .values()
                    .filter(|s| s.spec.name == program)
                    .map(|s| s.instance)
                    .min();
                let Some(s) = left else {
                    return Progress::Done(format!("{program}: stopped, no process left"));
                };
                if !self.held.contains(program) && self.stopping == 0 {
                    return Progress::Failed(format!("{program} was started again meanwhile"));
                }
                Progress::Pending(format!("{program}/{s} is still stopping"))
            }
            Goal::Up => match self.blocked(program) {
                Some(failed) => failed,
                None => match self.waiting.get(program) {
                    Some(s) => {
                        let what = self.blocked_by(s).unwrap_or_else(|| "its turn".into());
                        Progress::Pending(format!("{program} is waiting for {what}"))
                    }
                    None => self.all_up(program, None, None),
                },
            },
            Goal::Restarted {
                instance,
                since,
                halts,
            } => {
                if let Some(failed) = self.blocked(program) {
                    return failed;
                }
                if self.roll_halts.get(program).copied().unwrap_or(0) > halts {
                    return Progress::Failed(format!(
                        "the roll halted: a replacement did not come up within {}s, and the \
                         instances after it were not restarted",
                        super::roll::ROLL_WAIT.as_secs()
                    ));
                }
                self.all_up(program, instance, Some(since))
            }
        }
    }

    /// Why a program cannot come up any more, if it cannot.
    fn blocked(&self, program: &str) -> Option<Progress> {
        if self.stopping > 0 {
            return Some(Progress::Failed("supervise is stopping".into()));
        }
        if self.held.contains(program) {
            return Some(Progress::Failed(format!("{program} was stopped meanwhile")));
        }
        if self.programs.get(program).is_some_and(|p| p.fatal.get()) {
            return Some(Progress::Failed(format!(
                "{program} went fatal (it exceeded its restart intensity)"
            )));
        }
        if !self.plan.programs.iter().any(|p| p.name == program) {
            return Some(Progress::Failed(format!(
                "{program} was removed from the config"
            )));
        }
        None
    }

    /// Whether every instance of `program` (or just `instance`) is up, with a process started
    /// after `since` if given.
    fn all_up(&self, program: &str, instance: Option<u32>, since: Option<Instant>) -> Progress {
        let replicas = self
            .plan
            .programs
            .iter()
            .find(|p| p.name == program)
            .map_or(0, |p| p.replicas);
        let instances: Vec<u32> = match instance {
            Some(i) => vec![i],
            None => (0..replicas).collect(),
        };
        // One pass over the slots, not one per instance: a program may have thousands. During a
        // reload's replacement an instance may have two slots; the live one counts.
        let mut slots: HashMap<u32, &super::Slot> = HashMap::new();
        for s in self.slots.values().filter(|s| s.spec.name == program) {
            let kept = slots.entry(s.instance).or_insert(s);
            if kept.doomed && !s.doomed {
                *kept = s;
            }
        }
        for &i in &instances {
            let Some(s) = slots.get(&i) else {
                // Not started yet by a roll under way (a reload that added it); else its task
                // has ended: it exited and its restart policy does not start it again.
                if self.rolls.iter().any(|r| r.program == program) {
                    return Progress::Pending(format!("{program}/{i} is not running yet"));
                }
                return Progress::Failed(format!(
                    "{program}/{i} exited and is not restarted (see its events)"
                ));
            };
            let sh = &s.shared;
            if since.is_some_and(|since| sh.started.get().is_none_or(|t| t < since)) {
                return Progress::Pending(format!("{program}/{i} has not been restarted yet"));
            }
            match sh.up(s.spec.ready.is_some()) {
                Up::Yes => {}
                Up::NotReady => {
                    return Progress::Pending(format!("{program}/{i} is not ready yet"))
                }
                Up::No => {
                    return Progress::Pending(format!(
                        "{program}/{i} is {}",
                        sh.phase.get().as_str()
                    ))
                }
            }
        }
        let n = instances.len();
        Progress::Done(match (since, instance) {
            (None, _) => format!("{program}: {n} instance(s) up"),
            (Some(_), Some(i)) => format!("{program}/{i}: restarted and up"),
            (Some(_), None) => format!("{program}: {n} instance(s) restarted and up"),
        })
    }
}
