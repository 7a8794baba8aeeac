//! Events in words: the one line per event supervise writes on its stderr (unless `--quiet`),
//! like supervisord's log:
//!
//! ```text
//! 2026-11-28T20:33:49Z api[0] exited with code 3 after 1.2s
//! 2026-11-28T20:33:49Z api[0] restarting in 200ms (exit)
//! ```
//!
//! Each event gets a line of its own, written when it happens: an exit is not held back to be
//! joined with the restart decided after it, which can come a grace period later (the exited
//! worker's leftovers are stopped first), or never when supervise is killed in between. Only
//! a worker's own `info` and `debug` events are left out; the JSON stream has everything.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Event, Kind, Reason};

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// ANSI colours (stderr is a terminal and `NO_COLOR` is unset).
    pub colour: bool,
    /// Timestamps to the millisecond (as `--timestamps` stamps worker lines), else the second.
    pub millis: bool,
}

/// How a line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

impl Tone {
    fn code(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("\x1b[32m"),
            Tone::Warn => Some("\x1b[33m"),
            Tone::Bad => Some("\x1b[31m"),
        }
    }
}

/// The event as a line, newline included; `None` for the events left out.
#[must_use]
pub fn line(e: &Event<'_>, style: Style) -> Option<String> {
    let (tone, text) = describe(&e.kind, e.pid)?;
    let ts = stamp(&e.ts, style.millis);
    let who = if of_supervise(e) {
        "supervise".to_owned()
    } else {
        format!("{}[{}]", e.program, e.instance)
    };
    let text = printable(&text);
    Some(match tone.code().filter(|_| style.colour) {
        Some(code) => format!("\x1b[2m{ts}\x1b[0m {who} {code}{text}\x1b[0m\n"),
        None if style.colour => format!("\x1b[2m{ts}\x1b[0m {who} {text}\n"),
        None => format!("{ts} {who} {text}\n"),
    })
}

/// A line of supervise's own that is no event (a notice at start), as event lines look,
/// newline included.
#[must_use]
pub fn notice(text: &str, style: Style) -> String {
    let ts = stamp(
        &humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        style.millis,
    );
    let text = printable(text);
    if style.colour {
        format!("\x1b[2m{ts}\x1b[0m supervise \x1b[33m{text}\x1b[0m\n")
    } else {
        format!("{ts} supervise {text}\n")
    }
}

/// An event's words without its time and name (`exited with code 3 after 1.2s`), as its line
/// has them but for control characters, and how bad it is (`critical`, `warning`, `info`);
/// `None` for the events left out of the lines.
#[must_use]
pub fn words(e: &Event<'_>) -> Option<(&'static str, String)> {
    let (tone, text) = describe(&e.kind, e.pid)?;
    Some((severity(tone), text))
}

fn severity(tone: Tone) -> &'static str {
    match tone {
        Tone::Bad => "critical",
        Tone::Warn => "warning",
        Tone::Plain | Tone::Good => "info",
    }
}

/// Events about supervise itself rather than a worker instance.
fn of_supervise(e: &Event<'_>) -> bool {
    match &e.kind {
        Kind::Orphan
        | Kind::Listening { .. }
        | Kind::EventsLost { .. }
        | Kind::LifelineError { .. } => true,
        Kind::Finding { .. } | Kind::Cleared { .. } => e.program == "supervise",
        _ => false,
    }
}

/// `2026-11-28T20:33:49Z` from the event's `2026-11-28T20:33:49.123Z` (kept whole with `millis`).
fn stamp(ts: &str, millis: bool) -> String {
    match ts.split_once('.') {
        Some((secs, _)) if !millis => format!("{secs}Z"),
        _ => ts.to_owned(),
    }
}

