//! From command-line flags or a TOML config to a validated [`Plan`].
//!
//! All validation lives here: the rest of the supervisor only ever sees durations, byte counts and
//! signals, never strings. Config errors name the file, the line and the key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::signals::Sig;

/// Everything the engine needs to run: programs and global settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The programs, in a stable order (config order is alphabetical by name).
    pub programs: Vec<ProgramSpec>,
    /// How often /proc is sampled for each worker (adaptive sampling may go faster near a limit).
    pub sample_every: Duration,
    /// Where events go, if anywhere.
    pub events: Option<EventsTarget>,
    /// When an events file is rotated, and how many rotated files are kept.
    pub events_rotation: EventsRotation,
    /// No line on stderr for each event (`--quiet`).
    pub quiet: bool,
    /// Worker lines, on the console and in log files, start with the time they were read
    /// (`--timestamps`).
    pub timestamps: bool,
    /// How supervise's stderr lines and the forwarded worker lines are written
    /// (`--log-format`, `log_format`).
    pub log_format: LogFormat,
    /// `--prefix`: in single-command mode with one instance, forwarded lines start with
    /// `name[0] ` and go through supervise (a config's or replicas' always do).
    pub prefix: bool,
    /// Worker output files, if configured.
    pub log: Option<LogSpec>,
    /// Bytes of each instance's most recent lines kept for `supervise logs` (0: none kept).
    pub log_buffer: u64,
    /// True for `supervise -- CMD`: the worker's exit code becomes ours.
    pub single: bool,
    /// The workers get the very signal that stops the supervisor (TERM, INT, QUIT) instead of
    /// their stop signal, as tini does: single-command mode without `--stop-signal`.
    pub forward_stop: bool,
    /// The config file this plan came from (for reload and messages).
    pub source: Option<PathBuf>,
    /// The control socket: `Some` when given with `--admin` (then failing to bind is an error),
    /// `None` for the default path (then a busy default only costs the socket).
    pub admin: Option<PathBuf>,
    /// Where to serve OpenMetrics, `/healthz` and `/readyz` over HTTP, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The dashboard's actions (restart, stop, start, signal) need this bearer token
    /// (`--http-token FILE`, config key `http_token`); without one the dashboard only shows.
    pub http_token: Option<HttpToken>,
    /// Where every tick's figures are appended for `supervise report`, if anywhere.
    pub history: Option<HistorySpec>,
    /// `[alert]`: chosen events to a command and/or a webhook.
    pub alert: Option<alert::AlertSpec>,
    /// `[[watch.dir]]`: directories whose size and filesystem are watched.
    pub watch_dirs: Vec<watch::WatchDir>,
    /// `[watch] deleted_growth`: a deleted-but-open file growing faster than this, bytes per
    /// second, is a finding `deleted_growing`.
    pub deleted_growth: u64,
    /// `[sample] destroy_events`: count closed sockets from the kernel's destroy messages
    /// (`false`: from samples only, `--no-destroy-events`).
    pub destroy_events: bool,
    /// `[pressure]`: the host memory-pressure policy, when on.
    pub pressure: Option<PressureSpec>,
}

/// The secret the dashboard's actions need. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpToken(String);

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpToken(..)")
    }
}

/// Shortest token accepted, in characters: `openssl rand -hex 16` gives 32.
pub const MIN_TOKEN: usize = 16;
/// Longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

