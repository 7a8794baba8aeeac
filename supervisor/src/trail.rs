//! The last hour of each instance's memory, kept in memory for the charts of `top`'s detail pane
//! and the dashboard.
//!
//! One point per [`STEP_S`] seconds per instance: the tree's memory as its limit measures it
//! (PSS for a `measure = "pss"` program, else RSS), taken from the status the engine builds on
//! the tick that starts the step. A point is 8 bytes; an instance keeps at most [`SPAN_S`] /
//! [`STEP_S`] of them, fewer when there are so many instances that all of them would pass
//! [`BUDGET_POINTS`] (then each covers less than the hour, never less than [`MIN_POINTS`]).
//!
//! With `--history`, what the file already holds of the last hour (a run before this one
//! included) is read once, on a thread of its own, and put in front of what was kept since.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::status::WorkerStatus;

/// Seconds between two points.
pub const STEP_S: u64 = 10;
/// Seconds of memory kept.
pub const SPAN_S: u64 = 3600;
/// Points kept over every instance together (1 MiB).
pub const BUDGET_POINTS: usize = 128 * 1024;
/// Points kept per instance however many instances there are.
pub const MIN_POINTS: usize = 36;

/// One instance's memory over time, as the control socket and the dashboard send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySeries {
    pub program: String,
    pub instance: u32,
    /// `rss` or `pss`: what the points measure.
    pub measure: String,
    /// The limit, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// `[unix seconds, bytes]`, oldest first; a gap of more than two steps is a time without a
    /// process (or without a sample).
    pub points: Vec<[u64; 2]>,
}

#[derive(Debug, Default)]
struct Line {
    measure: &'static str,
    limit: Option<u64>,
    /// (unix seconds, KiB).
    points: VecDeque<(u32, u32)>,
}

/// The kept hour.
#[derive(Debug, Default)]
pub struct Trail {
    lines: BTreeMap<(String, u32), Line>,
    /// The step of the last point recorded (unix seconds / STEP_S).
    last_step: Option<u64>,
    /// The history file's hour, while it is being read.
    seed: Option<mpsc::Receiver<Vec<MemorySeries>>>,
}

impl Trail {
    /// Starts reading the last hour of the history file at `path` (and its rotated predecessor),
    /// on a thread of its own; it joins what is kept at a later [`Trail::record`].
    pub fn seed_from(&mut self, path: PathBuf, now_ms: u64) {
        let (tx, rx) = mpsc::channel();
        let spawned = crate::signals::spawn_thread(
            std::thread::Builder::new().name("trail".into()),
            move || {
                let series = match crate::history::read(&path) {
                    Ok(s) => from_history(&s, now_ms),
                    Err(e) => {
                        tracing::debug!(error = %e, "no memory history to show");
                        Vec::new()
                    }
                };
                let _ = tx.send(series);
            },
        );
        if spawned.is_ok() {
            self.seed = Some(rx);
        }
    }

    /// Whether a point is due at `now_ms` (a new step has begun).
    #[must_use]
    pub fn due(&self, now_ms: u64) -> bool {
        self.last_step != Some(now_ms / 1000 / STEP_S)
    }

    /// Records a point for each instance in `workers` that has a memory figure, and forgets
    /// the instances not in it (they left the config).
    pub fn record(&mut self, now_ms: u64, workers: &[WorkerStatus]) {
        self.take_seed();
        self.last_step = Some(now_ms / 1000 / STEP_S);
        let t = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let cap = per_instance(workers.len());
        self.lines
            .retain(|(p, i), _| workers.iter().any(|w| w.program == *p && w.instance == *i));
        for w in workers {
            let line = self
                .lines
                .entry((w.program.clone(), w.instance))
                .or_default();
            line.measure = if w.measures_pss() { "pss" } else { "rss" };
            line.limit = w.memory_max_bytes;
            if let Some(bytes) = w.memory_bytes() {
                line.points
                    .push_back((t, u32::try_from(bytes / 1024).unwrap_or(u32::MAX)));
            }
            let horizon = t.saturating_sub(u32::try_from(SPAN_S).unwrap_or(u32::MAX));
            while line.points.len() > cap || line.points.front().is_some_and(|p| p.0 < horizon) {
                line.points.pop_front();
            }
        }
    }

    /// The series of `program` (every program if `None`) and `instance` (every one if `None`).
    #[must_use]
    pub fn series(&self, program: Option<&str>, instance: Option<u32>) -> Vec<MemorySeries> {
        self.lines
            .iter()
            .filter(|((p, i), _)| {
                program.is_none_or(|want| p == want) && instance.is_none_or(|want| *i == want)
            })
            .map(|((p, i), l)| MemorySeries {
                program: p.clone(),
                instance: *i,
                measure: l.measure.to_owned(),
                limit_bytes: l.limit,
                points: l
                    .points
                    .iter()
                    .map(|&(t, kib)| [u64::from(t), u64::from(kib) * 1024])
                    .collect(),
            })
            .collect()
    }

    /// Puts the history file's hour, once read, in front of what was kept since.
    fn take_seed(&mut self) {
        let Some(rx) = &self.seed else { return };
        let got = match rx.try_recv() {
            Ok(got) => got,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Vec::new(),
        };
        self.seed = None;
        for s in got {
            let Some(line) = self.lines.get_mut(&(s.program.clone(), s.instance)) else {
                continue;
            };
            let first = line.points.front().map_or(u32::MAX, |p| p.0);
            for &[t, bytes] in s.points.iter().rev() {
                let t = u32::try_from(t).unwrap_or(u32::MAX);
                if t < first {
                    line.points
                        .push_front((t, u32::try_from(bytes / 1024).unwrap_or(u32::MAX)));
                }
            }
        }
    }
}

