//! One program's block of the page: whose figures it draws, and where it sits. What is drawn in
//! it is [`super::draw`]'s (title, legend, panels) and [`super::marks`]'s (restarts, findings).

use super::geo;
use crate::history::{FindingMark, WorkerSeries};

/// One program's block.
pub(super) struct Block<'a> {
    pub name: &'a str,
    pub workers: &'a [&'a WorkerSeries],
    /// Findings about the supervisor as a whole: drawn in every block.
    pub own: &'a [FindingMark],
    pub limit: Option<u64>,
    pub runs: &'a [u64],
    pub t0: u64,
    pub t1: u64,
    pub top: f64,
}

impl Block<'_> {
    /// The x coordinate of time `t` (unix ms).
    pub(super) fn x(&self, t: u64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        geo::LEFT + t.saturating_sub(self.t0) as f64 / span * geo::PLOT_W
    }
}
