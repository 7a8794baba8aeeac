//! `supervise report FILE -o OUT.svg`: a history ([`crate::history`]) drawn as an SVG.
//!
//! The title names the programs and the time span. One block per program: memory over time
//! (RSS solid, PSS dashed, heap dotted; one colour per instance; the memory limit as a red
//! dashed line), CPU below it, both on one time axis shared by every block; each restart as a
//! dashed vertical line in its reason's colour with a triangle and, where there is room, the
//! reason written above it; each finding (`leak`, `hung`, `disk`, …, whether or not a restart
//! followed) as a diamond in a lane of its own above the restarts', with its kind. Lines break
//! where samples are missing (the supervisor was not running, a worker had no process) and
//! where a new process begins, so a restart never draws a fall to the next process's figures.
//!
//! The SVG is written by hand: a few hundred lines of plain text need no plotting crate. Every
//! name that reaches it (program names, reasons and kinds, the file name) is escaped. Lines are
//! thinned to about two points per pixel, keeping each pixel's largest memory figure, so peaks
//! survive.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{Series, WorkerSeries};

mod axis;
mod block;
mod draw;
mod marks;

#[cfg(test)]
mod tests;

use axis::{about, elapsed, esc, rfc3339};

/// Why there is nothing to draw.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no samples recorded yet")]
    Empty,
    #[error("no program {name:?} in this history; it has: {}", known.join(", "))]
    NoProgram { name: String, known: Vec<String> },
}

/// Page geometry, px.
pub(crate) mod geo {
    pub const WIDTH: f64 = 1100.0;
    pub const LEFT: f64 = 84.0;
    pub const RIGHT: f64 = 28.0;
    pub const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
    pub const HEAD: f64 = 78.0;
    pub const BLOCK_TITLE: f64 = 28.0;
    /// Finding markers, above the restart markers' lane.
    pub const FIND_LANE: f64 = 18.0;
    pub const MARK_LANE: f64 = 20.0;
    pub const MEM_H: f64 = 220.0;
    pub const GAP: f64 = 20.0;
    pub const CPU_H: f64 = 70.0;
    pub const AXIS: f64 = 24.0;
    pub const BLOCK_GAP: f64 = 26.0;
    pub const BLOCK: f64 =
        BLOCK_TITLE + FIND_LANE + MARK_LANE + MEM_H + GAP + CPU_H + AXIS + BLOCK_GAP;
}

/// Draws `series` (only `program`'s instances when given); `title` names the file.
///
/// # Errors
/// Nothing to draw: no samples, or no such program.
pub fn render(series: &Series, title: &str, program: Option<&str>) -> Result<String, ReportError> {
    let mut programs: BTreeMap<&str, Vec<&WorkerSeries>> = BTreeMap::new();
    for w in &series.workers {
        if !w.points.is_empty() || !w.restarts.is_empty() || !w.findings.is_empty() {
            programs.entry(w.program.as_str()).or_default().push(w);
        }
    }
    if let Some(name) = program {
        if !programs.contains_key(name) {
            return Err(ReportError::NoProgram {
                name: name.to_owned(),
                known: programs.keys().map(|p| (*p).to_owned()).collect(),
            });
        }
        programs.retain(|p, _| *p == name);
    }
    let times = programs.values().flatten().flat_map(|w| {
        let points = w.points.iter().map(|p| p.unix_ms);
        let marks = w.restarts.iter().map(|m| m.unix_ms);
        points
            .chain(marks)
            .chain(w.findings.iter().map(|m| m.unix_ms))
    });
    let (Some(t0), Some(t1)) = (times.clone().min(), times.max()) else {
        return Err(ReportError::Empty);
    };
    // The supervisor's own findings are drawn where they fall within the workers' span.
    let own: Vec<_> = series
        .findings
        .iter()
        .filter(|m| (t0..=t1).contains(&m.unix_ms))
        .cloned()
        .collect();
    // A single sample still gets a visible axis.
    let t1 = t1.max(t0.saturating_add(1000));
    let height = geo::HEAD + geo::BLOCK * programs.len() as f64;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="'DejaVu Sans', Verdana, Helvetica, Arial, sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#ffffff"/>
"##,
        w = geo::WIDTH,
    );
    header(&mut out, series, &programs, &own, title, (t0, t1));
    for (i, (name, workers)) in programs.iter().enumerate() {
        let top = geo::HEAD + geo::BLOCK * i as f64;
        let block = block::Block {
            name,
            workers,
            own: &own,
            limit: series.limits.get(*name).copied(),
            runs: &series.runs,
            t0,
            t1,
            top,
        };
        block.draw(&mut out);
    }
    out.push_str("</svg>\n");
    Ok(out)
}

