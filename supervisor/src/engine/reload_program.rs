//! `supervise reload-program NAME`: a program's reload action (`reload.signal`, HUP unless set,
//! or `reload.exec`) carried out on one instance at a time, the next once the one before is
//! ready again, as `systemctl reload` does for one service, without a restart.
//!
//! When an instance counts as reloaded is [`step`]'s, a pure function table-tested below: one
//! that says `RELOADING=1` (its readiness is `notify`) once it says `READY=1` again; any other
//! once `reload.settle` has passed and it is up. A `reload.exec` command must also have exited
//! 0. A reload halts on the first instance that is not ready again within `reload.timeout`
//! (or whose command failed), and leaves the rest untouched.
//!
//! Only one thing at a time is done to a program: a reload is refused while a restart or a
//! replacement rolls it, while it is stopping, stopped or fatal; a restart is refused while it
//! reloads; a stop, a fatal verdict, a roll (a config reload replacing it) or a stop of
//! everything ends the reload, and a client waiting for it is told why.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Engine;
use crate::admin::Response;
use crate::events::{Event, Kind};
use crate::plan::{ReloadAction, ReloadSpec};
use crate::status::Phase;
use crate::worker::Up;

/// What an instance under reload shows at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Look {
    /// Since the action was taken.
    pub elapsed: Duration,
    /// It said `RELOADING=1` since the action.
    pub said_reloading: bool,
    /// It is up (running, and ready where it says so).
    pub up: bool,
    /// Its process is still the one the action went to.
    pub same_process: bool,
    /// The `reload.exec` command: `None` still running (or none), `Some(Err)` it failed.
    pub command: Option<Result<(), ()>>,
    /// A command is still running.
    pub command_running: bool,
}

/// Where one instance's reload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Wait,
    /// Reloaded; `restarted` if its process was replaced meanwhile (it died of the action, or
    /// was restarted for another reason) rather than reloaded in place.
    Done {
        restarted: bool,
    },
    /// The command failed.
    CommandFailed,
    /// Not ready again within `reload.timeout`.
    TimedOut,
}

/// Decides one instance's reload from a look at it.
pub(super) fn step(l: Look, settle: Duration, timeout: Duration) -> Step {
    if l.command == Some(Err(())) {
        return Step::CommandFailed;
    }
    // Said RELOADING=1: its READY=1 (up again) is the answer; else the settle time. A command
    // still running is not done, whatever those say.
    let settled = !l.command_running && (l.said_reloading || l.elapsed >= settle);
    if settled && l.up {
        return Step::Done {
            restarted: !l.same_process,
        };
    }
    if l.elapsed >= timeout {
        return Step::TimedOut;
    }
    Step::Wait
}

/// One program's reload under way.
#[derive(Debug)]
pub(super) struct ProgramReload {
    pub program: String,
    spec: ReloadSpec,
    todo: VecDeque<u32>,
    turn: Option<Turn>,
    done: Vec<String>,
    /// A client waiting for the end (`--wait`), and until when.
    waiter: Option<(oneshot::Sender<Response>, Instant)>,
}

/// A `reload.exec` command's outcome, set by its task once it has ended.
type Outcome = Rc<RefCell<Option<Result<(), String>>>>;

#[derive(Debug)]
struct Turn {
    instance: u32,
    /// When the instance was first looked at, for the timeout while it is not up yet.
    since: Instant,
    /// The action, once taken: when, to which process, and the `RELOADING=1` count then.
    acted: Option<(Instant, i32, u64)>,
    /// A `reload.exec` command's outcome, once it has ended.
    command: Option<Outcome>,
    /// Dropping it ends the command.
    _cancel: Option<oneshot::Sender<()>>,
}

impl Engine {
    /// `reload-program NAME[/INSTANCE]`: starts the reload and answers at once, or, with a
    /// `waiter` (`--wait`), answers through it once the reload is over (or refused).
    pub(super) fn reload_program(
        &mut self,
        program: &str,
        instance: Option<u32>,
        waiter: Option<(oneshot::Sender<Response>, Instant)>,
    ) -> Option<Response> {
        let mut waiter = waiter;
        let got = self.start_reload(program, instance, &mut waiter);
        match (got, waiter) {
            // Taken: answered when the reload is over.
            (Ok(_), None) if self.waited(program) => None,
            (Ok(message), None) => Some(Response::Ok { message }),
            (Ok(message), Some((tx, _))) => {
                let _ = tx.send(Response::Ok { message });
                None
            }
            (Err(message), None) => Some(Response::Error { message }),
            (Err(message), Some((tx, _))) => {
                let _ = tx.send(Response::Error { message });
                None
            }
        }
    }

