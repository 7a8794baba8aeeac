//! The status model: what the supervisor reports about each worker instance. The engine fills it
//! in; the control socket, `top`, the metrics and the history read it. It sits below all of them
//! so that none imports another to learn the shape of a worker's state.

use std::collections::BTreeMap;
use std::time::SystemTime;

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
    /// Leaving for a graceful restart: not ready, its stop signal not sent yet (`stop.drain`).
    Draining,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 8] = [
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Backoff,
        Phase::Stopped,
        Phase::Fatal,
        Phase::Waiting,
        Phase::Draining,
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
            Phase::Draining => "draining",
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
    /// How the instance's last process ended, and when: for one without a process (fatal,
    /// stopped, in backoff) how it got there; for a running one, the process before it. `None`
    /// until a process of it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// The tree's processes when it has more than one, largest first (at most
    /// [`MAX_MEMBERS_SHOWN`]): who holds the memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// The program's memory limit (`memory.max`, of the whole tree), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max_bytes: Option<u64>,
    /// What the limit and the leak trend measure: `rss`, or `pss` (`memory.measure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_measure: Option<String>,
    /// The argv of its latest process, as started: `{instance}`, `{name}` and `{8000 +
    /// instance}` expanded. Empty until it has been started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
}

/// Most members of one tree listed in its status.
pub const MAX_MEMBERS_SHOWN: usize = 16;

/// One process of a worker's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub pid: i32,
    /// Its command line, at most 120 characters.
    pub command: String,
    pub rss_bytes: u64,
    /// Resident memory gained since it joined the tree.
    pub growth_bytes: u64,
}

/// An instance's last exit (`last_exit` in `status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exactly one of `code` and `signal` is set, as in the `exited` event; a command that
    /// could not be started at all counts as code 127.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// When supervise saw it (RFC 3339, UTC, milliseconds, as an event's `ts`).
    pub at: String,
}

impl LastExit {
    #[must_use]
    pub fn new(exit: crate::reaper::Exit, at: SystemTime) -> Self {
        let (code, signal) = match exit {
            crate::reaper::Exit::Code(c) => (Some(c), None),
            crate::reaper::Exit::Signal(s) => (None, Some(s)),
        };
        Self {
            code,
            signal,
            at: humantime::format_rfc3339_millis(at).to_string(),
        }
    }

    /// `exit 3, 1m40s ago` or `SIGSEGV, 5s ago`, for people, as of `now` (the age is left out
    /// when `at` does not read as a time).
    #[must_use]
    pub fn words(&self, now: SystemTime) -> String {
        let what = match (self.code, self.signal) {
            (_, Some(s)) => crate::signals::Sig::from_raw(s)
                .map_or_else(|| format!("signal {s}"), |s| s.to_string()),
            (Some(c), None) => format!("exit {c}"),
            (None, None) => "exited".to_owned(),
        };
        match humantime::parse_rfc3339(&self.at) {
            Ok(at) => {
                // A clock set back since is not a negative age.
                let ago = now.duration_since(at).unwrap_or_default();
                format!("{what}, {} ago", short_duration(ago.as_secs_f64()))
            }
            Err(_) => what,
        }
    }
}

/// `42s`, `3m05s`, `2h07m`, `3d04h`: a duration in the room of a table cell.
#[must_use]
pub fn short_duration(s: f64) -> String {
    // Never negative; `as` saturates a NaN to 0.
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
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
            members: Vec::new(),
            last_exit: None,
            memory_max_bytes: None,
            memory_measure: None,
            argv: Vec::new(),
        }
    }

    /// Whether the limit holds PSS rather than RSS (`memory.measure = "pss"`).
    #[must_use]
    pub fn measures_pss(&self) -> bool {
        self.memory_measure.as_deref() == Some("pss")
    }

    /// The tree's memory as its limit measures it: PSS for a `measure = "pss"` program (RSS
    /// until PSS has been read), else RSS.
    #[must_use]
    pub fn memory_bytes(&self) -> Option<u64> {
        if self.measures_pss() {
            self.pss_bytes.or(self.rss_bytes)
        } else {
            self.rss_bytes
        }
    }

    /// [`WorkerStatus::memory_bytes`] as a percentage of the limit, when there is one.
    #[must_use]
    pub fn limit_percent(&self) -> Option<f64> {
        let max = self.memory_max_bytes.filter(|&m| m > 0)?;
        Some(self.memory_bytes()? as f64 * 100.0 / max as f64)
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
    /// TCP listening addresses (`127.0.0.1:8080`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
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
            listen: n.listen.iter().map(ToString::to_string).collect(),
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

/// What the supervisor reports about itself rather than about one worker: how closed sockets
/// are counted, what no worker could be given, and the watched directories (the last line of
/// `status --json`, an object with a `supervisor` key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SupervisorStatus {
    #[serde(default)]
    pub closed_sockets: ClosedSockets,
    #[serde(default)]
    pub watched_dirs: Vec<WatchedDir>,
    /// The host's load and memory, and the supervisor's own footprint, as of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Box<HostStatus>>,
}

/// The host as the header of `top` and the dashboard shows it: load, memory, swap and pressure
/// (each `None` where the kernel does not tell), and the supervisor's own process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Load averages over 1, 5 and 15 minutes (/proc/loadavg).
    pub load: Option<[f64; 3]>,
    pub cpus: Option<u32>,
    /// From /proc/meminfo.
    pub mem_total_bytes: Option<u64>,
    pub mem_available_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    pub swap_free_bytes: Option<u64>,
    /// Pressure stall information over the last 10 s, percent of time (/proc/pressure/*, Linux
    /// 4.20+ with PSI enabled): `None` where the kernel has none.
    pub memory_pressure: Option<Pressure>,
    pub cpu_pressure: Option<Pressure>,
    pub io_pressure: Option<Pressure>,
    /// The supervisor's own process.
    pub own: OwnStatus,
    /// The host memory-pressure policy, when on (`None`: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure_policy: Option<PressurePolicy>,
}

