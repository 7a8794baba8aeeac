//! What one sample of a running worker says: its tree from /proc and its segment, judged by
//! the policies (memory, leak, heartbeat, cross-checks), and when to look again.

use std::time::Duration;

use child_sdk::proto::SupervisorMsg;
use child_sdk::segment;

use super::watch::{Ipc, Watch};
use super::{millis, monotonic_ns, Ctx};
use crate::crosscheck::Claims;
use crate::events::{Kind, Reason, Report};
use crate::leak::{LeakVerdict, LeakWatch};
use crate::plan::{Measure, OnLeak};
use crate::policy::{self, Capacity, Heartbeat, MemoryVerdict};
use crate::probe::tree::TreeSample;

impl Ctx {
    /// One sample: the tree from /proc, the segment, and the policies over both. `Ok(delay)` until
    /// the next sample, or the reason to restart now.
    pub(super) fn tick(&self, w: &mut Watch) -> Result<Duration, Reason> {
        let pid = w.pid;
        for p in self.shared.adopt.borrow_mut().drain(..) {
            w.tree.adopt(p);
        }
        let s = w
            .tree
            .tick(self.spec.memory.is_some_and(|m| m.measure == Measure::Pss));
        self.shared.last.set(Some(s));
        {
            let mut members = self.shared.members.borrow_mut();
            let mut fds = self.shared.member_fds.borrow_mut();
            members.clear();
            fds.clear();
            for (pid, n) in w.tree.pids_fds() {
                members.push(pid);
                fds.push(n);
            }
        }
        let bytes = measured(&s);
        let first_bytes = *w.first_bytes.get_or_insert(bytes);
        self.note_members(w, s.procs);
        let recycling = self.follow_recycle(w, bytes);
        if let Some(spec) = &self.spec.memory {
            match w.memory.observe(spec, bytes) {
                MemoryVerdict::Ok => {
                    if w.waiting == Some(Reason::Memory) {
                        w.waiting = None;
                    }
                    w.after_member = false;
                }
                MemoryVerdict::Over { count } | MemoryVerdict::Restart { count } => {
                    // While it waits for the capacity guard, the wait was said once.
                    // Said once while it waits for the guard, not at all while a member leaves.
                    if w.waiting != Some(Reason::Memory) && !recycling {
                        self.event(
                            Some(pid),
                            Kind::MemoryOver {
                                bytes,
                                limit: spec.max,
                                measure: spec.measure.as_str(),
                                count,
                                of: spec.count,
                            },
                        );
                    }
                    let past_ceiling = self.spec.handling.ceiling.is_some_and(|c| bytes > c);
                    if past_ceiling
                        || (count >= spec.count
                            && !recycling
                            && !self.recycle_member(w, Reason::Memory, bytes))
                    {
                        self.handled(w, Reason::Memory, bytes, Some(first_bytes))?;
                    }
                }
            }
            if w.pressure.observe(spec, bytes) && w.session.speaks() {
                self.memory_pressure(w, bytes, spec.max);
            }
        }
        // The host as a whole came under memory pressure (`[pressure]`): SDK workers are told
        // too, whatever their own limit.
        let host = self.host_pressure.get();
        if std::mem::replace(&mut w.host_pressure_seen, host) != host && w.session.speaks() {
            self.memory_pressure(w, bytes, self.spec.memory.map_or(0, |m| m.max));
        }
        self.recycle_checks(w, s.at, bytes, first_bytes, recycling)?;
        if let Some(policy) = &self.spec.leak {
            let watch = w.leak.get_or_insert_with(|| LeakWatch::new(policy.spec));
            let verdict = watch.observe(s.at, bytes);
            if !matches!(verdict, LeakVerdict::Leak { .. }) && w.waiting == Some(Reason::Leak) {
                w.waiting = None;
            }
            if let LeakVerdict::Leak {
                slope_bytes_per_s,
                growth_over_window,
                samples,
            } = verdict
            {
                // While its restart waits for the capacity guard, the leak was said once.
                let said = w.waiting == Some(Reason::Leak);
                if !said {
                    self.event(
                        Some(pid),
                        Kind::Finding {
                            kind: "leak",
                            detail: "the tree's memory grows steadily at or above the leak rate"
                                .into(),
                            numbers: [
                                ("slope_bytes_per_s", slope_bytes_per_s.max(0.0) as u64),
                                ("growth_over_window_bytes", growth_over_window),
                                ("window_ms", millis(policy.spec.within)),
                                ("samples", samples as u64),
                            ]
                            .into(),
                        },
                    );
                }
                match policy.on_leak {
                    // A member recycled: the trend starts afresh with the tree that is left.
                    OnLeak::Restart if recycling => {}
                    OnLeak::Restart if self.recycle_member(w, Reason::Leak, bytes) => {
                        w.leak = None;
                    }
                    // Waiting for the capacity guard: looked at again at the next sample.
                    OnLeak::Restart => self.handled(w, Reason::Leak, bytes, Some(first_bytes))?,
                    // Warned: judge afresh from here, so the next warning needs a new window.
                    OnLeak::Warn => w.leak = None,
                }
            }
        }
        let mut claims = Claims {
            heap: None,
            ready: w.session.ready,
        };
        if let Some(ipc) = &w.ipc {
            if w.session.speaks() {
                let mut report = self.shared.report.borrow_mut();
                if let Some(heap_reported) = refresh_report(ipc, &mut w.snap, &mut report) {
                    claims.heap = heap_reported
                        .then(|| report.as_ref().map(|r| r.heap_bytes))
                        .flatten();
                }
            }
        }
        // The heartbeat: the segment's stamp (SDK workers) or the last `WATCHDOG=1` on the notify
        // socket, whichever is later; `WATCHDOG=trigger` is a hang said outright.
        // Read only when it can matter (the worker speaks the protocol, or a heartbeat timeout is
        // set): reading maps the segment's page into the supervisor, 4 KiB per quiet worker.
        let segment_stamp = w
            .ipc
            .as_ref()
            .filter(|_| w.session.speaks() || self.spec.heartbeat.is_some())
            .map_or(0, |ipc| ipc.segment.heartbeat_ns());
        let (notify_stamp, triggered) = {
            let n = self.shared.notified.borrow();
            (n.watchdog_ns, n.triggered)
        };
        let timeout = self.spec.heartbeat.map(|h| h.timeout);
        let verdict = if triggered {
            Heartbeat::Stale {
                age: timeout.unwrap_or_default(),
            }
        } else {
            policy::heartbeat(monotonic_ns(), segment_stamp.max(notify_stamp), timeout)
        };
        match verdict {
            Heartbeat::Unwatched | Heartbeat::Fresh { .. } => {}
            Heartbeat::Stale { age } => {
                let detail = if triggered {
                    "the worker said WATCHDOG=trigger"
                } else {
                    "the heartbeat stopped while the process is alive"
                };
                self.event(
                    Some(pid),
                    Kind::Finding {
                        kind: "hung",
                        detail: detail.into(),
                        numbers: [
                            ("heartbeat_age_ms", millis(age)),
                            ("timeout_ms", millis(timeout.unwrap_or_default())),
                        ]
                        .into(),
                    },
                );
                return Err(Reason::Hung);
            }
            Heartbeat::Future { ahead } => {
                if !w.implausible_heartbeat {
                    w.implausible_heartbeat = true;
                    self.event(
                        Some(pid),
                        Kind::Finding {
                            kind: "implausible_report",
                            detail: "heartbeat stamp ahead of the clock".into(),
                            numbers: [("ahead_ms", millis(ahead))].into(),
                        },
                    );
                }
            }
        }
        for f in w.cross.observe(&s, claims) {
            self.event(
                Some(pid),
                Kind::Finding {
                    kind: f.kind,
                    detail: f.detail,
                    numbers: f.numbers,
                },
            );
        }
        while w
            .recent
            .front()
            .is_some_and(|&(t, _)| s.at.duration_since(t) > 2 * self.sample_every)
        {
            w.recent.pop_front();
        }
        let limit = self.spec.memory.map(|m| m.max);
        let mut delay = policy::next_sample(
            self.sample_every,
            limit,
            w.recent.front().copied(),
            (s.at, bytes),
        );
        if w.waiting.is_some() {
            // Over the limit and waiting for a sibling: the ceiling is what is watched now.
            delay = delay.max(WAITING_SAMPLE.min(self.sample_every));
        }
        w.recent.push_back((s.at, bytes));
        Ok(delay)
    }

