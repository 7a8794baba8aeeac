//! TOML config to a [`Plan`]. Raw types mirror the file; custom value types validate while
//! deserializing so that every error carries the key path (serde_path_to_error) and the line (the
//! span toml reports).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use super::{
    check_events_max, check_factor, check_history_max, check_jitter, check_log_buffer, check_name,
    check_replicas, check_sample_every, check_warn_at, fd_budget, nofile_limit, parse_duration,
    parse_metrics_addr, parse_signal, parse_size, Backoff, EventsRotation, EventsTarget,
    HeartbeatSpec, HistorySpec, Intensity, LeakPolicy, LogSpec, Measure, MemorySpec, NetPolicy,
    OnLeak, OnViolation, Plan, PlanError, ProgramSpec, RestartMode, StopMode, StopSpec,
    DEFAULT_HEARTBEAT_GRACE, DEFAULT_HEARTBEAT_SIGNAL, DEFAULT_HISTORY_MAX, DEFAULT_HYSTERESIS,
    DEFAULT_LOG_BUFFER, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX, DEFAULT_MEMORY_FOR,
    DEFAULT_SAMPLE_EVERY, MAX_REPLICAS,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sample: Option<RawSample>,
    #[serde(default)]
    events: Option<String>,
    #[serde(default)]
    events_max: Option<EventsMax>,
    #[serde(default)]
    events_keep: Option<u32>,
    #[serde(default)]
    quiet: bool,
    #[serde(default)]
    timestamps: bool,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default)]
    log_buffer: Option<LogBuffer>,
    #[serde(default)]
    metrics: Option<MetricsAddr>,
    #[serde(default)]
    history: Option<PathBuf>,
    #[serde(default)]
    history_max: Option<HistoryMax>,
    #[serde(default)]
    alert: Option<RawAlert>,
    #[serde(default)]
    watch: Option<RawWatch>,
    #[serde(default)]
    program: BTreeMap<String, RawProgram>,
    #[serde(default)]
    pressure: Option<super::pressure::RawPressure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    #[serde(default)]
    exec: Option<Vec<String>>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    alertmanager: Option<String>,
    #[serde(default)]
    on: Option<Vec<String>>,
    #[serde(default)]
    rate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    #[serde(default)]
    dir: Vec<RawWatchDir>,
    #[serde(default)]
    deleted_growth: Option<Rate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatchDir {
    path: PathBuf,
    #[serde(default)]
    every: Option<Dur>,
    #[serde(default)]
    max: Option<Size>,
    #[serde(default)]
    fs_max_used: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNet {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    listen_allow: Option<Vec<String>>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    on_violation: Option<OnViolation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    #[serde(default)]
    every: Option<SampleEvery>,
    #[serde(default)]
    destroy_events: Option<bool>,
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
    #[serde(default)]
    env_file: Option<PathBuf>,
    #[serde(default)]
    clear_env: bool,
    #[serde(default)]
    user: Option<super::identity::raw::UserName>,
    #[serde(default)]
    group: Option<super::identity::raw::GroupName>,
    #[serde(default)]
    umask: Option<toml::Spanned<super::identity::raw::Umask>>,
    #[serde(default)]
    nice: Option<super::identity::raw::Nice>,
    #[serde(default)]
    oom_score_adj: Option<super::identity::raw::OomScoreAdj>,
    #[serde(default)]
    rlimits: Option<super::identity::raw::RawRlimits>,
    #[serde(default)]
    replicas: Replicas,
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
    #[serde(default)]
    heartbeat: Option<RawHeartbeat>,
    #[serde(default)]
    net: Option<RawNet>,
    #[serde(default)]
    ready: Option<super::checks::RawReady>,
    #[serde(default)]
    health: Option<super::checks::RawHealth>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    recycle: Option<RawRecycle>,
    #[serde(default)]
    oom: Option<super::OomPolicy>,
}

/// A replica count, 1 to [`MAX_REPLICAS`].
#[derive(Debug, Clone, Copy)]
struct Replicas(u32);

impl Default for Replicas {
    fn default() -> Self {
        Self(1)
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u32::try_from(n)
            .map_err(|_| format!("must be between 1 and {MAX_REPLICAS}, got {n}"))
            .and_then(check_replicas)
            .map(Replicas)
            .map_err(de::Error::custom)
    }
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
    signal: Option<SigName>,
    grace: Option<Dur>,
    mode: Option<StopMode>,
    drain: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    #[serde(default)]
    max: Option<NonZeroSize>,
    #[serde(default)]
    measure: Option<Measure>,
    #[serde(default, rename = "for")]
    count: Option<NonZeroU32>,
    #[serde(default)]
    hysteresis: Option<Hysteresis>,
    #[serde(default)]
    warn_at: Option<WarnAt>,
    #[serde(default)]
    leak: Option<Leak>,
    #[serde(default)]
    on_leak: Option<OnLeak>,
    #[serde(default)]
    min_uptime: Option<Dur>,
    #[serde(default)]
    max_unavailable: Option<u32>,
    #[serde(default)]
    ceiling: Option<NonZeroSize>,
    #[serde(default)]
    recycle: Option<super::RecycleScope>,
    #[serde(default)]
    recycle_before: Option<Dur>,
}

/// `[program.NAME.recycle]`: recycling on a schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecycle {
    #[serde(default)]
    every: Option<Dur>,
    #[serde(default)]
    jitter: Option<Dur>,
    #[serde(default)]
    requests: Option<u64>,
    #[serde(default)]
    requests_jitter: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    timeout: NonZeroDur,
    #[serde(default)]
    signal: Option<SigName>,
    #[serde(default)]
    grace: Option<Dur>,
}

