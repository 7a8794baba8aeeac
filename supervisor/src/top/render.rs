//! Drawing [`App`]: pure over its state, so tests render it into a `TestBackend` buffer.
//!
//! From the top: the header (see `header.rs`), the table (its columns chosen for the width, see
//! [`crate::columns`]), the detail pane about the selected instance (see `detail.rs`), and one
//! status line (an action's answer, a prompt, or the keys). `?` and `k` draw a box over it;
//! `l` gives the whole screen to the log.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Table, TableState,
};
use ratatui::Frame;

use super::{header, App, Mode, Row, SIGNALS};
use crate::columns::{self, Col, Spec};
use crate::status::{Phase, WorkerStatus};

/// Width the sparkline column asks for.
const SPARK_WIDTH: usize = 20;
/// The selected row's marker.
const MARK: &str = "> ";

/// Draws the whole view.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if app.mode == Mode::Log {
        log_screen(app, frame, area);
        return;
    }
    let width = usize::from(area.width);
    let mut chips = header::chips(&app.workers, app.host.as_ref());
    chips[0] = format!("supervise top: {}", chips[0]);
    if app.disconnected.is_some() {
        chips.insert(0, "disconnected, retrying".to_owned());
    }
    let head = header::flow(&chips, width);
    let rows = app.rows();
    let body = area
        .height
        .saturating_sub(u16::try_from(head.len()).unwrap_or(3) + 1);
    let wanted = u16::try_from(rows.len() + 1).unwrap_or(u16::MAX);
    let mut table_h = wanted.min((body * 2 / 5).max(4));
    if body.saturating_sub(table_h) < 5 {
        table_h = body;
    }
    let [head_area, table_area, detail_area, footer] = Layout::vertical([
        Constraint::Length(u16::try_from(head.len()).unwrap_or(3)),
        Constraint::Length(table_h),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);

    let head_lines: Vec<Line> = head
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                Line::from(l).style(Style::new().add_modifier(Modifier::BOLD))
            } else {
                Line::from(l)
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(head_lines), head_area);
    table(app, &rows, frame, table_area);
    if detail_area.height > 0 {
        super::detail::render(app, frame, detail_area);
    }
    frame.render_widget(Paragraph::new(footer_line(app)), footer);
    match &app.mode {
        Mode::Help => help(frame, area),
        Mode::Signal {
            program,
            instance,
            choice,
        } => signal_menu(frame, area, program, *instance, *choice),
        _ => {}
    }
}

fn footer_line(app: &App) -> Line<'_> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    match (&app.mode, &app.disconnected) {
        (Mode::Confirm { prompt, .. }, _) => Line::from(format!("{prompt} (y/n)")).style(bold),
        (Mode::Filter, _) => Line::from(format!(
            "filter: {}_   Enter keeps it, Esc clears it",
            app.filter
        ))
        .style(bold),
        (_, Some(why)) if app.message.is_empty() => Line::from(why.as_str()),
        _ if !app.message.is_empty() => Line::from(app.message.as_str()),
        _ => {
            let mut shown = String::new();
            if !app.filter.is_empty() {
                shown.push_str(&format!("filter {:?}  ", app.filter));
            }
            if app.sort != super::SortKey::Name {
                shown.push_str(&format!("by {}  ", app.sort.as_str()));
            }
            Line::from(format!(
                "{shown}? help  q quit  r restart  s stop  t start  k signal  l log  / filter  \u{2192} expand"
            ))
        }
    }
}

/// The instances of a row.
fn group<'a>(app: &'a App, row: &Row) -> Vec<&'a WorkerStatus> {
    row.members.iter().map(|&i| &app.workers[i]).collect()
}

/// The memory samples of a row: an instance's, or its instances' summed (aligned on the newest).
fn row_history(app: &App, row: &Row) -> Vec<u64> {
    let mut sum: Vec<u64> = Vec::new();
    for w in group(app, row) {
        let Some(h) = app.history.get(&(w.program.clone(), w.instance)) else {
            continue;
        };
        if h.len() > sum.len() {
            let mut grown = vec![0; h.len() - sum.len()];
            grown.append(&mut sum);
            sum = grown;
        }
        let off = sum.len() - h.len();
        for (i, v) in h.iter().enumerate() {
            sum[off + i] += v;
        }
    }
    sum
}

