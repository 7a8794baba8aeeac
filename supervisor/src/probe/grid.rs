//! When the probes look: a grid of instants that every worker's samples, the checks' looks at
//! their commands' trees and the engine's own tick share.

use std::time::{Duration, Instant};

/// The first point at least `every / 2` from now on a grid of period `every` that every worker
/// and the engine's own tick share, so one wake-up a period samples them all (one timer expiry
/// and one context switch, not one per worker). Intervals between such points average `every`.
pub(crate) fn on_grid(every: Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = tokio::time::Instant::from_std(*EPOCH.get_or_init(Instant::now));
    let period = every.as_nanos().max(1);
    let earliest = (tokio::time::Instant::now() + every / 2)
        .duration_since(epoch)
        .as_nanos();
    let at = earliest.div_ceil(period).saturating_mul(period);
    epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}