    /// Tells an SDK worker its memory is under pressure (`MemoryPressure`), and says so.
    fn memory_pressure(&self, w: &mut Watch, bytes: u64, limit: u64) {
        self.event(Some(w.pid), Kind::MemoryPressure { bytes, limit });
        self.send(w, &SupervisorMsg::MemoryPressure { bytes, limit });
    }

    /// A restart that handles memory (a limit, a leak, a recycle) passes the program's capacity
    /// guard (`Err(reason)`: go) or waits (`Ok`), said once per wait. One for memory of an
    /// incarnation younger than `memory.min_uptime` is `limit_too_low`, and counted as a
    /// failure; `first_bytes` is the tree's first sample, `None` for a scheduled recycle (never
    /// too soon: its schedule says when).
    pub(super) fn handled(
        &self,
        w: &mut Watch,
        reason: Reason,
        bytes: u64,
        first_bytes: Option<u64>,
    ) -> Result<(), Reason> {
        let h = &self.spec.handling;
        let out = self
            .program
            .others_out(self.instance, self.spec.ready.is_some());
        let limit = self.spec.memory.map_or(0, |m| m.max);
        match policy::capacity(out, h.max_unavailable, bytes, h.ceiling) {
            Capacity::Wait { out } => {
                if w.waiting != Some(reason) {
                    w.waiting = Some(reason);
                    self.event(
                        Some(w.pid),
                        Kind::Finding {
                            kind: "restart_waits",
                            detail: format!(
                                "{} restart waits: {out} other instance(s) of the program are \
                                 out; it goes once one is up again, or at once past the ceiling",
                                reason.as_str()
                            ),
                            numbers: [
                                ("bytes", bytes),
                                ("others_out", u64::from(out)),
                                ("max_unavailable", u64::from(h.max_unavailable)),
                                ("ceiling", h.ceiling.unwrap_or(0)),
                            ]
                            .into(),
                        },
                    );
                }
                Ok(())
            }
            go => {
                w.waiting = None;
                // Said when the ceiling is what let it go.
                if go == Capacity::Ceiling && out >= h.max_unavailable {
                    self.event(
                        Some(w.pid),
                        Kind::Finding {
                            kind: "over_ceiling",
                            detail: "past its memory ceiling: restarted at once, whatever the \
                                     program's other instances do"
                                .into(),
                            numbers: [("bytes", bytes), ("ceiling", h.ceiling.unwrap_or(0))].into(),
                        },
                    );
                }
                let age = self.shared.started.get().map(|t| t.elapsed());
                if let (Some(age), Some(first_bytes)) =
                    (age.filter(|&a| a < h.min_uptime), first_bytes)
                {
                    w.too_soon = true;
                    self.event(
                        Some(w.pid),
                        Kind::Finding {
                            kind: "limit_too_low",
                            detail: format!(
                                "stopped for {} within {} of its start: the limit is below what \
                                 the program needs; this restart counts toward the intensity",
                                reason.as_str(),
                                humantime::format_duration(h.min_uptime)
                            ),
                            numbers: [
                                ("bytes_at_start", first_bytes),
                                ("bytes", bytes),
                                ("limit", limit),
                                ("uptime_ms", millis(age)),
                                ("min_uptime_ms", millis(h.min_uptime)),
                            ]
                            .into(),
                        },
                    );
                }
                Err(reason)
            }
        }
    }
}