impl HttpToken {
    /// Reads a token from `path`: its text, without surrounding whitespace (a trailing newline).
    ///
    /// # Errors
    /// The file cannot be read, is not a regular file, is larger than 4 KiB, or its token is
    /// shorter than [`MIN_TOKEN`] characters or holds whitespace or control characters.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        if meta.len() > MAX_TOKEN_FILE {
            return Err(format!(
                "{}: {} bytes; a token file holds one token (at most 4 KiB)",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let token = std::str::from_utf8(&text)
            .map_err(|_| format!("{}: not text", path.display()))?
            .trim();
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{}: the token has whitespace or control characters in it",
                path.display()
            ));
        }
        if token.chars().count() < MIN_TOKEN {
            return Err(format!(
                "{}: the token is shorter than {MIN_TOKEN} characters (`openssl rand -hex 32 > FILE` makes a good one)",
                path.display()
            ));
        }
        Ok(Self(token.to_owned()))
    }

    /// Whether `given` is the token, compared in time that does not depend on where they differ.
    #[must_use]
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = u8::from(want.len() != given.len());
        for (i, &w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

/// One supervised program and its policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSpec {
    pub name: String,
    /// argv; never empty.
    pub command: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Added to the environment (or to an empty one, with `identity.clear_env`): `env_file`'s
    /// variables, then `env`'s, which win.
    pub env: Vec<(String, String)>,
    /// User, group, umask, nice, OOM score and limits to start it with.
    pub identity: Identity,
    pub replicas: u32,
    pub restart: RestartMode,
    pub backoff: Backoff,
    pub intensity: Intensity,
    pub stop: StopSpec,
    pub memory: Option<MemorySpec>,
    /// Heartbeat watching, if asked for.
    pub heartbeat: Option<HeartbeatSpec>,
    /// Leak-trend detection on the tree's memory (same measure as `memory`, else RSS).
    pub leak: Option<LeakPolicy>,
    /// `[program.NAME.net]`: what the tree's sockets may do.
    pub net: Option<NetPolicy>,
    /// `[program.NAME.ready]`: how the worker says it is ready (none: running is ready).
    pub ready: Option<ReadySpec>,
    /// `[program.NAME.health]`: a liveness check.
    pub health: Option<HealthSpec>,
    /// Programs that must be ready before this one starts (and stop after it).
    pub after: Vec<String>,
    /// How its memory restarts are carried out (capacity guard, ceiling, recycling).
    pub handling: Handling,
    /// Its place in the order of host-pressure victims (`oom`).
    pub oom: OomPolicy,
    /// Whether its going fatal ends the run (exit 1, the others stopped gracefully); a program
    /// that is not essential never ends it, never changes its exit status, and `/readyz`
    /// leaves it out.
    pub essential: bool,
    /// What `supervise reload-program` does to each instance (`reload`).
    pub reload: ReloadSpec,
}

/// `[program.NAME.reload]`: how a running instance is told to reload without a restart, and
/// how long it is given to be ready again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSpec {
    pub action: ReloadAction,
    /// For an instance that does not say `RELOADING=1`: how long after the action it counts as
    /// reloaded (once it is up).
    pub settle: Duration,
    /// The longest an instance may take to be ready again; past it the reload halts.
    pub timeout: Duration,
}

/// What tells an instance to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadAction {
    /// A signal to the instance's main process.
    Signal(Sig),
    /// A command run with the instance's environment and `SUPERVISE_MAINPID`.
    Exec(Vec<String>),
}

/// `reload.settle` unless given.
pub const DEFAULT_RELOAD_SETTLE: Duration = Duration::from_secs(2);
/// `reload.timeout` unless given.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ReloadSpec {
    fn default() -> Self {
        Self {
            action: ReloadAction::Signal(Sig::HUP),
            settle: DEFAULT_RELOAD_SETTLE,
            timeout: DEFAULT_RELOAD_TIMEOUT,
        }
    }
}

/// A program's network policy, checked against its tree's sockets every tick.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPolicy {
    /// Remote address/CIDR and port patterns outbound connections must match (`None`: any).
    pub allow: Option<crate::net::AllowList>,
    /// Ports the tree may listen on (`None`: any).
    pub listen_allow: Option<crate::net::PortList>,
    pub max_connections: Option<u32>,
    pub on_violation: OnViolation,
}

/// What a breach of the network policy leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// Report the finding only.
    Warn,
    /// Restart gracefully (reason `net`).
    Restart,
    /// SIGKILL the tree at once, then restart (reason `net`).
    Kill,
}

/// What to watch for as a leak, and what to do about one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakPolicy {
    pub spec: crate::leak::LeakSpec,
    pub on_leak: OnLeak,
}

/// What a detected leak leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnLeak {
    /// Restart the worker (reason `leak`).
    Restart,
    /// Only report the `leak` finding.
    Warn,
}