/// One resource's pressure: `some` (at least one task stalled) and `full` (every non-idle task
/// stalled), each the share of the last 10 s (`avg10`) and of the last minute (`avg60`), percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub some_avg10: f64,
    pub full_avg10: Option<f64>,
    #[serde(default)]
    pub some_avg60: f64,
    #[serde(default)]
    pub full_avg60: Option<f64>,
}

/// The host memory-pressure policy (`[pressure]`), when it is on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PressurePolicy {
    /// `restart` or `warn`.
    pub on: String,
    /// It acts when memory `full avg10` is at or above this percentage ...
    pub full: f64,
    /// ... and `MemAvailable` below this percentage of `MemTotal` ...
    pub available: f64,
    /// ... both for this many seconds.
    pub hold_s: f64,
}

/// The supervisor process itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnStatus {
    pub pid: u32,
    pub rss_bytes: Option<u64>,
    /// Percent of one core since the answer before (at least half a second before).
    pub cpu_percent: Option<f64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
}

/// How the traffic of closed TCP sockets reaches the workers' totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClosedSockets {
    /// `events`: from the kernel's socket destroy messages (every connection counted to its last
    /// byte); `sampling`: from the per-tick dumps only (connections shorter than a tick are
    /// missed, and what a socket moved after its last dump).
    pub mode: String,
    /// Why not `events`, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Destroy messages of TCP sockets read, and how many were attributed by cookie (a dump
    /// had seen the socket) and by a worker's listener (accepted between two ticks).
    pub events: u64,
    pub by_cookie: u64,
    pub by_listener: u64,
    /// Closed sockets that moved bytes no worker could be given (outbound connections that
    /// lived and died between two ticks, other processes' sockets), and their bytes.
    pub unattributed: u64,
    pub unattributed_sent_bytes: u64,
    pub unattributed_received_bytes: u64,
    /// Messages the kernel dropped because the supervisor read too slowly, and messages that
    /// could not be read: their bytes are missing from every figure.
    pub lost: u64,
    pub malformed: u64,
    /// The receive buffer the kernel granted for the messages (8 MiB asked; without
    /// CAP_NET_ADMIN it is capped at `net.core.rmem_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcvbuf_bytes: Option<u64>,
}

/// One `[[watch.dir]]`, as last measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchedDir {
    pub path: String,
    /// Allocated space of the tree, bytes (`du -sx`, not the apparent size: a sparse file
    /// counts the blocks it has); `None` until the first walk ends.
    pub bytes: Option<u64>,
    /// Sum of apparent sizes (`du -sx --apparent-size`).
    pub apparent_bytes: Option<u64>,
    /// The walk missed some entries (unreadable, or past its entry limit): a lower bound.
    pub partial: bool,
    /// Seconds since the last walk ended.
    pub age_s: Option<f64>,
    pub max_bytes: Option<u64>,
    /// The filesystem the directory is on.
    pub fs_total_bytes: Option<u64>,
    pub fs_available_bytes: Option<u64>,
    pub fs_used_percent: Option<f64>,
    pub fs_max_used_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&crate::disk::DirState> for WatchedDir {
    fn from(s: &crate::disk::DirState) -> Self {
        let u = s.usage.as_ref();
        Self {
            path: s.dir.path.display().to_string(),
            bytes: u.map(|u| u.bytes),
            apparent_bytes: u.map(|u| u.apparent),
            partial: u.is_some_and(crate::disk::DirUsage::partial),
            age_s: s
                .measured_at
                .map(|t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
            max_bytes: s.dir.max,
            fs_total_bytes: s.fs.map(|f| f.total),
            fs_available_bytes: s.fs.map(|f| f.available),
            fs_used_percent: s.fs.map(|f| (f.used_percent * 10.0).round() / 10.0),
            fs_max_used_percent: s.dir.fs_max_used,
            error: s.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::reaper::Exit;

    #[test]
    fn a_last_exit_in_words() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let code = LastExit::new(Exit::Code(3), at);
        assert_eq!(
            (code.code, code.signal, code.at.as_str()),
            (Some(3), None, "2027-01-15T08:00:00.000Z")
        );
        let cases = [
            (Exit::Code(3), 0, "exit 3, 0s ago"),
            (Exit::Code(0), 100, "exit 0, 1m40s ago"),
            (Exit::Signal(libc::SIGSEGV), 7300, "SIGSEGV, 2h01m ago"),
            (Exit::Signal(99), 5, "signal 99, 5s ago"),
            (Exit::Code(127), 90_000, "exit 127, 1d01h ago"),
        ];
        for (exit, after, words) in cases {
            let e = LastExit::new(exit, at);
            assert_eq!(e.words(at + Duration::from_secs(after)), words, "{e:?}");
        }
        // A clock set back is no negative age; a time that does not read is left out.
        assert_eq!(code.words(at - Duration::from_secs(60)), "exit 3, 0s ago");
        let odd = LastExit {
            at: "yesterday".into(),
            ..code
        };
        assert_eq!(odd.words(at), "exit 3");
    }

    #[test]
    fn short_durations() {
        for (s, text) in [
            (-1.0, "0s"),
            (f64::NAN, "0s"),
            (59.9, "59s"),
            (60.0, "1m00s"),
            (3599.0, "59m59s"),
            (3600.0, "1h00m"),
            (86_399.0, "23h59m"),
            (86_400.0 * 3.0 + 3600.0 * 4.0, "3d04h"),
        ] {
            assert_eq!(short_duration(s), text, "{s}");
        }
    }
}
