//! Command-line flags to a one-program [`Plan`] (or a config plan with global overrides): the
//! flags here, the subcommands in [`control`], one program from its flags in `single`.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::signals::Sig;

use super::{
    check_events_max, check_history_max, check_log_buffer, check_sample_every, check_warn_at,
    load_config, parse_duration, parse_signal, parse_size, EventsTarget, HistorySpec, Intensity,
    LogSpec, Measure, OnLeak, Plan, PlanError, RestartMode, StopMode, DEFAULT_HISTORY_MAX,
    DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX, DEFAULT_MEMORY_FOR,
};

mod control;
mod single;

pub use control::{Control, WaitFlags, DEFAULT_LINES};

/// Flags of `supervise` (the run mode).
#[derive(Debug, clap::Parser)]
#[command(
    name = "supervise",
    version,
    about = "Run and watch worker processes; restart them when they crash, leak or misbehave.",
    override_usage = "supervise [OPTIONS] -- CMD [ARGS]...\n       supervise -c supervise.toml [OPTIONS]\n       supervise [--admin PATH] status|top|logs|restart|signal|stop|start|reload\n       supervise report FILE -o OUT.svg\n       supervise completions SHELL | man"
)]
pub struct Cli {
    /// Talk to a running supervisor instead of starting one.
    #[command(subcommand)]
    pub control: Option<Control>,