/// What the line says after the instance's name, and its tone.
#[allow(clippy::too_many_lines)] // one arm per kind of event: the wording, in one place
fn describe(kind: &Kind, pid: Option<i32>) -> Option<(Tone, String)> {
    let pid = pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
    Some(match kind {
        Kind::Started { .. } => (Tone::Good, format!("started with pid {pid}")),
        Kind::SpawnFailed { error } => (Tone::Bad, without_os_error(error).to_owned()),
        Kind::Exited {
            code,
            signal,
            uptime_s,
            ..
        } => {
            let after = duration(Duration::from_secs_f64(uptime_s.max(0.0)));
            match (code, signal) {
                (Some(0), _) => (Tone::Plain, format!("exited with code 0 after {after}")),
                (Some(c), _) => (Tone::Warn, format!("exited with code {c} after {after}")),
                (None, Some(s)) => (
                    Tone::Warn,
                    format!("was killed by {} after {after}", signal_name(*s)),
                ),
                (None, None) => (Tone::Warn, format!("exited after {after}")),
            }
        }
        Kind::MemoryPressure { bytes, limit } => (
            Tone::Warn,
            format!(
                "memory {} nears its {} limit; sent MemoryPressure",
                size(*bytes),
                size(*limit)
            ),
        ),
        Kind::MemoryOver {
            bytes,
            limit,
            measure,
            count,
            of,
        } => (
            Tone::Warn,
            format!(
                "memory {} over its {} limit ({measure}, {count} of {of})",
                size(*bytes),
                size(*limit)
            ),
        ),
        Kind::Restarting { reason, delay_ms } => {
            let when = if *delay_ms == 0 {
                "now".to_owned()
            } else {
                format!("in {}", duration(Duration::from_millis(*delay_ms)))
            };
            let tone = if *reason == Reason::Manual {
                Tone::Plain
            } else {
                Tone::Warn
            };
            (tone, format!("restarting {when} ({})", reason.as_str()))
        }
        Kind::Killed { processes } => (
            Tone::Warn,
            format!(
                "killed {processes} {} still running (SIGKILL)",
                plural(*processes as u64, "process", "processes")
            ),
        ),
        Kind::Fatal { restarts, within_s } => (
            Tone::Bad,
            format!(
                "gave up after {restarts} {} in {} (fatal)",
                plural(u64::from(*restarts), "restart", "restarts"),
                duration(Duration::from_secs_f64(within_s.max(0.0)))
            ),
        ),
        Kind::Stopped => (Tone::Plain, "stopped".to_owned()),
        Kind::Orphan => (
            Tone::Warn,
            format!("process {pid} was orphaned and no worker claims it; killed at shutdown"),
        ),
        Kind::Ready { by } => (Tone::Good, format!("ready ({by})")),
        Kind::ProtocolError {
            error,
            count,
            closed: true,
        } => (
            Tone::Bad,
            format!("protocol error {count}: {error}; channel closed, supervised from /proc alone"),
        ),
        Kind::ProtocolError { error, count, .. } => {
            (Tone::Warn, format!("protocol error {count}: {error}"))
        }
        Kind::Finding { kind, detail, .. } => (Tone::Warn, format!("finding {kind}: {detail}")),
        Kind::WorkerEvent { level, text } => match *level {
            "warn" => (Tone::Warn, format!("says (warn): {text}")),
            "error" => (Tone::Bad, format!("says (error): {text}")),
            _ => return None,
        },
        Kind::Listening { addr } => (
            Tone::Plain,
            format!("serving the dashboard, /metrics, /healthz and /readyz on http://{addr}/"),
        ),
        Kind::RollHalted { waited_s, left } => (
            Tone::Bad,
            format!(
                "rolling restart halted: the new process was not up after {}; {left} {} left as {}",
                duration(Duration::from_secs_f64(waited_s.max(0.0))),
                plural(u64::from(*left), "instance", "instances"),
                if *left == 1 { "it was" } else { "they were" },
            ),
        ),
        Kind::LogError { path, error } => (
            Tone::Bad,
            format!(
                "cannot write {path}: {}; dropping its lines, retrying every second",
                without_os_error(error)
            ),
        ),
        Kind::Stopping {
            reason: Some(r), ..
        } => (Tone::Warn, format!("stopping to restart ({})", r.as_str())),
        Kind::Stopping { reason: None, .. } => (Tone::Plain, "stopping".to_owned()),
        Kind::LifelineError { detail } => (Tone::Bad, format!("lifeline: {detail}")),
        Kind::Daemonized { processes, pids } => (
            Tone::Bad,
            format!(
                "forked into the background and exited (daemonized), leaving {processes} {} \
                 ({}), stopped with it: run it in the foreground (nginx: daemon off;, redis: \
                 --daemonize no, gunicorn: no --daemon, postgres: not pg_ctl)",
                plural(*processes as u64, "process", "processes"),
                pid_list(pids)
            ),
        ),
        Kind::EventsLost { count } => (
            Tone::Warn,
            format!(
                "{count} {} lost while the events file could not be written",
                plural(*count, "event was", "events were")
            ),
        ),
        Kind::Cleared { kind, detail, .. } => {
            (Tone::Good, format!("finding {kind} cleared: {detail}"))
        }
        Kind::Recycled {
            reason,
            member,
            command,
            member_bytes,
            tree_before,
            tree_after,
        } => (
            Tone::Warn,
            format!(
                "recycled member {member} ({command}) holding {} ({}): tree {} -> {}",
                size(*member_bytes),
                reason.as_str(),
                size(*tree_before),
                size(*tree_after)
            ),
        ),
        Kind::LogResumed { path, dropped } => (
            Tone::Good,
            format!(
                "writing {path} again; {dropped} {} dropped meanwhile",
                plural(*dropped, "line was", "lines were")
            ),
        ),
        Kind::Reloading { action } => (Tone::Plain, format!("reloading in place ({action})")),
        Kind::Reloaded {
            took_ms,
            restarted: false,
        } => (
            Tone::Good,
            format!(
                "reloaded in place in {}",
                duration(Duration::from_millis(*took_ms))
            ),
        ),
        Kind::Reloaded {
            took_ms,
            restarted: true,
        } => (
            Tone::Warn,
            format!(
                "restarted instead of reloading in place, up again {} after the reload action",
                duration(Duration::from_millis(*took_ms))
            ),
        ),
        Kind::ReloadHalted { detail } => (Tone::Bad, format!("reload-program halted: {detail}")),
        Kind::Pressure {
            action,
            bytes,
            growth_bytes_per_s,
            mem_available,
            mem_total,
            full_avg10,
            grace_ms,
            ..
        } => (
            Tone::Bad,
            format!(
                "host memory pressure ({full_avg10:.0}% full stalls, {} of {} available): {} \
                 this tree of {} growing {}/s{}",
                size(*mem_available),
                size(*mem_total),
                if *action == "restart" {
                    "restarting"
                } else {
                    "would restart"
                },
                size(*bytes),
                size(*growth_bytes_per_s),
                if *action == "restart" {
                    format!(" within {:.1} s", *grace_ms as f64 / 1000.0)
                } else {
                    String::new()
                }
            ),
        ),
    })
}

