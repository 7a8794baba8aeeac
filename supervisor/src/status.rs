//! The status model: what the supervisor reports about each worker instance. The engine fills it
//! in; the control socket, `top`, the metrics and the history read it. It sits below all of them
//! so that none imports another to learn the shape of a worker's state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::Reason;

/// Lifecycle phase of a worker instance, as shown by `supervise status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Starting,
    Running,
    Stopping,
    Backoff,
    Stopped,
    Fatal,
    /// Not started yet: what it starts after is not up (see `waiting_for`).
    Waiting,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 7] = [
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Backoff,
        Phase::Stopped,
        Phase::Fatal,
        Phase::Waiting,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Backoff => "backoff",
            Phase::Stopped => "stopped",
            Phase::Fatal => "fatal",
            Phase::Waiting => "waiting",
        }
    }
}

/// One worker instance, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub program: String,
    pub instance: u32,
    pub pid: Option<i32>,
    pub state: Phase,
    pub ready: bool,
    pub uptime_s: Option<f64>,
    pub restarts: u32,
    /// Restarts by reason (`exit`, `memory`, `manual`, `hung`, `leak`), every reason present.
    #[serde(default)]
    pub restarts_by_reason: std::collections::BTreeMap<String, u64>,
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
    pub cpu_percent: Option<f64>,
    /// CPU time of the tree's live members, seconds.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub fds: Option<u64>,
    pub processes: Option<u32>,
    /// From the worker's segment, when it links the SDK.
    pub heap_bytes: Option<u64>,
    pub heartbeat_age_ms: Option<u64>,
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Which of `counters` are gauges (the rest only grow).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub gauges: std::collections::BTreeSet<String>,
    /// The worker said hello: it speaks the protocol.
    #[serde(default)]
    pub speaks: bool,
    /// Kinds of the findings raised about this instance, latest last.
    pub findings: Vec<String>,
    /// Findings raised about this instance over the supervisor's life, by kind (only kinds
    /// raised at least once): never goes backwards.
    #[serde(default)]
    pub findings_by_kind: BTreeMap<String, u64>,
    /// What the tree holds on disk and moves through it (while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<crate::disk::WorkerDisk>,
    /// The tree's TCP and UDP sockets (while running, once the first dump has seen it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetStatus>,
    /// What the worker last said with `STATUS=` on the notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// `MAINPID=` (a process of its tree), and `ERRNO=`, from the notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// For a program not started yet: what it waits for (`db/0 (not ready)`, `db (fatal)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// What the instance's processes have used and moved over the supervisor's whole life,
    /// every incarnation included: never goes backwards (the metrics' `_total` families).
    #[serde(default)]
    pub totals: Totals,
}

impl WorkerStatus {
    /// An instance with no process and nothing known about it.
    #[must_use]
    pub fn new(program: &str, instance: u32) -> Self {
        Self {
            program: program.to_owned(),
            instance,
            pid: None,
            state: Phase::Stopped,
            ready: false,
            uptime_s: None,
            restarts: 0,
            restarts_by_reason: restarts_by_reason(&[0; Reason::ALL.len()]),
            rss_bytes: None,
            pss_bytes: None,
            cpu_percent: None,
            cpu_seconds: None,
            threads: None,
            fds: None,
            processes: None,
            heap_bytes: None,
            heartbeat_age_ms: None,
            counters: BTreeMap::new(),
            gauges: std::collections::BTreeSet::new(),
            speaks: false,
            findings: Vec::new(),
            findings_by_kind: BTreeMap::new(),
            disk: None,
            net: None,
            status_text: None,
            main_pid: None,
            errno: None,
            waiting_for: None,
            totals: Totals::default(),
        }
    }
}

/// Counts that only grow, over every incarnation of an instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub cpu_seconds: f64,
    /// Storage-layer bytes (/proc/PID/io).
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub blkio_delay_s: f64,
    /// TCP bytes acknowledged by peers, and received.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// The worker's own SDK counters (not its gauges), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
}

impl Totals {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Totals) {
        self.cpu_seconds += other.cpu_seconds.max(0.0);
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
        self.blkio_delay_s += other.blkio_delay_s.max(0.0);
        self.sent_bytes = self.sent_bytes.saturating_add(other.sent_bytes);
        self.received_bytes = self.received_bytes.saturating_add(other.received_bytes);
        for (k, v) in &other.counters {
            let e = self.counters.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    /// Raises every count of these to at least `floor`'s (a count never shown lower than
    /// before: a member that exited takes its share out of a sum over the live ones).
    pub fn at_least(&mut self, floor: &Totals) {
        self.cpu_seconds = self.cpu_seconds.max(floor.cpu_seconds);
        self.read_bytes = self.read_bytes.max(floor.read_bytes);
        self.write_bytes = self.write_bytes.max(floor.write_bytes);
        self.blkio_delay_s = self.blkio_delay_s.max(floor.blkio_delay_s);
        self.sent_bytes = self.sent_bytes.max(floor.sent_bytes);
        self.received_bytes = self.received_bytes.max(floor.received_bytes);
        for (k, v) in &floor.counters {
            let e = self.counters.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// A worker tree's sockets, as `status --json` shows them (the `net` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetStatus {
    /// TCP sockets by state.
    pub listening: u32,
    pub established: u32,
    pub other: u32,
    pub udp: u32,
    /// Bytes sent (acknowledged by the peer) and received over TCP since the worker started,
    /// closed sockets included.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_bytes_per_s: Option<f64>,
    pub received_bytes_per_s: Option<f64>,
    /// Smoothed round-trip time over established sockets: mean and worst, milliseconds.
    pub rtt_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    /// Distinct outbound peers.
    pub remotes: u32,
}

impl From<&crate::net::NetSample> for NetStatus {
    fn from(n: &crate::net::NetSample) -> Self {
        let ms = |us: Option<u32>| us.map(|u| f64::from(u) / 1000.0);
        Self {
            listening: n.listening,
            established: n.established,
            other: n.other,
            udp: n.udp,
            sent_bytes: n.acked_total,
            received_bytes: n.received_total,
            sent_bytes_per_s: n.acked_per_sec,
            received_bytes_per_s: n.received_per_sec,
            rtt_ms: ms(n.rtt_mean_us),
            rtt_max_ms: ms(n.rtt_max_us),
            remotes: u32::try_from(n.remotes.len())
                .unwrap_or(u32::MAX)
                .saturating_add(n.remotes_omitted),
        }
    }
}

/// The restart counts of a worker as the status shows them (every reason present).
#[must_use]
pub fn restarts_by_reason(counts: &[u64; Reason::ALL.len()]) -> BTreeMap<String, u64> {
    Reason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), counts[r.index()]))
        .collect()
}
