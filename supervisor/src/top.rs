//! `supervise top`: a live terminal view of a running supervisor's workers.
//!
//! The view is a pure function of [`App`] (the last `status` answer plus UI state), and keys go
//! through the pure [`App::on_key`], so both are tested against ratatui's `TestBackend` without a
//! terminal or a supervisor. [`run`] is the thin impure shell: a poller thread asks for `status`
//! every second (the socket call can take up to its 10 s timeout, so it never runs on the UI
//! thread), restarts are sent from their own short-lived thread, and the UI loop only draws and
//! reads keys.

mod render;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::admin::{self, Request, Response};
use crate::status::WorkerStatus;

pub use render::{render, sparkline};

/// RSS samples kept per instance for the sparkline.
pub const HISTORY: usize = 60;

/// How often the poller asks for `status`.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Row order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Program name, then instance.
    #[default]
    Name,
    /// Resident memory, biggest first (`M`, as in top).
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

/// What the shell must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Send `Request::Restart` for one instance.
    Restart {
        program: String,
        instance: u32,
    },
}

/// Everything the view shows.
#[derive(Debug, Default)]
pub struct App {
    /// The last answer, in display order.
    pub workers: Vec<WorkerStatus>,
    /// Recent RSS samples per (program, instance), oldest first.
    pub history: HashMap<(String, u32), VecDeque<u64>>,
    pub sort: SortKey,
    /// Index into `workers` of the selected row.
    pub selected: usize,
    /// A restart waiting for `y`/`n`.
    pub confirm: Option<(String, u32)>,
    /// The status line: the last restart's answer, or an error.
    pub message: String,
    /// Why the last poll failed, while the supervisor cannot be reached.
    pub disconnected: Option<String>,
}

impl App {
    /// Takes a fresh `status` answer: records RSS history, forgets instances that are gone,
    /// re-sorts, and keeps the same worker selected.
    pub fn update(&mut self, workers: Vec<WorkerStatus>) {
        self.disconnected = None;
        let keep: std::collections::HashSet<(String, u32)> = workers
            .iter()
            .map(|w| (w.program.clone(), w.instance))
            .collect();
        self.history.retain(|k, _| keep.contains(k));
        for w in &workers {
            if let Some(rss) = w.rss_bytes {
                let h = self
                    .history
                    .entry((w.program.clone(), w.instance))
                    .or_default();
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(rss);
            }
        }
        let selected = self.selected_key();
        self.workers = workers;
        self.resort(selected);
    }

    /// The poll failed: keep the last rows on screen and say so.
    pub fn disconnect(&mut self, why: String) {
        self.disconnected = Some(why);
    }

    /// The selected worker's (program, instance).
    #[must_use]
    pub fn selected_key(&self) -> Option<(String, u32)> {
        self.workers
            .get(self.selected)
            .map(|w| (w.program.clone(), w.instance))
    }

    fn resort(&mut self, keep: Option<(String, u32)>) {
        let by_name = |a: &WorkerStatus, b: &WorkerStatus| {
            (a.program.as_str(), a.instance).cmp(&(b.program.as_str(), b.instance))
        };
        match self.sort {
            SortKey::Name => self.workers.sort_by(by_name),
            SortKey::Memory => self
                .workers
                .sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then_with(|| by_name(a, b))),
            SortKey::Cpu => self.workers.sort_by(|a, b| {
                b.cpu_percent
                    .unwrap_or(-1.0)
                    .total_cmp(&a.cpu_percent.unwrap_or(-1.0))
                    .then_with(|| by_name(a, b))
            }),
        }
        if let Some((p, i)) = keep {
            if let Some(at) = self
                .workers
                .iter()
                .position(|w| w.program == p && w.instance == i)
            {
                self.selected = at;
            }
        }
        self.selected = self.selected.min(self.workers.len().saturating_sub(1));
    }

    /// A restart was answered.
    pub fn answered(&mut self, answer: Result<Response, String>) {
        self.message = match answer {
            Ok(Response::Ok { message } | Response::Done { message }) => message,
            Ok(Response::Error { message }) => format!("error: {message}"),
            Ok(_) => "error: unexpected answer".to_owned(),
            Err(e) => format!("error: {e}"),
        };
    }

    /// Handles one key; pure apart from `self`.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some((program, instance)) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y' | 'Y') => {
                    self.message = format!("restarting {program}/{instance}...");
                    Action::Restart { program, instance }
                }
                _ => {
                    self.message = "restart cancelled".to_owned();
                    Action::None
                }
            };
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.workers.len().saturating_sub(1));
            }
            KeyCode::Char('M') => self.sort_by(SortKey::Memory),
            KeyCode::Char('P') => self.sort_by(SortKey::Cpu),
            KeyCode::Char('N' | 'n') => self.sort_by(SortKey::Name),
            KeyCode::Char('r') => self.confirm = self.selected_key(),
            _ => {}
        }
        Action::None
    }

    fn sort_by(&mut self, key: SortKey) {
        self.sort = key;
        let keep = self.selected_key();
        self.resort(keep);
    }
}

enum Msg {
    Status(Result<Vec<WorkerStatus>, String>),
    Answer(Result<Response, String>),
}

fn status(path: &Path) -> Result<Vec<WorkerStatus>, String> {
    match admin::call(path, &Request::Status) {
        Ok(Response::Status { workers, .. }) => Ok(workers),
        Ok(Response::Error { message }) => Err(message),
        Ok(Response::Ok { message }) => Err(format!("unexpected answer: {message}")),
        Ok(other) => Err(format!("unexpected answer: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the view against the supervisor at `path` until `q`. The terminal is restored on return
/// and on panic (ratatui's `try_init` installs a hook that restores it before the panic message).
pub fn run(path: PathBuf) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let poll_tx = tx.clone();
    let poll_path = path.clone();
    // Detached: it ends at its next send once the UI has returned and dropped `rx`.
    std::thread::spawn(move || loop {
        if poll_tx.send(Msg::Status(status(&poll_path))).is_err() {
            break;
        }
        std::thread::sleep(POLL_EVERY);
    });
    let mut terminal = ratatui::try_init()?;
    let result = ui(&mut terminal, &path, &tx, &rx);
    ratatui::try_restore()?;
    result
}

fn ui(
    terminal: &mut ratatui::DefaultTerminal,
    path: &Path,
    tx: &mpsc::Sender<Msg>,
    rx: &mpsc::Receiver<Msg>,
) -> io::Result<()> {
    let mut app = App::default();
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Status(Ok(workers)) => app.update(workers),
                Msg::Status(Err(e)) => app.disconnect(e),
                Msg::Answer(a) => app.answered(a),
            }
        }
        terminal.draw(|f| render(&app, f))?;
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        match app.on_key(key) {
            Action::None => {}
            Action::Quit => return Ok(()),
            Action::Restart { program, instance } => {
                let tx = tx.clone();
                let path = path.to_owned();
                std::thread::spawn(move || {
                    let request = Request::Restart {
                        program,
                        instance: Some(instance),
                        wait_ms: None,
                    };
                    let answer = admin::call(&path, &request).map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Answer(answer));
                });
            }
        }
    }
}
