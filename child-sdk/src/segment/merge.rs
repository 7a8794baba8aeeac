//! Adding pages up: the figures of a program whose processes each write their own page, and the
//! counters of pages whose process is gone. Pure functions over [`Snapshot`]s.

use super::snapshot::{Metric, Snapshot};
use super::MetricKind;

/// Most distinct metric names a merged read holds: a program whose processes register different
/// names in each page cannot make the supervisor's report grow without bound. Names past it are
/// counted in [`Snapshot::invalid_entries`].
pub const MAX_MERGED_NAMES: usize = 256;

/// Adds `page` into `into`: counters, gauges, heap and the fixed slots summed (a gauge of the
/// program is the sum of its processes' gauges), flags or-ed, the latest heartbeat kept. A name
/// that `into` holds as the other kind is not added, and counted as invalid.
pub fn merge_page(into: &mut Snapshot, page: &Snapshot) {
    into.flags |= page.flags;
    into.heartbeat_ns = into.heartbeat_ns.max(page.heartbeat_ns);
    into.heap_bytes = into.heap_bytes.saturating_add(page.heap_bytes);
    into.heap_peak = into.heap_peak.saturating_add(page.heap_peak);
    into.in_flight = into.in_flight.saturating_add(page.in_flight);
    add_counters(into, page, |_| true);
    into.metrics_consistent &= page.metrics_consistent;
}

/// Adds what must outlive `page`'s process into `folded`: the counters (fixed and named), and
/// nothing that describes a live process (gauges, heap bytes, in-flight work, the heartbeat).
pub fn fold_page(folded: &mut Snapshot, page: &Snapshot) {
    add_counters(folded, page, |m| m.kind == MetricKind::Counter);
    folded.metrics_consistent = true;
}

fn add_counters(into: &mut Snapshot, page: &Snapshot, keep: impl Fn(&Metric) -> bool) {
    into.allocations = into.allocations.saturating_add(page.allocations);
    into.deallocations = into.deallocations.saturating_add(page.deallocations);
    into.requests = into.requests.saturating_add(page.requests);
    into.errors = into.errors.saturating_add(page.errors);
    into.invalid_entries = into.invalid_entries.saturating_add(page.invalid_entries);
    for (at, m) in page.metrics.iter().enumerate().filter(|(_, m)| keep(m)) {
        // Processes forked from one parent register their names in the same order: the same
        // position is nearly always the match, and the scan runs only when it is not.
        let found = match into.metrics.get(at) {
            Some(x) if x.name == m.name => Some(at),
            _ => into.metrics.iter().position(|x| x.name == m.name),
        };
        match found {
            Some(i) if into.metrics[i].kind == m.kind => {
                into.metrics[i].value = into.metrics[i].value.saturating_add(m.value);
            }
            None if into.metrics.len() < MAX_MERGED_NAMES => into.metrics.push(m.clone()),
            _ => into.invalid_entries = into.invalid_entries.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, kind: MetricKind, value: u64) -> Metric {
        Metric {
            name: name.into(),
            kind,
            value,
        }
    }

    fn page(metrics: Vec<Metric>) -> Snapshot {
        Snapshot {
            heartbeat_ns: 5,
            heap_bytes: 10,
            heap_peak: 20,
            requests: 3,
            errors: 1,
            in_flight: 2,
            flags: 1,
            metrics,
            metrics_consistent: true,
            ..Snapshot::default()
        }
    }

    #[test]
    fn pages_add_up_by_name() {
        let c = MetricKind::Counter;
        let g = MetricKind::Gauge;
        let mut into = page(vec![m("jobs", c, 4), m("queue", g, 1)]);
        let mut other = page(vec![m("queue", g, 2), m("jobs", c, 6), m("late", c, 1)]);
        other.heartbeat_ns = 9;
        merge_page(&mut into, &other);
        assert_eq!(
            into.metrics,
            [m("jobs", c, 10), m("queue", g, 3), m("late", c, 1)]
        );
        assert_eq!((into.requests, into.errors, into.in_flight), (6, 2, 4));
        assert_eq!(
            (into.heap_bytes, into.heap_peak, into.heartbeat_ns),
            (20, 40, 9)
        );
        assert!(into.metrics_consistent);
    }

    #[test]
    fn a_name_of_the_other_kind_is_invalid_not_added() {
        let mut into = page(vec![m("x", MetricKind::Counter, 1)]);
        merge_page(&mut into, &page(vec![m("x", MetricKind::Gauge, 7)]));
        assert_eq!(into.metrics, [m("x", MetricKind::Counter, 1)]);
        assert_eq!(into.invalid_entries, 1);
    }

    #[test]
    fn folding_keeps_counters_only() {
        let mut folded = Snapshot::default();
        let gone = page(vec![
            m("jobs", MetricKind::Counter, 5),
            m("q", MetricKind::Gauge, 9),
        ]);
        fold_page(&mut folded, &gone);
        fold_page(&mut folded, &gone);
        assert_eq!(folded.metrics, [m("jobs", MetricKind::Counter, 10)]);
        assert_eq!((folded.requests, folded.errors), (6, 2));
        assert_eq!(
            (folded.heap_bytes, folded.in_flight, folded.heartbeat_ns),
            (0, 0, 0)
        );
    }

    #[test]
    fn merged_names_are_bounded() {
        let mut into = Snapshot::default();
        for p in 0..10 {
            let names = (0..61)
                .map(|i| m(&format!("p{p}_{i}"), MetricKind::Counter, 1))
                .collect();
            merge_page(&mut into, &page(names));
        }
        assert_eq!(into.metrics.len(), MAX_MERGED_NAMES);
        assert_eq!(into.invalid_entries, 610 - MAX_MERGED_NAMES as u32);
    }
}
