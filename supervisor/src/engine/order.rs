//! Start order: a program with `after = ["db"]` starts once every instance of `db` is up (ready
//! by its readiness rule; running, for a program without one), and when the supervisor stops,
//! it is stopped before `db` is. A dependency that never comes up (fatal, stopped by an
//! operator, not ready) leaves its dependents waiting, and `status` says for what.

use std::rc::Rc;

use super::Engine;
use crate::plan::ProgramSpec;
use crate::worker::{Command, Up};

impl Engine {
    /// Starts every instance of `spec` now, or once what it starts after is up.
    pub(super) fn start_program(&mut self, spec: Rc<ProgramSpec>) {
        if let Some(warning) = shared_port_check(&spec) {
            tracing::warn!(program = %spec.name, "{warning}");
        }
        if self.blocked_by(&spec).is_none() {
            for i in 0..spec.replicas {
                self.start(&spec, i);
            }
        } else {
            self.waiting.insert(spec.name.clone(), spec);
        }
    }

    /// What `spec` still waits for, or `None` if it may start.
    pub(super) fn blocked_by(&self, spec: &ProgramSpec) -> Option<String> {
        for dep in &spec.after {
            if self.held.contains(dep) {
                return Some(format!("{dep} (stopped)"));
            }
            if self.waiting.contains_key(dep) {
                return Some(format!("{dep} (waiting)"));
            }
            if self.programs.get(dep).is_some_and(|p| p.fatal.get()) {
                return Some(format!("{dep} (fatal)"));
            }
            let Some(dep_spec) = self.plan.programs.iter().find(|p| &p.name == dep) else {
                // Removed by a reload: nothing to wait for any more.
                continue;
            };
            for i in 0..dep_spec.replicas {
                let up = self
                    .slots
                    .values()
                    .find(|s| &s.spec.name == dep && s.instance == i)
                    .map_or(Up::No, |s| s.shared.up(s.spec.ready.is_some()));
                match up {
                    Up::Yes => {}
                    Up::NotReady => return Some(format!("{dep}/{i} (not ready)")),
                    Up::No => return Some(format!("{dep}/{i} (not running)")),
                }
            }
        }
        None
    }

    /// Starts the waiting programs whose dependencies came up; called on the engine's order
    /// tick while any waits.
    pub(super) fn advance_order(&mut self) {
        if self.stopping > 0 {
            return;
        }
        let ready: Vec<Rc<ProgramSpec>> = self
            .waiting
            .values()
            .filter(|s| self.blocked_by(s).is_none())
            .cloned()
            .collect();
        for spec in ready {
            self.waiting.remove(&spec.name);
            for i in 0..spec.replicas {
                self.start(&spec, i);
            }
        }
    }

    /// Programs with instances that some other running program starts after: they stop last.
    fn needed(&self, program: &str) -> bool {
        self.slots
            .values()
            .any(|s| s.spec.name != program && s.spec.after.iter().any(|d| d == program))
    }

    /// On a stop of everything: stops now what nothing running depends on; the rest waits in
    /// `stop_later` until its dependents are gone ([`Engine::advance_stop`]).
    pub(super) fn stop_in_order(&mut self, cmd: Command) {
        self.waiting.clear();
        let mut later = std::collections::BTreeSet::new();
        let names: std::collections::BTreeSet<String> =
            self.slots.values().map(|s| s.spec.name.clone()).collect();
        for name in names {
            if matches!(cmd, Command::Kill) || !self.needed(&name) {
                self.stop_now(&name, cmd.clone());
            } else {
                later.insert(name);
            }
        }
        self.stop_later = later;
    }

    /// Stops the programs left for later once nothing running needs them.
    pub(super) fn advance_stop(&mut self) {
        let due: Vec<String> = self
            .stop_later
            .iter()
            .filter(|n| !self.needed(n))
            .cloned()
            .collect();
        for name in due {
            self.stop_later.remove(&name);
            self.stop_now(&name, self.stop_cmd.clone());
        }
    }

    fn stop_now(&mut self, program: &str, cmd: Command) {
        for s in self.slots.values_mut().filter(|s| s.spec.name == program) {
            s.doomed = true;
            let _ = s.cmds.send(cmd.clone());
        }
    }
}

/// A warning for replicas that all check readiness by connecting to one port: if they share it
/// (`SO_REUSEPORT`), any listening sibling answers for an instance that is not listening yet.
fn shared_port_check(spec: &ProgramSpec) -> Option<String> {
    use crate::plan::{Check, ReadyHow};
    if spec.replicas < 2 {
        return None;
    }
    let (what, port) = match spec.ready.as_ref().map(|r| &r.how) {
        Some(ReadyHow::Check(Check::Tcp { host, port })) => (format!("tcp://{host}:{port}"), port),
        Some(ReadyHow::Check(Check::Http { host, port, .. })) => {
            (format!("http://{host}:{port}"), port)
        }
        _ => return None,
    };
    Some(format!(
        "{} replicas check readiness on the same {what}: if they share the port \
         (SO_REUSEPORT), a sibling answers for an instance that is not listening yet; \
         use ready = {{ listen = {port} }} (--ready listen:{port}) to ask whether the instance's \
         own tree listens",
        spec.replicas
    ))
}
