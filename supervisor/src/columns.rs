//! The columns of the worker tables of `supervise status` and `top`, and which of them fit.
//!
//! Each column has a priority. At a given width a table shows the most important columns whole
//! and drops the rest, as htop and bottom do, instead of cutting every column down: a number or
//! a unit is never cut (`23.4M` never shows as `23.4`). Only text columns (a program's name,
//! what it said, its findings) may be shortened, with an ellipsis, and only down to a floor.
//! [`fit`] is a pure function of the cells and the width, tested without a terminal.
//!
//! A cell is about a *group* of instances: one instance in `status`, or a program's replicas
//! folded into one row in `top` (sums for what adds up, the worst for what does not).
//!
//! Every string a worker controls (what it said with `STATUS=`, its findings' kinds come from us)
//! goes through [`clean`]: control characters would otherwise reach the operator's terminal as
//! escape sequences.

use std::time::SystemTime;

use crate::status::{Phase, WorkerStatus};

/// A column of a worker table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Program,
    Inst,
    Pid,
    State,
    Uptime,
    Restarts,
    /// The tree's memory as its limit measures it (PSS marked `pss`).
    Mem,
    /// [`Col::Mem`] as a share of the limit.
    LimitPct,
    Limit,
    /// A sparkline of memory (drawn by `top`; empty elsewhere).
    History,
    Cpu,
    Threads,
    Fds,
    Heap,
    Heartbeat,
    Conn,
    Net,
    Rtt,
    Deleted,
    /// What the worker last said with `STATUS=`.
    Status,
    /// What it waits for, how its last process ended, and each finding once with its count.
    Findings,
}

/// How a column is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub col: Col,
    pub title: &'static str,
    /// 0 is shown first; a column is dropped before any of a lower number.
    pub priority: u8,
    /// Right-aligned (numbers) or left.
    pub right: bool,
    /// `Some(floor)`: text, which may be shortened to `floor` characters; `None`: never cut.
    pub shrink_to: Option<usize>,
}

const fn spec(col: Col, title: &'static str, priority: u8, right: bool) -> Spec {
    Spec {
        col,
        title,
        priority,
        right,
        shrink_to: None,
    }
}

const fn text(col: Col, title: &'static str, priority: u8, floor: usize) -> Spec {
    Spec {
        col,
        title,
        priority,
        right: false,
        shrink_to: Some(floor),
    }
}

/// Every column, in the order shown. At 80 columns `top` keeps program, instance, state,
/// uptime, restarts, memory with its share of the limit, CPU and the findings.
pub const ALL: [Spec; 21] = [
    text(Col::Program, "PROGRAM", 0, 16),
    spec(Col::Inst, "#", 0, true),
    spec(Col::Pid, "PID", 3, true),
    spec(Col::State, "STATE", 0, false),
    spec(Col::Uptime, "UPTIME", 1, true),
    spec(Col::Restarts, "RST", 1, true),
    spec(Col::Mem, "MEM", 0, true),
    spec(Col::LimitPct, "%LIM", 1, true),
    spec(Col::Limit, "LIMIT", 4, true),
    text(Col::History, "MEM HISTORY", 4, 8),
    spec(Col::Cpu, "CPU%", 1, true),
    spec(Col::Threads, "THR", 5, true),
    spec(Col::Fds, "FDS", 5, true),
    spec(Col::Conn, "CONN", 6, true),
    spec(Col::Net, "NET/S", 6, true),
    spec(Col::Rtt, "RTT", 7, true),
    spec(Col::Heap, "HEAP", 7, true),
    spec(Col::Heartbeat, "HB AGE", 8, true),
    spec(Col::Deleted, "DELETED", 8, true),
    text(Col::Status, "STATUS", 3, 8),
    text(Col::Findings, "FINDINGS", 2, 8),
];

/// Columns `supervise status` has (all but the sparkline).
#[must_use]
pub fn status_columns() -> Vec<Spec> {
    ALL.iter()
        .copied()
        .filter(|s| s.col != Col::History)
        .collect()
}