/// How supervise writes its lines on stderr and the worker lines it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: `api[0] line`, `2026-11-28T20:33:49Z api[0] exited with code 3 after 1.2s`.
    #[default]
    Human,
    /// One JSON object a line, for log shippers (docs/logs.md).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Restart whatever the exit status.
    Always,
    /// Restart unless the worker exited with code 0.
    OnFailure,
    /// Never restart.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub factor: f64,
    /// Fraction of the delay added or removed at random, 0.0..=1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.1,
        }
    }
}

/// Restart intensity: more than `max` restarts within `within` makes the program fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    pub max: u32,
    pub within: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Self {
            max: 5,
            within: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSpec {
    pub signal: Sig,
    pub grace: Duration,
    pub mode: StopMode,
    /// Before a graceful restart's stop signal, how long the instance stays up but not ready.
    pub drain: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        Self {
            signal: Sig::TERM,
            grace: Duration::from_secs(10),
            mode: StopMode::Group,
            drain: Duration::ZERO,
        }
    }
}

/// Who gets the stop signal (and the signals forwarded to a worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// Every process of the tree, once: the process group, then the members that left it
    /// (systemd `KillMode=control-group`, supervisord `stopasgroup=true`).
    Group,
    /// The worker's own process only; the rest of the tree is SIGKILLed once it has exited, or
    /// after the grace (systemd `KillMode=mixed`, supervisord `stopasgroup=false`): for servers
    /// that stop their own children, such as PostgreSQL.
    Main,
}

impl StopMode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Group => "group",
            StopMode::Main => "main",
        }
    }
}

/// Heartbeat watching: a worker whose segment heartbeat is older than `timeout` (once it has
/// written one) is `hung`: its root gets `signal`, and the tree SIGKILL after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSpec {
    pub timeout: Duration,
    pub signal: Sig,
    pub grace: Duration,
}

/// systemd's `WatchdogSignal=` default: a core or a stack trace where the program allows one.
pub const DEFAULT_HEARTBEAT_SIGNAL: Sig = Sig::ABRT;
pub const DEFAULT_HEARTBEAT_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Resident set size summed over the tree (a page shared by two members counts twice).
    Rss,
    /// Proportional set size from smaps_rollup (shared pages split between sharers).
    Pss,
}

impl Measure {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Rss => "rss",
            Measure::Pss => "pss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemorySpec {
    /// Limit for the whole process tree, bytes.
    pub max: u64,
    pub measure: Measure,
    /// Consecutive samples over the limit before acting.
    pub count: u32,
    /// The over-limit count resets only once the tree falls below `max * (1 - hysteresis)`.
    pub hysteresis: f64,
    /// Fraction of `max` past which a worker that speaks the protocol is sent `MemoryPressure`.
    pub warn_at: Option<f64>,
}

/// Most replicas of one program: beyond this, starting (and stopping) them all takes longer than
/// an operator waits, and the supervisor's own memory grows past what it is for.
pub const MAX_REPLICAS: u32 = 10_000;
/// Open files the supervisor holds for one running instance whose tree is one process: two
/// output pipes, the channel, a pidfd, and the kept-open /proc files (stat, statm, io, children,
/// the fd directory, and the socket probe's own handle on the fd directory). Measured by `cargo
/// bench --bench scale`: 10.0 per worker at 1,000 workers. Each further process of a tree takes
/// about 6 more.
pub const FDS_PER_INSTANCE: u64 = 10;
/// Open files the supervisor holds for itself (control and notify sockets, signalfd, epoll, the
/// lifeline's pipe, events file, /proc; measured: 24), with room to spare.
pub const FDS_BASE: u64 = 32;
/// Open files clients may hold at once: the control socket's connections
/// (`admin::MAX_CONNECTIONS`, 32) and the metrics server's (`metrics::MAX_CONNECTIONS`, 64).
/// Reserved whether or not they come, so that no client can take the fds a restart needs.
pub const FDS_CLIENTS: u64 = 32 + 64;
/// Open files one notify datagram can bring in before they are closed (`notify::MAX_FDS`).
pub const FDS_NOTIFY: u64 = 8;

