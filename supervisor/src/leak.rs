//! Leak trend: catches a worker whose tree memory grows steadily at a configured rate
//! (`64MiB/10m`), long before it reaches any fixed limit. Pure: samples in (`Instant`, bytes),
//! verdicts out; no processes, no clock read.
//!
//! # The rule
//! A [`LeakWatch`] keeps the last `within` of one incarnation's samples, downsampled into at most
//! [`BUCKETS`] = 120 buckets of `within / 120` each; a bucket keeps its *minimum* sample (and when
//! it was taken). Let `rate = growth / within` (bytes/s). Each verdict is:
//!
//! - [`LeakVerdict::Unknown`] while the retained points are fewer than [`MIN_POINTS`] = 10 or span
//!   less than [`MIN_SPAN`] = 80 % of `within`;
//! - otherwise [`LeakVerdict::Leak`] when all three hold, else [`LeakVerdict::NoLeak`]:
//!   1. **fast enough**: the Theil–Sen slope (median of all pairwise slopes) of the retained
//!      points is at least [`RATE_SLACK`] × `rate` = 0.99 × `rate`;
//!   2. **sustained**: the Theil–Sen slope of the points in the most recent [`RECENT`] = ¼ of
//!      `within` (or of the last [`MIN_RECENT_POINTS`] = 5 points, if that quarter holds fewer)
//!      is at least [`RECENT_RATE`] × `rate` = 0.5 × `rate`;
//!   3. **monotonic**: Kendall's tau-a of the retained points, (concordant − discordant pairs) /
//!      all pairs, is at least [`MIN_TAU`] = 0.6 (a pair is concordant when its later point is
//!      strictly higher, discordant when strictly lower; ties count for neither).
//!
//! # Why
//! - **Bucket minimum.** What leaks is the live set; allocator churn, request buffers and
//!   garbage awaiting collection only ever sit *on top* of it. The minimum over a bucket is the
//!   best cheap estimate of that floor: a spike shorter than a bucket vanishes (when the bucket
//!   holds another sample), the peaks of a sawtooth faster than a bucket vanish (its floor is
//!   flat), and bursts of fast samples (the sampler speeds up to 20 ms near a limit) cost
//!   nothing. 120 buckets bound memory (≤ 120 points, ≤ 7140 pairs, a 57 KB scratch buffer)
//!   whatever the sampling rate, and keep enough resolution for a median.
//! - **Theil–Sen** rather than two endpoints or least squares: up to ~29 % of the points can be
//!   arbitrary (a spike, a gap, a restart of a cache) without moving the median slope, and the
//!   exact pairwise median over ≤ 7140 pairs is cheap (one `select_nth_unstable`), so no
//!   subsampling or repeated-median approximation is needed. It is recomputed only when a point
//!   changes.
//! - **80 % span, 10 points**: a slope from a sliver of the window is a warm-up's slope. The span
//!   gate is the detection delay for a leak present from the start: it fires when the history first
//!   spans `0.8 × within` (480 s for `/10m`), at 1× as at 10× the rate. Fast leaks are the fixed
//!   limit's business; this detector is for the slow ones that limit would only catch hours
//!   later.
//! - **0.99 × rate**: a leak at exactly the configured rate must fire, but byte counts are whole
//!   pages taken at whole ticks, so an exact fit lands a hair on either side of the rate.
//! - **Recent quarter at ≥ 0.5 × rate**: a warm-up that plateaued, or a one-off step, has a
//!   flat recent part even while the whole-window slope is still high. A quarter rather than a
//!   half: the first verdict comes at 80 % of the window, and a recent half would reach back to
//!   30 %, into the tail of a warm-up. Measured with a half, a linear warm-up over 50 % of the
//!   window fired, and so did an exponential one (16× `growth`) settled to 95 % by 30 %; with a
//!   quarter, linear ones up to 60 % never fire and exponential ones only from 40 %. Half the
//!   rate (not the full rate) keeps a noisy genuine leak from flickering out of a fit on ~30
//!   points; the 5-point floor keeps short windows with slow sampling usable.
//! - **tau-a ≥ 0.6**: it reads the same pairs as the slope and needs no noise model. In the tests a
//!   leak scores 0.76–0.99 even under ±10 % noise, and growth in steps (allocator arenas) 0.64 and
//!   up with three steps a window; flat noise stays within ±0.25, a fast sawtooth near 0, a slow
//!   sawtooth with a period of half to two thirds of the window at most 0.5, and a single step at
//!   most 0.5 (the pairs on either side of it tie). Counting discordant pairs *against* is what
//!   rejects the slow sawtooth: its drops are discordant, while a staircase's flats only tie (a
//!   plain fraction of concordant pairs scored the sawtooth 0.74 and the staircase 0.76).
//!
//! # Detection delay
//! Measured by the tests (`/10m`, a sample a second): a leak present from the start fires at the
//! span gate, sample 480 = 480 s = 0.8 × `within`, at 1× as at 2× the rate (±10 % noise: 484 s);
//! a leak that starts after a flat window fires 420 s (0.7 × `within`) after its onset at 1×,
//! 300 s (0.5 ×) at 2×: the median pairwise slope reaches the rate only once the leaking points
//! outnumber the flat ones enough.
//!
//! # Caveats
//! - A warm-up must settle well inside the window: one that still climbs at the rate over most of
//!   `within` *is* growth at that rate. Make the window at least 3× the warm-up (the tests cover
//!   ramps over 20–40 % of it and exponential approaches settled by a third of it).
//! - Likewise an accumulate-then-free cycle longer than about two thirds of the window (a batch
//!   that holds its data for 10 minutes, watched over `/10m`) looks like a leak while it
//!   accumulates: pick a window of at least 1.5× (better 2×) the longest legitimate cycle.
//! - Growth in big steps fires when they keep coming (five a window in the tests); one or two a
//!   window are taken for one-off steps.
//! - RSS is counted in pages: a `growth` under ~120 pages (480 KiB) per window moves less than a
//!   page per bucket, and its ties weaken tau-a.
//! - Symmetric multiplicative noise (±10 % of the value, which RSS does not really show) biases
//!   the floor's slope down by ~7 % with five samples a bucket.
//! - After [`LeakVerdict::Leak`] the caller restarts the worker and starts a fresh watch; there is
//!   no re-arming here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most points kept: one per `within / BUCKETS`.
pub const BUCKETS: u32 = 120;
/// Fewest retained points for a verdict.
pub const MIN_POINTS: usize = 10;
/// Fraction of `within` the retained points must span for a verdict.
pub const MIN_SPAN: f64 = 0.8;
/// The whole-window slope must reach this fraction of the configured rate.
pub const RATE_SLACK: f64 = 0.99;
/// The recent part of the window: this fraction of `within`...
pub const RECENT: f64 = 0.25;
/// ...or these many last points, if the fraction holds fewer.
pub const MIN_RECENT_POINTS: usize = 5;
/// The recent slope must reach this fraction of the configured rate.
pub const RECENT_RATE: f64 = 0.5;
/// Lowest Kendall tau-a: (concordant − discordant pairs) / all pairs.
pub const MIN_TAU: f64 = 0.6;
/// Shortest window [`parse_leak`] accepts; [`LeakWatch::new`] raises shorter ones to it.
pub const MIN_WINDOW: Duration = Duration::from_secs(10);

