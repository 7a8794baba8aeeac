//! `supervise report FILE -o OUT.svg`: a history ([`crate::history`]) drawn as an SVG.
//!
//! One block per program: memory over time (RSS solid, PSS dashed, heap dotted; one colour per
//! instance; the memory limit as a red dashed line), CPU below it, both on one time axis shared
//! by every block, and each restart as a dashed vertical line in its reason's colour with a
//! marker and, where there is room, the reason written above it. Lines break where samples are
//! missing (the supervisor was not running, or a worker had no process) and where a new process
//! begins, so a restart never draws a fall to the next process's figures.
//!
//! The SVG is written by hand: a few hundred lines of plain text need no plotting crate. Every
//! name that reaches it (program names, the file name) is escaped. Lines are thinned to about
//! two points per pixel, keeping each pixel's largest memory figure, so peaks survive.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{Series, WorkerSeries};

mod axis;
mod draw;

#[cfg(test)]
mod tests;

use axis::{elapsed, esc, rfc3339};

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
    pub const MARK_LANE: f64 = 20.0;
    pub const MEM_H: f64 = 220.0;
    pub const GAP: f64 = 20.0;
    pub const CPU_H: f64 = 70.0;
    pub const AXIS: f64 = 24.0;
    pub const BLOCK_GAP: f64 = 26.0;
    pub const BLOCK: f64 = BLOCK_TITLE + MARK_LANE + MEM_H + GAP + CPU_H + AXIS + BLOCK_GAP;
}

/// Draws `series` (only `program`'s instances when given); `title` names the file.
///
/// # Errors
/// Nothing to draw: no samples, or no such program.
pub fn render(series: &Series, title: &str, program: Option<&str>) -> Result<String, ReportError> {
    let mut programs: BTreeMap<&str, Vec<&WorkerSeries>> = BTreeMap::new();
    for w in &series.workers {
        if !w.points.is_empty() || !w.restarts.is_empty() {
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
        points.chain(w.restarts.iter().map(|m| m.unix_ms))
    });
    let (Some(t0), Some(t1)) = (times.clone().min(), times.max()) else {
        return Err(ReportError::Empty);
    };
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
    header(&mut out, series, &programs, title, t0, t1);
    for (i, (name, workers)) in programs.iter().enumerate() {
        let top = geo::HEAD + geo::BLOCK * i as f64;
        let block = draw::Block {
            name,
            workers,
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

fn header(
    out: &mut String,
    series: &Series,
    programs: &BTreeMap<&str, Vec<&WorkerSeries>>,
    title: &str,
    t0: u64,
    t1: u64,
) {
    let (start, end) = (rfc3339(t0), rfc3339(t1));
    // Same day: the end needs only its time.
    let end = if start.get(..10) == end.get(..10) {
        end.get(11..19).unwrap_or(&end).to_owned()
    } else {
        end.replace('T', " ").replace('Z', "")
    };
    let instances: usize = programs.values().map(Vec::len).sum();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for w in programs.values().flatten() {
        for m in &w.restarts {
            *reasons.entry(m.reason.as_str()).or_default() += 1;
        }
    }
    let total: usize = reasons.values().sum();
    let mut line = format!(
        "{} → {end} UTC ({}) · {} program{}, {instances} instance{} · {total} restart{}",
        start.replace('T', " ").replace('Z', ""),
        elapsed(t1 - t0),
        programs.len(),
        if programs.len() == 1 { "" } else { "s" },
        if instances == 1 { "" } else { "s" },
        if total == 1 { "" } else { "s" },
    );
    if total > 0 {
        let by: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        let _ = write!(line, " ({})", by.join(", "));
    }
    if series.ignored_bytes > 0 {
        let _ = write!(
            line,
            " · {} damaged or torn bytes skipped",
            series.ignored_bytes
        );
    }
    let _ = write!(
        out,
        r##"<text x="{x}" y="32" font-size="19" font-weight="bold" fill="#222">Memory and CPU over time <tspan font-weight="normal" fill="#666">— {title}</tspan></text>
<text x="{x}" y="56" font-size="12" fill="#555">{line}</text>
"##,
        x = geo::LEFT,
        title = esc(title),
        line = esc(&line),
    );
}