/// Whether `instances` one-process trees fit in `limit` open files (the hard `RLIMIT_NOFILE`,
/// which the supervisor raises its own soft limit to). `Err` says what they need.
pub fn fd_budget(instances: u64, limit: u64) -> Result<(), String> {
    let need = instances
        .saturating_mul(FDS_PER_INSTANCE)
        .saturating_add(FDS_BASE + FDS_CLIENTS + FDS_NOTIFY);
    if need <= limit {
        Ok(())
    } else {
        Err(format!(
            "{instances} instances need about {need} open files in the supervisor, more than its \
             limit of {limit} (ulimit -Hn): raise the limit or run fewer replicas"
        ))
    }
}

/// The hard limit on open files (`u64::MAX` when unlimited or unknown).
#[must_use]
pub fn nofile_limit() -> u64 {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) if hard != libc::RLIM_INFINITY => hard,
        _ => u64::MAX,
    }
}

fn check_replicas(n: u32) -> Result<u32, String> {
    if (1..=MAX_REPLICAS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and {MAX_REPLICAS}, got {n}"))
    }
}

pub const DEFAULT_MEMORY_FOR: u32 = 3;
pub const DEFAULT_HYSTERESIS: f64 = 0.05;
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(1);
pub const DEFAULT_LOG_MAX: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// Bytes of recent lines kept per instance for `supervise logs`.
pub const DEFAULT_LOG_BUFFER: u64 = 256 * 1024;
/// Smallest `--log-buffer` but 0 (keep none): the buffer's header and a useful part of a line
/// must fit.
pub const MIN_LOG_BUFFER: usize = 1024;
/// Largest `--log-buffer`: what one instance may hold is not meant to be an archive.
pub const MAX_LOG_BUFFER: u64 = 1 << 30;
/// Default size at which the events file is rotated: some 150,000 restarts' events (a restart
/// writes about 430 bytes of them), or a year of a busy but healthy config's.
pub const DEFAULT_EVENTS_MAX: u64 = 64 * 1024 * 1024;
/// Rotated events files kept by default: with the live one, at most 256 MiB of events.
pub const DEFAULT_EVENTS_KEEP: u32 = 3;
/// Default size at which the history file is rotated to FILE.1.
pub const DEFAULT_HISTORY_MAX: u64 = 64 * 1024 * 1024;
/// Smallest history size limit accepted.
pub const MIN_HISTORY_MAX: u64 = 64 * 1024;

/// Where `--events` go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsTarget {
    Stderr,
    File(PathBuf),
}

impl EventsTarget {
    fn parse(s: &str) -> Self {
        if s == "-" {
            EventsTarget::Stderr
        } else {
            EventsTarget::File(PathBuf::from(s))
        }
    }
}

/// Rotation of the events file (`--events-max`, `--events-keep`), as the log files are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsRotation {
    /// Rotate the file before it would pass this size; 0 never rotates it.
    pub max: u64,
    /// Rotated files kept besides the live one (`FILE.1` newest).
    pub keep: u32,
}

impl Default for EventsRotation {
    fn default() -> Self {
        Self {
            max: DEFAULT_EVENTS_MAX,
            keep: DEFAULT_EVENTS_KEEP,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    pub dir: PathBuf,
    /// Rotate a file once it reaches this size.
    pub max: u64,
    /// Rotated files kept besides the live one.
    pub keep: u32,
}

/// The history file (`--history`, `history = "…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySpec {
    pub path: PathBuf,
    /// Rotate to `path.1` before the file would pass this size.
    pub max: u64,
}

/// A config or flag error, pointing at where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => {}
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl PlanError {
    fn flag(key: &str, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value parsers shared by flags and config.

/// Parses a duration such as `10s`, `250ms`, `1m 30s`, or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 500ms, 10s, 5m"))
}

/// Parses a memory limit: a size as [`parse_size`] reads it, refused when it has no unit and
/// is under [`BARE_MEMORY_MIN`] (see [`check_memory_size`]).
pub fn parse_memory_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    let bare = s.trim().bytes().all(|b| b.is_ascii_digit());
    check_memory_size(n, bare)
}

/// The smallest memory limit that may be written without a unit: a bare number under it
/// (`max = 512`) is far more likely to mean MiB than bytes.
pub const BARE_MEMORY_MIN: u64 = 1 << 20;

/// A memory limit of `n` bytes, written without a unit when `bare`: refused when bare and under
/// [`BARE_MEMORY_MIN`], with the unit it probably meant.
pub fn check_memory_size(n: u64, bare: bool) -> Result<u64, String> {
    if bare && n < BARE_MEMORY_MIN {
        return Err(format!(
            "{n} has no unit, so it means {n} bytes, which no process fits in; \
             write \"{n}MiB\" (or a number of bytes of at least 1048576)"
        ));
    }
    Ok(n)
}

/// Parses a byte size such as `64MiB`, `1.5GiB`, `100MB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?} ({e}); use e.g. 64MiB, 1.5GiB"))
}

