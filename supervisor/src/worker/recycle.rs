//! Member recycling (`memory.recycle = "member"`): when a tree is over its limit or its leak
//! trend fires, and one member that is not the root holds the growth
//! ([`policy::member_to_recycle`]), only that member gets the stop signal (SIGKILL after the
//! grace); a pre-forking server's master starts a fresh one and its clients lose nothing. If the
//! tree is still over its limit `memory.for` samples after the member is gone, the tree goes.

use std::time::{Duration, Instant};

use super::watch::{Recycling, Watch};
use super::{millis, Ctx};
use crate::events::{Kind, Reason};
use crate::leak::{LeakSpec, LeakVerdict, LeakWatch};
use crate::policy;
use crate::probe::proc::command_line;

/// How often a draining tree is sampled for its ceiling.
pub(super) const DRAIN_SAMPLE: Duration = Duration::from_millis(250);

impl Ctx {
    /// Recycling ahead of the limit (`memory.recycle_before`: the trend says the tree reaches
    /// `max` within that long) and on a schedule (`recycle.every`, `recycle.requests`): the
    /// member or the tree, as `memory.recycle` says, through the capacity guard (`Err`: the tree
    /// goes now). Nothing while a member recycle is under way.
    pub(super) fn recycle_checks(
        &self,
        w: &mut Watch,
        at: Instant,
        bytes: u64,
        first_bytes: u64,
        recycling: bool,
    ) -> Result<(), Reason> {
        if recycling {
            return Ok(());
        }
        let h = self.spec.handling;
        if let (Some(before), Some(m)) = (h.recycle_before, self.spec.memory) {
            let within = self
                .spec
                .leak
                .map_or(crate::plan::DEFAULT_TREND_WINDOW, |l| l.spec.within);
            let trend = w
                .trend
                .get_or_insert_with(|| LeakWatch::new(LeakSpec { growth: 0, within }));
            if let LeakVerdict::Leak {
                slope_bytes_per_s, ..
            } = trend.observe(at, bytes)
            {
                let eta = policy::time_to_limit(m.max, bytes, slope_bytes_per_s);
                if let Some(eta) = eta.filter(|&e| e <= before) {
                    if w.waiting != Some(Reason::Recycle) {
                        self.event(
                            Some(w.pid),
                            Kind::Finding {
                                kind: "recycle_due",
                                detail: format!(
                                    "the tree's memory trend reaches its limit within {}",
                                    humantime::format_duration(before)
                                ),
                                numbers: [
                                    ("bytes", bytes),
                                    ("limit", m.max),
                                    ("slope_bytes_per_s", slope_bytes_per_s.max(0.0) as u64),
                                    ("eta_ms", millis(eta)),
                                ]
                                .into(),
                            },
                        );
                    }
                    if self.recycle_member(w, Reason::Recycle, bytes) {
                        w.trend = None;
                        return Ok(());
                    }
                    return self.handled(w, Reason::Recycle, bytes, Some(first_bytes));
                }
            }
        }
        let age = self
            .shared
            .started
            .get()
            .map_or(Duration::ZERO, |t| t.elapsed());
        let by_time = w.recycle_at.is_some_and(|t| at >= t);
        let by_requests =
            w.recycle_requests.is_some_and(|n| self.requests() >= n) && age >= h.min_uptime;
        if by_time || by_requests {
            if w.waiting != Some(Reason::Recycle) {
                self.event(
                    Some(w.pid),
                    Kind::Finding {
                        kind: "recycle_due",
                        detail: if by_time {
                            "its scheduled recycle (recycle.every) came due".into()
                        } else {
                            "it served its recycle.requests".into()
                        },
                        numbers: [("uptime_ms", millis(age)), ("requests", self.requests())].into(),
                    },
                );
            }
            return self.handled(w, Reason::Recycle, bytes, None);
        }
        Ok(())
    }

    /// Requests the worker counted (its SDK's `requests` counter, fixed or named).
    fn requests(&self) -> u64 {
        self.shared.report.borrow().as_ref().map_or(0, |r| {
            r.requests
                .max(r.metrics.get("requests").copied().unwrap_or(0))
        })
    }

