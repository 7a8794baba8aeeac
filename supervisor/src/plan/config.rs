//! TOML config to a [`Plan`]. Raw types mirror the file; custom value types validate while
//! deserializing (see [`super::values`]) so that every error carries the key path
//! (serde_path_to_error) and the line (the span toml reports).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::values::{Dur, EventsMax, HistoryMax, LogBuffer, MetricsAddr, Rate, SampleEvery, Size};
use super::{
    fd_budget, nofile_limit, EventsRotation, EventsTarget, HistorySpec, LogSpec, Plan, PlanError,
    DEFAULT_HISTORY_MAX, DEFAULT_LOG_BUFFER, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX,
    DEFAULT_SAMPLE_EVERY,
};

mod lines;
mod program;

use lines::{line_of, program_key_line, program_line, section_line, top_key_line};
use program::{check_order, program, RawProgram};

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
    log_format: super::LogFormat,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default)]
    log_buffer: Option<LogBuffer>,
    #[serde(default)]
    metrics: Option<MetricsAddr>,
    #[serde(default)]
    http_token: Option<PathBuf>,
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
    let ids = super::identity::effective_ids();
    for (name, p) in raw.program {
        programs.push(program(name, p, src, path, ids, &at)?);
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
    let http_token = match &raw.http_token {
        None => None,
        Some(path) => Some(
            super::HttpToken::read(path)
                .map_err(|m| at(top_key_line(src, "http_token"), "http_token".into(), m))?,
        ),
    };
    let history = raw.history.map(|path| HistorySpec {
        path,
        max: raw.history_max.map_or(DEFAULT_HISTORY_MAX, |m| m.0),
    });
    let alert = raw
        .alert
        .map(|a| {
            super::alert::AlertSpec::with_alertmanager(
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
        .map_or(super::watch::DEFAULT_RATE, |r| r.0);
    for (i, d) in raw
        .watch
        .map(|w| w.dir)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let dir = super::watch::WatchDir::new(
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
        log_format: raw.log_format,
        prefix: false,
        log,
        log_buffer: raw.log_buffer.map_or(DEFAULT_LOG_BUFFER, |b| b.0),
        single: false,
        forward_stop: false,
        source: path.map(Path::to_owned),
        admin: None,
        metrics: raw.metrics.map(|m| m.0),
        http_token,
        history,
        alert,
        watch_dirs,
    })
}

/// How long a watched directory's size is reused when `every` is not given.
const DEFAULT_WATCH_EVERY: Duration = Duration::from_secs(60);