    /// Run the programs of this TOML config file instead of a single command.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "command"
    )]
    pub config: Option<PathBuf>,

    /// Program name [default: the command's basename].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Number of instances of the command.
    #[arg(long, value_name = "N", default_value_t = NonZeroU32::MIN)]
    pub replicas: NonZeroU32,
    /// When to restart a worker that exited.
    #[arg(long, value_enum, default_value_t = RestartMode::OnFailure)]
    pub restart: RestartMode,
    /// Time between the stop signal and SIGKILL to the whole tree.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Signal that asks a worker to stop (any signal: TERM, INT, QUIT, RTMIN+3, ...)
    /// [default: TERM; without it, a TERM, INT or QUIT to supervise reaches the command as such].
    #[arg(long, value_name = "SIG", value_parser = parse_signal)]
    pub stop_signal: Option<Sig>,
    /// Who gets the stop signal: the whole process tree once (`group`), or the command's own
    /// process only, the rest SIGKILLed once it has exited (`main`, for servers that stop their
    /// own children).
    #[arg(long, value_enum, value_name = "group|main", default_value_t = StopMode::Group)]
    pub stop_mode: StopMode,
    /// Before the stop signal of a graceful restart (memory, leak, recycle, manual, roll), how
    /// long the instance stays up but not ready, so a load balancer stops sending to it.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Restart intensity: more than N restarts within --within makes the program fatal.
    #[arg(long, value_name = "N", default_value_t = Intensity::default().max)]
    pub max_restarts: u32,
    /// Restart intensity window.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub within: Duration,
    /// First restart delay; doubles with each recent restart.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    pub backoff_first: Duration,
    /// Longest restart delay.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Memory limit of each worker's whole process tree, e.g. 64MiB, 1.5GiB.
    #[arg(long, value_name = "SIZE", value_parser = crate::plan::parse_memory_size)]
    pub memory_max: Option<u64>,
    /// How tree memory is measured.
    #[arg(long, value_enum, value_name = "rss|pss", default_value_t = Measure::Rss)]
    pub memory_measure: Measure,
    /// Consecutive samples over the limit before the worker is restarted.
    #[arg(long, value_name = "N", default_value_t = NonZeroU32::new(DEFAULT_MEMORY_FOR).unwrap_or(NonZeroU32::MIN))]
    pub memory_for: NonZeroU32,
    /// Send `MemoryPressure` to an SDK worker past this fraction of --memory-max, e.g. 0.8.
    #[arg(long, value_name = "FRACTION", value_parser = parse_warn_at)]
    pub memory_warn_at: Option<f64>,
    /// Leak-trend detection: restart a worker whose tree grows steadily by at least GROWTH per
    /// WINDOW, e.g. 64MiB/10m, before any limit is reached.
    #[arg(long, value_name = "GROWTH/WINDOW", value_parser = crate::leak::parse_leak)]
    pub leak: Option<crate::leak::LeakSpec>,
    /// What a detected leak does.
    #[arg(long, value_enum, value_name = "restart|warn", default_value_t = OnLeak::Restart)]
    pub on_leak: OnLeak,
    /// An incarnation stopped for memory younger than this is `limit_too_low`: that restart
    /// counts toward the intensity and backs off [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub memory_min_uptime: Option<Duration>,
    /// Instances that may be out at once for memory, a leak or a recycle; the next waits until
    /// the one before is ready again [default: 1].
    #[arg(long, value_name = "N")]
    pub memory_max_unavailable: Option<u32>,
    /// A tree past this is restarted at once, whatever its siblings do [default: 1.5 x
    /// --memory-max].
    #[arg(long, value_name = "SIZE", value_parser = crate::plan::parse_memory_size)]
    pub memory_ceiling: Option<u64>,
    /// What goes when a tree is over its limit or its leak trend fires: the whole tree, or only
    /// the member (not the root) that holds the growth.
    #[arg(long, value_enum, value_name = "tree|member")]
    pub memory_recycle: Option<super::RecycleScope>,
    /// Recycle a tree (reason `recycle`) when its memory trend says it reaches --memory-max
    /// within DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub recycle_before: Option<Duration>,
    /// Recycle each instance after it has run this long (reason `recycle`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub recycle_every: Option<Duration>,
    /// Spread each scheduled recycle by up to plus or minus this much.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub recycle_jitter: Option<Duration>,
    /// Recycle each instance after this many requests (its SDK counter `requests`).
    #[arg(long, value_name = "N")]
    pub recycle_requests: Option<u64>,
    /// Spread each request-count recycle by up to plus or minus this many requests.
    #[arg(long, value_name = "N")]
    pub recycle_requests_jitter: Option<u64>,
    /// Restart an SDK worker whose heartbeat is older than this (reason `hung`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// Signal sent to a hung worker's own process (a core dump or stack trace where it allows).
    #[arg(long, value_name = "SIG", default_value = "ABRT", value_parser = parse_signal)]
    pub heartbeat_signal: Sig,
    /// How the worker says it is ready: `notify` (systemd's READY=1), `fd:N` (s6: a newline on
    /// fd N), `tcp://HOST:PORT`, `http://HOST:PORT/PATH` or `exec:CMD ARGS` (checked every second)
    /// [default: running is ready].
    #[arg(long, value_name = "SPEC", value_parser = super::parse_ready_flag)]
    pub ready: Option<super::ReadyHow>,
    /// Restart a worker not ready this long after it started (reason `not_ready`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub start_timeout: Option<Duration>,
    /// A liveness check while the worker runs: `tcp://HOST:PORT`, `http://HOST:PORT/PATH` or
    /// `exec:CMD ARGS`, every 10s; 3 failures in a row restart it (reason `unhealthy`).
    #[arg(long, value_name = "SPEC", value_parser = super::parse_check_flag)]
    pub health: Option<super::Check>,
    /// Time a hung worker has after the heartbeat signal before its tree is SIGKILLed.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub heartbeat_grace: Duration,
    /// Run the command as this user (a name or a uid; root only): its primary group unless
    /// --group, its supplementary groups, and HOME, USER, LOGNAME and SHELL.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run the command in this group (a name or a gid; root only).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The command's umask, in octal (e.g. 027).
    #[arg(long, value_name = "MODE", value_parser = super::parse_umask)]
    pub umask: Option<u32>,
    /// The command's nice value, -20 (most favoured; below 0 needs root) to 19.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub nice: Option<i32>,
    /// The command's OOM score adjustment, -1000 (never chosen by the OOM killer; below 0 needs
    /// root) to 1000 (chosen first).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: Option<i32>,
    /// A resource limit for the command: NAME=VALUE, VALUE a number, `unlimited` or SOFT:HARD
    /// (nofile=65536, core=0, stack=8388608:unlimited); repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = super::parse_rlimit_flag)]
    pub rlimit: Vec<super::Rlimit>,
    /// Variables for the command from a dotenv file (KEY=VALUE lines), over supervise's own.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Start the command with an empty environment but for --env-file's variables and
    /// supervise's own (SUPERVISE_*, NOTIFY_SOCKET, WATCHDOG_USEC).
    #[arg(long)]
    pub clear_env: bool,

    /// /proc sampling period, faster near a memory limit [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sample_every: Option<Duration>,

    /// A deleted-but-open file growing faster than this is a finding `deleted_growing`
    /// [default: 256KiB/s].
    #[arg(long, value_name = "SIZE/s", value_parser = super::watch::parse_rate)]
    pub deleted_growth: Option<u64>,

    /// Count closed sockets from samples only, not from the kernel's socket destroy messages
    /// (connections shorter than a sampling period are then missed).
    #[arg(long)]
    pub no_destroy_events: bool,
    /// Control socket to serve (and, for the client subcommands, to talk to)
    /// [default: $XDG_RUNTIME_DIR/supervise.sock, /run/supervise.sock for root, else /tmp/supervise-UID.sock].
    #[arg(long, value_name = "PATH", global = true)]
    pub admin: Option<PathBuf>,
    /// Serve OpenMetrics at /metrics, and /healthz and /readyz, over HTTP on ADDR
    /// (`127.0.0.1:9100`; `:9100` is loopback; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", value_parser = super::parse_metrics_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Allow the dashboard's actions (restart, stop, start, signal) to whoever sends the token
    /// in FILE as a bearer token; without it the dashboard only shows.
    #[arg(long, value_name = "FILE")]
    pub http_token: Option<PathBuf>,
    /// Write events as JSON lines to FILE (`-` for stderr).
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// Rotate the events file before it would pass this size (0 never rotates it)
    /// [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub events_max: Option<u64>,
    /// Rotated events files kept (FILE.1 newest) [default: 3].
    #[arg(long, value_name = "N")]
    pub events_keep: Option<u32>,
    /// No line on stderr for each start, exit, restart, failure and finding (the events file
    /// still has them all).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Turn the host memory-pressure policy on (with `[pressure]`'s defaults where the flags
    /// below do not say): restart the tree that explains the pressure before the kernel's OOM
    /// killer has to act.
    #[arg(long)]
    pub pressure: bool,
    /// PSI `full avg10` of memory at or above this percentage ... [default: 10]
    #[arg(long, value_name = "PERCENT")]
    pub pressure_full: Option<f64>,
    /// ... held this long, together with low memory [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub pressure_for: Option<Duration>,
    /// ... and MemAvailable below this percentage of MemTotal [default: 10]
    #[arg(long, value_name = "PERCENT")]
    pub pressure_available: Option<f64>,
    /// What an open gate does: restart the chosen tree, or only report it.
    #[arg(long, value_enum, value_name = "restart|warn")]
    pub pressure_on: Option<super::PressureOn>,
    /// Read the host from a recorded trace instead of /proc (tests and drills).
    #[arg(long, value_name = "FILE")]
    pub pressure_replay: Option<PathBuf>,
    /// This program's place among pressure victims.
    #[arg(long, value_enum, value_name = "prefer|normal|avoid|never", default_value_t = super::OomPolicy::Normal)]
    pub oom: super::OomPolicy,
    /// Start each worker line (forwarded and in log files) with the time it was read
    /// (RFC 3339, UTC, milliseconds).
    #[arg(long)]
    pub timestamps: bool,
    /// How supervise writes its lines on stderr and the worker lines it forwards: for people,
    /// or one JSON object a line (`ts`, `program`, `instance`, `stream`, `msg`) [default: human].
    #[arg(long, value_enum, value_name = "human|json")]
    pub log_format: Option<super::LogFormat>,
    /// In single-command mode with one instance: start each forwarded line with `name[0] ` and
    /// pass the output through supervise even on a terminal (else it is unprefixed, and a
    /// terminal is handed to the program).
    #[arg(long)]
    pub prefix: bool,
    /// Also write each worker's output to size-rotated files in DIR.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Rotate a log file at this size [default: 10MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub log_max: Option<u64>,
    /// Rotated log files kept per stream [default: 5].
    #[arg(long, value_name = "N")]
    pub log_keep: Option<u32>,
    /// Bytes of each instance's most recent lines kept in memory for `supervise logs`
    /// (0 keeps none) [default: 256KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub log_buffer: Option<u64>,
    /// Append every sample to FILE, for `supervise report`.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Rotate the history file to FILE.1 at this size [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub history_max: Option<u64>,

    /// The command to supervise and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Per-program flags that only make sense with a command, not with `-c`.
