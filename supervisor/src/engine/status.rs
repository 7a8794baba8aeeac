//! What the engine reports about its workers: the `status` snapshot and the readiness verdict.

use super::Engine;
use crate::events::Reason;
use crate::status;
use crate::worker::Up;

impl Engine {
    /// `/readyz`: every program not stopped by an operator has all its replicas running and,
    /// where they speak the protocol, ready. `Err` names the first instance that is not.
    pub(super) fn readiness(&self) -> Result<(), String> {
        if self.stopping > 0 {
            return Err("stopping".into());
        }
        for spec in &self.plan.programs {
            if self.held.contains(&spec.name) {
                continue;
            }
            if self.waiting.contains_key(&spec.name) {
                let what = self.blocked_by(spec).unwrap_or_else(|| "its turn".into());
                return Err(format!("{}: waiting for {what}", spec.name));
            }
            for i in 0..spec.replicas {
                let name = &spec.name;
                let Some(s) = self
                    .slots
                    .values()
                    .find(|s| &s.spec.name == name && s.instance == i)
                else {
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

    /// An instance with no process: what it did before still counts.
    fn idle_status(&self, program: &str, instance: u32) -> status::WorkerStatus {
        let counters = self.counters.get(&(program.to_owned(), instance));
        let restarts = counters.map_or(0, |c| c.restarts.get());
        let by = counters.map_or([0; Reason::ALL.len()], |c| c.by.get());
        let totals = counters.map_or_else(status::Totals::default, |c| {
            c.totals(&status::Totals::default())
        });
        status::WorkerStatus {
            restarts,
            restarts_by_reason: crate::status::restarts_by_reason(&by),
            findings_by_kind: counters.map(|c| c.findings()).unwrap_or_default(),
            totals,
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
        for name in &self.held {
            if !out.iter().any(|w| &w.program == name) {
                let replicas = self
                    .plan
                    .programs
                    .iter()
                    .find(|p| &p.name == name)
                    .map_or(0, |p| p.replicas);
                out.extend((0..replicas).map(|instance| self.idle_status(name, instance)));
            }
        }
        out.sort_by(|a, b| (&a.program, a.instance).cmp(&(&b.program, b.instance)));
        out
    }
}