/// `pid 12`, `pids 12, 13, 14`, `pids 12, 13, 14, 15, 16 and 3 more`.
fn pid_list(pids: &[i32]) -> String {
    const SHOWN: usize = 5;
    let mut s = String::from(if pids.len() == 1 { "pid " } else { "pids " });
    for (i, p) in pids.iter().take(SHOWN).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{p}");
    }
    if pids.len() > SHOWN {
        let _ = write!(s, " and {} more", pids.len() - SHOWN);
    }
    s
}

/// An event in words for an alert: who and what (`api[0] gave up after 5 restarts in 1m
/// (fatal)`), without the time stamp, and how bad by the tone of its line: `critical` (red),
/// `warning` (yellow) or `info`. The events left out of the lines get their kind's name.
#[must_use]
pub fn alert_words(e: &Event<'_>) -> (&'static str, String) {
    let who = if of_supervise(e) {
        "supervise".to_owned()
    } else {
        format!("{}[{}]", e.program, e.instance)
    };
    match describe(&e.kind, e.pid) {
        Some((tone, text)) => (severity(tone), format!("{who} {}", printable(&text))),
        None => ("info", format!("{who} {}", e.kind.name())),
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `No such file or directory` for `No such file or directory (os error 2)`.
fn without_os_error(error: &str) -> &str {
    match error.rfind(" (os error ") {
        Some(i) if error.ends_with(')') => &error[..i],
        _ => error,
    }
}

/// `SIGTERM`, `SIGRTMIN+3`, or `signal 99`.
fn signal_name(n: i32) -> String {
    crate::signals::Sig::from_raw(n).map_or_else(|| format!("signal {n}"), |s| s.to_string())
}

/// `200ms`, `1.7s`, `42s`, `90s`, `5m`, `1h 2m`: short, and exact where it is whole.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 && !ms.is_multiple_of(1000) {
        format!("{:.1}s", d.as_secs_f64())
    } else if d.as_secs() < 120 {
        format!("{}s", (ms + 500) / 1000)
    } else {
        // Whole minutes past two: `5m`, `1h 2m`, `3days 4h` (humantime's spelling).
        let minutes = (d.as_secs() + 30) / 60;
        humantime::format_duration(Duration::from_secs(minutes * 60)).to_string()
    }
}

/// `512MiB`, `48.5MiB`, `900KiB`, `12B`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// Control characters (a worker's text may hold any, escape sequences included) as escapes, so
/// a line stays one line and cannot drive the terminal.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
