//! What one read of a segment says: the figures of the main page, of every live process page,
//! and of the pages freed so far, added up. Read by the reader, added up by `merge`.

use super::layout::FLAG_HEAP;
use super::MetricKind;

/// One named metric as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// Its name: 1 to [`NAME_MAX`](super::NAME_MAX) bytes of valid UTF-8 (checked, not trusted).
    pub name: String,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its value when read.
    pub value: u64,
}

/// Everything a segment said at one read. Each number is the child's claim, to be checked against
/// the kernel's view, never trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The pid the child stored when it attached; `0` if it never did.
    pub writer_pid: u32,
    /// The header's flags; see [`Snapshot::heap_reported`].
    pub flags: u32,
    /// `CLOCK_MONOTONIC` nanoseconds at the last heartbeat; `0` if none yet.
    pub heartbeat_ns: u64,
    /// Live heap bytes.
    pub heap_bytes: u64,
    /// Highest heap bytes so far.
    pub heap_peak: u64,
    /// Allocations so far.
    pub allocations: u64,
    /// Deallocations so far.
    pub deallocations: u64,
    /// Units of work done.
    pub requests: u64,
    /// Units of work failed.
    pub errors: u64,
    /// Units of work in progress.
    pub in_flight: u64,
    /// Pages counted: the main page and the live process pages.
    pub processes: u32,
    /// Process pages freed so far because their process was gone, their counters folded in.
    pub released: u64,
    /// The well-formed named metrics, in table order.
    pub metrics: Vec<Metric>,
    /// Whether the table's seqlock settled: `false` means the writer held it (or changed it)
    /// through every attempt, and `metrics` is a best-effort pass — each entry still validated,
    /// but the set may be mid-registration. Keep the previous names if that matters.
    pub metrics_consistent: bool,
    /// Entries the table claimed but that were not returned: malformed ones (length, kind or
    /// UTF-8) plus any `count` beyond [`CAPACITY`](super::CAPACITY). Nonzero only if the child wrote garbage.
    pub invalid_entries: u32,
}

impl Snapshot {
    /// Whether the child maintains the heap slots ([`FLAG_HEAP`]); if not, `heap_*`,
    /// `allocations` and `deallocations` mean nothing (not "zero").
    #[must_use]
    pub fn heap_reported(&self) -> bool {
        self.flags & FLAG_HEAP != 0
    }
}
