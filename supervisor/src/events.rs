//! Events: what happened to which worker, as one JSON object per line.
//!
//! Every event has `ts` (RFC 3339, UTC, milliseconds), `event`, `program`, `instance` and `pid`
//! (`null` when no process is involved), plus the fields of its kind. docs/observability.md
//! documents the schema; [`Kind`] is its single definition. [`human`] words them for people, one
//! line each.

use std::time::SystemTime;

use serde::Serialize;

pub mod human;
pub mod recent;

/// Why a worker is being restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// It exited on its own (or could not be started).
    Exit,
    /// Its tree stayed over the memory limit.
    Memory,
    /// An operator asked for it.
    Manual,
    /// Its heartbeat went stale while the process was alive.
    Hung,
    /// Its tree's memory grew steadily at the configured leak rate.
    Leak,
    /// Its sockets broke the network policy (`net.on_violation = "restart" | "kill"`).
    Net,
    /// It was not ready within its `start_timeout`.
    NotReady,
    /// Its health check failed `failures` times in a row.
    Unhealthy,
    /// Recycled before its memory limit: its leak trend would reach the limit soon, or its
    /// schedule (`recycle.every`, `recycle.requests`) came due.
    Recycle,
    /// The host ran short of memory and its tree was the one that explained it (`[pressure]`).
    Pressure,
}

