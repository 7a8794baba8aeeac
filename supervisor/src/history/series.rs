//! One worker instance's series as it is read: bounded points (neighbours merged into aligned
//! time buckets once there are too many), restart marks derived from counts and pids, and
//! finding marks derived from counts.

use std::sync::Arc;

use super::{FindingMark, Point, RestartMark, WorkerSeries};
use crate::status::Phase;

/// Points kept per instance; beyond, neighbours are merged into wider time buckets.
pub const MAX_POINTS: usize = 4096;
/// Restart marks kept per instance, and finding marks per instance (and for the supervisor).
pub const MAX_MARKS: usize = 10_000;
/// Reasons (and finding kinds) kept per instance.
const MAX_REASONS: usize = 64;
/// Marks one count increase may add (a damaged count must not mean a billion marks).
const MAX_MARKS_PER_STEP: u64 = 16;

/// One decoded sample: the instance's figures after a tick (memory in KiB).
pub(super) struct Sample {
    pub t: u64,
    /// 0: no process.
    pub pid: u32,
    pub state: u8,
    pub rss: Option<u64>,
    pub pss: Option<u64>,
    pub heap: Option<u64>,
    /// Tenths of a percent.
    pub cpu: Option<u32>,
}

/// Finding marks derived from counts by kind: a rise in a kind's count is that many findings.
#[derive(Default)]
pub(super) struct Rises {
    counts: Vec<(Arc<str>, u64)>,
    /// False until this run's counts are known: the first ones seen are a baseline.
    known: bool,
    marks: Vec<FindingMark>,
    dropped: u64,
}

impl Rises {
    pub(super) fn new(known: bool) -> Self {
        Self {
            known,
            ..Self::default()
        }
    }

    /// A new run of the supervisor: counts from zero.
    pub(super) fn new_run(&mut self) {
        self.counts.clear();
        self.known = true;
    }

    /// From now on, counts that rise are findings (the baseline, if any, is past).
    pub(super) fn know(&mut self) {
        self.known = true;
    }

    /// Counts as of `t`.
    pub(super) fn observe(&mut self, t: u64, counts: &[(Arc<str>, u64)]) {
        for (kind, n) in counts {
            let old = match self.counts.iter().position(|(k, _)| k == kind) {
                Some(i) => std::mem::replace(&mut self.counts[i].1, *n),
                None if self.counts.len() < MAX_REASONS => {
                    self.counts.push((kind.clone(), *n));
                    0
                }
                None => continue,
            };
            if self.known && *n > old {
                for _ in 0..(*n - old).min(MAX_MARKS_PER_STEP) {
                    if self.marks.len() < MAX_MARKS {
                        self.marks.push(FindingMark {
                            unix_ms: t,
                            kind: kind.to_string(),
                        });
                    } else {
                        self.dropped += 1;
                    }
                }
            }
        }
        self.known = true;
    }

    /// The marks in time order, and how many were not kept.
    pub(super) fn finish(mut self) -> (Vec<FindingMark>, u64) {
        self.marks.sort_by_key(|m| m.unix_ms);
        (self.marks, self.dropped)
    }
}

/// A point being built: one sample or the merge of a bucket's samples.
#[derive(Clone, Copy)]
struct Acc {
    t: u64,
    n: u32,
    rss: Option<u64>,
    pss: Option<u64>,
    heap: Option<u64>,
    cpu_sum: f64,
    cpu_n: u32,
    state: Option<Phase>,
    new_process: bool,
}

impl Acc {
    fn merge(&mut self, o: &Acc) {
        self.n = self.n.saturating_add(o.n);
        for (a, b) in [
            (&mut self.rss, o.rss),
            (&mut self.pss, o.pss),
            (&mut self.heap, o.heap),
        ] {
            *a = match (*a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
        }
        self.cpu_sum += o.cpu_sum;
        self.cpu_n = self.cpu_n.saturating_add(o.cpu_n);
        self.state = o.state.or(self.state);
        self.new_process |= o.new_process;
    }
}

/// A worker instance being built.
pub(super) struct Build {
    program: Arc<str>,
    instance: u32,
    points: Vec<Acc>,
    /// Bucket width, ms (a power of two): points in one aligned bucket are merged.
    width: u64,
    marks: Vec<RestartMark>,
    marks_dropped: u64,
    samples: u64,
    reasons: Vec<(Arc<str>, u64)>,
    /// False until this run's counts are known: the first ones seen are a baseline, not restarts.
    reasons_known: bool,
    /// Counted restarts not yet followed by a new pid.
    pending: bool,
    last_pid: Option<u32>,
    findings: Rises,
}

impl Build {
    pub(super) fn new(program: Arc<str>, instance: u32, reasons_known: bool) -> Self {
        Self {
            program,
            instance,
            points: Vec::new(),
            width: 1,
            marks: Vec::new(),
            marks_dropped: 0,
            samples: 0,
            reasons: Vec::new(),
            reasons_known,
            pending: false,
            last_pid: None,
            findings: Rises::new(reasons_known),
        }
    }

