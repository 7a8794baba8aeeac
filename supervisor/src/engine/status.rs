//! What the engine reports about its workers: the `status` snapshot and the readiness verdict.
//!
//! Every instance of a program in the config is in the snapshot, whether or not it has a task:
//! one that ended is still shown, `stopped` (by an operator, or not restarted by its restart
//! mode) or `fatal` (its program exceeded its restart intensity), with its last exit and its
//! counts, so the program an operator most needs to see never drops out of `status`, `top`, the
//! metrics or the history.

use super::Engine;
use crate::events::Reason;
use crate::status;
use crate::status::Phase;
use crate::worker::Up;

impl Engine {
    /// `/readyz`: every essential program not stopped by an operator has all its replicas
    /// running and, where they speak the protocol, ready. `Err` names the first instance that is not.
    pub(super) fn readiness(&self) -> Result<(), String> {
        if self.stopping > 0 {
            return Err("stopping".into());
        }
        for spec in &self.plan.programs {
            // An operator's stop, or a helper whose state the run does not depend on.
            if self.held.contains(&spec.name) || !spec.essential {
                continue;
            }
            if self.waiting.contains_key(&spec.name) {
                let what = self.blocked_by(spec).unwrap_or_else(|| "its turn".into());
                return Err(format!("{}: waiting for {what}", spec.name));
            }
            let name = &spec.name;
            if self.is_fatal(name) {
                // The instance given up on, before a sibling that is still being stopped.
                let given_up = (0..spec.replicas).find(|&i| {
                    self.slot_of(name, i)
                        .is_none_or(|s| s.shared.phase.get() == Phase::Fatal)
                });
                if let Some(i) = given_up {
                    return Err(format!("{name}/{i}: fatal"));
                }
            }
            for i in 0..spec.replicas {
                let Some(s) = self.slot_of(name, i) else {
                    return Err(format!("{name}/{i}: not running"));
                };
                let sh = &s.shared;
                match sh.up(s.spec.ready.is_some()) {
                    Up::Yes => {}
                    Up::NotReady => return Err(format!("{name}/{i}: not ready yet")),
                    Up::No => return Err(format!("{name}/{i}: {}", sh.phase.get().as_str())),
                }
            }
        }
        Ok(())
    }

    /// Tells the service manager that runs supervise (if it asked) where things stand:
    /// `READY=1` once every program is up, and a one-line `STATUS=`.
    pub(super) fn tell_manager(&mut self) {
        if self.manager.is_none() || self.stopping > 0 {
            return;
        }
        let up = self.readiness();
        let running = self
            .slots
            .values()
            .filter(|s| s.shared.pid.get().is_some())
            .count();
        let status = match &up {
            Ok(()) => format!("{running} instances up"),
            Err(why) => format!("{running} instances running; not ready: {why}"),
        };
        if let Some(m) = &mut self.manager {
            match up {
                Ok(()) => m.up(&status),
                Err(_) => m.status(&status),
            }
        }
    }

    /// Whether `program` was given up on (it exceeded its restart intensity) and not started
    /// again since.
    pub(super) fn is_fatal(&self, program: &str) -> bool {
        self.programs.get(program).is_some_and(|p| p.fatal.get())
    }

    /// The task of `program`'s instance `i`, if it has one (the live one, during a reload's
    /// replacement).
    fn slot_of(&self, program: &str, i: u32) -> Option<&super::Slot> {
        self.slots
            .values()
            .filter(|s| s.spec.name == program && s.instance == i)
            .min_by_key(|s| s.doomed)
    }

    /// An instance with no process: what it did before still counts.
    fn idle_status(&self, program: &str, instance: u32) -> status::WorkerStatus {
        let counters = self.counters.get(&(program.to_owned(), instance));
        let restarts = counters.map_or(0, |c| c.restarts.get());
        let by = counters.map_or([0; Reason::ALL.len()], |c| c.by.get());
        let totals = counters.map_or_else(status::Totals::default, |c| {
            c.totals(&status::Totals::default())
        });
        let memory = self
            .plan
            .programs
            .iter()
            .find(|p| p.name == program)
            .and_then(|p| p.memory);
        status::WorkerStatus {
            memory_max_bytes: memory.map(|m| m.max),
            memory_measure: memory.map(|m| m.measure.as_str().to_owned()),
            argv: Vec::new(),
            restarts,
            restarts_by_reason: crate::status::restarts_by_reason(&by),
            findings_by_kind: counters.map(|c| c.findings()).unwrap_or_default(),
            totals,
            last_exit: counters
                .and_then(|c| c.last_exit())
                .map(|(exit, at)| status::LastExit::new(exit, at)),
            ..status::WorkerStatus::new(program, instance)
        }
    }