const PROGRAM_FLAGS: &[&str] = &[
    "name",
    "replicas",
    "restart",
    "grace",
    "stop_signal",
    "stop_mode",
    "drain",
    "oom",
    "max_restarts",
    "within",
    "backoff_first",
    "backoff_max",
    "memory_max",
    "memory_measure",
    "memory_for",
    "memory_warn_at",
    "memory_min_uptime",
    "memory_max_unavailable",
    "memory_ceiling",
    "memory_recycle",
    "recycle_before",
    "recycle_every",
    "recycle_jitter",
    "recycle_requests",
    "recycle_requests_jitter",
    "heartbeat_timeout",
    "heartbeat_signal",
    "heartbeat_grace",
    "ready",
    "start_timeout",
    "health",
    "leak",
    "on_leak",
    "user",
    "group",
    "umask",
    "nice",
    "oom_score_adj",
    "rlimit",
    "env_file",
    "clear_env",
];

impl Cli {
    /// Builds the plan: from the config file if `-c` was given, else from the flags and command.
    ///
    /// `explicit` tells which flags the user typed (clap's `ArgMatches::value_source`), so that a
    /// per-program flag given alongside `-c` is an error instead of being silently ignored.
    pub fn into_plan(self, explicit: &dyn Fn(&str) -> bool) -> Result<Plan, PlanError> {
        let mut plan = if let Some(path) = &self.config {
            if let Some(flag) = PROGRAM_FLAGS.iter().find(|f| explicit(f)) {
                return Err(PlanError::flag(
                    &format!("--{}", flag.replace('_', "-")),
                    "is a per-program flag; set it in the config file when using -c",
                ));
            }
            if self.prefix {
                return Err(PlanError::flag(
                    "--prefix",
                    "is for a single command (supervise --prefix -- CMD): the lines of a config's programs always carry their prefix",
                ));
            }
            load_config(path)?
        } else {
            self.single_plan(explicit)?
        };
        if let Some(every) = self.sample_every {
            plan.sample_every =
                check_sample_every(every).map_err(|m| PlanError::flag("--sample-every", m))?;
        }
        if let Some(rate) = self.deleted_growth {
            plan.deleted_growth = rate;
        }
        plan.destroy_events &= !self.no_destroy_events;
        self.pressure_into(&mut plan)?;
        plan.admin.clone_from(&self.admin);
        if let Some(addr) = self.metrics {
            plan.metrics = Some(addr);
        }
        if let Some(path) = &self.http_token {
            plan.http_token = Some(
                super::HttpToken::read(path).map_err(|m| PlanError::flag("--http-token", &m))?,
            );
        }
        if plan.http_token.is_some() && plan.metrics.is_none() {
            return Err(PlanError::flag(
                if self.http_token.is_some() {
                    "--http-token"
                } else {
                    "http_token"
                },
                "needs --metrics ADDR or `metrics` in the config (the dashboard is served there)",
            ));
        }
        if let Some(ev) = &self.events {
            plan.events = Some(EventsTarget::parse(ev));
        }
        if let Some(max) = self.events_max {
            plan.events_rotation.max =
                check_events_max(max).map_err(|m| PlanError::flag("--events-max", m))?;
        }
        if let Some(keep) = self.events_keep {
            plan.events_rotation.keep = keep;
        }
        for (flag, given) in [
            ("--events-max", self.events_max.is_some()),
            ("--events-keep", self.events_keep.is_some()),
        ] {
            if given && !matches!(plan.events, Some(EventsTarget::File(_))) {
                return Err(PlanError::flag(flag, "needs --events FILE (not -)"));
            }
        }
        plan.quiet |= self.quiet;
        plan.timestamps |= self.timestamps;
        if let Some(format) = self.log_format {
            plan.log_format = format;
        }
        if let Some(size) = self.log_buffer {
            plan.log_buffer =
                check_log_buffer(size).map_err(|m| PlanError::flag("--log-buffer", m))?;
        }
        if let Some(dir) = self.log_dir {
            let base = plan.log.take();
            plan.log = Some(LogSpec {
                dir,
                max: base.as_ref().map_or(DEFAULT_LOG_MAX, |l| l.max),
                keep: base.as_ref().map_or(DEFAULT_LOG_KEEP, |l| l.keep),
            });
        }
        if let Some(path) = self.history {
            plan.history = Some(HistorySpec {
                path,
                max: plan.history.as_ref().map_or(DEFAULT_HISTORY_MAX, |h| h.max),
            });
        }
        match (&mut plan.history, self.history_max) {
            (Some(h), Some(max)) => {
                h.max = check_history_max(max).map_err(|m| PlanError::flag("--history-max", m))?;
            }
            (None, Some(_)) => {
                return Err(PlanError::flag("--history-max", "needs --history"));
            }
            (_, None) => {}
        }
        match (&mut plan.log, self.log_max, self.log_keep) {
            (Some(log), max, keep) => {
                if let Some(max) = max {
                    log.max = max;
                }
                if let Some(keep) = keep {
                    log.keep = keep;
                }
                if log.max < 1024 {
                    return Err(PlanError::flag("--log-max", "must be at least 1KiB"));
                }
            }
            (None, Some(_), _) => return Err(PlanError::flag("--log-max", "needs --log-dir")),
            (None, _, Some(_)) => return Err(PlanError::flag("--log-keep", "needs --log-dir")),
            (None, None, None) => {}
        }
        Ok(plan)
    }
}