    /// Whether a client waits for `program`'s reload, or was answered by its end already.
    fn waited(&self, program: &str) -> bool {
        self.program_reloads
            .iter()
            .find(|r| r.program == program)
            .is_none_or(|r| r.waiter.is_some())
    }

    /// Checks and starts the reload; takes the waiter once it is under way.
    fn start_reload(
        &mut self,
        program: &str,
        instance: Option<u32>,
        waiter: &mut Option<(oneshot::Sender<Response>, Instant)>,
    ) -> Result<String, String> {
        let refuse = |why: String| Err(why);
        if self.stopping > 0 {
            return refuse("supervise is stopping; reload-program refused".into());
        }
        let Some(spec) = self.plan.programs.iter().find(|p| p.name == program) else {
            return refuse(format!("no program named {program}"));
        };
        if let Some(r) = self.program_reloads.iter().find(|r| r.program == program) {
            let at = r
                .turn
                .as_ref()
                .map_or_else(String::new, |t| format!(" (at instance {})", t.instance));
            return refuse(format!(
                "{program} is already reloading{at}; refused until that is done"
            ));
        }
        if self.rolls.iter().any(|r| r.program == program) {
            return refuse(format!(
                "{program} is being restarted or replaced one instance at a time; reload-program \
                 refused until that is done"
            ));
        }
        if self.held.contains(program) {
            return refuse(format!(
                "{program} is stopped (supervise stop); nothing to reload"
            ));
        }
        if self.is_fatal(program) {
            return refuse(format!(
                "{program} is fatal (it exceeded its restart intensity): nothing to reload; \
                 `supervise start {program}` starts it afresh"
            ));
        }
        if self.waiting.contains_key(program) {
            return refuse(format!("{program} has not started yet; nothing to reload"));
        }
        let instances: VecDeque<u32> = (0..spec.replicas)
            .filter(|&i| instance.is_none_or(|x| x == i))
            .collect();
        if instances.is_empty() {
            return refuse(format!(
                "{program} has no instance {}",
                instance.unwrap_or_default()
            ));
        }
        if let Some(s) = self.slots.values().find(|s| {
            s.spec.name == program
                && instances.contains(&s.instance)
                && (s.doomed || s.shared.for_good.get())
        }) {
            return refuse(format!(
                "{program}/{} is stopping; reload-program refused",
                s.instance
            ));
        }
        let what = match &spec.reload.action {
            ReloadAction::Signal(sig) => format!("SIG{sig}"),
            ReloadAction::Exec(argv) => format!("reload.exec ({})", argv[0]),
        };
        let n = instances.len();
        let message = format!(
            "reloading {n} instance(s) of {program} with {what}, one at a time, each once the one \
             before is ready again"
        );
        tracing::info!(program, action = %what, instances = n, "reload-program");
        self.program_reloads.push(ProgramReload {
            program: program.to_owned(),
            spec: spec.reload.clone(),
            todo: instances,
            turn: None,
            done: Vec::new(),
            waiter: waiter.take(),
        });
        self.advance_program_reloads();
        Ok(message)
    }

    /// Ends `program`'s reload, telling a waiting client `why`.
    pub(super) fn end_program_reload(&mut self, program: &str, why: &str) {
        self.program_reloads.retain_mut(|r| {
            if r.program != program {
                return true;
            }
            let detail = format!("reload of {program} ended: {why}");
            halted(&self.output, r, &detail);
            answer(r, Err(detail));
            false
        });
    }

    /// Ends every reload: supervise is stopping.
    pub(super) fn end_program_reloads(&mut self) {
        for mut r in std::mem::take(&mut self.program_reloads) {
            answer(&mut r, Err("supervise is stopping".into()));
        }
    }

    /// Whether `program` is reloading.
    pub(super) fn program_reloading(&self, program: &str) -> bool {
        self.program_reloads.iter().any(|r| r.program == program)
    }

    /// Moves every program reload on as far as it goes now.
    pub(super) fn advance_program_reloads(&mut self) {
        let mut all = std::mem::take(&mut self.program_reloads);
        all.retain_mut(|r| self.advance_reload(r));
        all.append(&mut self.program_reloads);
        self.program_reloads = all;
    }

