//! `supervise top`: a live terminal view of a running supervisor: the host and the supervisor in
//! a header, the workers in a table that fits the terminal, and a detail pane about the selected
//! instance (its memory over the last hour against its limit, its tree, its sockets, its recent
//! events and its last log lines).
//!
//! The view is a pure function of [`App`] (the last answers plus UI state), and keys go through
//! the pure [`App::on_key`] (in `keys.rs`), so both are tested against ratatui's `TestBackend`
//! without a terminal or a supervisor. The shell (`shell.rs`) is thin and impure: a poller
//! thread asks for `status` every second, and for the selected instance's events, log lines and
//! memory (the socket calls can take up to their 10 s timeout, so none runs on the UI thread);
//! actions are sent from short-lived threads; the UI loop only draws and reads keys.
//!
//! Replicas of a program fold into one row (sums for what adds up, the worst for the rest), which
//! Enter or → expands; the table's columns are chosen by priority for the terminal's width
//! (see [`crate::columns`]).

mod detail;
mod header;
mod keys;
mod render;
mod shell;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::admin::Response;
use crate::status::{HostStatus, WorkerStatus};
use crate::trail::MemorySeries;

pub use keys::{Action, Mode, SIGNALS};
pub use render::{render, sparkline};
pub use shell::run;

/// Memory samples kept per instance for the sparkline column.
pub const HISTORY: usize = 60;
/// Lines kept by the full-screen log view.
pub const LOG_VIEW_LINES: usize = 2000;

/// Row order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Program name, then instance.
    #[default]
    Name,
    /// Memory, biggest first (`M`, as in top).
    Memory,
    /// CPU %, busiest first (`P`, as in top).
    Cpu,
}

impl SortKey {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Memory => "memory",
            SortKey::Cpu => "cpu",
        }
    }
}

/// A row of the table: a program (its replicas folded, or the head of its expanded ones), or
/// one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub program: String,
    /// `None`: the program's row.
    pub instance: Option<u32>,
}

/// A row as drawn: what it is about, and indexes into [`App::workers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: RowKey,
    pub members: Vec<usize>,
    /// Its program has several instances (a folded or expanded program row, or one of them).
    pub grouped: bool,
    pub expanded: bool,
}

/// What the detail pane shows about one instance.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// Whose it is.
    pub of: Option<(String, u32)>,
    /// Its recent events, oldest first, as their JSON lines have them.
    pub events: Vec<serde_json::Value>,
    /// Its last log lines: (stderr, text).
    pub logs: Vec<(bool, String)>,
    /// Its last hour of memory.
    pub memory: Option<MemorySeries>,
}

/// The full-screen log view (`l`).
#[derive(Debug, Clone, Default)]
pub struct LogView {
    pub program: String,
    pub instance: Option<u32>,
    pub lines: VecDeque<(bool, String)>,
    /// Why the stream ended, once it has.
    pub ended: Option<String>,
    /// Lines missed because the view did not read fast enough.
    pub skipped: u64,
}

/// Everything the view shows.
#[derive(Debug, Default)]
pub struct App {
    /// The last answer, in program and instance order.
    pub workers: Vec<WorkerStatus>,
    /// The host and the supervisor, from the last answer.
    pub host: Option<HostStatus>,
    /// Recent memory samples per (program, instance), oldest first.
    pub history: HashMap<(String, u32), VecDeque<u64>>,
    pub sort: SortKey,
    /// Programs whose replicas are shown one row each.
    pub expanded: BTreeSet<String>,
    /// Only programs whose name contains this (case-insensitive).
    pub filter: String,
    /// The selected row.
    pub selected: Option<RowKey>,
    pub mode: Mode,
    /// The status line: the last action's answer, or an error.
    pub message: String,
    /// Why the last poll failed, while the supervisor cannot be reached.
    pub disconnected: Option<String>,
    pub detail: Detail,
    pub log_view: Option<LogView>,
}

impl App {
    /// Takes a fresh `status` answer: records memory history, forgets instances that are gone,
    /// and keeps the same row selected (or the nearest one).
    pub fn update(&mut self, workers: Vec<WorkerStatus>, host: Option<HostStatus>) {
        self.disconnected = None;
        let keep: std::collections::HashSet<(String, u32)> = workers
            .iter()
            .map(|w| (w.program.clone(), w.instance))
            .collect();
        self.history.retain(|k, _| keep.contains(k));
        for w in &workers {
            if let Some(m) = w.memory_bytes() {
                let h = self
                    .history
                    .entry((w.program.clone(), w.instance))
                    .or_default();
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(m);
            }
        }
        let before = self.cursor();
        self.workers = workers;
        self.host = host;
        self.keep_selection(before);
    }

    /// The poll failed: keep the last rows on screen and say so.
    pub fn disconnect(&mut self, why: String) {
        self.disconnected = Some(why);
    }

