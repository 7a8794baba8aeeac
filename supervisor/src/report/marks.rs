//! Events on the time axis: restarts (a triangle above the memory panel and a dashed line
//! through both panels) and findings (a diamond in their own lane above the restarts and a
//! dotted line through the memory panel), each in its reason's or kind's colour.

use std::fmt::Write as _;

use super::axis::{esc, rfc3339};
use super::block::Block;
use super::geo;
use crate::history::WorkerSeries;

pub(super) fn reason_colour(reason: &str) -> &'static str {
    match reason {
        "memory" => "#d62728",
        "leak" => "#ff7f0e",
        "hung" => "#b8860b",
        "exit" => "#444444",
        "manual" => "#6a3d9a",
        "net" => "#00838f",
        "restart" => "#8c564b",
        "unhealthy" => "#e6550d",
        "not_ready" => "#637939",
        _ => "#999999",
    }
}

/// A finding's colour: that of the restart it leads to, where there is one.
pub(super) fn finding_colour(kind: &str) -> &'static str {
    match kind {
        "leak" | "hung" | "unhealthy" | "not_ready" => reason_colour(kind),
        "unexpected_connection" | "too_many_connections" => reason_colour("net"),
        "native_or_fragmentation_growth" => "#ad494a",
        "disk" => "#393b79",
        "inconsistent_state" | "implausible_report" => "#7b4173",
        _ => "#777777",
    }
}

/// One mark: when, what (a reason or a kind), and whose (`None`: the supervisor's own).
type Mark<'a> = (u64, &'a str, Option<&'a WorkerSeries>);

impl Block<'_> {
    /// Restart markers: a dashed line through both panels, a triangle above the memory panel,
    /// and the reason written above it where it does not run into the previous label.
    pub(super) fn restarts(&self, out: &mut String, top: f64, bottom: f64) {
        let mut marks: Vec<Mark<'_>> = Vec::new();
        for w in self.workers {
            for m in &w.restarts {
                marks.push((m.unix_ms, m.reason.as_str(), Some(*w)));
            }
        }
        marks.sort_by_key(|m| m.0);
        let mut labels = Labels::default();
        for &(t, reason, w) in &marks {
            let x = self.x(t);
            let colour = reason_colour(reason);
            let title = format!("{} restarted ({reason}) at {}", who(w), rfc3339(t));
            let _ = writeln!(
                out,
                r#"<g class="restart reason-{cls}"><title>{title}</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{colour}" stroke-width="1.1" stroke-dasharray="4 3" opacity="0.75"/>{}</g>"#,
                top - 4.0,
                triangle(x, top - 3.0, colour),
                cls = esc(&css_class(reason)),
                title = esc(&title),
            );
            let label = self.label(reason, w);
            let half = 3.1 * label.chars().count() as f64;
            // Kept inside the panel's width.
            let lx = x.clamp(geo::LEFT + half, geo::LEFT + geo::PLOT_W - half);
            if labels.fits(&label, lx - half, lx + half) {
                let _ = writeln!(
                    out,
                    r#"<text x="{lx:.1}" y="{:.1}" text-anchor="middle" fill="{colour}" font-size="10">{}</text>"#,
                    top - 12.0,
                    esc(&label)
                );
            }
        }
    }

    /// Finding markers, the instances' and the supervisor's own: a diamond in the lane above the
    /// restarts', a dotted line through the memory panel (`top` to `bottom`), and the kind
    /// written after the diamond where there is room.
    pub(super) fn findings(&self, out: &mut String, top: f64, bottom: f64) {
        let mut marks: Vec<Mark<'_>> = Vec::new();
        for w in self.workers {
            for m in &w.findings {
                marks.push((m.unix_ms, m.kind.as_str(), Some(*w)));
            }
        }
        for m in self.own {
            marks.push((m.unix_ms, m.kind.as_str(), None));
        }
        marks.sort_by_key(|m| m.0);
        let y = top - geo::MARK_LANE - geo::FIND_LANE / 2.0;
        let mut labels = Labels::default();
        for &(t, kind, w) in &marks {
            let x = self.x(t);
            let colour = finding_colour(kind);
            let title = format!("{}: finding {kind} at {}", who(w), rfc3339(t));
            let _ = writeln!(
                out,
                r#"<g class="finding kind-{cls}"><title>{title}</title><line x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{colour}" stroke-width="1" stroke-dasharray="1 2" opacity="0.6"/>{}</g>"#,
                diamond(x, y, colour),
                y1 = y + 4.0,
                cls = esc(&css_class(kind)),
                title = esc(&title),
            );
            let label = self.label(kind, w);
            let width = 6.0 * label.chars().count() as f64;
            // After the diamond, or before it near the right edge.
            let (lx, anchor, from) = if x + 7.0 + width <= geo::LEFT + geo::PLOT_W {
                (x + 7.0, "start", x + 7.0)
            } else {
                (x - 7.0, "end", x - 7.0 - width)
            };
            if labels.fits(&label, from, from + width) {
                let _ = writeln!(
                    out,
                    r#"<text x="{lx:.1}" y="{:.1}" text-anchor="{anchor}" fill="{colour}" font-size="10">{}</text>"#,
                    y + 3.5,
                    esc(&label)
                );
            }
        }
    }

    /// A mark's label: its reason or kind, with the instance when the block has several.
    fn label(&self, what: &str, w: Option<&WorkerSeries>) -> String {
        match w {
            Some(w) if self.workers.len() > 1 => format!("{what} #{}", w.instance),
            Some(_) => what.to_owned(),
            None => format!("{what} (supervise)"),
        }
    }
}

/// Who a mark is about.
fn who(w: Option<&WorkerSeries>) -> String {
    w.map_or_else(
        || "supervise".to_owned(),
        |w| format!("{}/{}", w.program, w.instance),
    )
}

/// Where labels may go along a lane: none runs into the one before, and a run of the same
/// label is written once in a while (the marker's colour carries it in between).
#[derive(Default)]
struct Labels {
    free_from: Option<f64>,
    last: Option<(String, f64)>,
}

impl Labels {
    /// Whether `label` may span `from..to`; if so, it is taken.
    fn fits(&mut self, label: &str, from: f64, to: f64) -> bool {
        let clear = self.free_from.is_none_or(|f| from > f);
        let repeat = self
            .last
            .as_ref()
            .is_some_and(|(l, at)| l == label && from - at < 120.0);
        if clear && !repeat {
            self.free_from = Some(to + 4.0);
            self.last = Some((label.to_owned(), from));
            true
        } else {
            false
        }
    }
}

/// A small downward triangle whose tip is at (`x`, `y`).
pub(super) fn triangle(x: f64, y: f64, colour: &str) -> String {
    format!(
        r#"<path d="M{:.1},{:.1}L{:.1},{:.1}L{x:.1},{y:.1}Z" fill="{colour}"/>"#,
        x - 4.5,
        y - 7.0,
        x + 4.5,
        y - 7.0,
    )
}

/// A small diamond centred on (`x`, `y`).
pub(super) fn diamond(x: f64, y: f64, colour: &str) -> String {
    format!(
        r##"<path d="M{x:.1},{:.1}L{:.1},{y:.1}L{x:.1},{:.1}L{:.1},{y:.1}Z" fill="{colour}" stroke="#ffffff" stroke-width="0.8"/>"##,
        y - 4.5,
        x + 4.5,
        y + 4.5,
        x - 4.5,
    )
}

/// A reason or kind as a CSS class name: letters, digits and `-` only.
fn css_class(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
