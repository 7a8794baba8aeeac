//! What operators ask of the engine: control-socket requests, and the signals the supervisor
//! receives. Every answer says what was done, or why nothing was.

use std::rc::Rc;

use super::Engine;
use crate::admin::{Request, Response};
use crate::events::Reason;
use crate::plan::StopMode;
use crate::signals::{Disposition, Received, Sig};
use crate::status::Phase;
use crate::worker::Command;

impl Engine {
    /// Answers a control-socket request.
    pub(super) fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Status => {
                let mut supervisor = self.resources.supervisor_status();
                let mut host = self.host.read();
                host.pressure_policy = self.pressure_policy();
                supervisor.host = Some(Box::new(host));
                Response::Status {
                    workers: self.status(),
                    supervisor: Box::new(supervisor),
                }
            }
            Request::Restart {
                program, instance, ..
            } => self.restart(&program, instance),
            Request::Signal {
                program,
                instance,
                signal,
                group,
            } => match Sig::from_raw(signal) {
                Some(sig) => self.signal(&program, instance, sig, group),
                None => error(format!("no signal numbered {signal}")),
            },
            Request::ReloadProgram {
                program, instance, ..
            } => self
                .reload_program(&program, instance, None)
                .unwrap_or_else(|| error("reload-program: answered later".into())),
            Request::Stop { program, .. } => self.stop(&program),
            Request::Start { program, .. } => self.start_held(&program),
            // Answered once the config is loaded (see `on_call` and `reload.rs`).
            Request::Reload | Request::ReloadDryRun => {
                error("reload: not a request answered at once".into())
            }
            Request::Ready => match self.readiness() {
                Ok(()) => ok("ready".into()),
                Err(message) => error(message),
            },
            Request::Events {
                program,
                instance,
                lines,
            } => Response::Events {
                events: self
                    .output
                    .recent()
                    .lines(
                        program.as_deref(),
                        instance,
                        lines.min(crate::admin::MAX_EVENTS_ANSWERED) as usize,
                    )
                    .iter()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect(),
            },
            Request::Memory { program, instance } => Response::Memory {
                series: self.trail.series(program.as_deref(), instance),
            },
            // Answered by the control socket itself, from the buffers.
            Request::Logs { .. } => error("logs: not a request for the engine".into()),
        }
    }

    fn known(&self, program: &str) -> bool {
        self.plan.programs.iter().any(|p| p.name == program)
    }

    /// `stop NAME`: stops every instance and keeps the program stopped until `start`. A fatal
    /// program becomes a stopped one: the operator has seen it, `/readyz` no longer waits for
    /// it, and it keeps its last exits and counts.
    fn stop(&mut self, program: &str) -> Response {
        if !self.known(program) {
            return error(format!("no program named {program}"));
        }
        let mut n = 0;
        for s in self.slots.values_mut().filter(|s| s.spec.name == program) {
            s.doomed = true;
            if s.cmds.send(Command::Stop { signal: None }).is_ok() {
                n += 1;
            }
        }
        // A roll under way must not start what was just stopped, nor a reload go on.
        self.rolls.retain(|r| r.program != program);
        self.end_program_reload(program, "stopped (supervise stop)");
        self.held.insert(program.to_owned());
        if let Some(p) = self.programs.get(program).filter(|p| p.fatal.get()) {
            p.fatal.set(false);
            let left = if n > 0 {
                format!(" ({n} instance(s) still stopping)")
            } else {
                String::new()
            };
            return ok(format!(
                "{program} was fatal; it is stopped now{left}, until `supervise start {program}`"
            ));
        }
        ok(format!("stopping {n} instance(s) of {program}"))
    }

    /// `restart NAME[/INSTANCE]`: one instance at once, or a whole program one instance at a
    /// time. Refused while the supervisor or the program is stopping for good.
    fn restart(&mut self, program: &str, instance: Option<u32>) -> Response {
        if self.stopping > 0 {
            return error("supervise is stopping; restart refused".into());
        }
        if !self.known(program) && !self.slots.values().any(|s| s.spec.name == program) {
            return error(format!("no program named {program}"));
        }
        if self.is_fatal(program) {
            return error(format!(
                "{program} is fatal (it exceeded its restart intensity): nothing to restart; \
                 `supervise start {program}` starts it afresh"
            ));
        }
        let target =
            |s: &&super::Slot| s.spec.name == program && instance.is_none_or(|i| i == s.instance);
        if let Some(s) = self
            .slots
            .values()
            .filter(target)
            .find(|s| s.doomed || s.shared.for_good.get())
        {
            return error(format!(
                "{program}/{} is stopping for good; restart refused",
                s.instance
            ));
        }
        if self.held.contains(program) {
            return error(format!(
                "{program} is stopped (supervise stop); start it instead"
            ));
        }
        if self.program_reloading(program) {
            return error(format!(
                "{program} is reloading (supervise reload-program); restart refused until that \
                 is done"
            ));
        }
        let n = self.slots.values().filter(target).count();
        if instance.is_none() && n > 1 {
            self.roll(program, None);
            return ok(format!(
                "restarting {program} one instance at a time, each after the one before is up"
            ));
        }
        let sent = self
            .slots
            .values()
            .filter(target)
            .filter(|s| s.cmds.send(Command::Restart(Reason::Manual)).is_ok())
            .count();
        if sent == 0 {
            error(format!(
                "no running instance of {}",
                named(program, instance)
            ))
        } else {
            ok(format!("restarting {sent} instance(s) of {program}"))
        }
    }

    /// `start NAME` of a program stopped with `stop`.
    fn start_held(&mut self, program: &str) -> Response {
        if self.stopping > 0 {
            return error("supervise is stopping; start refused".into());
        }
        let Some(spec) = self
            .plan
            .programs
            .iter()
            .find(|p| p.name == program)
            .cloned()
        else {
            return error(format!("no program named {program}"));
        };
        if self.slots.values().any(|s| s.spec.name == program) || self.waiting.contains_key(program)
        {
            return error(format!(
                "{program} is running (or still stopping, or waiting to start); stop it first"
            ));
        }
        self.held.remove(program);
        // A fresh start: the restart history and a fatal verdict are forgotten (the counters
        // are not: they only ever grow).
        let was = if self.is_fatal(program) {
            " (it was fatal; its restart history is forgotten)"
        } else {
            ""
        };
        self.programs.remove(program);
        let spec = Rc::new(spec);
        let replicas = spec.replicas;
        self.start_program(spec);
        match self.waiting.get(program).and_then(|s| self.blocked_by(s)) {
            Some(what) => ok(format!("{program} will start once {what} is up{was}")),
            None => ok(format!("started {replicas} instance(s) of {program}{was}")),
        }
    }

    /// `signal NAME[/INSTANCE] SIG [--group]`: to each instance's main process, or its group.
    fn signal(&self, program: &str, instance: Option<u32>, sig: Sig, group: bool) -> Response {
        if !self.known(program) && !self.slots.values().any(|s| s.spec.name == program) {
            return error(format!("no program named {program}"));
        }
        let mut n = 0;
        for s in self
            .slots
            .values()
            .filter(|s| s.spec.name == program && instance.is_none_or(|i| i == s.instance))
        {
            let whom = if group { Whom::Group } else { Whom::Main };
            if deliver(s, sig, whom) {
                n += 1;
            }
        }
        if n == 0 {
            let fatal = if self.is_fatal(program) {
                " (it is fatal: it exceeded its restart intensity)"
            } else {
                ""
            };
            error(format!(
                "no running instance of {}{fatal}",
                named(program, instance)
            ))
        } else {
            let whom = if group {
                "process group"
            } else {
                "main process"
            };
            ok(format!(
                "sent {sig} to the {whom} of {n} instance(s) of {program}"
            ))
        }
    }

    /// A signal to the supervisor (see [`crate::signals`]).
    pub(super) fn on_signal(&mut self, got: Received) {
        tracing::info!(signal = %got.sig, from = got.from, "received");
        match crate::signals::disposition(got.sig) {
            Some(Disposition::Stop) => self.stop_all(got.sig),
            Some(Disposition::Reload) if self.plan.source.is_some() => self.ask_reload(None),
            Some(Disposition::Reload | Disposition::Forward) if got.for_workers() => {
                self.forward(got.sig);
            }
            Some(Disposition::Reload | Disposition::Forward) => tracing::warn!(
                signal = %got.sig,
                "the supervisor's own trouble (a resource limit, its terminal); not forwarded"
            ),
            None => {}
        }
    }

    /// TERM, INT or QUIT: the first stops everything gracefully, the second kills at once. In
    /// single-command mode without `--stop-signal`, the workers get the very signal received.
    pub(super) fn stop_all(&mut self, sig: Sig) {
        self.stopping += 1;
        self.abandon_reload();
        self.end_program_reloads();
        if self.stopping == 1 {
            if let Some(m) = &self.manager {
                m.stopping();
            }
        }
        let cmd = if self.stopping == 1 {
            Command::Stop {
                signal: self.plan.forward_stop.then_some(sig),
            }
        } else {
            Command::Kill
        };
        tracing::info!(signal = %sig, count = self.stopping, "stopping all workers");
        self.rolls.clear();
        // Dependents first, what they start after once they are gone.
        self.stop_cmd = cmd.clone();
        self.stop_in_order(cmd);
        self.kill_strays(if self.stopping == 1 {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        });
    }

    /// Forwards a signal to every running worker; a terminal's stop signal to one that holds
    /// supervise's terminal stops it, and then supervise (see `signals::for_worker`).
    pub(super) fn forward(&self, sig: Sig) {
        let mut suspend = false;
        // As PID 1 (a container) nothing would ever continue a stopped supervise, nor is there
        // a shell to give the terminal back to: the terminal's stop signals pass as they are.
        let shell_job = std::process::id() != 1;
        for s in self.slots.values() {
            let (to, stops) = crate::signals::for_worker(sig, s.own_session && shell_job);
            suspend |= deliver(s, to, Whom::StopMode) && stops;
        }
        if suspend {
            crate::signals::suspend_self();
        }
    }
}