impl Reason {
    /// Every reason, in a fixed order (the index of [`Reason::index`]).
    pub const ALL: [Reason; 10] = [
        Reason::Exit,
        Reason::Memory,
        Reason::Manual,
        Reason::Hung,
        Reason::Leak,
        Reason::Net,
        Reason::NotReady,
        Reason::Unhealthy,
        Reason::Recycle,
        Reason::Pressure,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Exit => "exit",
            Reason::Memory => "memory",
            Reason::Manual => "manual",
            Reason::Hung => "hung",
            Reason::Leak => "leak",
            Reason::Net => "net",
            Reason::NotReady => "not_ready",
            Reason::Unhealthy => "unhealthy",
            Reason::Recycle => "recycle",
            Reason::Pressure => "pressure",
        }
    }

    /// Position in [`Reason::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kinds of event and their fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Kind {
    /// A worker process was spawned.
    Started { command: Vec<String> },
    /// The command could not be started at all (not found, not executable, bad cwd).
    SpawnFailed { error: String },
    /// The worker process exited; exactly one of `code` and `signal` is set.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        uptime_s: f64,
        /// What the worker last published in its segment, if it linked the SDK.
        #[serde(skip_serializing_if = "Option::is_none")]
        report: Option<Report>,
    },
    /// The tree passed `warn_at` of its limit and the worker was sent `MemoryPressure`.
    MemoryPressure { bytes: u64, limit: u64 },
    /// A sample of the worker's tree was over the memory limit.
    MemoryOver {
        bytes: u64,
        limit: u64,
        measure: &'static str,
        count: u32,
        /// Samples over the limit needed before acting.
        of: u32,
    },
    /// The worker is being (or was) stopped and will be started again after `delay_ms`.
    Restarting { reason: Reason, delay_ms: u64 },
    /// Processes of the worker's tree outlived the stop signal's grace and were SIGKILLed.
    Killed { processes: usize },
    /// Restart intensity exceeded: the program is given up on.
    Fatal { restarts: u32, within_s: f64 },
    /// The worker is stopped for good (supervisor shutdown, restart policy, or operator).
    Stopped,
    /// A process reparented to the supervisor that no worker could claim (`program` is
    /// `supervise`, `pid` is the orphan's). It is reaped when it exits and killed at shutdown.
    Orphan,
    /// The worker is ready: it said `Ready` over the channel (`by` is `sdk`), or its readiness
    /// rule says so (`notify`, `fd`, `tcp`, `http`, `exec`).
    Ready { by: &'static str },
    /// The worker broke the protocol; past a budget its channel is closed (`closed: true`) and it
    /// is supervised from /proc alone.
    ProtocolError {
        error: String,
        count: u32,
        closed: bool,
    },
    /// What the worker's own reports and the kernel disagree on (or what they show together):
    /// `hung`, `leak`, `implausible_report`, `native_or_fragmentation_growth`,
    /// `inconsistent_state`.
    Finding {
        kind: &'static str,
        detail: String,
        #[serde(flatten)]
        numbers: std::collections::BTreeMap<&'static str, u64>,
    },
    /// An event the worker sent over the channel.
    WorkerEvent { level: &'static str, text: String },
    /// (`program` is `supervise`) the metrics server is listening on `addr` (the bound address,
    /// so a port of 0 shows the one the kernel picked).
    Listening { addr: String },
    /// A rolling restart or replacement stopped at this instance: its new process was not up
    /// (running, and ready where it says so) after `waited_s`; `left` instances were not touched.
    RollHalted { waited_s: f64, left: u32 },
    /// Writing a worker's log file failed; lines are dropped until it works again. Once per
    /// episode: the next is after a `log_resumed`.
    LogError { path: String, error: String },
    /// The supervisor began stopping the worker: to restart it (`reason`), or for good
    /// (`reason` null, `for_good` true). A stop for restart that becomes one for good (a stop or
    /// kill arrived meanwhile) is reported again.
    Stopping {
        reason: Option<Reason>,
        for_good: bool,
    },
    /// (`program` is `supervise`) the events file could not be written for a while (a full
    /// disk) and `count` events were lost; the first line written once it works again.
    EventsLost { count: u64 },
    /// (`program` is `supervise`, `pid` the lifeline's) the lifeline cannot protect what it
    /// should: processes that left their worker could outlive a SIGKILLed supervisor. Once per
    /// kind of failure (cannot start, cannot watch a process, not reading, gone).
    LifelineError { detail: String },
    /// The worker's own process exited 0 within its first second and left `processes` running
    /// (`pids`): it forked into the background, as a daemon does, instead of staying in the
    /// foreground. What it left is stopped with it, as after any exit.
    Daemonized { processes: usize, pids: Vec<i32> },
    /// A finding that held no longer does (for now, a watched directory back under its limits:
    /// `program` is `supervise`): `kind` as its `finding` had it, and how many findings of that
    /// kind still hold (`remaining`: other watched directories still over).
    Cleared {
        kind: &'static str,
        detail: String,
        remaining: u32,
    },
    /// One member of the tree (not its root) was stopped because it held the tree's growth
    /// (`memory.recycle = "member"`); its master starts a fresh one. `pid` is the worker's root,
    /// `member` the process recycled.
    Recycled {
        reason: Reason,
        member: i32,
        command: String,
        member_bytes: u64,
        tree_before: u64,
        tree_after: u64,
    },
    /// A worker's log file that could not be written (a `log_error`) is written again;
    /// `dropped` lines were lost meanwhile.
    LogResumed { path: String, dropped: u64 },
    /// The host memory-pressure gate opened and this tree was chosen (`action`: `restart`, or
    /// `warn` where it is only named), with the evidence: the tree's memory and growth, its
    /// `oom` policy, the host's `MemAvailable` and PSI, the grace it gets, its heap (SDK
    /// workers) and its last lines.
    Pressure {
        action: &'static str,
        bytes: u64,
        growth_bytes_per_s: u64,
        oom: &'static str,
        mem_available: u64,
        mem_total: u64,
        full_avg10: f64,
        some_avg10: f64,
        grace_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        heap_bytes: Option<u64>,
        last_lines: Vec<String>,
    },
    /// `supervise reload-program`: this instance's main process was sent its reload action
    /// (`action`: `SIGHUP`, or `reload.exec`), without a restart.
    Reloading { action: String },
    /// The instance is up again after its reload action (`restarted`: it was restarted
    /// meanwhile instead of reloading in place), `took_ms` after the action.
    Reloaded { took_ms: u64, restarted: bool },
    /// A program's reload stopped at this instance (`detail` says why: not ready again within
    /// `reload.timeout`, `reload.exec` failed, the program was stopped, rolled or went fatal);
    /// the instances after it were not reloaded.
    ReloadHalted { detail: String },
}

impl Kind {
    /// One event of every kind, in declaration order (for tests of everything that lists kinds).
    #[cfg(test)]
    pub(crate) fn one_of_each() -> Vec<Kind> {
        let s = String::new;
        vec![
            Kind::Started { command: vec![] },
            Kind::SpawnFailed { error: s() },
            Kind::Exited {
                code: Some(0),
                signal: None,
                uptime_s: 0.0,
                report: None,
            },
            Kind::MemoryPressure { bytes: 0, limit: 0 },
            Kind::MemoryOver {
                bytes: 0,
                limit: 0,
                measure: "rss",
                count: 0,
                of: 0,
            },
            Kind::Restarting {
                reason: Reason::Exit,
                delay_ms: 0,
            },
            Kind::Killed { processes: 0 },
            Kind::Fatal {
                restarts: 0,
                within_s: 0.0,
            },
            Kind::Stopped,
            Kind::Orphan,
            Kind::Ready { by: "sdk" },
            Kind::ProtocolError {
                error: s(),
                count: 0,
                closed: false,
            },
            Kind::Finding {
                kind: "hung",
                detail: s(),
                numbers: std::collections::BTreeMap::new(),
            },
            Kind::WorkerEvent {
                level: "info",
                text: s(),
            },
            Kind::Listening { addr: s() },
            Kind::RollHalted {
                waited_s: 0.0,
                left: 0,
            },
            Kind::LogError {
                path: s(),
                error: s(),
            },
            Kind::Stopping {
                reason: None,
                for_good: true,
            },
            Kind::EventsLost { count: 0 },
            Kind::LifelineError { detail: s() },
            Kind::Daemonized {
                processes: 1,
                pids: vec![2],
            },
            Kind::Cleared {
                kind: "disk",
                detail: s(),
                remaining: 0,
            },
            Kind::Recycled {
                reason: Reason::Memory,
                member: 2,
                command: s(),
                member_bytes: 1,
                tree_before: 2,
                tree_after: 1,
            },
            Kind::LogResumed {
                path: s(),
                dropped: 0,
            },
            Kind::Pressure {
                action: "restart",
                bytes: 1,
                growth_bytes_per_s: 1,
                oom: "normal",
                mem_available: 1,
                mem_total: 2,
                full_avg10: 20.0,
                some_avg10: 30.0,
                grace_ms: 1000,
                heap_bytes: None,
                last_lines: vec![s()],
            },
            Kind::Reloading { action: s() },
            Kind::Reloaded {
                took_ms: 0,
                restarted: false,
            },
            Kind::ReloadHalted { detail: s() },
        ]
    }

    /// Every kind's name (the `event` field), in declaration order.
    pub const NAMES: [&'static str; 28] = [
        "started",
        "spawn_failed",
        "exited",
        "memory_pressure",
        "memory_over",
        "restarting",
        "killed",
        "fatal",
        "stopped",
        "orphan",
        "ready",
        "protocol_error",
        "finding",
        "worker_event",
        "listening",
        "roll_halted",
        "log_error",
        "stopping",
        "events_lost",
        "lifeline_error",
        "daemonized",
        "cleared",
        "recycled",
        "log_resumed",
        "pressure",
        "reloading",
        "reloaded",
        "reload_halted",
    ];

    /// This kind's name, as in the `event` field.
    #[must_use]
    pub fn name(&self) -> &'static str {
        let i = match self {
            Kind::Started { .. } => 0,
            Kind::SpawnFailed { .. } => 1,
            Kind::Exited { .. } => 2,
            Kind::MemoryPressure { .. } => 3,
            Kind::MemoryOver { .. } => 4,
            Kind::Restarting { .. } => 5,
            Kind::Killed { .. } => 6,
            Kind::Fatal { .. } => 7,
            Kind::Stopped => 8,
            Kind::Orphan => 9,
            Kind::Ready { .. } => 10,
            Kind::ProtocolError { .. } => 11,
            Kind::Finding { .. } => 12,
            Kind::WorkerEvent { .. } => 13,
            Kind::Listening { .. } => 14,
            Kind::RollHalted { .. } => 15,
            Kind::LogError { .. } => 16,
            Kind::Stopping { .. } => 17,
            Kind::EventsLost { .. } => 18,
            Kind::LifelineError { .. } => 19,
            Kind::Daemonized { .. } => 20,
            Kind::Cleared { .. } => 21,
            Kind::Recycled { .. } => 22,
            Kind::LogResumed { .. } => 23,
            Kind::Pressure { .. } => 24,
            Kind::Reloading { .. } => 25,
            Kind::Reloaded { .. } => 26,
            Kind::ReloadHalted { .. } => 27,
        };
        Self::NAMES[i]
    }
}

