//! From command-line flags or a TOML config to a validated [`Plan`].
//!
//! All validation lives here: the rest of the supervisor only ever sees durations, byte counts and
//! signals, never strings. Config errors name the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{de, Deserialize, Deserializer};

/// Everything the engine needs to run: programs and global settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The programs, in a stable order (config order is alphabetical by name).
    pub programs: Vec<ProgramSpec>,
    /// How often /proc is sampled for each worker (adaptive sampling may go faster near a limit).
    pub sample_every: Duration,
    /// Where events go, if anywhere.
    pub events: Option<EventsTarget>,
    /// Worker output files, if configured.
    pub log: Option<LogSpec>,
    /// True for `supervise -- CMD`: the worker's exit code becomes ours.
    pub single: bool,
    /// The config file this plan came from (for reload and messages).
    pub source: Option<PathBuf>,
}

/// One supervised program and its policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSpec {
    pub name: String,
    /// argv; never empty.
    pub command: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub replicas: u32,
    pub restart: RestartMode,
    pub backoff: Backoff,
    pub intensity: Intensity,
    pub stop: StopSpec,
    pub memory: Option<MemorySpec>,
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
    pub signal: Signal,
    pub grace: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        Self {
            signal: Signal::SIGTERM,
            grace: Duration::from_secs(10),
        }
    }
}

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
}

pub const DEFAULT_MEMORY_FOR: u32 = 3;
pub const DEFAULT_HYSTERESIS: f64 = 0.05;
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(1);
pub const DEFAULT_LOG_MAX: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_KEEP: u32 = 5;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    pub dir: PathBuf,
    /// Rotate a file once it reaches this size.
    pub max: u64,
    /// Rotated files kept besides the live one.
    pub keep: u32,
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

/// Parses a byte size such as `64MiB`, `1.5GiB`, `100MB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?} ({e}); use e.g. 64MiB, 1.5GiB"))
}

/// Parses a signal as `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| format!("unknown signal {s:?}; use e.g. TERM, INT, QUIT, HUP, USR1"))
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

// ---------------------------------------------------------------------------------------------
// Command line.

/// Flags of `supervise` (the run mode).
#[derive(Debug, clap::Parser)]
#[command(
    name = "supervise",
    version,
    about = "Run and watch worker processes; restart them when they crash, leak or misbehave.",
    override_usage = "supervise [OPTIONS] -- CMD [ARGS]...\n       supervise -c supervise.toml [OPTIONS]"
)]
pub struct Cli {
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
    /// Signal that asks a worker to stop.
    #[arg(long, value_name = "SIG", default_value = "TERM", value_parser = parse_signal)]
    pub stop_signal: Signal,
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
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_max: Option<u64>,
    /// How tree memory is measured.
    #[arg(long, value_enum, value_name = "rss|pss", default_value_t = Measure::Rss)]
    pub memory_measure: Measure,
    /// Consecutive samples over the limit before the worker is restarted.
    #[arg(long, value_name = "N", default_value_t = NonZeroU32::new(DEFAULT_MEMORY_FOR).unwrap_or(NonZeroU32::MIN))]
    pub memory_for: NonZeroU32,