/// Which columns fit in `width` (`None`: all of them), and how wide each is: indexes into
/// `specs` in their order, with widths. `cells[row][column]` are the cells in `specs` order;
/// columns are separated by one space. A text column takes what is left, up to what its
/// widest cell needs. Columns of equal priority are taken in `specs` order; a column with
/// nothing to say in any row (empty or `-`) is left out when a width is given, unless its
/// priority is 2 or better.
#[must_use]
pub fn fit(specs: &[Spec], cells: &[Vec<String>], width: Option<usize>) -> Vec<(usize, usize)> {
    let natural: Vec<usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            cells
                .iter()
                .filter_map(|row| row.get(i))
                .map(|c| c.chars().count())
                .chain([s.title.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let Some(width) = width else {
        return natural.into_iter().enumerate().collect();
    };
    let least = |i: usize| {
        specs[i].shrink_to.map_or(natural[i], |floor| {
            natural[i].min(floor.max(specs[i].title.len()))
        })
    };
    // A column with nothing to say (every cell empty or `-`) is not worth its room, unless it
    // is one of the most important: those are where an operator looks for news.
    let says_something = |i: usize| {
        specs[i].priority <= 2
            || cells
                .iter()
                .any(|row| row.get(i).is_some_and(|c| !c.is_empty() && c != "-"))
    };
    let mut order: Vec<usize> = (0..specs.len()).filter(|&i| says_something(i)).collect();
    order.sort_by_key(|&i| specs[i].priority);
    let mut chosen = vec![false; specs.len()];
    let mut used = 0usize;
    // Strictly by priority: once one does not fit, none after it is shown, so that a less
    // important column never stands where a more important one was dropped.
    for &i in &order {
        let gap = usize::from(used > 0);
        if used + gap + least(i) > width {
            break;
        }
        used += gap + least(i);
        chosen[i] = true;
    }
    let mut widths: Vec<usize> = (0..specs.len()).map(least).collect();
    // What is left goes to the text columns, most important first.
    let mut left = width.saturating_sub(used);
    for &i in &order {
        if chosen[i] && specs[i].shrink_to.is_some() {
            let more = (natural[i] - widths[i]).min(left);
            widths[i] += more;
            left -= more;
        }
    }
    (0..specs.len())
        .filter(|&i| chosen[i])
        .map(|i| (i, widths[i]))
        .collect()
}

/// `s` in `width` characters: padded, or (text only) shortened with an ellipsis.
#[must_use]
pub fn pad(s: &str, width: usize, right: bool) -> String {
    let n = s.chars().count();
    if n > width {
        if width == 0 {
            return String::new();
        }
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('\u{2026}');
        return out;
    }
    if right {
        format!("{}{s}", " ".repeat(width - n))
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// A worker-controlled string made safe for a terminal: control characters (escape sequences,
/// carriage returns) become U+FFFD.
#[must_use]
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// How bad a state is, for the state of a folded row (its worst instance's).
fn badness(w: &WorkerStatus) -> u8 {
    match w.state {
        Phase::Fatal => 9,
        Phase::Backoff => 8,
        Phase::Stopping => 7,
        Phase::Draining => 6,
        Phase::Starting => 5,
        Phase::Waiting => 4,
        Phase::Stopped => 3,
        Phase::Running if !w.ready => 2,
        Phase::Running => 1,
    }
}

/// The worst instance of a group: the worst state, then the biggest share of its limit (or
/// the most memory); the first of equals, in the group's order.
#[must_use]
pub fn worst<'a>(group: &[&'a WorkerStatus]) -> Option<&'a WorkerStatus> {
    let rank = |w: &WorkerStatus| {
        (
            badness(w),
            w.limit_percent().unwrap_or(0.0),
            w.memory_bytes().unwrap_or(0),
        )
    };
    group.iter().copied().fold(None, |best, w| match best {
        Some(b) if rank(b) >= rank(w) => Some(b),
        _ => Some(w),
    })
}

/// A state as a cell: `ready` for a running instance that is up and ready.
#[must_use]
pub fn state_word(w: &WorkerStatus) -> &'static str {
    if w.ready && w.state == Phase::Running {
        "ready"
    } else {
        w.state.as_str()
    }
}