    /// Takes the selected instance's events, log lines and memory (ignored if the selection
    /// has moved on since they were asked for).
    pub fn detail_answered(&mut self, detail: Detail) {
        if detail.of == self.target() {
            self.detail = detail;
        }
    }

    /// The rows, in display order: filtered, sorted, folded.
    #[must_use]
    pub fn rows(&self) -> Vec<Row> {
        let filter = self.filter.to_lowercase();
        let mut programs: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            if !filter.is_empty() && !w.program.to_lowercase().contains(&filter) {
                continue;
            }
            match programs.last_mut() {
                Some((p, members)) if *p == w.program => members.push(i),
                _ => programs.push((&w.program, vec![i])),
            }
        }
        let memory = |m: &[usize]| -> u64 {
            m.iter()
                .filter_map(|&i| self.workers[i].memory_bytes())
                .sum()
        };
        let cpu =
            |m: &[usize]| -> f64 { m.iter().filter_map(|&i| self.workers[i].cpu_percent).sum() };
        let order = |a: &[usize], b: &[usize]| match self.sort {
            SortKey::Name => std::cmp::Ordering::Equal,
            SortKey::Memory => memory(b).cmp(&memory(a)),
            SortKey::Cpu => cpu(b).total_cmp(&cpu(a)),
        };
        // Stable: equal keys keep name order.
        programs.sort_by(|a, b| order(&a.1, &b.1));
        let mut rows = Vec::new();
        for (program, mut members) in programs {
            let grouped = members.len() > 1;
            let expanded = grouped && self.expanded.contains(program);
            if !grouped {
                let w = &self.workers[members[0]];
                rows.push(Row {
                    key: RowKey {
                        program: program.to_owned(),
                        instance: Some(w.instance),
                    },
                    members,
                    grouped,
                    expanded,
                });
                continue;
            }
            rows.push(Row {
                key: RowKey {
                    program: program.to_owned(),
                    instance: None,
                },
                members: members.clone(),
                grouped,
                expanded,
            });
            if expanded {
                members.sort_by(|&a, &b| order(&[a], &[b]));
                for i in members {
                    rows.push(Row {
                        key: RowKey {
                            program: program.to_owned(),
                            instance: Some(self.workers[i].instance),
                        },
                        members: vec![i],
                        grouped,
                        expanded,
                    });
                }
            }
        }
        rows
    }

    /// Index of the selected row in [`App::rows`] (the first when none is selected).
    #[must_use]
    pub fn cursor(&self) -> usize {
        let rows = self.rows();
        self.selected
            .as_ref()
            .and_then(|k| rows.iter().position(|r| &r.key == k))
            .unwrap_or(0)
    }

    /// Selects the row at `at` (clamped).
    pub fn select(&mut self, at: usize) {
        let rows = self.rows();
        self.selected = rows
            .get(at.min(rows.len().saturating_sub(1)))
            .map(|r| r.key.clone());
    }

    /// After the rows changed: the same row if it is still there, else the one now at its place.
    fn keep_selection(&mut self, before: usize) {
        let rows = self.rows();
        let there = self
            .selected
            .as_ref()
            .is_some_and(|k| rows.iter().any(|r| &r.key == k));
        if !there {
            self.select(before);
        }
    }

    /// The selected row.
    #[must_use]
    pub fn selected_row(&self) -> Option<Row> {
        self.rows().into_iter().nth(self.cursor())
    }

    /// The instance the detail pane is about: the selected one, or the worst of a program row's.
    #[must_use]
    pub fn target(&self) -> Option<(String, u32)> {
        let row = self.selected_row()?;
        let group: Vec<&WorkerStatus> = row.members.iter().map(|&i| &self.workers[i]).collect();
        let w = crate::columns::worst(&group)?;
        Some((w.program.clone(), w.instance))
    }

    /// An action was answered.
    pub fn answered(&mut self, answer: Result<Response, String>) {
        self.message = match answer {
            Ok(Response::Ok { message } | Response::Done { message }) => message,
            Ok(Response::Error { message }) => format!("error: {message}"),
            Ok(_) => "error: unexpected answer".to_owned(),
            Err(e) => format!("error: {e}"),
        };
    }

    /// A line (or the end) of the followed log arrived.
    pub fn log_line(&mut self, line: LogEvent) {
        let Some(view) = &mut self.log_view else {
            return;
        };
        match line {
            LogEvent::Line(stderr, text) => {
                if view.lines.len() == LOG_VIEW_LINES {
                    view.lines.pop_front();
                }
                view.lines.push_back((stderr, text));
            }
            LogEvent::Skipped(n) => view.skipped += n,
            LogEvent::End(why) => view.ended = Some(why),
        }
    }
}

/// What the log follower sends the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    Line(bool, String),
    Skipped(u64),
    End(String),
}