    /// /proc sampling period, faster near a memory limit [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sample_every: Option<Duration>,
    /// Write events as JSON lines to FILE (`-` for stderr).
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// Also write each worker's output to size-rotated files in DIR.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Rotate a log file at this size [default: 10MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub log_max: Option<u64>,
    /// Rotated log files kept per stream [default: 5].
    #[arg(long, value_name = "N")]
    pub log_keep: Option<u32>,

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
    "max_restarts",
    "within",
    "backoff_first",
    "backoff_max",
    "memory_max",
    "memory_measure",
    "memory_for",
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
            load_config(path)?
        } else {
            self.single_plan()?
        };
        if let Some(every) = self.sample_every {
            plan.sample_every =
                check_sample_every(every).map_err(|m| PlanError::flag("--sample-every", m))?;
        }
        if let Some(ev) = &self.events {
            plan.events = Some(EventsTarget::parse(ev));
        }
        if let Some(dir) = self.log_dir {
            let base = plan.log.take();
            plan.log = Some(LogSpec {
                dir,
                max: base.as_ref().map_or(DEFAULT_LOG_MAX, |l| l.max),
                keep: base.as_ref().map_or(DEFAULT_LOG_KEEP, |l| l.keep),
            });
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

    fn single_plan(&self) -> Result<Plan, PlanError> {
        let Some(program) = self.command.first() else {
            return Err(PlanError::flag(
                "",
                "nothing to run: give a command after `--` (supervise [OPTIONS] -- CMD [ARGS]...) or a config with -c FILE",
            ));
        };
        let name = match &self.name {
            Some(n) => n.clone(),
            None => Path::new(program)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "worker".to_owned()),
        };
        check_name(&name).map_err(|m| PlanError::flag("--name", m))?;
        if self.backoff_max < self.backoff_first {
            return Err(PlanError::flag(
                "--backoff-max",
                "must not be shorter than --backoff-first",
            ));
        }
        if self.within.is_zero() {
            return Err(PlanError::flag("--within", "must be longer than 0"));
        }
        let memory = self.memory_max.map(|max| MemorySpec {
            max,
            measure: self.memory_measure,
            count: self.memory_for.get(),
            hysteresis: DEFAULT_HYSTERESIS,
        });
        if memory.is_some_and(|m| m.max == 0) {
            return Err(PlanError::flag("--memory-max", "must be more than 0"));
        }
        Ok(Plan {
            programs: vec![ProgramSpec {
                name,
                command: self.command.clone(),
                cwd: None,
                env: Vec::new(),
                replicas: self.replicas.get(),
                restart: self.restart,
                backoff: Backoff {
                    first: self.backoff_first,
                    max: self.backoff_max,
                    ..Backoff::default()
                },
                intensity: Intensity {
                    max: self.max_restarts,
                    within: self.within,
                },
                stop: StopSpec {
                    signal: self.stop_signal,
                    grace: self.grace,
                },
                memory,
            }],
            sample_every: DEFAULT_SAMPLE_EVERY,
            events: None,
            log: None,
            single: true,
            source: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Config file. Raw types mirror the TOML; custom value types validate while deserializing so that
// every error carries the key path (serde_path_to_error) and the span (toml).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sample: Option<RawSample>,
    #[serde(default)]
    events: Option<String>,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default)]
    program: BTreeMap<String, RawProgram>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    every: SampleEvery,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    dir: PathBuf,
    #[serde(default)]
    max: Option<Size>,
    #[serde(default)]
    keep: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    #[serde(default)]
    command: Option<Command>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "one")]
    replicas: NonZeroU32,
    #[serde(default)]
    restart: Option<RestartMode>,
    #[serde(default)]
    backoff: Option<RawBackoff>,
    #[serde(default)]
    intensity: Option<RawIntensity>,
    #[serde(default)]
    stop: Option<RawStop>,
    #[serde(default)]
    memory: Option<RawMemory>,
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    first: Option<Dur>,
    max: Option<Dur>,
    factor: Option<Factor>,
    jitter: Option<Jitter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntensity {
    max: Option<u32>,
    within: Option<NonZeroDur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    signal: Option<Sig>,
    grace: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    max: NonZeroSize,
    #[serde(default)]
    measure: Option<Measure>,
    #[serde(default, rename = "for")]
    count: Option<NonZeroU32>,
    #[serde(default)]
    hysteresis: Option<Hysteresis>,
}

/// Declares a newtype deserialized from a string through a validating parser.
macro_rules! parsed_str {
    ($name:ident, $t:ty, $expecting:literal, $parse:expr) => {
        #[derive(Debug, Clone, Copy)]
        struct $name($t);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)
                    .map_err(|_| de::Error::custom(concat!("expected ", $expecting)))?;
                let parse: fn(&str) -> Result<$t, String> = $parse;
                parse(&s).map($name).map_err(de::Error::custom)
            }
        }
    };
}

parsed_str!(
    Dur,
    Duration,
    "a duration string such as \"10s\"",
    parse_duration
);
parsed_str!(
    NonZeroDur,
    Duration,
    "a duration string such as \"60s\"",
    |s| {
        parse_duration(s).and_then(|d| {
            if d.is_zero() {
                Err("must be longer than 0".to_owned())
            } else {
                Ok(d)
            }
        })
    }
);
parsed_str!(
    SampleEvery,
    Duration,
    "a duration string such as \"1s\"",
    |s| { parse_duration(s).and_then(check_sample_every) }
);
parsed_str!(Sig, Signal, "a signal name such as \"TERM\"", parse_signal);

/// A size given as a string (`"64MiB"`) or a plain integer number of bytes.
#[derive(Debug, Clone, Copy)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Str(String),
        }
        match Either::deserialize(d).map_err(|_| {
            de::Error::custom("expected a size such as \"64MiB\" or a number of bytes")
        })? {
            Either::Int(n) => Ok(Size(n)),
            Either::Str(s) => parse_size(&s).map(Size).map_err(de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct NonZeroSize(u64);

impl<'de> Deserialize<'de> for NonZeroSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Size::deserialize(d)? {
            Size(0) => Err(de::Error::custom("must be more than 0")),
            Size(n) => Ok(NonZeroSize(n)),
        }
    }
}

macro_rules! checked_f64 {
    ($name:ident, $check:expr) => {
        #[derive(Debug, Clone, Copy)]
        struct $name(f64);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let check: fn(f64) -> Result<f64, String> = $check;
                check(f64::deserialize(d)?)
                    .map($name)
                    .map_err(de::Error::custom)
            }
        }
    };
}

checked_f64!(Factor, check_factor);
checked_f64!(Jitter, check_jitter);
checked_f64!(Hysteresis, |h| {
    if (0.0..0.5).contains(&h) {
        Ok(h)
    } else {
        Err(format!(
            "hysteresis must be at least 0.0 and below 0.5, got {h}"
        ))
    }
});