/// The programs' names for the title: as many as fit, then how many more.
fn names(programs: &BTreeMap<&str, Vec<&WorkerSeries>>) -> String {
    const ROOM: usize = 56;
    let mut out = String::new();
    for (i, name) in programs.keys().enumerate() {
        let len = out.chars().count() + name.chars().count() + 2;
        if i > 0 && len > ROOM {
            let _ = write!(out, " and {} more", programs.len() - i);
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
    }
    out
}

/// `2026-11-28 20:10–20:13 UTC (3 min)`: the span for the title, to the minute when it is
/// minutes long, to the second when shorter.
fn span(t0: u64, t1: u64) -> String {
    let (start, end) = (rfc3339(t0), rfc3339(t1));
    let clock = if t1 - t0 >= 120_000 { 11..16 } else { 11..19 };
    let day = |s: &str| s.get(..10).unwrap_or(s).to_owned();
    let time = |s: &str| s.get(clock.clone()).unwrap_or(s).to_owned();
    let range = if day(&start) == day(&end) {
        format!("{} {}–{}", day(&start), time(&start), time(&end))
    } else {
        format!(
            "{} {} – {} {}",
            day(&start),
            time(&start),
            day(&end),
            time(&end)
        )
    };
    format!("{range} UTC ({})", about(t1 - t0))
}

/// Counts by name, most first: `3 leak, 1 hung`.
fn tally<'a>(names: impl Iterator<Item = &'a str>) -> (usize, String) {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *by.entry(n).or_default() += 1;
    }
    let total = by.values().sum();
    let list: Vec<String> = by.iter().map(|(r, n)| format!("{n} {r}")).collect();
    (total, list.join(", "))
}

/// A file name for a subtitle: at most 60 characters, its end kept.
fn file_name(title: &str) -> String {
    let n = title.chars().count();
    if n <= 60 {
        return title.to_owned();
    }
    let tail: String = title.chars().skip(n - 59).collect();
    format!("…{tail}")
}

fn header(
    out: &mut String,
    series: &Series,
    programs: &BTreeMap<&str, Vec<&WorkerSeries>>,
    own: &[crate::history::FindingMark],
    title: &str,
    (t0, t1): (u64, u64),
) {
    let (start, end) = (rfc3339(t0), rfc3339(t1));
    // Same day: the end needs only its time.
    let end = if start.get(..10) == end.get(..10) {
        end.get(11..19).unwrap_or(&end).to_owned()
    } else {
        end.replace('T', " ").replace('Z', "")
    };
    let instances: usize = programs.values().map(Vec::len).sum();
    let workers = || programs.values().flatten();
    let (restarts, by_reason) =
        tally(workers().flat_map(|w| w.restarts.iter().map(|m| m.reason.as_str())));
    let (findings, by_kind) = tally(
        workers()
            .flat_map(|w| w.findings.iter())
            .chain(own)
            .map(|m| m.kind.as_str()),
    );
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut line = format!(
        "{} · {} → {end} UTC ({}) · {} program{}, {instances} instance{} · {restarts} restart{}",
        file_name(title),
        start.replace('T', " ").replace('Z', ""),
        elapsed(t1 - t0),
        programs.len(),
        plural(programs.len()),
        plural(instances),
        plural(restarts),
    );
    if restarts > 0 {
        let _ = write!(line, " ({by_reason})");
    }
    let _ = write!(line, " · {findings} finding{}", plural(findings));
    if findings > 0 {
        let _ = write!(line, " ({by_kind})");
    }
    if series.ignored_bytes > 0 {
        let _ = write!(
            line,
            " · {} damaged or torn bytes skipped",
            series.ignored_bytes
        );
    }
    let names = names(programs);
    let span = span(t0, t1);
    let _ = write!(
        out,
        r##"<title>Memory and CPU of {names_esc} — {span_esc}</title>
<text x="{x}" y="32" font-size="19" font-weight="bold" fill="#222">{names_esc} <tspan font-weight="normal" fill="#555">— {span_esc}</tspan></text>
<text x="{x}" y="56" font-size="12" fill="#666">{line}</text>
"##,
        x = geo::LEFT,
        names_esc = esc(&names),
        span_esc = esc(&span),
        line = esc(&line),
    );
}
