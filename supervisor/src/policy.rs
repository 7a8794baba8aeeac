//! Pure decisions: restart or give up, how long to back off, when memory is over the limit, and
//! when to sample next. No processes, no clocks read here: time comes in as arguments, so every
//! rule is tested exhaustively in microseconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::events::Reason;
use crate::plan::{Backoff, Intensity, MemorySpec, RestartMode};
use crate::reaper::Exit;

/// What to do once a worker has exited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterExit {
    /// Start it again after this delay.
    Restart { reason: Reason, delay: Duration },
    /// Leave it stopped: it ended as its restart mode allows.
    Done,
    /// More than `max` restarts within the window: give up on the program.
    Fatal { restarts: u32 },
}

/// Restart times within the intensity window: of a program (shared by its replicas, as an OTP
/// supervisor counts them), for its intensity; of one instance, for its backoff.
#[derive(Debug, Default, Clone)]
pub struct History {
    restarts: VecDeque<Instant>,
}

impl History {
    /// Restarts within `within` before `now`.
    pub fn recent(&mut self, now: Instant, within: Duration) -> u32 {
        while self
            .restarts
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= within)
        {
            self.restarts.pop_front();
        }
        u32::try_from(self.restarts.len()).unwrap_or(u32::MAX)
    }

    fn push(&mut self, now: Instant) {
        self.restarts.push_back(now);
    }
}

/// The restart rules of one program.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub mode: RestartMode,
    pub backoff: &'a Backoff,
    pub intensity: &'a Intensity,
    /// The incarnation that exited was stopped for memory (a limit, a leak, a recycle) younger
    /// than `memory.min_uptime` (`limit_too_low`): that restart is a failure like a crash.
    pub too_soon: bool,
}

/// Restarts the supervisor makes that are no failure of the worker: an operator's, and the ones
/// that handle memory (a limit crossed, a leak trend, a recycle). A leak handled is the
/// supervisor doing its job; counting it toward the intensity made a steadily leaking program
/// fatal after a few restarts, and a service down for good.
#[must_use]
pub fn is_handled(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Manual | Reason::Memory | Reason::Leak | Reason::Recycle | Reason::Pressure
    )
}

impl Rules<'_> {
    /// Decides what follows an exit of a program's only instance (its history is the
    /// program's); see [`Rules::after_exit_of`].
    pub fn after_exit(
        &self,
        history: &mut History,
        exit: Exit,
        requested: Option<Reason>,
        now: Instant,
        rand01: f64,
    ) -> AfterExit {
        let mut own = history.clone();
        self.after_exit_of(history, &mut own, exit, requested, now, rand01)
    }

    /// Decides what follows an exit. `requested` is set when the supervisor itself stopped the
    /// worker to restart it (memory, manual): such a restart happens whatever the restart mode,
    /// which only governs exits the worker chose. A handled restart ([`is_handled`]: an
    /// operator's, or one for memory) is no failure: it starts at once and neither counts
    /// toward the intensity nor grows the backoff, unless it came [`Rules::too_soon`].
    /// `rand01` in `[0, 1)` drives the jitter.
    ///
    /// The intensity counts the restarts of the whole `program` (every replica, as an OTP
    /// supervisor counts its children's); the backoff grows with this `instance`'s own restarts
    /// in the window, so a crash of one replica does not delay the next restart of another (a
    /// storm of 500 replicas killed at once used to put all but the first few at the 30 s cap).
    pub fn after_exit_of(
        &self,
        program: &mut History,
        instance: &mut History,
        exit: Exit,
        requested: Option<Reason>,
        now: Instant,
        rand01: f64,
    ) -> AfterExit {
        let reason = match requested {
            Some(r) if is_handled(r) && !(self.too_soon && r != Reason::Manual) => {
                return AfterExit::Restart {
                    reason: r,
                    delay: Duration::ZERO,
                }
            }
            Some(r) => r,
            None => match self.mode {
                RestartMode::Always => Reason::Exit,
                RestartMode::OnFailure if !exit.success() => Reason::Exit,
                RestartMode::OnFailure | RestartMode::Never => return AfterExit::Done,
            },
        };
        let recent = program.recent(now, self.intensity.within);
        if recent >= self.intensity.max {
            return AfterExit::Fatal { restarts: recent };
        }
        program.push(now);
        let own = instance.recent(now, self.intensity.within);
        instance.push(now);
        AfterExit::Restart {
            reason,
            delay: backoff_delay(self.backoff, own, rand01),
        }
    }
}

/// `first * factor^n`, capped at `max`, then spread by `±jitter` (never above `max`). Saturating:
/// however many restarts `n` counts, a zero `first` stays zero and a growing delay stops at `max`
/// (computed in logarithms, so `factor^n` never overflows to infinity, nor `0 × ∞` to NaN).
#[must_use]
pub fn backoff_delay(b: &Backoff, n: u32, rand01: f64) -> Duration {
    let first = b.first.as_secs_f64();
    let max = b.max.as_secs_f64();
    if first <= 0.0 || max <= 0.0 {
        return Duration::ZERO;
    }
    let log = first.ln() + f64::from(n) * b.factor.max(1.0).ln();
    let capped = if log >= max.ln() { max } else { log.exp() };
    let spread = 1.0 + b.jitter.clamp(0.0, 1.0) * (2.0 * rand01.clamp(0.0, 1.0) - 1.0);
    let secs = (capped * spread).clamp(0.0, max);
    if secs.is_finite() {
        Duration::try_from_secs_f64(secs).map_or(b.max, |d| d.min(b.max))
    } else {
        b.max
    }
}

