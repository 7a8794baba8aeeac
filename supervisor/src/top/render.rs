//! Drawing [`App`]: pure over its state, so tests render it into a `TestBackend` buffer.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::App;
use crate::status::{Phase, WorkerStatus};

/// Column titles, in order.
pub const HEADER: [&str; 19] = [
    "PROGRAM",
    "INST",
    "PID",
    "STATE",
    "UPTIME",
    "RST",
    "RSS",
    "RSS HISTORY",
    "PSS",
    "HEAP",
    "CPU%",
    "THR",
    "FDS",
    "HB AGE",
    "CONN",
    "NET/S",
    "RTT",
    "DELETED",
    "FINDING",
];

/// Width of the sparkline column, in cells.
const SPARK_WIDTH: usize = 20;

/// Draws the whole view: a title line, the table, and the status (or prompt) line.
pub fn render(app: &App, frame: &mut Frame) {
    let [title, table, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let mut head = format!(
        "supervise top: {} workers, sorted by {}   q quit  \u{2191}\u{2193} select  r restart  M memory  P cpu  N name",
        app.workers.len(),
        app.sort.as_str()
    );
    if app.disconnected.is_some() {
        head = format!("disconnected, retrying   {head}");
    }
    frame.render_widget(
        Paragraph::new(head).style(Style::new().add_modifier(Modifier::BOLD)),
        title,
    );

    let header = Row::new(HEADER.iter().map(|h| Cell::from(*h)))
        .style(Style::new().add_modifier(Modifier::REVERSED));
    let rows = app.workers.iter().map(|w| {
        let hist = app
            .history
            .get(&(w.program.clone(), w.instance))
            .map(|h| h.iter().copied().collect::<Vec<_>>())
            .unwrap_or_default();
        let row = Row::new(cells(w, &hist));
        // Given up on: the row an operator must not miss.
        if w.state == Phase::Fatal {
            row.style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        } else {
            row
        }
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Length(u16::try_from(SPARK_WIDTH).unwrap_or(20)),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Min(8),
    ];
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(
        Table::new(rows, widths)
            .header(header)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("> "),
        table,
        &mut state,
    );

    let line = match (&app.confirm, &app.disconnected) {
        (Some((p, i)), _) => Line::from(format!("restart {p}/{i}? (y/n)"))
            .style(Style::new().add_modifier(Modifier::BOLD)),
        (None, Some(why)) if app.message.is_empty() => Line::from(why.as_str()),
        (None, _) => Line::from(app.message.as_str()),
    };
    frame.render_widget(Paragraph::new(line), status);
}

/// One row's cells, in [`HEADER`] order.
fn cells(w: &WorkerStatus, history: &[u64]) -> Vec<String> {
    let dash = || "-".to_owned();
    let opt = |v: Option<u64>| v.map_or_else(dash, |v| v.to_string());
    vec![
        w.program.clone(),
        w.instance.to_string(),
        w.pid.map_or_else(dash, |p| p.to_string()),
        if w.ready { "ready" } else { w.state.as_str() }.to_owned(),
        w.uptime_s.map_or_else(dash, crate::status::short_duration),
        w.restarts.to_string(),
        w.rss_bytes.map_or_else(dash, bytes),
        sparkline(history, SPARK_WIDTH),
        w.pss_bytes.map_or_else(dash, bytes),
        w.heap_bytes.map_or_else(dash, bytes),
        w.cpu_percent.map_or_else(dash, |c| format!("{c:.1}")),
        opt(w.threads),
        opt(w.fds),
        w.heartbeat_age_ms.map_or_else(dash, |ms| {
            if ms < 1000 {
                format!("{ms}ms")
            } else {
                format!("{:.1}s", ms as f64 / 1000.0)
            }
        }),
    ]
    .into_iter()
    .chain(crate::admin::beyond_memory(w))
    .chain([crate::admin::note(
        w,
        w.status_text
            .as_deref()
            .or(w.findings.last().map(String::as_str))
            .unwrap_or_default(),
        std::time::SystemTime::now(),
    )])
    .collect()
}

/// `1.5M`, `312K`, `2.0G`.
fn bytes(b: u64) -> String {
    if b < 1024 {
        return "0K".to_owned();
    }
    crate::admin::short_bytes(b as f64)
}

/// The last `width` samples as block characters, scaled from the smallest to the biggest shown
/// (a flat series draws as a flat low line).
#[must_use]
pub fn sparkline(samples: &[u64], width: usize) -> String {
    const BARS: [char; 8] = [
        '\u{2581}', '\u{2582}', '\u{2583}', '\u{2584}', '\u{2585}', '\u{2586}', '\u{2587}',
        '\u{2588}',
    ];
    let shown = &samples[samples.len().saturating_sub(width)..];
    let (Some(&lo), Some(&hi)) = (shown.iter().min(), shown.iter().max()) else {
        return String::new();
    };
    let span = hi - lo;
    shown
        .iter()
        .map(|&v| {
            if span == 0 {
                BARS[0]
            } else {
                let at = (u128::from(v - lo) * 7 / u128::from(span)) as usize;
                BARS[at.min(7)]
            }
        })
        .collect()
}
