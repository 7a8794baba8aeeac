//! The engine's side of the writer: a tick's statuses copied into plain numbers, cheaply.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::codec::clip;
use crate::status::Phase;
use crate::status::WorkerStatus;

/// Marks a memory figure or CPU value as absent in a [`Row`].
pub(super) const NONE: u64 = u64::MAX;
pub(super) const NO_CPU: u32 = u32::MAX;

/// What the engine's thread hands to the writer.
pub(super) enum Msg {
    Tick(Tick),
    Limit {
        program: Arc<str>,
        bytes: Option<u64>,
    },
    /// The supervisor's own findings by kind (those about no one instance), when they changed.
    Own(Counts),
}

/// One sampling tick: plain numbers, names shared with earlier ticks.
pub(super) struct Tick {
    pub unix_ms: u64,
    pub rows: Vec<Row>,
    /// Restart counts by reason of the rows whose total changed, each row's slice named by
    /// `Row::reasons`.
    pub reasons: Counts,
    /// Finding counts by kind of the rows whose total changed, each row's slice named by
    /// `Row::findings`.
    pub findings: Counts,
}

pub(super) struct Row {
    pub program: Arc<str>,
    pub instance: u32,
    /// 0 when there is no process.
    pub pid: u32,
    pub state: u8,
    pub rss: u64,
    pub pss: u64,
    pub heap: u64,
    /// Tenths of a percent of one core.
    pub cpu: u32,
    pub reasons: Option<(u32, u32)>,
    pub findings: Option<(u32, u32)>,
}

/// The engine-side state: interned names (so a tick costs no string allocation) and the restart
/// and finding totals last handed over per instance (so counts travel only when they changed).
#[derive(Debug, Default)]
pub(super) struct Front {
    names: HashSet<Arc<str>>,
    sent: HashMap<Key, Sent>,
    /// The supervisor's own finding total last handed over.
    own_sent: u64,
}

/// Totals handed over for one instance. Each count only grows, so a total changes exactly when
/// one of its counts does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    restarts: u32,
    findings: u64,
}

/// A worker instance: program name and instance number.
pub(super) type Key = (Arc<str>, u32);
/// Restart counts by reason.
pub(super) type Counts = Vec<(Arc<str>, u64)>;
/// Totals to remember once the tick that carries them is queued.
pub(super) type Commits = Vec<(Key, Sent)>;

impl Front {
    fn intern(&mut self, s: &str) -> Arc<str> {
        let s = clip(s);
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(a.clone());
        a
    }

    pub(super) fn tick(&mut self, unix_ms: u64, workers: &[WorkerStatus]) -> (Msg, Commits) {
        let mut rows = Vec::with_capacity(workers.len());
        let mut reasons = Vec::new();
        let mut findings = Vec::new();
        let mut commits = Vec::new();
        for w in workers {
            let program = self.intern(&w.program);
            let key = (program.clone(), w.instance);
            let now = Sent {
                restarts: w.restarts,
                findings: w
                    .findings_by_kind
                    .values()
                    .fold(0u64, |a, n| a.saturating_add(*n)),
            };
            let sent = self.sent.get(&key).copied();
            let range = if sent.map(|s| s.restarts) != Some(now.restarts) {
                Some(self.slice(&mut reasons, &w.restarts_by_reason))
            } else {
                None
            };
            let found = if sent.map_or(0, |s| s.findings) != now.findings {
                Some(self.slice(&mut findings, &w.findings_by_kind))
            } else {
                None
            };
            if sent != Some(now) {
                commits.push((key, now));
            }
            rows.push(Row {
                program,
                instance: w.instance,
                pid: w.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                state: phase_code(w.state),
                rss: w.rss_bytes.unwrap_or(NONE),
                pss: w.pss_bytes.unwrap_or(NONE),
                heap: w.heap_bytes.unwrap_or(NONE),
                cpu: w.cpu_percent.map_or(NO_CPU, cpu_tenths),
                reasons: range,
                findings: found,
            });
        }
        let tick = Tick {
            unix_ms,
            rows,
            reasons,
            findings,
        };
        (Msg::Tick(tick), commits)
    }

    /// Appends `counts` to `to`, names interned; returns where they are.
    fn slice(&mut self, to: &mut Counts, counts: &BTreeMap<String, u64>) -> (u32, u32) {
        let start = u32::try_from(to.len()).unwrap_or(u32::MAX);
        for (name, &n) in counts {
            to.push((self.intern(name), n));
        }
        (start, u32::try_from(counts.len()).unwrap_or(0))
    }

    pub(super) fn commit(&mut self, commits: Commits) {
        for (key, sent) in commits {
            self.sent.insert(key, sent);
        }
    }

    /// The supervisor's own findings, when their total changed since last handed over; the
    /// caller commits it with [`Front::commit_own`] once queued.
    pub(super) fn own(&mut self, by_kind: &BTreeMap<&str, u64>) -> Option<(Msg, u64)> {
        let total = by_kind.values().fold(0u64, |a, n| a.saturating_add(*n));
        if total == self.own_sent {
            return None;
        }
        let counts = by_kind.iter().map(|(k, n)| (self.intern(k), *n)).collect();
        Some((Msg::Own(counts), total))
    }

    pub(super) fn commit_own(&mut self, total: u64) {
        self.own_sent = total;
    }

    pub(super) fn limit(&mut self, program: &str, bytes: Option<u64>) -> Msg {
        Msg::Limit {
            program: self.intern(program),
            bytes,
        }
    }
}

pub(super) fn phase_code(p: Phase) -> u8 {
    let i = Phase::ALL.iter().position(|&q| q == p).unwrap_or(0);
    u8::try_from(i).unwrap_or(0)
}

fn cpu_tenths(c: f64) -> u32 {
    if c.is_finite() && c > 0.0 {
        // Saturating float-to-int cast; NO_CPU - 1 is the largest figure written.
        ((c * 10.0).round() as u32).min(NO_CPU - 1)
    } else {
        0
    }
}