/// Points each instance keeps when there are `instances`.
fn per_instance(instances: usize) -> usize {
    let full = usize::try_from(SPAN_S / STEP_S).unwrap_or(360);
    (BUDGET_POINTS / instances.max(1)).clamp(MIN_POINTS, full)
}

/// The last [`SPAN_S`] before `now_ms` of a history file, one point per [`STEP_S`] (the step's
/// largest), PSS where the file has it.
fn from_history(s: &crate::history::Series, now_ms: u64) -> Vec<MemorySeries> {
    let from = now_ms.saturating_sub(SPAN_S * 1000);
    s.workers
        .iter()
        .map(|w| {
            let mut points: Vec<[u64; 2]> = Vec::new();
            for p in w.points.iter().filter(|p| p.unix_ms >= from) {
                let Some(bytes) = p.pss.or(p.rss) else {
                    continue;
                };
                let t = p.unix_ms / 1000 / STEP_S * STEP_S;
                match points.last_mut() {
                    Some(last) if last[0] == t => last[1] = last[1].max(bytes),
                    _ => points.push([t, bytes]),
                }
            }
            MemorySeries {
                program: w.program.clone(),
                instance: w.instance,
                measure: if w.points.iter().any(|p| p.pss.is_some()) {
                    "pss"
                } else {
                    "rss"
                }
                .to_owned(),
                limit_bytes: s.limits.get(&w.program).copied().filter(|&l| l > 0),
                points,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(program: &str, instance: u32, mib: u64) -> WorkerStatus {
        WorkerStatus {
            rss_bytes: Some(mib << 20),
            pss_bytes: Some((mib << 20) / 2),
            ..WorkerStatus::new(program, instance)
        }
    }

    #[test]
    fn one_point_a_step_in_the_measure_of_the_limit() {
        let mut t = Trail::default();
        let t0 = 1_800_000_000_000;
        assert!(t.due(t0));
        let mut pss = worker("db", 0, 40);
        pss.memory_measure = Some("pss".into());
        pss.memory_max_bytes = Some(100 << 20);
        t.record(t0, &[worker("api", 0, 10), pss.clone()]);
        assert!(!t.due(t0 + 1000));
        assert!(t.due(t0 + STEP_S * 1000));
        t.record(t0 + STEP_S * 1000, &[worker("api", 0, 11), pss]);
        let s = t.series(None, None);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].program, "api");
        assert_eq!(s[0].measure, "rss");
        assert_eq!(
            s[0].points,
            [[t0 / 1000, 10 << 20], [t0 / 1000 + STEP_S, 11 << 20]]
        );
        assert_eq!(s[1].measure, "pss");
        assert_eq!(s[1].limit_bytes, Some(100 << 20));
        assert_eq!(s[1].points[0][1], 20 << 20);
        assert_eq!(t.series(Some("db"), Some(0)).len(), 1);
        assert!(t.series(Some("db"), Some(1)).is_empty());
    }

    #[test]
    fn an_hour_and_no_more_and_the_gone_are_forgotten() {
        let mut t = Trail::default();
        let t0 = 1_800_000_000_000;
        let steps = SPAN_S / STEP_S + 50;
        for k in 0..steps {
            t.record(
                t0 + k * STEP_S * 1000,
                &[worker("api", 0, k), worker("api", 1, 1)],
            );
        }
        let s = t.series(Some("api"), Some(0));
        assert!(s[0].points.len() <= usize::try_from(SPAN_S / STEP_S).expect("small") + 1);
        let span = s[0].points.last().expect("points")[0] - s[0].points[0][0];
        assert!(span <= SPAN_S, "{span}");
        t.record(t0 + steps * STEP_S * 1000, &[worker("api", 0, 1)]);
        assert!(t.series(Some("api"), Some(1)).is_empty());
        // No memory figure (no process): no point, the series stays.
        let mut gone = worker("api", 0, 0);
        gone.rss_bytes = None;
        gone.pss_bytes = None;
        let before = t.series(Some("api"), Some(0))[0].points.len();
        t.record(t0 + (steps + 1) * STEP_S * 1000, &[gone]);
        assert_eq!(t.series(Some("api"), Some(0))[0].points.len(), before);
    }

    #[test]
    fn many_instances_share_a_budget() {
        assert_eq!(per_instance(1), 360);
        assert_eq!(per_instance(20), 360);
        assert_eq!(per_instance(1000), 131);
        assert_eq!(per_instance(100_000), MIN_POINTS);
    }

    #[test]
    fn the_history_files_hour_goes_in_front() {
        let mut t = Trail::default();
        let (tx, rx) = mpsc::channel();
        t.seed = Some(rx);
        let now = 1_800_000_000;
        t.record(now * 1000, &[worker("api", 0, 5)]);
        tx.send(vec![MemorySeries {
            program: "api".into(),
            instance: 0,
            measure: "rss".into(),
            limit_bytes: None,
            points: vec![[now - 30, 3 << 20], [now - 20, 4 << 20], [now, 9 << 20]],
        }])
        .expect("send");
        t.record((now + STEP_S) * 1000, &[worker("api", 0, 6)]);
        let s = t.series(None, None);
        let mib: Vec<u64> = s[0].points.iter().map(|p| p[1] >> 20).collect();
        assert_eq!(mib, [3, 4, 5, 6]);
        assert!(t.seed.is_none());
    }
}
