//! Medians of the per-iteration times criterion's own calls took, for benches that report a
//! ratio of two measurements taken in the same run (criterion reports each one alone).

// Included by several benches, each using part of it.
#![allow(dead_code)]

use std::time::Duration;

/// Samples criterion takes per benchmark in these benches.
pub const SAMPLE_SIZE: usize = 100;

/// Per-iteration times (ns) of the calls criterion made; the last `SAMPLE_SIZE` are its samples
/// (the calls before them are its warm-up).
#[derive(Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn record(&mut self, iters: u64, elapsed: Duration) -> Duration {
        #[allow(clippy::cast_precision_loss)]
        self.0.push(elapsed.as_nanos() as f64 / iters.max(1) as f64);
        elapsed
    }

    /// How many of the recorded times are criterion's samples.
    pub fn count(&self) -> usize {
        self.0.len().min(SAMPLE_SIZE)
    }

    pub fn median(&self) -> Option<f64> {
        let mut v = self.0[self.0.len().saturating_sub(SAMPLE_SIZE)..].to_vec();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }
}