impl Cli {
    /// The `--pressure…` flags over what the config file said: any of them turns it on.
    fn pressure_into(&self, plan: &mut Plan) -> Result<(), PlanError> {
        let given = self.pressure
            || self.pressure_full.is_some()
            || self.pressure_for.is_some()
            || self.pressure_available.is_some()
            || self.pressure_on.is_some()
            || self.pressure_replay.is_some();
        if !given {
            return Ok(());
        }
        let base = plan.pressure.take();
        let spec = super::pressure::build(
            self.pressure_full.or(base.as_ref().map(|b| b.full)),
            self.pressure_for.or(base.as_ref().map(|b| b.hold)),
            self.pressure_available
                .or(base.as_ref().map(|b| b.available)),
            self.pressure_on.or(base.as_ref().map(|b| b.on)),
            self.pressure_replay.clone().or(base.and_then(|b| b.replay)),
        )
        .map_err(|(key, m)| {
            let flag = match key {
                "full" => "--pressure-full",
                _ => "--pressure-available",
            };
            PlanError::flag(flag, m)
        })?;
        plan.pressure = Some(spec);
        Ok(())
    }
}

fn parse_warn_at(s: &str) -> Result<f64, String> {
    let w: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid fraction {s:?}; use e.g. 0.8"))?;
    check_warn_at(w)
}