/// What the capacity guard says of a restart that handles memory (a limit, a leak, a recycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Fewer than `max_unavailable` of the program's other instances are out: go.
    Go,
    /// The tree is past its ceiling: go now, whatever the others do (the host comes first).
    Ceiling,
    /// `out` other instances are out already: wait until one is up again.
    Wait { out: u32 },
}

/// The capacity guard: a program never has more than `max_unavailable` instances out at once
/// for memory, so a leak handled one replica at a time leaves the rest serving. `others_out`
/// counts the program's other instances that are not up (starting, not ready yet, draining,
/// stopping, backing off); a tree past `ceiling` goes at once.
#[must_use]
pub fn capacity(
    others_out: u32,
    max_unavailable: u32,
    bytes: u64,
    ceiling: Option<u64>,
) -> Capacity {
    if ceiling.is_some_and(|c| bytes > c) {
        Capacity::Ceiling
    } else if others_out < max_unavailable {
        Capacity::Go
    } else {
        Capacity::Wait { out: others_out }
    }
}

/// How long until a tree at `bytes`, growing `slope` bytes a second, reaches `max`: `None` when
/// it is not growing; zero when it is there already.
#[must_use]
pub fn time_to_limit(max: u64, bytes: u64, slope_bytes_per_s: f64) -> Option<Duration> {
    if bytes >= max {
        return Some(Duration::ZERO);
    }
    if !slope_bytes_per_s.is_finite() || slope_bytes_per_s <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64((max - bytes) as f64 / slope_bytes_per_s).ok()
}

/// When an incarnation started at `start` is due for its scheduled recycle: `every`, spread by
/// `±jitter` (`rand01` in `[0, 1)`), so replicas started together are not recycled together.
#[must_use]
pub fn recycle_at(start: Instant, every: Duration, jitter: Duration, rand01: f64) -> Instant {
    let spread = jitter.as_secs_f64() * (2.0 * rand01.clamp(0.0, 1.0) - 1.0);
    let secs = (every.as_secs_f64() + spread).max(0.0);
    start + Duration::try_from_secs_f64(secs).unwrap_or(every)
}

/// The request count at which an incarnation is due for its recycle: `requests`, spread by
/// `±jitter` requests (`rand01` in `[0, 1)`), at least 1.
#[must_use]
pub fn recycle_after_requests(requests: u64, jitter: u64, rand01: f64) -> u64 {
    let spread = (jitter as f64 * (2.0 * rand01.clamp(0.0, 1.0) - 1.0)).round() as i64;
    let n = i128::from(requests) + i128::from(spread);
    u64::try_from(n.max(1)).unwrap_or(requests)
}

/// One member of a tree, as the member choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberGrowth {
    pub pid: i32,
    /// Resident memory now, bytes.
    pub rss: u64,
    /// Resident memory when it was first seen, bytes.
    pub first_rss: u64,
}

impl MemberGrowth {
    #[must_use]
    pub fn growth(&self) -> u64 {
        self.rss.saturating_sub(self.first_rss)
    }
}

/// Which member of a tree to recycle instead of the whole tree (`memory.recycle = "member"`):
/// the member that grew most since it was first seen, if it is not the root and holds at least
/// half of the tree's growth (the sum of every member's growth). `None`: the tree goes. A
/// pre-forking server's master respawns a worker that exits; its root holding the growth means
/// the master itself leaks, which only a restart of the tree can cure.
#[must_use]
pub fn member_to_recycle(root: i32, members: &[MemberGrowth]) -> Option<i32> {
    let total: u64 = members.iter().map(MemberGrowth::growth).sum();
    let top = members
        .iter()
        .max_by_key(|m| (m.growth(), std::cmp::Reverse(m.pid)))?;
    let g = top.growth();
    (top.pid != root && g > 0 && g.saturating_mul(2) >= total).then_some(top.pid)
}

/// Memory verdict for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryVerdict {
    /// Under the limit (or in the hysteresis band with no count running).
    Ok,
    /// Over the limit, `count` samples in a row; not yet enough to act.
    Over { count: u32 },
    /// Over the limit for `count` >= `for` samples: restart.
    Restart { count: u32 },
}

/// Counts consecutive over-limit samples, with hysteresis: a sample between the low-water mark
/// (`max * (1 - hysteresis)`) and the limit neither adds to the count nor resets it, so a tree
/// that hovers at the limit is not forgiven by a dip of a few pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryWatch {
    over: u32,
}