/// A leak rate: at least `growth` bytes per `within` (`64MiB/10m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakSpec {
    pub growth: u64,
    pub within: Duration,
}

impl LeakSpec {
    /// The configured rate in bytes per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.growth as f64 / self.within.as_secs_f64()
    }
}

/// What the trend says after one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeakVerdict {
    /// Not enough history yet (see the module docs).
    Unknown,
    /// A fit, but not a leak; `slope_bytes_per_s` is the whole-window Theil–Sen slope.
    NoLeak { slope_bytes_per_s: f64 },
    /// A leak: the slope, the growth it makes over `within` (slope × `within`, the figure
    /// compared with the spec's `growth`), and the raw samples in the retained history.
    Leak {
        slope_bytes_per_s: f64,
        growth_over_window: u64,
        samples: usize,
    },
}

/// One bucket: its minimum sample.
#[derive(Debug, Clone, Copy)]
struct Point {
    at: Instant,
    bytes: u64,
    bucket: u64,
    /// Raw samples that fell in the bucket.
    samples: usize,
}

/// The statistics the rule reads, cached until a point changes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fit {
    slope: f64,
    /// Slope over the most recent part of the window.
    recent: f64,
    tau: f64,
}

/// The retained samples of one incarnation, and the verdict on them.
#[derive(Debug, Clone)]
pub struct LeakWatch {
    spec: LeakSpec,
    width: Duration,
    origin: Option<Instant>,
    latest: Option<Instant>,
    points: VecDeque<Point>,
    fit: Option<Fit>,
    scratch: Vec<f64>,
}

impl LeakWatch {
    /// A watch with no history. A `within` below [`MIN_WINDOW`] is raised to it; a `growth` of 0
    /// flags any sustained monotonic growth.
    #[must_use]
    pub fn new(spec: LeakSpec) -> Self {
        let spec = LeakSpec {
            within: spec.within.max(MIN_WINDOW),
            ..spec
        };
        Self {
            spec,
            width: spec.within / BUCKETS,
            origin: None,
            latest: None,
            points: VecDeque::with_capacity(BUCKETS as usize),
            fit: None,
            scratch: Vec::new(),
        }
    }

    /// The spec in force (after [`MIN_WINDOW`] is applied).
    #[must_use]
    pub fn spec(&self) -> LeakSpec {
        self.spec
    }