/// A non-empty argv of non-empty strings.
#[derive(Debug, Clone)]
struct Command(Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected an array of strings, e.g. [\"./api\", \"--port\", \"8080\"]",
            )
        })?;
        if v.is_empty() || v[0].is_empty() {
            return Err(de::Error::custom("must name a program to run"));
        }
        Ok(Command(v))
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where `[program.NAME]` (or a `program.NAME.…` key) first appears, for errors about a
/// program as a whole. Serde reports no span for a map key, so look for the name in the text.
fn program_line(src: &str, name: &str) -> Option<usize> {
    let quoted = format!("program.\"{name}\"");
    let bare = format!("program.{name}");
    src.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches('[').trim_start();
            l.starts_with(&quoted)
                || l.strip_prefix(&bare)
                    .is_some_and(|rest| rest.starts_with([']', '.', ' ', '=']))
        })
        .map(|i| i + 1)
}

/// Reads and validates a config file.
pub fn load_config(path: &Path) -> Result<Plan, PlanError> {
    let src = std::fs::read_to_string(path).map_err(|e| PlanError {
        file: Some(path.to_owned()),
        line: None,
        key: String::new(),
        message: format!("cannot read config: {e}"),
    })?;
    parse_config(&src, Some(path))
}

/// Parses config text; `path` only labels the errors.
pub fn parse_config(src: &str, path: Option<&Path>) -> Result<Plan, PlanError> {
    let at = |line: Option<usize>, key: String, message: String| PlanError {
        file: path.map(Path::to_owned),
        line,
        key,
        message,
    };
    let de = toml::Deserializer::parse(src).map_err(|e| {
        at(
            e.span().map(|s| line_of(src, s.start)),
            String::new(),
            e.message().to_owned(),
        )
    })?;
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        at(
            e.inner().span().map(|s| line_of(src, s.start)),
            key,
            e.inner().message().to_owned(),
        )
    })?;
    if raw.program.is_empty() {
        return Err(at(
            None,
            "program".into(),
            "no program defined; add a [program.NAME] table with a command".into(),
        ));
    }
    let mut programs = Vec::with_capacity(raw.program.len());
    for (name, p) in raw.program {
        let line = program_line(src, &name);
        check_name(&name).map_err(|m| at(line, format!("program.{name}"), m))?;
        let Some(command) = p.command else {
            return Err(at(
                line,
                format!("program.{name}.command"),
                "missing: every program needs a command".into(),
            ));
        };
        let d = Backoff::default();
        let backoff = match p.backoff {
            None => d,
            Some(b) => Backoff {
                first: b.first.map_or(d.first, |x| x.0),
                max: b.max.map_or(d.max, |x| x.0),
                factor: b.factor.map_or(d.factor, |x| x.0),
                jitter: b.jitter.map_or(d.jitter, |x| x.0),
            },
        };
        if backoff.max < backoff.first {
            return Err(at(
                line,
                format!("program.{name}.backoff.max"),
                "must not be shorter than backoff.first".into(),
            ));
        }
        let di = Intensity::default();
        let intensity = p.intensity.map_or(di, |i| Intensity {
            max: i.max.unwrap_or(di.max),
            within: i.within.map_or(di.within, |x| x.0),
        });
        let ds = StopSpec::default();
        let stop = p.stop.map_or(ds, |s| StopSpec {
            signal: s.signal.map_or(ds.signal, |x| x.0),
            grace: s.grace.map_or(ds.grace, |x| x.0),
        });
        let memory = p.memory.map(|m| MemorySpec {
            max: m.max.0,
            measure: m.measure.unwrap_or(Measure::Rss),
            count: m.count.map_or(DEFAULT_MEMORY_FOR, NonZeroU32::get),
            hysteresis: m.hysteresis.map_or(DEFAULT_HYSTERESIS, |h| h.0),
        });
        programs.push(ProgramSpec {
            name,
            command: command.0,
            cwd: p.cwd,
            env: p.env.into_iter().collect(),
            replicas: p.replicas.get(),
            restart: p.restart.unwrap_or(RestartMode::OnFailure),
            backoff,
            intensity,
            stop,
            memory,
        });
    }
    let log = raw.log.map(|l| LogSpec {
        dir: l.dir,
        max: l.max.map_or(DEFAULT_LOG_MAX, |s| s.0),
        keep: l.keep.unwrap_or(DEFAULT_LOG_KEEP),
    });
    if log.as_ref().is_some_and(|l| l.max < 1024) {
        return Err(at(None, "log.max".into(), "must be at least 1KiB".into()));
    }
    Ok(Plan {
        programs,
        sample_every: raw.sample.map_or(DEFAULT_SAMPLE_EVERY, |s| s.every.0),
        events: raw.events.as_deref().map(EventsTarget::parse),
        log,
        single: false,
        source: path.map(Path::to_owned),
    })
}

#[cfg(test)]
mod tests;
