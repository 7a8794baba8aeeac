//! The detail pane about the selected instance: a title line, its memory over the last hour as
//! a chart (with its limit, and the trend once a leak was found), its tree's processes, its
//! sockets, its recent events and its last log lines. What a worker wrote is shown cleaned of
//! control characters (see [`crate::columns::clean`]).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use super::App;
use crate::columns::{bytes, clean, short_bytes};
use crate::status::WorkerStatus;

const MIB: f64 = 1024.0 * 1024.0;

/// Draws the pane for the app's target into `area`.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some((program, instance)) = app.target() else {
        return;
    };
    let Some(w) = app
        .workers
        .iter()
        .find(|w| w.program == program && w.instance == instance)
    else {
        return;
    };
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Line::from(title(w)).style(Style::new().add_modifier(Modifier::BOLD)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let mine = app.detail.of.as_ref() == Some(&(program, instance));
    let upper_h = (inner.height * 9 / 20).max(4).min(inner.height);
    let [upper, lower] =
        Layout::vertical([Constraint::Length(upper_h), Constraint::Min(0)]).areas(inner);
    let [chart_area, side] = if upper.width >= 60 {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .spacing(1)
            .areas(upper)
    } else {
        [upper, Rect::default()]
    };
    chart(w, mine.then_some(&app.detail), frame, chart_area);
    if side.width > 0 {
        frame.render_widget(Paragraph::new(tree_and_sockets(w, side.height)), side);
    }
    if lower.height == 0 {
        return;
    }
    let events = if mine { &app.detail.events[..] } else { &[] };
    let logs = if mine { &app.detail.logs[..] } else { &[] };
    let (ev_area, log_area) = if lower.width >= 150 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
            .areas(lower);
        (a, b)
    } else {
        let ev_h = (lower.height * 2 / 5).max(2).min(lower.height);
        let [a, b] = Layout::vertical([Constraint::Length(ev_h), Constraint::Min(0)]).areas(lower);
        (a, b)
    };
    let dim = Style::new().add_modifier(Modifier::DIM);
    let mut ev_lines = vec![Line::from("events").style(dim)];
    let room = usize::from(ev_area.height).saturating_sub(1);
    if events.is_empty() {
        ev_lines.push(Line::from(if mine { "none kept" } else { "..." }));
    }
    ev_lines.extend(
        events
            .iter()
            .skip(events.len().saturating_sub(room))
            .map(|e| Line::from(event_words(e))),
    );
    frame.render_widget(Paragraph::new(ev_lines), ev_area);
    if log_area.height == 0 {
        return;
    }
    let mut log_lines = vec![Line::from("log").style(dim)];
    let room = usize::from(log_area.height).saturating_sub(1);
    if logs.is_empty() {
        log_lines.push(Line::from(if mine { "no lines kept" } else { "..." }));
    }
    log_lines.extend(
        logs.iter()
            .skip(logs.len().saturating_sub(room))
            .map(|(stderr, text)| {
                let l = Line::from(clean(text));
                if *stderr {
                    l.style(Style::new().fg(Color::Red))
                } else {
                    l
                }
            }),
    );
    frame.render_widget(Paragraph::new(log_lines), log_area);
}

/// `api/0  pid 1234  ready  up 3m05s  restarts 3 (exit 2, manual 1)  last exit ...`
fn title(w: &WorkerStatus) -> String {
    let mut t = format!("{}/{}", clean(&w.program), w.instance);
    if let Some(pid) = w.pid {
        t.push_str(&format!("  pid {pid}"));
    }
    t.push_str(&format!("  {}", crate::columns::state_word(w)));
    if let Some(u) = w.uptime_s {
        t.push_str(&format!("  up {}", crate::status::short_duration(u)));
    }
    let reasons: Vec<String> = w
        .restarts_by_reason
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    t.push_str(&format!("  restarts {}", w.restarts));
    if !reasons.is_empty() {
        t.push_str(&format!(" ({})", reasons.join(", ")));
    }
    if let Some(e) = &w.last_exit {
        t.push_str(&format!(
            "  last exit: {}",
            e.words(std::time::SystemTime::now())
        ));
    }
    if let Some(s) = &w.status_text {
        t.push_str(&format!("  \"{}\"", clean(s)));
    }
    format!(" {t} ")
}

