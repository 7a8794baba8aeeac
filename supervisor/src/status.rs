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
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Backoff,
        Phase::Stopped,
        Phase::Fatal,
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
    /// What the tree holds on disk and moves through it (while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<crate::disk::WorkerDisk>,
    /// The tree's TCP and UDP sockets (while running, once the first dump has seen it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetStatus>,
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
