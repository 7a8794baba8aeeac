//! One program's block: title and legend, the memory and CPU panels, and the marks (see
//! [`super::marks`]).

use std::fmt::Write as _;

use super::axis::{byte_ticks, esc, percent_ticks, rfc3339, size, time_ticks};
use super::block::Block;
use super::geo;
use super::marks::{diamond, finding_colour, reason_colour, triangle};
use crate::history::Point;

/// Line colours by instance (cycled); red and orange are left to restart reasons.
const INSTANCE: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#7f7f7f",
];
const LIMIT: &str = "#d62728";
const GRID: &str = "#e8e8e8";
const FRAME: &str = "#bdbdbd";
const LABEL: &str = "#555";

/// How a memory figure is drawn: its name, how to get it, and its dash pattern.
struct Metric {
    name: &'static str,
    get: fn(&Point) -> Option<u64>,
    dash: &'static str,
    width: f64,
}

const METRICS: [Metric; 3] = [
    Metric {
        name: "RSS",
        get: |p| p.rss,
        dash: "",
        width: 1.7,
    },
    Metric {
        name: "PSS",
        get: |p| p.pss,
        dash: "7 3",
        width: 1.4,
    },
    Metric {
        name: "heap",
        get: |p| p.heap,
        dash: "1.5 3",
        width: 1.8,
    },
];