/// The memory chart: the last hour (or what is kept), the limit as a line, and a least-squares
/// trend over the current process's points once a leak was found.
fn chart(w: &WorkerStatus, detail: Option<&super::Detail>, frame: &mut Frame, area: Rect) {
    if area.height < 3 || area.width < 20 {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut points: Vec<(f64, f64)> = detail
        .and_then(|d| d.memory.as_ref())
        .map(|s| {
            s.points
                .iter()
                .map(|&[t, b]| ((t as f64 - now) / 60.0, b as f64 / MIB))
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = w.memory_bytes() {
        points.push((0.0, m as f64 / MIB));
    }
    let measure = if w.measures_pss() { "pss" } else { "rss" };
    let first = points.first().map_or(-1.0, |p| p.0).min(-1.0);
    let limit = w.memory_max_bytes.map(|l| l as f64 / MIB);
    let top = points
        .iter()
        .map(|p| p.1)
        .fold(limit.unwrap_or(0.0), f64::max)
        .max(1.0)
        * 1.1;
    let limit_line: Vec<(f64, f64)> = limit
        .map(|l| vec![(first, l), (0.0, l)])
        .unwrap_or_default();
    let leaking = w.findings.iter().any(|f| f == "leak")
        || w.findings_by_kind.get("leak").is_some_and(|&n| n > 0);
    let trend = if leaking { trend_line(&points) } else { None };
    let mut sets = vec![Dataset::default()
        .name(measure)
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Cyan))
        .data(&points)];
    if !limit_line.is_empty() {
        sets.push(
            Dataset::default()
                .name("limit")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::Red))
                .data(&limit_line),
        );
    }
    let trend_data: Vec<(f64, f64)> = trend.map_or_else(Vec::new, |(_, line)| line.to_vec());
    let trend_name = trend.map_or_else(String::new, |(slope, _)| {
        format!("trend {}/min", short_bytes(slope * MIB))
    });
    if !trend_data.is_empty() {
        sets.push(
            Dataset::default()
                .name(trend_name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::Yellow))
                .data(&trend_data),
        );
    }
    let span = format!("{:.0}m ago", -first);
    let chart = Chart::new(sets)
        .x_axis(
            Axis::default()
                .bounds([first, 0.0])
                .labels([Line::from(span), Line::from("now")]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels([Line::from("0"), Line::from(bytes((top * MIB) as u64))]),
        )
        .legend_position(Some(ratatui::widgets::LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)));
    frame.render_widget(chart, area);
}

/// The least-squares line through the points since the last gap (a restart), as its slope
/// (MiB per minute) and its two ends; `None` for fewer than three points.
fn trend_line(points: &[(f64, f64)]) -> Option<(f64, [(f64, f64); 2])> {
    // Points more than two steps apart belong to different processes.
    let gap = 2.5 * crate::trail::STEP_S as f64 / 60.0;
    let start = points
        .windows(2)
        .rposition(|p| p[1].0 - p[0].0 > gap)
        .map_or(0, |i| i + 1);
    let pts = &points[start..];
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), p| {
        (a + (p.0 - mx) * (p.1 - my), b + (p.0 - mx) * (p.0 - mx))
    });
    if den <= 0.0 {
        return None;
    }
    let slope = num / den;
    let at = |x: f64| my + slope * (x - mx);
    let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0);
    Some((slope, [(x0, at(x0)), (x1, at(x1))]))
}

/// The tree's processes, then its sockets, as many lines as fit.
fn tree_and_sockets(w: &WorkerStatus, height: u16) -> Vec<Line<'static>> {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let mut out = Vec::new();
    let procs = w.processes.unwrap_or(u32::from(w.pid.is_some()));
    out.push(
        Line::from(format!(
            "tree: {procs} process{}",
            if procs == 1 { "" } else { "es" }
        ))
        .style(dim),
    );
    let room = usize::from(height).saturating_sub(5).max(1);
    for m in w.members.iter().take(room) {
        out.push(Line::from(format!(
            "{:>7} {:>7} {:>8} {}",
            m.pid,
            bytes(m.rss_bytes),
            format!("+{}", bytes(m.growth_bytes)),
            clean(&m.command)
        )));
    }
    if w.members.len() > room {
        out.push(Line::from(format!("  ... {} more", w.members.len() - room)));
    }
    out.push(Line::from("sockets").style(dim));
    match &w.net {
        None => out.push(Line::from("none seen yet")),
        Some(n) => {
            let listen = if n.listen.is_empty() {
                format!("{} listening", n.listening)
            } else {
                format!("listening {}", n.listen.join(" "))
            };
            out.push(Line::from(listen));
            let rate = |r: Option<f64>| {
                r.map_or_else(|| "-".to_owned(), |r| format!("{}/s", short_bytes(r)))
            };
            let rtt = n.rtt_ms.map_or_else(String::new, |ms| {
                format!("  rtt {ms:.1}ms (max {:.1}ms)", n.rtt_max_ms.unwrap_or(ms))
            });
            out.push(Line::from(format!(
                "{} est, {} other, {} udp, {} peers",
                n.established, n.other, n.udp, n.remotes
            )));
            out.push(Line::from(format!(
                "out {} in {}{rtt}",
                rate(n.sent_bytes_per_s),
                rate(n.received_bytes_per_s)
            )));
        }
    }
    out
}

/// One event for people: `12:03:04 restarting reason=memory delay_ms=100`.
#[must_use]
pub fn event_words(e: &serde_json::Value) -> String {
    let time = e["ts"]
        .as_str()
        .and_then(|t| t.get(11..19))
        .unwrap_or("--:--:--");
    let name = e["event"].as_str().unwrap_or("?");
    let mut out = format!("{time} {name}");
    if let Some(kind) = e["kind"].as_str() {
        out.push_str(&format!(" {kind}"));
    }
    if let Some(obj) = e.as_object() {
        for (k, v) in obj {
            if matches!(
                k.as_str(),
                "ts" | "event" | "program" | "instance" | "pid" | "kind" | "command" | "report"
            ) {
                continue;
            }
            let v = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            out.push_str(&format!(" {k}={v}"));
        }
    }
    clean(&out)
}