    /// A sample of a tree being stopped: only its ceiling is judged. `Some` when it is past it.
    pub(super) fn ceiling_tick(&self, w: &mut Watch) -> Option<Reason> {
        let ceiling = self.spec.handling.ceiling?;
        let s = w.tree.sample(
            self.spec
                .memory
                .is_some_and(|m| m.measure == crate::plan::Measure::Pss),
        );
        self.shared.last.set(Some(s));
        let bytes = s.pss.unwrap_or(s.rss);
        (bytes > ceiling).then(|| {
            self.event(
                Some(w.pid),
                Kind::Finding {
                    kind: "over_ceiling",
                    detail: "past its memory ceiling while being stopped: a drain ends, a stop \
                             under way goes on with SIGKILL"
                        .into(),
                    numbers: [("bytes", bytes), ("ceiling", ceiling)].into(),
                },
            );
            Reason::Memory
        })
    }

    /// Keeps the tree's members (pid, command, memory, growth) for `status`, when it has more
    /// than one: each command is read once, when its process is first listed.
    pub(super) fn note_members(&self, w: &Watch, procs: u32) {
        let mut shown = self.shared.member_status.borrow_mut();
        if procs <= 1 {
            shown.clear();
            return;
        }
        let mut members: Vec<policy::MemberGrowth> = w.tree.growth().collect();
        members.sort_by_key(|m| std::cmp::Reverse(m.rss));
        members.truncate(crate::status::MAX_MEMBERS_SHOWN);
        let before = std::mem::take(&mut *shown);
        shown.extend(members.iter().map(|m| {
            crate::status::MemberStatus {
                pid: m.pid,
                command: before
                    .iter()
                    .find(|b| b.pid == m.pid)
                    .map_or_else(|| command_line(m.pid), |b| b.command.clone()),
                rss_bytes: m.rss,
                growth_bytes: m.growth(),
            }
        }));
    }

    /// Follows a member recycle under way, at each sample: once the member is gone it is said
    /// (`recycled`) and counted, and the tree is judged afresh; past the grace it is SIGKILLed.
    /// True while the member is still there (the tree's memory decisions wait for it).
    pub(super) fn follow_recycle(&self, w: &mut Watch, bytes: u64) -> bool {
        let Some(r) = w.recycling.as_mut() else {
            return false;
        };
        if w.tree.contains(r.pid) {
            if !r.killed && r.asked.elapsed() >= self.spec.stop.grace {
                r.killed = true;
                w.tree.signal_member(r.pid, libc::SIGKILL);
            }
            return true;
        }
        let Some(r) = w.recycling.take() else {
            return false;
        };
        self.shared.counters.count(Reason::Recycle);
        self.event(
            Some(w.pid),
            Kind::Recycled {
                reason: r.reason,
                member: r.pid,
                command: r.command,
                member_bytes: r.member_bytes,
                tree_before: r.tree_before,
                tree_after: bytes,
            },
        );
        // Judged afresh: `for` samples over the limit from here make the tree go.
        w.memory = policy::MemoryWatch::default();
        w.leak = None;
        w.after_member = true;
        false
    }

    /// Instead of the tree, recycles the member that holds its growth, if one does and the last
    /// member recycle was enough. True if it started (the tree stays).
    pub(super) fn recycle_member(&self, w: &mut Watch, reason: Reason, bytes: u64) -> bool {
        if self.spec.handling.recycle != crate::plan::RecycleScope::Member {
            return false;
        }
        if w.after_member && reason == Reason::Memory {
            self.event(
                Some(w.pid),
                Kind::Finding {
                    kind: "recycle_not_enough",
                    detail: "still over the limit after a member was recycled: the tree goes"
                        .into(),
                    numbers: [("bytes", bytes)].into(),
                },
            );
            return false;
        }
        let members: Vec<policy::MemberGrowth> = w.tree.growth().collect();
        let Some(pid) = policy::member_to_recycle(w.pid, &members) else {
            return false;
        };
        let member_bytes = members.iter().find(|m| m.pid == pid).map_or(0, |m| m.rss);
        if !w.tree.signal_member(pid, self.spec.stop.signal.raw()) {
            return false;
        }
        w.recycling = Some(Recycling {
            pid,
            command: command_line(pid),
            member_bytes,
            tree_before: bytes,
            reason,
            asked: Instant::now(),
            killed: false,
        });
        true
    }
}