fn table(app: &App, rows: &[Row], frame: &mut Frame, area: Rect) {
    let specs: &[Spec] = &columns::ALL;
    let now = std::time::SystemTime::now();
    let marked = rows.iter().any(|r| r.grouped);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let g = group(app, row);
            specs
                .iter()
                .map(|s| match s.col {
                    Col::History => sparkline(&row_history(app, row), SPARK_WIDTH),
                    Col::Program if marked => {
                        let mark = match (row.grouped, row.key.instance, row.expanded) {
                            (false, _, _) => "  ",
                            (true, None, false) => "\u{25b8} ",
                            (true, None, true) => "\u{25be} ",
                            (true, Some(_), _) => "\u{2514} ",
                        };
                        format!("{mark}{}", columns::cell(s.col, &g, now))
                    }
                    col => columns::cell(col, &g, now),
                })
                .collect()
        })
        .collect();
    let width = usize::from(area.width).saturating_sub(MARK.len());
    let fit = columns::fit(specs, &cells, Some(width));
    let header = TableRow::new(
        fit.iter()
            .map(|&(i, w)| Cell::from(columns::pad(specs[i].title, w, specs[i].right))),
    )
    .style(Style::new().add_modifier(Modifier::REVERSED));
    let table_rows = rows.iter().zip(&cells).map(|(row, cells)| {
        let line = TableRow::new(fit.iter().map(|&(i, w)| {
            let text = if specs[i].col == Col::History {
                sparkline(&row_history(app, row), w)
            } else {
                cells[i].clone()
            };
            Cell::from(columns::pad(&text, w, specs[i].right))
        }));
        let g = group(app, row);
        match columns::worst(&g).map(|w| w.state) {
            // Given up on: the row an operator must not miss.
            Some(Phase::Fatal) => {
                line.style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
            }
            Some(Phase::Backoff) => line.style(Style::new().fg(Color::Yellow)),
            _ => line,
        }
    });
    let widths: Vec<Constraint> = fit
        .iter()
        .map(|&(_, w)| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)))
        .collect();
    let mut state = TableState::default().with_selected(Some(app.cursor()));
    frame.render_stateful_widget(
        Table::new(table_rows, widths)
            .header(header)
            .column_spacing(1)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol(MARK),
        area,
        &mut state,
    );
}

/// A box in the middle of `area`, `w` by `h` at most.
fn boxed(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn help(frame: &mut Frame, area: Rect) {
    let text = [
        "\u{2191} \u{2193} PgUp PgDn Home End   select a row",
        "Enter \u{2192}      expand a program's instances (Enter again folds)",
        "\u{2190}            fold them",
        "r           restart the selection (asks first)",
        "s           stop its program until started (asks first)",
        "t           start its program",
        "k           send it a signal (choose one)",
        "l           follow its log full screen (l, q or Esc to come back)",
        "/           show only programs whose name contains ...",
        "M P N       sort by memory, CPU, name",
        "q Esc       quit",
        "",
        "MEM is the tree's RSS, or its PSS (marked pss) where its limit",
        "measures PSS; %LIM is MEM against the limit. A program's row",
        "sums its instances' figures and shows the worst state.",
    ];
    let r = boxed(area, 72, u16::try_from(text.len() + 2).unwrap_or(20));
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(text.iter().map(|l| Line::from(*l)).collect::<Vec<_>>()).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        r,
    );
}

fn signal_menu(frame: &mut Frame, area: Rect, program: &str, instance: Option<u32>, choice: usize) {
    let target = instance.map_or_else(|| program.to_owned(), |i| format!("{program}/{i}"));
    let lines: Vec<Line> = SIGNALS
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let key = if i == 9 { 0 } else { i + 1 };
            let l = Line::from(format!(" {key} SIG{name}"));
            if i == choice {
                l.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                l
            }
        })
        .collect();
    let title = format!(" signal {} ", columns::clean(&target));
    let w = u16::try_from(title.chars().count().max(24) + 2).unwrap_or(40);
    let r = boxed(area, w, u16::try_from(lines.len() + 3).unwrap_or(14));
    frame.render_widget(Clear, r);
    let mut all = lines;
    all.push(Line::from(" Enter sends, Esc cancels"));
    frame.render_widget(
        Paragraph::new(all).block(Block::default().borders(Borders::ALL).title(title)),
        r,
    );
}

fn log_screen(app: &App, frame: &mut Frame, area: Rect) {
    let Some(view) = &app.log_view else {
        return;
    };
    let target = view
        .instance
        .map_or_else(|| view.program.clone(), |i| format!("{}/{i}", view.program));
    let mut title = format!(
        "log of {} (following)   l, q or Esc: back",
        columns::clean(&target)
    );
    if view.skipped > 0 {
        title.push_str(&format!("   {} lines skipped", view.skipped));
    }
    let [top, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD))),
        top,
    );
    let shown = usize::from(body.height);
    let lines: Vec<Line> = view
        .lines
        .iter()
        .skip(view.lines.len().saturating_sub(shown))
        .map(|(stderr, text)| {
            let l = Line::from(columns::clean(text));
            if *stderr {
                l.style(Style::new().fg(Color::Red))
            } else {
                l
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
    let end = view.ended.as_deref().unwrap_or("");
    frame.render_widget(Paragraph::new(Line::from(end)), foot);
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
