//! Deleted-but-open files that keep growing: a log unlinked by a rotation while the worker goes
//! on writing it fills the disk where no `du` looks. [`super::DeletedScan`] re-measures every
//! file it has found at each tick (one `fstatat` each), so the growth is seen within a sampling
//! period; this module turns those measurements into a finding `deleted_growing` once a file
//! grows faster than a rate (`[watch] deleted_growth`, `--deleted-growth`; default
//! [`DEFAULT_RATE`]).
//!
//! The rate is the growth of the space allocated to the file (its blocks, what `df` counts) over
//! the last [`WINDOW`] of ticks, judged once the measurements span at least [`MIN_SPAN`]: one
//! burst of writes is not a trend, and a file that shrinks (truncated) counts no growth.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytesize::ByteSize;

use super::HeldFile;
/// The rate is the plan's (`[watch] deleted_growth`).
pub use crate::plan::watch::{parse_rate, DEFAULT_RATE};

/// How far back the rate is measured.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Shortest span of measurements a rate is judged on.
pub const MIN_SPAN: Duration = Duration::from_secs(3);
/// Files followed per worker at most (the scan keeps at most 1,024 per process).
const MAX_FILES: usize = 4096;

/// The growth rate of one file over `points` ((when, allocated bytes), oldest first), bytes per
/// second, when it is above `limit`: measured from the oldest point within [`WINDOW`] of the
/// newest to the newest, and only once that spans at least `min_span`. Pure.
#[must_use]
pub fn verdict(points: &[(Instant, u64)], limit: u64, min_span: Duration) -> Option<f64> {
    let &(last_at, last) = points.last()?;
    let &(first_at, first) = points
        .iter()
        .find(|(at, _)| last_at.saturating_duration_since(*at) <= WINDOW)?;
    let span = last_at.saturating_duration_since(first_at);
    if span < min_span || span.is_zero() {
        return None;
    }
    let rate = last.saturating_sub(first) as f64 / span.as_secs_f64();
    (rate > limit as f64).then_some(rate)
}

/// A deleted file growing too fast.
#[derive(Debug, Clone, PartialEq)]
pub struct Growing {
    pub file: HeldFile,
    /// Bytes per second over the window, and the limit.
    pub rate: f64,
    pub limit: u64,
}

impl Growing {
    /// The finding's name in events and metrics.
    pub const KIND: &'static str = "deleted_growing";

    /// One line for people.
    #[must_use]
    pub fn detail(&self) -> String {
        format!(
            "{} (deleted, held open by pid {} as fd {}) grows {}/s, over {}/s; it holds {}",
            self.file.path,
            self.file.pid,
            self.file.fd,
            ByteSize(self.rate as u64),
            ByteSize(self.limit),
            ByteSize(self.file.allocated)
        )
    }
}

#[derive(Debug)]
struct Track {
    points: VecDeque<(Instant, u64)>,
    reported: bool,
    seen: u64,
}

/// The recent sizes of one worker's deleted files, each reported once when it grows too fast.
#[derive(Debug, Default)]
pub struct GrowthWatch {
    files: HashMap<(u64, u64), Track>,
    round: u64,
}

impl GrowthWatch {
    /// Takes this tick's measurements of the tree's deleted files (a file held by several
    /// processes may come more than once); returns the files newly found growing faster than
    /// `limit` bytes per second. Files no longer held are forgotten.
    pub fn observe<'a>(
        &mut self,
        files: impl IntoIterator<Item = &'a HeldFile>,
        now: Instant,
        limit: u64,
    ) -> Vec<Growing> {
        self.round += 1;
        let round = self.round;
        let mut found = Vec::new();
        for f in files {
            let key = (f.dev, f.ino);
            if !self.files.contains_key(&key) && self.files.len() >= MAX_FILES {
                continue;
            }
            let t = self.files.entry(key).or_insert_with(|| Track {
                points: VecDeque::new(),
                reported: false,
                seen: 0,
            });
            if t.seen == round {
                continue;
            }
            t.seen = round;
            t.points.push_back((now, f.allocated));
            // Keep one point older than the window, so the window is always covered.
            while t.points.len() > 2
                && t.points
                    .get(1)
                    .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
            {
                t.points.pop_front();
            }
            if t.reported {
                continue;
            }
            let points = t.points.make_contiguous();
            if let Some(rate) = verdict(points, limit, MIN_SPAN) {
                t.reported = true;
                found.push(Growing {
                    file: f.clone(),
                    rate,
                    limit,
                });
            }
        }
        self.files.retain(|_, t| t.seen == round);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// (points as (seconds, bytes), limit, the rate expected when over).
    type Case = (&'static [(f64, u64)], u64, Option<f64>);

    fn file(allocated: u64) -> HeldFile {
        HeldFile {
            pid: 42,
            fd: 7,
            dev: 1,
            ino: 99,
            size: allocated,
            allocated,
            path: "/var/log/app.log".into(),
        }
    }

    #[test]
    fn verdict_table() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let cases: &[Case] = &[
            // Nothing, or one point: no rate.
            (&[], 1, None),
            (&[(0.0, 0)], 1, None),
            // 1 MiB/s over 4 s, against 256 KiB/s: over.
            (&[(0.0, 0), (4.0, 4 * MIB)], DEFAULT_RATE, Some(MIB as f64)),
            // The same rate over a span shorter than MIN_SPAN: not judged yet.
            (&[(0.0, 0), (2.0, 2 * MIB)], DEFAULT_RATE, None),
            // Exactly the limit is not faster than it.
            (&[(0.0, 0), (4.0, 4 * MIB)], MIB, None),
            // Shrinking (truncated) counts no growth.
            (&[(0.0, 8 * MIB), (5.0, MIB)], 1, None),
            // Only the last WINDOW counts: a burst long ago, flat since.
            (
                &[
                    (0.0, 0),
                    (1.0, 100 * MIB),
                    (6.0, 100 * MIB),
                    (12.0, 100 * MIB),
                ],
                1,
                None,
            ),
            // Flat long ago, growing in the window: the window's rate (from t=2 to t=12).
            (
                &[(0.0, 0), (2.0, 0), (12.0, 10 * MIB)],
                DEFAULT_RATE,
                Some(MIB as f64),
            ),
        ];
        for (i, (points, limit, want)) in cases.iter().enumerate() {
            let pts: Vec<(Instant, u64)> = points.iter().map(|&(s, b)| (at(s), b)).collect();
            let got = verdict(&pts, *limit, MIN_SPAN);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!((g - w).abs() < 1.0, "case {i}: {g} vs {w}"),
                _ => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_file_is_reported_once_and_forgotten_when_gone() {
        let t0 = Instant::now();
        let mut w = GrowthWatch::default();
        let mut reports = 0;
        for s in 0..=10u64 {
            let f = file(s * MIB);
            // Held by two processes of the tree: measured once a tick.
            let got = w.observe([&f, &f], t0 + Duration::from_secs(s), DEFAULT_RATE);
            if s < 3 {
                assert!(got.is_empty(), "tick {s}: {got:?}");
            }
            reports += got.len();
            if let Some(g) = got.first() {
                assert_eq!(g.file.ino, 99);
                assert!(g.detail().contains("/var/log/app.log"), "{}", g.detail());
            }
        }
        assert_eq!(reports, 1);
        // Gone for a tick: forgotten, so a file reappearing is judged afresh.
        assert!(w.observe([], t0 + Duration::from_secs(11), 1).is_empty());
        assert!(w.files.is_empty());
    }
}