    /// Takes the tree's bytes at `at` and judges the trend. A sample older than the latest one
    /// is taken as simultaneous with it.
    pub fn observe(&mut self, at: Instant, bytes: u64) -> LeakVerdict {
        let at = self.latest.map_or(at, |latest| at.max(latest));
        self.latest = Some(at);
        let origin = *self.origin.get_or_insert(at);
        let bucket = u64::try_from(at.duration_since(origin).as_nanos() / self.width.as_nanos())
            .unwrap_or(u64::MAX);
        let mut changed = false;
        match self.points.back_mut() {
            Some(p) if p.bucket == bucket => {
                p.samples += 1;
                if bytes < p.bytes {
                    p.bytes = bytes;
                    p.at = at;
                    changed = true;
                }
            }
            _ => {
                self.points.push_back(Point {
                    at,
                    bytes,
                    bucket,
                    samples: 1,
                });
                changed = true;
            }
        }
        let oldest = bucket.saturating_sub(u64::from(BUCKETS) - 1);
        while self.points.front().is_some_and(|p| p.bucket < oldest) {
            self.points.pop_front();
        }
        if changed {
            self.fit = self.refit();
        }
        self.verdict()
    }

    fn refit(&mut self) -> Option<Fit> {
        let points = self.points.make_contiguous();
        let (first, last) = (points.first()?, points.last()?);
        let span = last.at.duration_since(first.at).as_secs_f64();
        if points.len() < MIN_POINTS || span < MIN_SPAN * self.spec.within.as_secs_f64() {
            return None;
        }
        let (slope, tau) = theil_sen(points, &mut self.scratch)?;
        let tail = self.spec.within.mul_f64(RECENT);
        let start = points
            .partition_point(|p| last.at.duration_since(p.at) > tail)
            .min(points.len().saturating_sub(MIN_RECENT_POINTS));
        let (recent, _) = theil_sen(&points[start..], &mut self.scratch)?;
        Some(Fit { slope, recent, tau })
    }

    fn verdict(&self) -> LeakVerdict {
        let Some(fit) = self.fit else {
            return LeakVerdict::Unknown;
        };
        let rate = self.spec.rate();
        let fast = fit.slope >= RATE_SLACK * rate;
        let sustained = fit.recent >= RECENT_RATE * rate;
        let monotonic = fit.tau >= MIN_TAU;
        if fast && sustained && monotonic {
            LeakVerdict::Leak {
                slope_bytes_per_s: fit.slope,
                // `as` saturates: a slope this large is past any u64 anyway.
                growth_over_window: (fit.slope * self.spec.within.as_secs_f64()) as u64,
                samples: self.points.iter().map(|p| p.samples).sum(),
            }
        } else {
            LeakVerdict::NoLeak {
                slope_bytes_per_s: fit.slope,
            }
        }
    }
}

/// The Theil–Sen slope (bytes/s) of `points`, and their Kendall tau-a. `None` with fewer than two
/// points.
///
/// Points come from distinct buckets, so their times differ by at least 1 ns and every slope is
/// finite (at most `u64::MAX` bytes per ns, ~1.8e28).
fn theil_sen(points: &[Point], slopes: &mut Vec<f64>) -> Option<(f64, f64)> {
    slopes.clear();
    let mut concordant = 0usize;
    let mut discordant = 0usize;
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dt = b.at.duration_since(a.at).as_secs_f64();
            if dt > 0.0 {
                slopes.push((b.bytes as f64 - a.bytes as f64) / dt);
                concordant += usize::from(b.bytes > a.bytes);
                discordant += usize::from(b.bytes < a.bytes);
            }
        }
    }
    let n = slopes.len();
    if n == 0 {
        return None;
    }
    let (below, &mut mid, _) = slopes.select_nth_unstable_by(n / 2, f64::total_cmp);
    let median = if n % 2 == 1 {
        mid
    } else {
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lower / 2.0 + mid / 2.0
    };
    Some((median, (concordant as f64 - discordant as f64) / n as f64))
}

/// Parses a leak rate `SIZE/DURATION` such as `64MiB/10m` or `1GiB/1h`.
///
/// # Errors
/// A message naming the part at fault when there is no `/`, a side is empty or does not parse,
/// the size is zero, or the window is shorter than [`MIN_WINDOW`].
pub fn parse_leak(s: &str) -> Result<LeakSpec, String> {
    let form = "use SIZE/DURATION, e.g. 64MiB/10m";
    let Some((size, window)) = s.split_once('/') else {
        return Err(format!("invalid leak rate {s:?}: no '/'; {form}"));
    };
    let (size, window) = (size.trim(), window.trim());
    if size.is_empty() || window.is_empty() {
        return Err(format!(
            "invalid leak rate {s:?}: missing {}; {form}",
            if size.is_empty() { "size" } else { "duration" }
        ));
    }
    let growth = size
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("invalid leak size {size:?} ({e}); {form}"))?
        .as_u64();
    let within = humantime::parse_duration(window)
        .map_err(|e| format!("invalid leak window {window:?} ({e}); {form}"))?;
    if growth == 0 {
        return Err(format!(
            "invalid leak rate {s:?}: the growth must be above zero"
        ));
    }
    if within < MIN_WINDOW {
        return Err(format!(
            "invalid leak rate {s:?}: the window must be at least {} (a trend needs time; \
             faster growth is the memory limit's business)",
            humantime::format_duration(MIN_WINDOW)
        ));
    }
    Ok(LeakSpec { growth, within })
}

#[cfg(test)]
mod tests;