impl MemoryWatch {
    pub fn observe(&mut self, spec: &MemorySpec, bytes: u64) -> MemoryVerdict {
        if bytes > spec.max {
            self.over = self.over.saturating_add(1);
            if self.over >= spec.count {
                MemoryVerdict::Restart { count: self.over }
            } else {
                MemoryVerdict::Over { count: self.over }
            }
        } else {
            let low = (spec.max as f64 * (1.0 - spec.hysteresis)) as u64;
            if bytes < low {
                self.over = 0;
            }
            MemoryVerdict::Ok
        }
    }

    #[must_use]
    pub fn count(&self) -> u32 {
        self.over
    }
}

/// What a worker's heartbeat (from its segment) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// It never wrote one (or heartbeats are not watched): nothing to judge.
    Unwatched,
    Fresh {
        age: Duration,
    },
    /// Older than the timeout while the process lives: the work has stopped.
    Stale {
        age: Duration,
    },
    /// A stamp ahead of the clock: the worker's report cannot be true.
    Future {
        ahead: Duration,
    },
}

/// Judges a heartbeat stamp (CLOCK_MONOTONIC ns, 0 = never written) at `now_ns`. A stamp up to
/// 100 ms ahead is tolerated (the two clock reads race); more is implausible.
#[must_use]
pub fn heartbeat(now_ns: u64, stamp_ns: u64, timeout: Option<Duration>) -> Heartbeat {
    let Some(timeout) = timeout else {
        return Heartbeat::Unwatched;
    };
    if stamp_ns == 0 {
        return Heartbeat::Unwatched;
    }
    if stamp_ns > now_ns {
        let ahead = Duration::from_nanos(stamp_ns - now_ns);
        return if ahead > Duration::from_millis(100) {
            Heartbeat::Future { ahead }
        } else {
            Heartbeat::Fresh {
                age: Duration::ZERO,
            }
        };
    }
    let age = Duration::from_nanos(now_ns - stamp_ns);
    if age > timeout {
        Heartbeat::Stale { age }
    } else {
        Heartbeat::Fresh { age }
    }
}

/// Decides when to warn a worker that its tree nears the limit: once on crossing
/// `max * warn_at`, then again only after it fell below that mark by the hysteresis.
#[derive(Debug, Default, Clone, Copy)]
pub struct PressureWatch {
    warned: bool,
}

impl PressureWatch {
    /// True when a `MemoryPressure` message should go out now.
    pub fn observe(&mut self, spec: &MemorySpec, bytes: u64) -> bool {
        let Some(warn_at) = spec.warn_at else {
            return false;
        };
        let mark = spec.max as f64 * warn_at;
        if bytes as f64 >= mark {
            let first = !self.warned;
            self.warned = true;
            first
        } else {
            if (bytes as f64) < mark * (1.0 - spec.hysteresis) {
                self.warned = false;
            }
            false
        }
    }
}

/// Shortest interval between two samples of one worker.
pub const MIN_SAMPLE: Duration = Duration::from_millis(20);
/// Between two samples of a tree over its limit: confirmation (`for = N`) comes fast, so the
/// default `for = 3` acts within about a tenth of a second of the crossing instead of three
/// periods (while a spike shorter than `(N - 1) × CONFIRM_EVERY` is still forgiven).
pub const CONFIRM_EVERY: Duration = Duration::from_millis(40);

/// When to sample next: every `every`, but sooner as the tree approaches its limit, so that a
/// fast leak is caught within a few tens of milliseconds of crossing it instead of up to a whole
/// period late. The estimate is the growth since `since`, a reference sample (the caller passes
/// its oldest recent one, so growth in steps is not mistaken for a plateau between steps): the
/// next sample comes after a quarter of the time the tree needs, at that rate, to reach the
/// limit. Over the limit, the next sample comes after [`CONFIRM_EVERY`]: `for = N` means N
/// samples in a row over the limit, taken that fast.
///
/// What it assumes: growth continues at the rate seen since `since`. A tree that was flat and
/// starts growing right after a sample is seen again only at the next regular sample: a leak of
/// R bytes/s starting D bytes below the limit crosses unseen if R × `every` > D, and is caught
/// up to R × `every` − D over the limit (plus the confirmation samples). A steady leak is caught
/// within about a quarter of the time it takes to cross the last stretch, however fast it is
/// (down to [`MIN_SAMPLE`]).
#[must_use]
pub fn next_sample(
    every: Duration,
    limit: Option<u64>,
    since: Option<(Instant, u64)>,
    now: (Instant, u64),
) -> Duration {
    let (t1, b1) = now;
    if limit.is_some_and(|l| b1 > l) {
        return CONFIRM_EVERY.min(every);
    }
    let (Some(limit), Some((t0, b0))) = (limit, since) else {
        return every;
    };
    if b1 >= limit || b1 <= b0 {
        return every;
    }
    let dt = t1.saturating_duration_since(t0).as_secs_f64();
    if dt <= 0.0 {
        return every;
    }
    let rate = (b1 - b0) as f64 / dt;
    let eta = (limit - b1) as f64 / rate;
    Duration::from_secs_f64(eta / 4.0).clamp(MIN_SAMPLE.min(every), every)
}

#[cfg(test)]
mod tests;