/// The cell of `col` for a group of instances (one, or a program's folded replicas). `now`
/// ages last exits.
#[must_use]
pub fn cell(col: Col, group: &[&WorkerStatus], now: SystemTime) -> String {
    let dash = || "-".to_owned();
    let Some(first) = group.first() else {
        return dash();
    };
    let folded = group.len() > 1;
    let sum = |f: &dyn Fn(&WorkerStatus) -> Option<u64>| -> Option<u64> {
        group
            .iter()
            .filter_map(|w| f(w))
            .fold(None, |a, v| Some(a.unwrap_or(0) + v))
    };
    let max_f = |f: &dyn Fn(&WorkerStatus) -> Option<f64>| -> Option<f64> {
        group
            .iter()
            .filter_map(|w| f(w))
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    match col {
        Col::Program => clean(&first.program),
        Col::Inst if folded => format!("\u{d7}{}", group.len()),
        Col::Inst => first.instance.to_string(),
        Col::Pid if folded => dash(),
        Col::Pid => first.pid.map_or_else(dash, |p| p.to_string()),
        Col::State => worst(group).map_or_else(dash, |w| state_word(w).to_owned()),
        Col::Uptime => group
            .iter()
            .filter_map(|w| w.uptime_s)
            .reduce(f64::min)
            .map_or_else(dash, crate::status::short_duration),
        Col::Restarts => group.iter().map(|w| w.restarts).sum::<u32>().to_string(),
        Col::Mem => match sum(&|w| w.memory_bytes()) {
            None => dash(),
            Some(b) if group.iter().any(|w| w.measures_pss()) => format!("{} pss", bytes(b)),
            Some(b) => bytes(b),
        },
        Col::LimitPct => max_f(&|w| w.limit_percent()).map_or_else(dash, |p| format!("{p:.0}%")),
        Col::Limit => first.memory_max_bytes.map_or_else(dash, bytes),
        Col::History => String::new(),
        Col::Cpu => group
            .iter()
            .filter_map(|w| w.cpu_percent)
            .reduce(|a, b| a + b)
            .map_or_else(dash, |c| format!("{c:.1}")),
        Col::Threads => sum(&|w| w.threads).map_or_else(dash, |v| v.to_string()),
        Col::Fds => sum(&|w| w.fds).map_or_else(dash, |v| v.to_string()),
        Col::Heap => sum(&|w| w.heap_bytes).map_or_else(dash, bytes),
        Col::Heartbeat => group
            .iter()
            .filter_map(|w| w.heartbeat_age_ms)
            .max()
            .map_or_else(dash, |ms| {
                if ms < 1000 {
                    format!("{ms}ms")
                } else {
                    format!("{:.1}s", ms as f64 / 1000.0)
                }
            }),
        Col::Conn => sum(&|w| w.net.as_ref().map(|n| u64::from(n.established)))
            .map_or_else(dash, |v| v.to_string()),
        Col::Net => group
            .iter()
            .filter_map(|w| {
                let n = w.net.as_ref()?;
                Some(n.sent_bytes_per_s? + n.received_bytes_per_s?)
            })
            .reduce(|a, b| a + b)
            .map_or_else(dash, |r| format!("{}/s", short_bytes(r))),
        Col::Rtt => max_f(&|w| w.net.as_ref().and_then(|n| n.rtt_ms))
            .map_or_else(dash, |ms| format!("{ms:.1}ms")),
        Col::Deleted => sum(&|w| w.disk.map(|d| d.deleted_bytes)).map_or_else(dash, bytes),
        Col::Status => group
            .iter()
            .find_map(|w| w.status_text.as_deref())
            .map_or_else(String::new, clean),
        Col::Findings => {
            let w = worst(group).unwrap_or(first);
            note(w, &findings(w), now)
        }
    }
}

/// Each finding kind once with its count over the supervisor's life, latest first:
/// `leak×4, hung×1`.
#[must_use]
pub fn findings(w: &WorkerStatus) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for k in w.findings.iter().rev() {
        if !kinds.contains(&k.as_str()) {
            kinds.push(k);
        }
    }
    let mut older: Vec<(&str, u64)> = w
        .findings_by_kind
        .iter()
        .filter(|(k, _)| !kinds.contains(&k.as_str()))
        .map(|(k, &n)| (k.as_str(), n))
        .collect();
    older.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds.extend(older.iter().map(|(k, _)| *k));
    kinds
        .iter()
        .map(|k| {
            let n =
                w.findings_by_kind.get(*k).copied().unwrap_or_else(|| {
                    w.findings.iter().filter(|f| f.as_str() == *k).count() as u64
                });
            format!("{}\u{d7}{n}", clean(k))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a program not started yet waits for; else, for an instance without a process, how its
/// last one ended (`exit 3, 1m40s ago`) before `rest`; else `rest`.
#[must_use]
pub fn note(w: &WorkerStatus, rest: &str, now: SystemTime) -> String {
    if let Some(x) = &w.waiting_for {
        return format!("waiting for {}", clean(x));
    }
    match w.last_exit.as_ref().filter(|_| w.pid.is_none()) {
        Some(e) if rest.is_empty() => e.words(now),
        Some(e) => format!("{}; {rest}", e.words(now)),
        None => rest.to_owned(),
    }
}

/// `0K`, `312K`, `1.5M`, `2.0G`: memory, never without its unit.
#[must_use]
pub fn bytes(b: u64) -> String {
    if b < 1024 {
        return "0K".to_owned();
    }
    short_bytes(b as f64)
}

/// `0`, `512`, `312K`, `1.5M`, `2.0G`.
#[must_use]
pub fn short_bytes(b: f64) -> String {
    const K: f64 = 1024.0;
    if b >= K * K * K {
        format!("{:.1}G", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.1}M", b / (K * K))
    } else if b >= K {
        format!("{:.0}K", b / K)
    } else {
        format!("{b:.0}")
    }
}

#[cfg(test)]
mod tests;