    /// Every instance, running or not, in program and instance order.
    pub(super) fn status(&self) -> Vec<status::WorkerStatus> {
        let mut out: Vec<status::WorkerStatus> = self
            .slots
            .values()
            .map(|s| {
                let sh = &s.shared;
                // None between a restart and the new process's first sample: the figures
                // left from the process before are not this one's.
                let last = sh.sample().filter(|_| sh.pid.get().is_some());
                let report = sh.report.borrow();
                status::WorkerStatus {
                    program: s.spec.name.clone(),
                    instance: s.instance,
                    pid: sh.pid.get(),
                    state: sh.phase.get(),
                    ready: sh.up(s.spec.ready.is_some()) == Up::Yes,
                    uptime_s: sh
                        .started
                        .get()
                        .map(|t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
                    restarts: sh.counters.restarts.get(),
                    restarts_by_reason: crate::status::restarts_by_reason(&sh.counters.by.get()),
                    rss_bytes: last.map(|l| l.rss),
                    pss_bytes: last.and_then(|l| l.pss),
                    cpu_percent: last.map(|l| (l.cpu_percent * 10.0).round() / 10.0),
                    cpu_seconds: last.map(|l| l.cpu_seconds),
                    threads: last.map(|l| l.threads),
                    fds: last.map(|l| l.fds),
                    processes: last.map(|l| l.procs),
                    heap_bytes: report.as_ref().map(|r| r.heap_bytes),
                    heartbeat_age_ms: report.as_ref().and_then(|r| r.heartbeat_age_ms),
                    counters: report
                        .as_ref()
                        .map(|r| r.metrics.clone())
                        .unwrap_or_default(),
                    gauges: report
                        .as_ref()
                        .map(|r| r.gauges.clone())
                        .unwrap_or_default(),
                    speaks: sh.speaks.get(),
                    findings: sh
                        .findings
                        .borrow()
                        .iter()
                        .map(|f| (*f).to_owned())
                        .collect(),
                    findings_by_kind: sh.counters.findings(),
                    disk: last.map(|_| sh.disk.get()),
                    net: last
                        .and(sh.net.borrow().as_ref())
                        .map(status::NetStatus::from),
                    status_text: sh.notified.borrow().status.clone(),
                    main_pid: sh.notified.borrow().main_pid,
                    errno: sh.notified.borrow().errno,
                    waiting_for: None,
                    totals: sh.counters.totals(&sh.current_totals()),
                    members: if last.is_some() {
                        sh.member_status.borrow().clone()
                    } else {
                        Vec::new()
                    },
                    last_exit: sh
                        .counters
                        .last_exit()
                        .map(|(exit, at)| status::LastExit::new(exit, at)),
                    memory_max_bytes: s.spec.memory.map(|m| m.max),
                    memory_measure: s.spec.memory.map(|m| m.measure.as_str().to_owned()),
                    argv: sh.argv.borrow().clone(),
                }
            })
            .collect();
        for spec in self.waiting.values() {
            let what = self.blocked_by(spec).unwrap_or_else(|| "its turn".into());
            out.extend((0..spec.replicas).map(|instance| {
                let mut w = self.idle_status(&spec.name, instance);
                w.state = crate::status::Phase::Waiting;
                w.waiting_for = Some(what.clone());
                w
            }));
        }
        // Instances without a task: stopped by an operator, given up on, or ended as their
        // restart mode allows. One that never had a task (a reload's new instance the roll has
        // not reached yet) is not shown.
        let mut shown: std::collections::HashSet<(&str, u32)> = out
            .iter()
            .map(|w| (w.program.as_str(), w.instance))
            .collect();
        let mut idle = Vec::new();
        for spec in &self.plan.programs {
            let name = spec.name.as_str();
            if self.waiting.contains_key(name) {
                continue;
            }
            let held = self.held.contains(name);
            // `stop` on a fatal program makes it stopped: held wins.
            let fatal = !held && self.is_fatal(name);
            let state = if fatal { Phase::Fatal } else { Phase::Stopped };
            for i in 0..spec.replicas {
                if shown.insert((name, i))
                    && (held || fatal || self.counters.contains_key(&(spec.name.clone(), i)))
                {
                    let mut w = self.idle_status(name, i);
                    w.state = state;
                    idle.push(w);
                }
            }
        }
        out.extend(idle);
        out.sort_by(|a, b| (&a.program, a.instance).cmp(&(&b.program, b.instance)));
        out
    }
}
