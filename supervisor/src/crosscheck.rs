//! Cross-checks: what a worker reports about itself (its segment, its `Ready`) against what the
//! kernel says about its tree. Pure: samples in, findings out.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::probe::tree::TreeSample;

/// How far back growth is judged.
pub const WINDOW: Duration = Duration::from_secs(60);
/// RSS growth over the window that is worth explaining.
pub const GROWTH: u64 = 32 << 20;

/// A disagreement (or a telling agreement) between report and kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    pub detail: String,
    pub numbers: BTreeMap<&'static str, u64>,
}

/// What the worker said, as of one sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims {
    /// Live heap bytes from the segment, when the worker publishes them (the `alloc` feature).
    pub heap: Option<u64>,
    /// The worker said `Ready`.
    pub ready: bool,
}

/// Per-incarnation memory of past samples and of findings already raised (each kind is raised
/// once per incarnation: a finding is news, not a heartbeat).
#[derive(Debug, Default)]
pub struct CrossCheck {
    history: VecDeque<(Instant, u64, u64)>,
    raised: Vec<&'static str>,
}

impl CrossCheck {
    /// Judges one sample.
    pub fn observe(&mut self, s: &TreeSample, claims: Claims) -> Vec<Finding> {
        let mut out = Vec::new();
        if claims.ready && matches!(s.root_state, b'Z' | b'T' | b't' | b'X') {
            self.raise(
                &mut out,
                Finding {
                    kind: "inconsistent_state",
                    detail: format!(
                        "ready, but the kernel has the process in state {}",
                        char::from(s.root_state)
                    ),
                    numbers: BTreeMap::new(),
                },
            );
        }
        if let Some(heap) = claims.heap {
            // Heap beyond the whole tree's address space cannot be true (RSS can legitimately be
            // below the heap: untouched allocations are not resident).
            if heap > s.vsize && s.vsize > 0 {
                self.raise(
                    &mut out,
                    Finding {
                        kind: "implausible_report",
                        detail: "reported heap exceeds the tree's virtual memory".into(),
                        numbers: [("heap_bytes", heap), ("vsize_bytes", s.vsize)].into(),
                    },
                );
            }
            while self
                .history
                .front()
                .is_some_and(|&(t, _, _)| s.at.duration_since(t) > WINDOW)
            {
                self.history.pop_front();
            }
            self.history.push_back((s.at, s.rss, heap));
            if let Some(&(t0, rss0, heap0)) = self.history.front() {
                let rss_growth = s.rss.saturating_sub(rss0);
                let heap_growth = heap.saturating_sub(heap0);
                // RSS grows while the heap the program knows about stays flat: native memory
                // (C libraries, mmap) or allocator fragmentation, not the program's own objects.
                if rss_growth >= GROWTH && heap_growth.saturating_mul(4) < rss_growth {
                    self.raise(
                        &mut out,
                        Finding {
                            kind: "native_or_fragmentation_growth",
                            detail: "RSS grows while the reported heap does not".into(),
                            numbers: [
                                ("rss_growth_bytes", rss_growth),
                                ("heap_growth_bytes", heap_growth),
                                (
                                    "window_ms",
                                    u64::try_from(s.at.duration_since(t0).as_millis())
                                        .unwrap_or(u64::MAX),
                                ),
                            ]
                            .into(),
                        },
                    );
                }
            }
        }
        out
    }

    fn raise(&mut self, out: &mut Vec<Finding>, f: Finding) {
        if !self.raised.contains(&f.kind) {
            self.raised.push(f.kind);
            out.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sample(at: Instant, rss: u64, vsize: u64, state: u8) -> TreeSample {
        TreeSample {
            at,
            procs: 1,
            rss,
            pss: None,
            cpu_seconds: 0.0,
            cpu_percent: 0.0,
            threads: 1,
            fds: 3,
            read_bytes: 0,
            write_bytes: 0,
            io_at: at,
            vsize,
            root_state: state,
        }
    }

    #[test]
    fn ready_while_stopped_or_zombie_is_inconsistent() {
        let t = Instant::now();
        let mut c = CrossCheck::default();
        let ready = Claims {
            heap: None,
            ready: true,
        };
        assert!(c.observe(&sample(t, MIB, 10 * MIB, b'S'), ready).is_empty());
        assert!(c
            .observe(
                &sample(t, MIB, 10 * MIB, b'Z'),
                Claims {
                    ready: false,
                    ..ready
                }
            )
            .is_empty());
        let f = c.observe(&sample(t, MIB, 10 * MIB, b'T'), ready);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "inconsistent_state");
        assert!(
            c.observe(&sample(t, MIB, 10 * MIB, b'Z'), ready).is_empty(),
            "raised once"
        );
    }

    #[test]
    fn heap_beyond_address_space_is_implausible() {
        let t = Instant::now();
        let mut c = CrossCheck::default();
        let claims = |heap| Claims {
            heap: Some(heap),
            ready: false,
        };
        // Heap above RSS is fine (untouched allocations).
        assert!(c
            .observe(&sample(t, MIB, 100 * MIB, b'S'), claims(50 * MIB))
            .is_empty());
        let f = c.observe(&sample(t, MIB, 100 * MIB, b'S'), claims(200 * MIB));
        assert_eq!(f[0].kind, "implausible_report");
        assert_eq!(f[0].numbers["heap_bytes"], 200 * MIB);
    }

    #[test]
    fn rss_growth_without_heap_growth_is_native_growth() {
        let t = Instant::now();
        let mut c = CrossCheck::default();
        let heap = Claims {
            heap: Some(10 * MIB),
            ready: false,
        };
        let mut found = Vec::new();
        for i in 0..30u64 {
            found.extend(c.observe(
                &sample(
                    t + Duration::from_secs(i),
                    (20 + 2 * i) * MIB,
                    1 << 40,
                    b'S',
                ),
                heap,
            ));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "native_or_fragmentation_growth");
        assert!(found[0].numbers["rss_growth_bytes"] >= GROWTH);
    }

    #[test]
    fn heap_and_rss_growing_together_is_not_native_growth() {
        let t = Instant::now();
        let mut c = CrossCheck::default();
        for i in 0..60u64 {
            let s = sample(
                t + Duration::from_secs(i),
                (20 + 2 * i) * MIB,
                1 << 40,
                b'S',
            );
            let f = c.observe(
                &s,
                Claims {
                    heap: Some((10 + 2 * i) * MIB),
                    ready: false,
                },
            );
            assert!(f.is_empty(), "{f:?}");
        }
    }

    #[test]
    fn no_heap_report_no_heap_findings() {
        let t = Instant::now();
        let mut c = CrossCheck::default();
        for i in 0..60u64 {
            let s = sample(t + Duration::from_secs(i), (20 + 4 * i) * MIB, MIB, b'S');
            assert!(c.observe(&s, Claims::default()).is_empty());
        }
    }
}