    /// One reload's step; false once it is over.
    fn advance_reload(&mut self, r: &mut ProgramReload) -> bool {
        let program = r.program.clone();
        if self.stopping > 0 {
            answer(r, Err("supervise is stopping".into()));
            return false;
        }
        if self.held.contains(&program) || self.is_fatal(&program) {
            let why = if self.held.contains(&program) {
                "stopped (supervise stop)"
            } else {
                "it went fatal"
            };
            self.halt(r, format!("reload of {program} ended: {why}"));
            return false;
        }
        if let Some((_, deadline)) = &r.waiter {
            if Instant::now() >= *deadline {
                let (tx, _) = r.waiter.take().expect("a waiter");
                let _ = tx.send(Response::Error {
                    message: format!(
                        "{program}: {} instance(s) reloaded so far; not done within --timeout \
                         (the reload goes on)",
                        r.done.len()
                    ),
                });
            }
        }
        loop {
            let Some(turn) = &mut r.turn else {
                let Some(i) = r.todo.pop_front() else {
                    let message = format!(
                        "reloaded {} instance(s) of {program}: {}",
                        r.done.len(),
                        r.done.join(", ")
                    );
                    tracing::info!(program, "{message}");
                    answer(r, Ok(message));
                    return false;
                };
                r.turn = Some(Turn {
                    instance: i,
                    since: Instant::now(),
                    acted: None,
                    command: None,
                    _cancel: None,
                });
                continue;
            };
            let i = turn.instance;
            let Some(slot) = self
                .slots
                .values()
                .filter(|s| s.spec.name == program && s.instance == i && !s.doomed)
                .min_by_key(|s| s.shared.phase.get() == Phase::Stopped)
            else {
                self.halt(r, format!("{program}/{i} has no process; reload halted"));
                return false;
            };
            let sh = &slot.shared;
            let up = sh.up(slot.spec.ready.is_some()) == Up::Yes;
            let Some((at, pid, reloadings)) = turn.acted else {
                // Acted on once it is up: a reload of an instance still starting would be lost.
                let Some(pid) = sh.pid.get().filter(|_| up) else {
                    if turn.since.elapsed() >= r.spec.timeout {
                        self.halt(
                            r,
                            format!(
                                "{program}/{i} was not up within reload.timeout; reload halted"
                            ),
                        );
                        return false;
                    }
                    return true;
                };
                let reloadings = sh.notified.borrow().reloadings;
                match &r.spec.action {
                    ReloadAction::Signal(sig) => {
                        // SAFETY: kill(2) on a worker's own pid while it is unreaped (the task
                        // clears `pid` when the reaper hands it the exit), so it is not reused.
                        let sent = unsafe { libc::kill(pid, sig.raw()) } == 0;
                        if !sent {
                            let why = format!(
                                "{program}/{i}: SIG{sig} to {pid}: {}",
                                std::io::Error::last_os_error()
                            );
                            self.halt(r, why);
                            return false;
                        }
                        tracing::info!(program, instance = i, pid, signal = %sig, "reloading");
                        self.output.event(&Event::now(
                            &program,
                            i,
                            Some(pid),
                            Kind::Reloading {
                                action: sig.to_string(),
                            },
                        ));
                    }
                    ReloadAction::Exec(argv) => {
                        let outcome = Rc::new(RefCell::new(None));
                        let (cancel_tx, cancel_rx) = oneshot::channel();
                        let mut vars: Vec<(String, String)> = slot.spec.env.clone();
                        // Not SUPERVISE_NAME: with SUPERVISE_INSTANCE it would make what the
                        // command leaves behind look like the worker's own (see `orphans`).
                        vars.extend([
                            ("SUPERVISE_PROGRAM".to_owned(), program.clone()),
                            ("SUPERVISE_INSTANCE".to_owned(), i.to_string()),
                            ("SUPERVISE_MAINPID".to_owned(), pid.to_string()),
                            ("MAINPID".to_owned(), pid.to_string()),
                        ]);
                        let env = crate::checks::Env {
                            reaper: self.reaper.clone(),
                            roots: self.roots.clone(),
                            trees: self.check_trees.clone(),
                            lifeline: self.lifeline.clone(),
                            sample_every: self.plan.sample_every,
                        };
                        let action = format!("reload.exec ({})", argv[0]);
                        let (argv, timeout, out) = (argv.clone(), r.spec.timeout, outcome.clone());
                        tokio::task::spawn_local(async move {
                            let got =
                                crate::checks::exec_with(&argv, &vars, timeout, &env, cancel_rx)
                                    .await;
                            *out.borrow_mut() = Some(got);
                        });
                        turn.command = Some(outcome);
                        turn._cancel = Some(cancel_tx);
                        tracing::info!(program, instance = i, pid, "reloading (reload.exec)");
                        self.output.event(&Event::now(
                            &program,
                            i,
                            Some(pid),
                            Kind::Reloading { action },
                        ));
                    }
                }
                turn.acted = Some((Instant::now(), pid, reloadings));
                return true;
            };
            let outcome = turn.command.as_ref().map(|c| c.borrow().clone());
            let look = Look {
                elapsed: at.elapsed(),
                said_reloading: sh.notified.borrow().reloadings > reloadings,
                up,
                same_process: sh.pid.get() == Some(pid),
                command: outcome.clone().flatten().map(|o| o.map_err(|_| ())),
                command_running: matches!(outcome, Some(None)),
            };
            match step(look, r.spec.settle, r.spec.timeout) {
                Step::Wait => return true,
                Step::Done { restarted } => {
                    let took = humantime::format_duration(Duration::from_millis(
                        u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
                    ));
                    let how = if restarted {
                        format!("{i} (restarted, not reloaded in place, in {took})")
                    } else {
                        format!("{i} (in {took})")
                    };
                    tracing::info!(program, instance = i, restarted, "reloaded");
                    self.output.event(&Event::now(
                        &program,
                        i,
                        sh.pid.get(),
                        Kind::Reloaded {
                            took_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
                            restarted,
                        },
                    ));
                    r.done.push(how);
                    r.turn = None;
                }
                Step::CommandFailed => {
                    let why = outcome.flatten().and_then(Result::err).unwrap_or_default();
                    self.halt(
                        r,
                        format!("{program}/{i}: reload.exec failed: {why}; reload halted"),
                    );
                    return false;
                }
                Step::TimedOut => {
                    let why = format!(
                        "{program}/{i} was not ready again within reload.timeout ({}); \
                         reload halted, {} instance(s) left untouched",
                        humantime::format_duration(r.spec.timeout),
                        r.todo.len()
                    );
                    self.halt(r, why);
                    return false;
                }
            }
        }
    }
}