/// Who of an instance a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whom {
    /// Its main process (`supervise signal`).
    Main,
    /// Its process group (`supervise signal --group`).
    Group,
    /// As its stop mode says (signals forwarded from the supervisor's own).
    StopMode,
}

/// Sends `sig` to a running instance: `whom`. False if it has no process.
fn deliver(s: &super::Slot, sig: Sig, whom: Whom) -> bool {
    let Some(pid) = s.shared.pid.get() else {
        return false;
    };
    if s.shared.phase.get() == Phase::Stopped {
        return false;
    }
    // SAFETY: kill(2)/killpg(2) on a worker's pid (its group id too) while it is unreaped, so
    // neither can have been reused: the task clears `pid` when the reaper hands it the exit.
    let r = unsafe {
        match (whom, s.spec.stop.mode) {
            (Whom::Group, _) | (Whom::StopMode, StopMode::Group) => libc::killpg(pid, sig.raw()),
            (Whom::Main, _) | (Whom::StopMode, StopMode::Main) => libc::kill(pid, sig.raw()),
        }
    };
    r == 0
}

/// `NAME` or `NAME/INSTANCE`, as the operator typed it.
pub(super) fn named(program: &str, instance: Option<u32>) -> String {
    match instance {
        Some(i) => format!("{program}/{i}"),
        None => program.to_owned(),
    }
}

fn ok(message: String) -> Response {
    Response::Ok { message }
}

fn error(message: String) -> Response {
    Response::Error { message }
}