/// A metrics address: `HOST:PORT`, or `:PORT` for loopback (`127.0.0.1:PORT`). Port 0 asks the
/// kernel for a free port.
pub fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let t = s.trim();
    let full = match t.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => t.to_owned(),
    };
    full.parse().map_err(|_| {
        format!("invalid address {s:?}; use e.g. 127.0.0.1:9100, :9100 (loopback) or 0.0.0.0:9100")
    })
}

/// Parses a signal as `TERM`, `SIGTERM`, `term`, `15` or `RTMIN+3`.
pub fn parse_signal(s: &str) -> Result<Sig, String> {
    Sig::parse(s)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid program name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

fn check_jitter(j: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&j) {
        Ok(j)
    } else {
        Err(format!("jitter must be between 0.0 and 1.0, got {j}"))
    }
}

fn check_factor(f: f64) -> Result<f64, String> {
    if f.is_finite() && (1.0..=100.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("factor must be between 1.0 and 100.0, got {f}"))
    }
}

fn check_warn_at(w: f64) -> Result<f64, String> {
    if w > 0.0 && w < 1.0 {
        Ok(w)
    } else {
        Err(format!(
            "warn_at must be a fraction between 0 and 1 (e.g. 0.8), got {w}"
        ))
    }
}

fn check_history_max(max: u64) -> Result<u64, String> {
    if max < MIN_HISTORY_MAX {
        Err(format!("must be at least 64KiB, got {max} bytes"))
    } else {
        Ok(max)
    }
}

fn check_events_max(max: u64) -> Result<u64, String> {
    if max == 0 || max >= 1024 {
        Ok(max)
    } else {
        Err(format!(
            "must be 0 (never rotate) or at least 1KiB, got {max} bytes"
        ))
    }
}

fn check_log_buffer(size: u64) -> Result<u64, String> {
    let min = MIN_LOG_BUFFER as u64;
    if size == 0 || (min..=MAX_LOG_BUFFER).contains(&size) {
        Ok(size)
    } else {
        Err(format!(
            "must be 0 (keep none) or between 1KiB and 1GiB, got {size} bytes"
        ))
    }
}

fn check_sample_every(d: Duration) -> Result<Duration, String> {
    if d < Duration::from_millis(10) {
        Err(format!(
            "must be at least 10ms, got {}",
            humantime::format_duration(d)
        ))
    } else {
        Ok(d)
    }
}

pub mod alert;
pub mod changes;
mod checks;
mod cli;
mod config;
pub mod envfile;
pub mod expand;
pub mod file;
mod handling;
mod identity;
mod pressure;
mod values;
pub mod watch;

pub use checks::{
    parse_check_flag, parse_ready_flag, Check, HealthSpec, ReadyHow, ReadySpec,
    DEFAULT_HEALTH_EVERY, DEFAULT_HEALTH_FAILURES, DEFAULT_HEALTH_TIMEOUT, DEFAULT_READY_EVERY,
    DEFAULT_READY_TIMEOUT,
};
pub use cli::{Cli, Control, WaitFlags, DEFAULT_LINES};
pub use config::{load_config, parse_config};
pub use handling::{
    default_ceiling, Handling, RecycleScope, Schedule, DEFAULT_MIN_UPTIME, DEFAULT_TREND_WINDOW,
};
pub use identity::{
    credentials, effective_ids, parse_rlimit_flag, parse_umask, resolve_group, resolve_user,
    Identity, Rlimit, Switch, Who, RLIMITS, UNLIMITED,
};
pub use pressure::{OomPolicy, PressureOn, PressureSpec};

#[cfg(test)]
mod tests;