    /// A new run of the supervisor: new processes, restart and finding counts from zero.
    pub(super) fn new_run(&mut self) {
        self.reasons.clear();
        self.reasons_known = true;
        self.pending = false;
        self.last_pid = None;
        self.findings.new_run();
    }

    /// Finding counts as of `t` (the latest sample's time).
    pub(super) fn findings(&mut self, t: u64, counts: &[(Arc<str>, u64)]) {
        self.findings.observe(t, counts);
    }

    /// Adds one sample and derives restart marks: a rise in a reason's count is a restart for
    /// that reason; a new pid that no count explains is a restart of reason `restart`.
    pub(super) fn observe(&mut self, s: &Sample, counts: &[(Arc<str>, u64)]) {
        // The counts a segment restates for an instance follow its first sample there; after a
        // second sample, any finding count is news.
        if self.samples > 0 {
            self.findings.know();
        }
        for (reason, n) in counts {
            let old = match self.reasons.iter().position(|(r, _)| r == reason) {
                Some(i) => std::mem::replace(&mut self.reasons[i].1, *n),
                None if self.reasons.len() < MAX_REASONS => {
                    self.reasons.push((reason.clone(), *n));
                    0
                }
                None => continue,
            };
            if self.reasons_known && *n > old {
                for _ in 0..(*n - old).min(MAX_MARKS_PER_STEP) {
                    self.mark(s.t, reason);
                }
                self.pending = true;
            }
        }
        self.reasons_known = true;
        let new_process = s.pid != 0 && self.last_pid != Some(s.pid);
        if new_process {
            if self.last_pid.is_some() && !self.pending {
                self.mark(s.t, "restart");
            }
            self.pending = false;
            self.last_pid = Some(s.pid);
        }
        self.push(Acc {
            t: s.t,
            n: 1,
            rss: s.rss,
            pss: s.pss,
            heap: s.heap,
            cpu_sum: s.cpu.map_or(0.0, f64::from),
            cpu_n: u32::from(s.cpu.is_some()),
            state: Phase::ALL.get(usize::from(s.state)).copied(),
            new_process,
        });
    }

    fn push(&mut self, a: Acc) {
        self.samples += 1;
        if let Some(last) = self.points.last_mut() {
            if a.t >= last.t && a.t / self.width == last.t / self.width {
                last.merge(&a);
                return;
            }
        }
        if self.points.len() >= MAX_POINTS {
            self.coarsen();
            if let Some(last) = self.points.last_mut() {
                if a.t >= last.t && a.t / self.width == last.t / self.width {
                    last.merge(&a);
                    return;
                }
            }
        }
        self.points.push(a);
    }

    /// Doubles the bucket width until a quarter of the room is free again. Buckets are aligned
    /// to multiples of the width, so a merge never spans a gap wider than a bucket.
    fn coarsen(&mut self) {
        while self.points.len() > MAX_POINTS * 3 / 4 && self.width < 1 << 62 {
            self.width *= 2;
            let mut merged: Vec<Acc> = Vec::with_capacity(self.points.len());
            for p in &self.points {
                match merged.last_mut() {
                    Some(last) if p.t >= last.t && p.t / self.width == last.t / self.width => {
                        last.merge(p);
                    }
                    _ => merged.push(*p),
                }
            }
            self.points = merged;
        }
    }

    fn mark(&mut self, unix_ms: u64, reason: &str) {
        if self.marks.len() < MAX_MARKS {
            self.marks.push(RestartMark {
                unix_ms,
                reason: reason.to_owned(),
            });
        } else {
            self.marks_dropped += 1;
        }
    }

    pub(super) fn finish(mut self) -> WorkerSeries {
        // A clock stepped back leaves samples out of order.
        self.points.sort_by_key(|p| p.t);
        self.marks.sort_by_key(|m| m.unix_ms);
        let (findings, findings_dropped) = self.findings.finish();
        let bytes = |v: Option<u64>| v.map(|k| k << 10);
        WorkerSeries {
            program: self.program.to_string(),
            instance: self.instance,
            points: self
                .points
                .iter()
                .map(|p| Point {
                    unix_ms: p.t,
                    samples: p.n,
                    rss: bytes(p.rss),
                    pss: bytes(p.pss),
                    heap: bytes(p.heap),
                    cpu_percent: (p.cpu_n > 0).then(|| p.cpu_sum / f64::from(p.cpu_n) / 10.0),
                    state: p.state,
                    new_process: p.new_process,
                })
                .collect(),
            restarts: self.marks,
            restarts_dropped: self.marks_dropped,
            findings,
            findings_dropped,
            samples: self.samples,
        }
    }
}