/// How often a tree over its limit is sampled while its restart waits for the capacity guard.
const WAITING_SAMPLE: Duration = Duration::from_millis(250);

/// Reads the segment into `snap` (reused: no allocation per tick) and brings `report` up to date
/// from it, rebuilding its maps only when the set of metric names changed. The process pages of
/// processes that are gone (forked workers that exited) are folded into the totals and freed
/// first. Returns whether the heap figures are really published (the worker installed the SDK's
/// counting allocator, or reports its heap itself), or `None` if the segment does not validate
/// (a scribbling worker), leaving `report` as it was.
pub(super) fn refresh_report(
    ipc: &Ipc,
    snap: &mut segment::Snapshot,
    report: &mut Option<Report>,
) -> Option<bool> {
    ipc.segment.release(|pid| !process_exists(pid));
    ipc.segment.read_into(snap).ok()?;
    let r = report.get_or_insert_with(|| Report {
        heap_bytes: 0,
        heap_peak: 0,
        allocations: 0,
        requests: 0,
        errors: 0,
        in_flight: 0,
        metrics: std::collections::BTreeMap::new(),
        gauges: std::collections::BTreeSet::new(),
        heartbeat_age_ms: None,
    });
    r.heap_bytes = snap.heap_bytes;
    r.heap_peak = snap.heap_peak;
    r.allocations = snap.allocations;
    r.requests = snap.requests;
    r.errors = snap.errors;
    r.in_flight = snap.in_flight;
    r.heartbeat_age_ms = (snap.heartbeat_ns != 0)
        .then(|| monotonic_ns().saturating_sub(snap.heartbeat_ns) / 1_000_000);
    let same_names = r.metrics.len() == snap.metrics.len()
        && snap.metrics.iter().all(|m| r.metrics.contains_key(&m.name));
    if same_names {
        for m in &snap.metrics {
            if let Some(v) = r.metrics.get_mut(&m.name) {
                *v = m.value;
            }
        }
    } else {
        r.metrics = snap
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value))
            .collect();
    }
    if !same_names {
        r.gauges = snap
            .metrics
            .iter()
            .filter(|m| m.kind == segment::MetricKind::Gauge)
            .map(|m| m.name.clone())
            .collect();
    }
    Some(snap.heap_reported())
}

/// Whether a process with this pid exists (a zombie does: it is freed once reaped). A pid the
/// child wrote is hostile: one that is not a positive `pid_t` names no process.
fn process_exists(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|p| {
        p > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                != Err(nix::errno::Errno::ESRCH)
    })
}

/// The figure compared with the limit.
fn measured(s: &TreeSample) -> u64 {
    s.pss.unwrap_or(s.rss)
}