/// A worker's self-report, read from its segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub heap_bytes: u64,
    pub heap_peak: u64,
    pub allocations: u64,
    pub requests: u64,
    pub errors: u64,
    pub in_flight: u64,
    /// Named counters and gauges.
    pub metrics: std::collections::BTreeMap<String, u64>,
    /// Which of `metrics` are gauges (the rest are counters).
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub gauges: std::collections::BTreeSet<String>,
    /// Age of the last heartbeat when read, ms (`null`: never written).
    pub heartbeat_age_ms: Option<u64>,
}

/// One event with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event<'a> {
    pub ts: String,
    pub program: &'a str,
    pub instance: u32,
    pub pid: Option<i32>,
    #[serde(flatten)]
    pub kind: Kind,
}

impl<'a> Event<'a> {
    #[must_use]
    pub fn now(program: &'a str, instance: u32, pid: Option<i32>, kind: Kind) -> Self {
        Self {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            program,
            instance,
            pid,
            kind,
        }
    }

    /// The event as one JSON line, newline included.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"event\":\"unserializable\",\"error\":{:?}}}",
                e.to_string()
            )
        });
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_of_an_event() {
        let e = Event::now(
            "api",
            1,
            Some(42),
            Kind::Restarting {
                reason: Reason::Memory,
                delay_ms: 100,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_line()).expect("json");
        assert_eq!(v["event"], "restarting");
        assert_eq!(v["program"], "api");
        assert_eq!(v["instance"], 1);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["reason"], "memory");
        assert_eq!(v["delay_ms"], 100);
        let ts = v["ts"].as_str().expect("ts");
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    }

    #[test]
    fn names_are_the_serialized_tags() {
        let every = Kind::one_of_each();
        assert_eq!(every.len(), Kind::NAMES.len());
        for (i, k) in every.into_iter().enumerate() {
            let name = k.name();
            assert_eq!(name, Kind::NAMES[i]);
            let v: serde_json::Value =
                serde_json::from_str(&Event::now("a", 0, None, k).to_line()).expect("json");
            assert_eq!(v["event"], name);
        }
    }

    #[test]
    fn exited_has_code_or_signal() {
        let e = Event::now(
            "a",
            0,
            Some(1),
            Kind::Exited {
                code: None,
                signal: Some(9),
                uptime_s: 1.5,
                report: None,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_line()).expect("json");
        assert_eq!(v["event"], "exited");
        assert_eq!(v["signal"], 9);
        assert!(v["code"].is_null());
        assert_eq!(v["uptime_s"], 1.5);
    }
}