impl Engine {
    /// Ends a reload that failed: a `reload_halted` event for the instance it stopped at, and
    /// the waiting client told why.
    fn halt(&self, r: &mut ProgramReload, why: String) {
        halted(&self.output, r, &why);
        answer(r, Err(why));
    }
}

/// The `reload_halted` event of `r`, at the instance whose turn it was (or the next one).
fn halted(output: &crate::logs::Output, r: &ProgramReload, detail: &str) {
    let instance = r
        .turn
        .as_ref()
        .map(|t| t.instance)
        .or_else(|| r.todo.front().copied())
        .unwrap_or(0);
    output.event(&Event::now(
        &r.program,
        instance,
        None,
        Kind::ReloadHalted {
            detail: detail.to_owned(),
        },
    ));
}

/// Tells a waiting client how the reload ended (and says it on stderr when it failed).
fn answer(r: &mut ProgramReload, outcome: Result<String, String>) {
    if let Err(why) = &outcome {
        tracing::warn!(program = %r.program, "{why}");
    }
    if let Some((tx, _)) = r.waiter.take() {
        let _ = tx.send(match outcome {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Error { message },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_an_instance_counts_as_reloaded() {
        let s = Duration::from_secs;
        let (settle, timeout) = (s(2), s(60));
        let look = |elapsed, said_reloading, up, same_process| Look {
            elapsed,
            said_reloading,
            up,
            same_process,
            command: None,
            command_running: false,
        };
        let done = Step::Done { restarted: false };
        let rows = [
            // (elapsed, RELOADING=1 said, up, same process) -> step
            (look(s(0), false, true, true), Step::Wait),
            (look(s(1), false, true, true), Step::Wait),
            (look(s(2), false, true, true), done),
            (look(s(3), false, false, true), Step::Wait),
            // Said RELOADING=1 and is up again (its READY=1): done before the settle time.
            (look(s(0), true, true, true), done),
            (look(s(0), true, false, true), Step::Wait),
            (look(s(59), true, false, true), Step::Wait),
            (look(s(60), true, false, true), Step::TimedOut),
            (look(s(60), false, false, true), Step::TimedOut),
            // Up at the timeout: done, not timed out.
            (look(s(60), false, true, true), done),
            // Replaced meanwhile (the signal killed it and it was restarted): done once up.
            (
                look(s(5), false, true, false),
                Step::Done { restarted: true },
            ),
            (look(s(5), false, false, false), Step::Wait),
        ];
        for (l, want) in rows {
            assert_eq!(step(l, settle, timeout), want, "{l:?}");
        }
    }

    #[test]
    fn a_reload_command_must_end_well() {
        let s = Duration::from_secs;
        let base = Look {
            elapsed: s(10),
            said_reloading: false,
            up: true,
            same_process: true,
            command: None,
            command_running: true,
        };
        // Still running: not done, whatever the settle time says.
        assert_eq!(step(base, s(2), s(60)), Step::Wait);
        let ended = Look {
            command_running: false,
            command: Some(Ok(())),
            ..base
        };
        assert_eq!(step(ended, s(2), s(60)), Step::Done { restarted: false });
        let failed = Look {
            command_running: false,
            command: Some(Err(())),
            ..base
        };
        assert_eq!(step(failed, s(2), s(60)), Step::CommandFailed);
        // Still running at the timeout.
        let slow = Look {
            elapsed: s(60),
            ..base
        };
        assert_eq!(step(slow, s(2), s(60)), Step::TimedOut);
    }
}