/// Declares a newtype deserialized from a string through a validating parser.
macro_rules! parsed_str {
    ($name:ident, $t:ty, $expecting:literal, $parse:expr) => {
        #[derive(Debug, Clone, Copy)]
        pub(super) struct $name(pub(super) $t);
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
parsed_str!(
    Rate,
    u64,
    "a rate such as \"256KiB/s\"",
    crate::disk::growth::parse_rate
);
parsed_str!(
    Leak,
    crate::leak::LeakSpec,
    "a leak rate such as \"64MiB/10m\"",
    crate::leak::parse_leak
);
parsed_str!(
    MetricsAddr,
    std::net::SocketAddr,
    "an address such as \"127.0.0.1:9100\" or \":9100\"",
    parse_metrics_addr
);
parsed_str!(
    SigName,
    crate::signals::Sig,
    "a signal name such as \"TERM\"",
    parse_signal
);

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

/// The history file's rotation size: a size of at least 64 KiB.
#[derive(Debug, Clone, Copy)]
struct HistoryMax(u64);

#[derive(Debug, Clone, Copy)]
struct LogBuffer(u64);

/// The events file's rotation size: 0 (never) or at least 1 KiB.
#[derive(Debug, Clone, Copy)]
struct EventsMax(u64);

impl<'de> Deserialize<'de> for EventsMax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Size(n) = Size::deserialize(d)?;
        check_events_max(n)
            .map(EventsMax)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for LogBuffer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Size(n) = Size::deserialize(d)?;
        check_log_buffer(n)
            .map(LogBuffer)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for HistoryMax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Size(n) = Size::deserialize(d)?;
        check_history_max(n)
            .map(HistoryMax)
            .map_err(de::Error::custom)
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
checked_f64!(WarnAt, check_warn_at);
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

/// The line of `key` of program `name`: `key = …` inside `[program.NAME]`, or the table
/// `[program.NAME.key]`; else the program's own line.
fn program_key_line(src: &str, name: &str, key: &str) -> Option<usize> {
    let table = format!("program.{name}");
    let sub = format!("program.{name}.{key}");
    let mut inside = false;
    for (i, l) in src.lines().enumerate() {
        let t = l.trim();
        if let Some(header) = t.strip_prefix('[') {
            let header = header.trim_start_matches('[').trim_end_matches(']').trim();
            if header == sub {
                return Some(i + 1);
            }
            inside = header == table;
            continue;
        }
        if inside
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', '.']))
        {
            return Some(i + 1);
        }
    }
    program_line(src, name)
}

/// The line of a top-level `key = …` (before the first table), for errors about it.
fn top_key_line(src: &str, key: &str) -> Option<usize> {
    src.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Reads and validates a config file: a regular file of at most [`super::file::MAX_CONFIG`]
/// bytes (a FIFO or a device is refused, never waited on).
pub fn load_config(path: &Path) -> Result<Plan, PlanError> {
    let src = super::file::read_text(path, super::file::MAX_CONFIG).map_err(|e| PlanError {
        file: Some(path.to_owned()),
        line: None,
        key: String::new(),
        message: match e {
            super::file::ReadError::Io(e) => format!("cannot read config: {e}"),
            e => format!("the config {e}"),
        },
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
        // A value kept with its span (`toml::Spanned`) is read as a field of the span's own
        // making: the key is the one written.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
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
    let (euid, egid) = super::identity::effective_ids();
    for (name, p) in raw.program {
        // Looked for only on an error: it scans the text, and a scan per program would make
        // loading a config of many programs quadratic.
        let line = || program_line(src, &name);
        check_name(&name).map_err(|m| at(line(), format!("program.{name}"), m))?;
        let Some(command) = p.command else {
            return Err(at(
                line(),
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
                line(),
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
            mode: s.mode.unwrap_or(ds.mode),
            drain: s.drain.map_or(ds.drain, |x| x.0),
        });
        let mut memory = None;
        let mut leak = None;
        let mut given = super::handling::Given::default();
        if let Some(r) = &p.recycle {
            given.schedule = super::Schedule {
                every: r.every.map(|x| x.0),
                jitter: r.jitter.map_or(Duration::ZERO, |x| x.0),
                requests: r.requests,
                requests_jitter: r.requests_jitter.unwrap_or(0),
            };
        }
        if let Some(m) = p.memory {
            given.min_uptime = m.min_uptime.map(|x| x.0);
            given.max_unavailable = m.max_unavailable;
            given.ceiling = m.ceiling.map(|x| x.0);
            given.recycle = m.recycle;
            given.recycle_before = m.recycle_before.map(|x| x.0);
            let key = format!("program.{name}.memory");
            let measure = m.measure.unwrap_or(Measure::Rss);
            if m.max.is_none() && m.leak.is_none() {
                return Err(at(line(), key, "needs `max`, `leak` or both".into()));
            }
            if m.max.is_none() && (m.warn_at.is_some() || m.count.is_some()) {
                return Err(at(
                    line(),
                    format!("{key}.max"),
                    "missing: `for` and `warn_at` need a limit".into(),
                ));
            }
            if m.leak.is_none() && m.on_leak.is_some() {
                return Err(at(
                    line(),
                    format!("{key}.leak"),
                    "missing: `on_leak` needs `leak`".into(),
                ));
            }
            memory = m.max.map(|max| MemorySpec {
                max: max.0,
                measure,
                count: m.count.map_or(DEFAULT_MEMORY_FOR, NonZeroU32::get),
                hysteresis: m.hysteresis.map_or(DEFAULT_HYSTERESIS, |h| h.0),
                warn_at: m.warn_at.map(|w| w.0),
            });
            leak = m.leak.map(|l| LeakPolicy {
                spec: l.0,
                on_leak: m.on_leak.unwrap_or(OnLeak::Restart),
            });
        }
        let handling = given.build(memory.map(|m| m.max)).map_err(|(key, m)| {
            let section = if key.starts_with("recycle.") {
                "recycle"
            } else {
                "memory"
            };
            at(
                program_key_line(src, &name, section),
                format!("program.{name}.{key}"),
                m,
            )
        })?;
        let net = p
            .net
            .map(|n| net_policy(n, &format!("program.{name}.net")))
            .transpose()
            .map_err(|(key, m)| at(line(), key, m))?;
        let ready = p
            .ready
            .map(super::checks::RawReady::spec)
            .transpose()
            .map_err(|(sub, m)| {
                at(
                    program_key_line(src, &name, "ready"),
                    sub_key(&format!("program.{name}.ready"), &sub),
                    m,
                )
            })?;
        let health = p
            .health
            .map(super::checks::RawHealth::spec)
            .transpose()
            .map_err(|(sub, m)| {
                at(
                    program_key_line(src, &name, "health"),
                    sub_key(&format!("program.{name}.health"), &sub),
                    m,
                )
            })?;
        let umask = p
            .umask
            .map(|u| super::identity::raw::umask(&u, src))
            .transpose()
            .map_err(|m| {
                at(
                    program_key_line(src, &name, "umask"),
                    format!("program.{name}.umask"),
                    m,
                )
            })?;
        let mut identity = super::identity::raw::from_config(
            super::identity::raw::RawIdentity {
                user: p.user,
                group: p.group,
                umask,
                nice: p.nice,
                oom_score_adj: p.oom_score_adj,
                rlimits: p.rlimits,
                clear_env: p.clear_env,
            },
            euid,
            egid,
        )
        .map_err(|(key, m)| {
            at(
                program_key_line(src, &name, key.name()),
                format!("program.{name}.{}", key.name()),
                m,
            )
        })?;
        // The env file's variables, then `env`'s: a later one wins.
        let mut env: Vec<(String, String)> = match &p.env_file {
            Some(file) => {
                let file = match path.and_then(Path::parent) {
                    Some(dir) if file.is_relative() => dir.join(file),
                    _ => file.clone(),
                };
                super::envfile::load(&file).map_err(|m| {
                    at(
                        program_key_line(src, &name, "env_file"),
                        format!("program.{name}.env_file"),
                        m,
                    )
                })?
            }
            None => Vec::new(),
        };
        env.extend(p.env);
        let oom = p.oom.unwrap_or_default();
        super::pressure::never_adj(oom, &mut identity, euid);
        programs.push(ProgramSpec {
            name,
            command: command.0,
            cwd: p.cwd,
            env: dedup_env(env),
            identity,
            replicas: p.replicas.0,
            restart: p.restart.unwrap_or(RestartMode::OnFailure),
            backoff,
            intensity,
            stop,
            memory,
            heartbeat: p.heartbeat.map(|h| HeartbeatSpec {
                timeout: h.timeout.0,
                signal: h.signal.map_or(DEFAULT_HEARTBEAT_SIGNAL, |x| x.0),
                grace: h.grace.map_or(DEFAULT_HEARTBEAT_GRACE, |x| x.0),
            }),
            leak,
            net,
            ready,
            health,
            after: p.after,
            handling,
            oom,
        });
    }
    check_order(&programs).map_err(|(name, m)| {
        at(
            program_key_line(src, &name, "after"),
            format!("program.{name}.after"),
            m,
        )
    })?;
    // Every instance costs the supervisor open files: a config that cannot all run is refused
    // now, not half-way through starting it.
    let instances: u64 = programs.iter().map(|p| u64::from(p.replicas)).sum();
    if let Err(m) = fd_budget(instances, nofile_limit()) {
        let big = programs.iter().max_by_key(|p| p.replicas);
        return Err(at(
            big.and_then(|p| program_line(src, &p.name)),
            big.map_or_else(String::new, |p| format!("program.{}.replicas", p.name)),
            m,
        ));
    }
    let log = raw.log.map(|l| LogSpec {
        dir: l.dir,
        max: l.max.map_or(DEFAULT_LOG_MAX, |s| s.0),
        keep: l.keep.unwrap_or(DEFAULT_LOG_KEEP),
    });
    if log.as_ref().is_some_and(|l| l.max < 1024) {
        return Err(at(None, "log.max".into(), "must be at least 1KiB".into()));
    }
    if raw.history.is_none() && raw.history_max.is_some() {
        return Err(at(
            top_key_line(src, "history_max"),
            "history_max".into(),
            "needs `history` (the file to write)".into(),
        ));
    }
    let events = raw.events.as_deref().map(EventsTarget::parse);
    for (key, given) in [
        ("events_max", raw.events_max.is_some()),
        ("events_keep", raw.events_keep.is_some()),
    ] {
        if given && !matches!(events, Some(EventsTarget::File(_))) {
            return Err(at(
                top_key_line(src, key),
                key.into(),
                "needs `events` (a file to write, not \"-\")".into(),
            ));
        }
    }
    let dr = EventsRotation::default();
    let events_rotation = EventsRotation {
        max: raw.events_max.map_or(dr.max, |m| m.0),
        keep: raw.events_keep.unwrap_or(dr.keep),
    };
    let history = raw.history.map(|path| HistorySpec {
        path,
        max: raw.history_max.map_or(DEFAULT_HISTORY_MAX, |m| m.0),
    });
    let alert = raw
        .alert
        .map(|a| {
            crate::alert::AlertSpec::with_alertmanager(
                a.exec,
                a.webhook.as_deref(),
                a.alertmanager.as_deref(),
                a.on.as_deref(),
                a.rate.as_deref(),
            )
            .map_err(|e| {
                at(
                    section_line(src, "alert", 0),
                    format!("alert.{}", e.key()),
                    e.to_string(),
                )
            })
        })
        .transpose()?;
    let mut watch_dirs = Vec::new();
    let deleted_growth = raw
        .watch
        .as_ref()
        .and_then(|w| w.deleted_growth.as_ref())
        .map_or(crate::disk::growth::DEFAULT_RATE, |r| r.0);
    for (i, d) in raw
        .watch
        .map(|w| w.dir)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let dir = crate::disk::WatchDir::new(
            d.path,
            d.every.map_or(DEFAULT_WATCH_EVERY, |e| e.0),
            d.max.map(|m| m.0),
            d.fs_max_used,
        )
        .map_err(|e| {
            at(
                section_line(src, "watch.dir", i),
                format!("watch.dir[{i}].{}", e.key),
                e.message,
            )
        })?;
        watch_dirs.push(dir);
    }
    let pressure = raw
        .pressure
        .map(super::pressure::RawPressure::spec)
        .transpose()
        .map_err(|(sub, m)| {
            at(
                section_line(src, "pressure", 0),
                format!("pressure.{sub}"),
                m,
            )
        })?;
    Ok(Plan {
        pressure,
        programs,
        sample_every: raw
            .sample
            .as_ref()
            .and_then(|s| s.every.as_ref())
            .map_or(DEFAULT_SAMPLE_EVERY, |e| e.0),
        destroy_events: raw
            .sample
            .as_ref()
            .and_then(|s| s.destroy_events)
            .unwrap_or(true),
        deleted_growth,
        events,
        events_rotation,
        quiet: raw.quiet,
        timestamps: raw.timestamps,
        log,
        log_buffer: raw.log_buffer.map_or(DEFAULT_LOG_BUFFER, |b| b.0),
        single: false,
        forward_stop: false,
        source: path.map(Path::to_owned),
        admin: None,
        metrics: raw.metrics.map(|m| m.0),
        history,
        alert,
        watch_dirs,
    })
}

/// How long a watched directory's size is reused when `every` is not given.
const DEFAULT_WATCH_EVERY: Duration = Duration::from_secs(60);

/// The line of the `nth` (from 0) section headed `[name]` or `[[name]]`, for errors about
/// its values.
fn section_line(src: &str, name: &str, nth: usize) -> Option<usize> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().trim_matches(['[', ']']).trim() == name)
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// `key.sub`, or `key` for an error about the table as a whole.
fn sub_key(key: &str, sub: &str) -> String {
    if sub.is_empty() {
        key.to_owned()
    } else {
        format!("{key}.{sub}")
    }
}

/// Later assignments of a name replace earlier ones, in place of the first.
pub(super) fn dedup_env(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// Every `after` names a program, none its own, and there is no cycle. `Err((program, message))`.
fn check_order(programs: &[ProgramSpec]) -> Result<(), (String, String)> {
    // By name, so that a config of many programs is checked in linear time.
    let after: std::collections::HashMap<&str, &[String]> = programs
        .iter()
        .map(|p| (p.name.as_str(), p.after.as_slice()))
        .collect();
    for p in programs {
        for dep in &p.after {
            if dep == &p.name {
                return Err((p.name.clone(), "a program cannot start after itself".into()));
            }
            if !after.contains_key(dep.as_str()) {
                return Err((p.name.clone(), format!("no program named {dep:?}")));
            }
        }
    }
    // Depth-first search for a cycle, reporting its path.
    fn visit<'a>(
        name: &'a str,
        after: &std::collections::HashMap<&'a str, &'a [String]>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
    ) -> Result<(), (String, String)> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(i) = path.iter().position(|&p| p == name) {
            let mut cycle: Vec<&str> = path[i..].to_vec();
            cycle.push(name);
            return Err((
                name.to_owned(),
                format!("a cycle: {}", cycle.join(" after ")),
            ));
        }
        path.push(name);
        for dep in after.get(name).copied().unwrap_or_default() {
            visit(dep, after, path, done)?;
        }
        path.pop();
        done.insert(name);
        Ok(())
    }
    let mut done = std::collections::HashSet::new();
    for p in programs {
        visit(&p.name, &after, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// Validates `[program.NAME.net]`; errors name the key (under `key`) and say what is wrong.
fn net_policy(n: RawNet, key: &str) -> Result<NetPolicy, (String, String)> {
    let allow = n
        .allow
        .map(|a| crate::net::AllowList::parse(&a))
        .transpose()
        .map_err(|e| (format!("{key}.allow"), e.to_string()))?;
    let listen_allow = n
        .listen_allow
        .map(|a| crate::net::PortList::parse(&a))
        .transpose()
        .map_err(|e| (format!("{key}.listen_allow"), e.to_string()))?;
    if allow.is_none() && listen_allow.is_none() && n.max_connections.is_none() {
        return Err((
            key.to_owned(),
            "needs `allow`, `listen_allow` or `max_connections`".into(),
        ));
    }
    Ok(NetPolicy {
        allow,
        listen_allow,
        max_connections: n.max_connections,
        on_violation: n.on_violation.unwrap_or(OnViolation::Warn),
    })
}