impl Block<'_> {
    pub(super) fn draw(&self, out: &mut String) {
        let mem_top = self.top + geo::BLOCK_TITLE + geo::FIND_LANE + geo::MARK_LANE;
        let cpu_top = mem_top + geo::MEM_H + geo::GAP;
        let metrics: Vec<&Metric> = METRICS
            .iter()
            // A figure that is never above zero (a heap nobody reports) is left out.
            .filter(|m| self.points().any(|p| (m.get)(p).is_some_and(|v| v > 0)))
            .collect();
        let data_max = self
            .points()
            .flat_map(|p| metrics.iter().filter_map(|m| (m.get)(p)))
            .max()
            .unwrap_or(0);
        // A limit far above everything drawn would flatten the lines: it is named instead.
        let limit = self.limit.filter(|&l| data_max >= l / 4);
        let mem_max = data_max.max(limit.unwrap_or(0));
        let cpu_max = self
            .points()
            .filter_map(|p| p.cpu_percent)
            .fold(0.0, f64::max);
        let _ = writeln!(out, r#"<g class="program">"#);
        self.legend(out, &metrics, limit.is_some());
        let (mem_axis, mem_ticks) = byte_ticks(mem_max);
        let (cpu_axis, cpu_ticks) = percent_ticks(cpu_max);
        Self::panel(out, mem_top, geo::MEM_H, mem_axis, &mem_ticks);
        Self::panel(out, cpu_top, geo::CPU_H, cpu_axis, &cpu_ticks);
        self.time_axis(out, mem_top, cpu_top + geo::CPU_H);
        for r in self.runs.iter().filter(|&&r| r > self.t0 && r <= self.t1) {
            let x = self.x(*r);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{mem_top:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999" stroke-width="1" stroke-dasharray="1 3"><title>supervise started {}</title></line>"##,
                cpu_top + geo::CPU_H,
                esc(&rfc3339(*r)),
            );
        }
        let mem_y = |v: f64| mem_top + geo::MEM_H - v / mem_axis * geo::MEM_H;
        if let Some(limit) = limit {
            let y = mem_y(limit as f64);
            let label = format!("limit {}", size(limit));
            let label_w = 5.6 * label.chars().count() as f64;
            let _ = writeln!(
                out,
                r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="{LIMIT}" stroke-width="1.2" stroke-dasharray="8 4"/>
<rect x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="13" fill="#ffffff" opacity="0.85"/><text x="{tx}" y="{ty:.1}" text-anchor="end" fill="{LIMIT}" font-size="10">{s}</text>"##,
                l = geo::LEFT,
                r = geo::LEFT + geo::PLOT_W,
                tx = geo::LEFT + geo::PLOT_W - 4.0,
                ty = y - 4.0,
                bx = geo::LEFT + geo::PLOT_W - 8.0 - label_w,
                by = y - 15.0,
                bw = label_w + 6.0,
                s = esc(&label),
            );
        }
        for (i, w) in self.workers.iter().enumerate() {
            let colour = INSTANCE[i % INSTANCE.len()];
            let who = format!("{}/{}", w.program, w.instance);
            for m in &metrics {
                let pts: Vec<Pt> = w
                    .points
                    .iter()
                    .map(|p| (p.unix_ms, (m.get)(p).map(|v| v as f64), p.new_process))
                    .collect();
                let d = self.path(&pts, true, &mem_y);
                self.stroke(
                    out,
                    &d,
                    colour,
                    m.width,
                    m.dash,
                    &format!("{who} {}", m.name),
                );
            }
            let cpu_y = |v: f64| cpu_top + geo::CPU_H - v / cpu_axis * geo::CPU_H;
            let pts: Vec<Pt> = w
                .points
                .iter()
                .map(|p| (p.unix_ms, p.cpu_percent, p.new_process))
                .collect();
            let d = self.path(&pts, false, &cpu_y);
            self.stroke(out, &d, colour, 1.2, "", &format!("{who} CPU"));
        }
        self.findings(out, mem_top, mem_top + geo::MEM_H);
        self.restarts(out, mem_top, cpu_top + geo::CPU_H);
        Self::caption(out, mem_top, "memory");
        Self::caption(out, cpu_top, "CPU (100% = one core)");
        out.push_str("</g>\n");
    }

    fn points(&self) -> impl Iterator<Item = &Point> + '_ {
        self.workers.iter().flat_map(|w| w.points.iter())
    }

    fn legend(&self, out: &mut String, metrics: &[&Metric], limit_drawn: bool) {
        let y = self.top + 18.0;
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{y:.1}" font-size="15" font-weight="bold" fill="#222">{}</text>"##,
            geo::LEFT,
            esc(self.name)
        );
        let mut items: Vec<(Swatch, String)> = Vec::new();
        if self.workers.len() > 1 {
            for (i, w) in self.workers.iter().enumerate() {
                let colour = INSTANCE[i % INSTANCE.len()];
                items.push((Swatch::Line(colour, 3.0, ""), format!("#{}", w.instance)));
            }
        }
        for m in metrics {
            items.push((Swatch::Line("#444", m.width, m.dash), m.name.to_owned()));
        }
        match self.limit {
            Some(_) if limit_drawn => {
                items.push((Swatch::Line(LIMIT, 1.2, "8 4"), "limit".to_owned()));
            }
            Some(l) => {
                let label = format!("limit {} (off the scale)", size(l));
                items.push((Swatch::Line(LIMIT, 1.2, "8 4"), label));
            }
            None => {}
        }
        let mut reasons: Vec<&str> = self
            .workers
            .iter()
            .flat_map(|w| w.restarts.iter().map(|m| m.reason.as_str()))
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        for r in reasons {
            items.push((Swatch::Mark(reason_colour(r)), format!("restart: {r}")));
        }
        let mut kinds: Vec<&str> = self
            .workers
            .iter()
            .flat_map(|w| w.findings.iter())
            .chain(self.own)
            .map(|m| m.kind.as_str())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        for k in kinds {
            items.push((Swatch::Finding(finding_colour(k)), format!("finding: {k}")));
        }
        // Estimated widths: good enough to space items (an SVG cannot measure its text).
        let mut x = geo::LEFT + 9.0 * self.name.chars().count() as f64 + 28.0;
        let n = items.len();
        for (i, (swatch, label)) in items.into_iter().enumerate() {
            let w = 24.0 + 6.6 * label.chars().count() as f64 + 16.0;
            if x + w > geo::WIDTH && i > 0 {
                // No room left on the line: say how many items are not shown.
                let _ = writeln!(
                    out,
                    r#"<text x="{x:.1}" y="{y:.1}" fill="{LABEL}">+{} more</text>"#,
                    n - i
                );
                break;
            }
            match swatch {
                Swatch::Line(colour, width, dash) => {
                    let _ = write!(
                        out,
                        r#"<line x1="{x:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}" stroke-linecap="round"/>"#,
                        x + 18.0,
                        yy = y - 4.0,
                    );
                }
                Swatch::Mark(colour) => out.push_str(&triangle(x + 9.0, y - 1.0, colour)),
                Swatch::Finding(colour) => out.push_str(&diamond(x + 9.0, y - 4.0, colour)),
            }
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{y:.1}" fill="{LABEL}">{}</text>"#,
                x + 24.0,
                esc(&label)
            );
            x += w;
        }
    }

    /// A panel's frame, horizontal grid lines and value labels.
    fn panel(out: &mut String, top: f64, h: f64, axis: f64, ticks: &[(f64, String)]) {
        let (l, r) = (geo::LEFT, geo::LEFT + geo::PLOT_W);
        for (v, label) in ticks {
            let y = top + h - v / axis * h;
            let _ = writeln!(
                out,
                r#"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="{GRID}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{LABEL}" font-size="10">{}</text>"#,
                l - 6.0,
                y + 3.5,
                esc(label)
            );
        }
        let _ = writeln!(
            out,
            r#"<rect x="{l}" y="{top:.1}" width="{}" height="{h}" fill="none" stroke="{FRAME}"/>"#,
            geo::PLOT_W,
        );
    }

    /// A panel's name in its top-left corner, over whatever is drawn there.
    fn caption(out: &mut String, top: f64, caption: &str) {
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="15" fill="#ffffff" opacity="0.9"/><text x="{:.1}" y="{:.1}" fill="#777" font-size="10">{}</text>"##,
            geo::LEFT + 1.0,
            top + 1.0,
            10.0 + 5.6 * caption.chars().count() as f64,
            geo::LEFT + 6.0,
            top + 12.0,
            esc(caption)
        );
    }

    fn time_axis(&self, out: &mut String, top: f64, bottom: f64) {
        let max_ticks = (geo::PLOT_W / 90.0) as u64;
        for (t, label) in time_ticks(self.t0, self.t1, max_ticks) {
            let x = self.x(t);
            let _ = writeln!(
                out,
                r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{GRID}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{LABEL}" font-size="10">{}</text>"#,
                bottom + 14.0,
                esc(&label)
            );
        }
    }

    /// An SVG path through the points with values, broken where samples are missing (a point
    /// without a value, a gap much longer than usual, a new run of the supervisor) and where a
    /// new process begins: a restart's figures are never joined to the process before. Points
    /// closer than half a pixel are merged (the largest kept for memory, the mean for CPU).
    fn path(&self, pts: &[Pt], keep_max: bool, y: &dyn Fn(f64) -> f64) -> String {
        let gap = typical_step(pts).saturating_mul(5).max(2000);
        let mut d = String::new();
        let mut prev: Option<u64> = None;
        // (half-pixel column, x, sum or max, count)
        let mut pending: Option<(i64, f64, f64, u32)> = None;
        let mut drawn = 0u32;
        let flush =
            |d: &mut String, pending: &mut Option<(i64, f64, f64, u32)>, drawn: &mut u32| {
                if let Some((_, x, v, n)) = pending.take() {
                    let v = if keep_max { v } else { v / f64::from(n) };
                    let _ = write!(
                        d,
                        "{}{x:.1},{:.1}",
                        if *drawn == 0 { "M" } else { "L" },
                        y(v)
                    );
                    *drawn += 1;
                }
            };
        let end_run = |d: &mut String, drawn: &mut u32| {
            if *drawn == 1 {
                // A lone sample: a dot (the round cap of a tiny stroke).
                d.push_str("h0.8");
            }
            *drawn = 0;
        };
        for &(t, v, new_process) in pts {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                flush(&mut d, &mut pending, &mut drawn);
                end_run(&mut d, &mut drawn);
                prev = None;
                continue;
            };
            let broken = prev.is_some_and(|p| {
                new_process
                    || t.saturating_sub(p) > gap
                    || self.runs.iter().any(|&r| r > p && r <= t)
            });
            if broken {
                flush(&mut d, &mut pending, &mut drawn);
                end_run(&mut d, &mut drawn);
            }
            let x = self.x(t);
            let col = (x * 2.0).floor() as i64;
            match &mut pending {
                Some((c, _, acc, n)) if *c == col => {
                    *acc = if keep_max { acc.max(v) } else { *acc + v };
                    *n += 1;
                }
                _ => {
                    flush(&mut d, &mut pending, &mut drawn);
                    pending = Some((col, x, v, 1));
                }
            }
            prev = Some(t);
        }
        flush(&mut d, &mut pending, &mut drawn);
        end_run(&mut d, &mut drawn);
        d
    }

    fn stroke(&self, out: &mut String, d: &str, colour: &str, width: f64, dash: &str, title: &str) {
        if d.is_empty() {
            return;
        }
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            out,
            r#"<path class="series" d="{d}" fill="none" stroke="{colour}" stroke-width="{width}"{dash} stroke-linejoin="round" stroke-linecap="round"><title>{}</title></path>"#,
            esc(title)
        );
    }
}

/// A point of a line: time, value (`None`: missing), whether a new process begins there.
type Pt = (u64, Option<f64>, bool);

/// The median time between consecutive points, ms.
fn typical_step(pts: &[Pt]) -> u64 {
    let mut steps: Vec<u64> = pts
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].0))
        .collect();
    if steps.is_empty() {
        return 1000;
    }
    let mid = steps.len() / 2;
    *steps.select_nth_unstable(mid).1
}

/// A legend item's sample: a line (colour, width, dash), a restart marker or a finding marker.
enum Swatch {
    Line(&'static str, f64, &'static str),
    Mark(&'static str),
    Finding(&'static str),
}
