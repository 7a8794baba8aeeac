//! Alert rate limiting: a token bucket per event kind, so a storm of findings cannot mute a
//! `fatal`, and a count of what was held back, summarized once the bucket has room again.
//!
//! Pure: every call takes the time, and the tests drive it with made-up instants.

use std::time::{Duration, Instant};

use crate::plan::alert::Rate;

/// Longest wait [`Limiter::next_summary_at`] reports.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

#[derive(Debug)]
struct Bucket {
    kind: &'static str,
    /// Credit as of `at`, in nanoseconds of refill: a token costs `per / count`. Integers, so
    /// that a token is back exactly when expected.
    credit: u128,
    at: Instant,
    /// Alerts held back since the last summary.
    suppressed: u64,
}

/// Token buckets of `rate.count` alerts, refilled continuously at `count` per `per`.
#[derive(Debug)]
pub struct Limiter {
    /// Nanoseconds of refill per token.
    cost: u128,
    /// A full bucket: `count` tokens.
    cap: u128,
    buckets: Vec<Bucket>,
}

impl Limiter {
    #[must_use]
    pub fn new(rate: Rate) -> Self {
        let count = u128::from(rate.count.max(1));
        let cost = (rate.per.as_nanos() / count).max(1);
        Self {
            cost,
            cap: cost * count,
            buckets: Vec::new(),
        }
    }

    fn bucket(&mut self, kind: &'static str, now: Instant) -> &mut Bucket {
        let i = match self.buckets.iter().position(|b| b.kind == kind) {
            Some(i) => i,
            None => {
                // Kinds are the few names of `on` (and the summaries' own): the list stays short.
                self.buckets.push(Bucket {
                    kind,
                    credit: self.cap,
                    at: now,
                    suppressed: 0,
                });
                self.buckets.len() - 1
            }
        };
        let cap = self.cap;
        let b = &mut self.buckets[i];
        // An instant before the bucket's own (not monotonic input) adds nothing.
        let dt = now.saturating_duration_since(b.at).as_nanos();
        b.credit = b.credit.saturating_add(dt).min(cap);
        b.at = b.at.max(now);
        b
    }

    /// May an alert of `kind` go now? Takes a token if so; counts it as suppressed if not.
    pub fn allow(&mut self, kind: &'static str, now: Instant) -> bool {
        let cost = self.cost;
        let b = self.bucket(kind, now);
        if b.credit >= cost {
            b.credit -= cost;
            true
        } else {
            b.suppressed += 1;
            false
        }
    }

    /// Counts `n` alerts of `kind` that never reached the limiter (dropped on a full queue), so
    /// the next summary includes them.
    pub fn add_suppressed(&mut self, kind: &'static str, n: u64, now: Instant) {
        let b = self.bucket(kind, now);
        b.suppressed = b.suppressed.saturating_add(n);
    }

    /// The summaries due now: `(kind, alerts held back)` for each kind with a count and a
    /// token; the summary takes the token (it is an alert too) and resets the count.
    pub fn summaries(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let kinds: Vec<&'static str> = self
            .buckets
            .iter()
            .filter(|b| b.suppressed > 0)
            .map(|b| b.kind)
            .collect();
        let cost = self.cost;
        let mut out = Vec::new();
        for kind in kinds {
            let b = self.bucket(kind, now);
            if b.credit >= cost {
                b.credit -= cost;
                out.push((kind, std::mem::take(&mut b.suppressed)));
            }
        }
        out
    }

    /// When the next summary can go (the earliest instant a kind with alerts held back gets a
    /// token back), or `None` when nothing is held back.
    #[must_use]
    pub fn next_summary_at(&self) -> Option<Instant> {
        self.buckets
            .iter()
            .filter(|b| b.suppressed > 0)
            .map(|b| {
                let missing = self.cost.saturating_sub(b.credit);
                let wait = Duration::from_nanos(u64::try_from(missing).unwrap_or(u64::MAX));
                // Capped, so that a rate of one per century cannot overflow an Instant.
                b.at.checked_add(wait.min(MAX_WAIT)).unwrap_or(b.at)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(count: u32, per_s: u64) -> Limiter {
        Limiter::new(Rate {
            count,
            per: Duration::from_secs(per_s),
        })
    }

    #[test]
    fn burst_then_one_per_interval() {
        let mut l = limiter(3, 60);
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert!((0..3).all(|_| l.allow("fatal", t0)), "a burst of `count`");
        assert!(!l.allow("fatal", t0));
        assert!(!l.allow("fatal", t0 + 19 * s), "a token takes 20 s");
        assert_eq!(l.next_summary_at(), Some(t0 + 20 * s));
        assert!(l.summaries(t0 + 19 * s).is_empty());
        // The token that comes back goes to the summary of the two held back.
        assert_eq!(l.summaries(t0 + 20 * s), vec![("fatal", 2)]);
        assert_eq!(l.next_summary_at(), None);
        assert!(!l.allow("fatal", t0 + 21 * s));
        assert!(l.allow("fatal", t0 + 60 * s));
        // Long quiet: back to a full burst, no more.
        let later = t0 + 3600 * s;
        assert_eq!((0..5).filter(|_| l.allow("fatal", later)).count(), 3);
    }

    #[test]
    fn kinds_are_limited_apart() {
        let mut l = limiter(1, 10);
        let t0 = Instant::now();
        assert!(l.allow("finding", t0));
        assert!(!l.allow("finding", t0));
        assert!(!l.allow("finding", t0));
        assert!(l.allow("fatal", t0), "a finding storm leaves fatal alone");
        l.add_suppressed("fatal", 4, t0);
        let at = Duration::from_secs(10);
        let mut due = l.summaries(t0 + at);
        due.sort_unstable();
        assert_eq!(due, vec![("fatal", 4), ("finding", 2)]);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut l = limiter(1, 10);
        let t0 = Instant::now() + Duration::from_secs(100);
        assert!(l.allow("x", t0));
        assert!(!l.allow("x", t0 - Duration::from_secs(50)));
        assert_eq!(l.next_summary_at(), Some(t0 + Duration::from_secs(10)));
    }
}
