//! Keys: a pure function of the key and [`App`], returning what the shell must do.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{App, Detail, LogView, RowKey, SortKey};
use crate::admin::Request;

/// The signals `k` offers, in the order shown.
pub const SIGNALS: [(&str, i32); 10] = [
    ("TERM", libc::SIGTERM),
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("KILL", libc::SIGKILL),
    ("WINCH", libc::SIGWINCH),
    ("STOP", libc::SIGSTOP),
    ("CONT", libc::SIGCONT),
];

/// Rows a page key moves.
const PAGE: usize = 10;

/// What the keys are for at the moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Normal,
    /// An action waiting for `y`.
    Confirm { prompt: String, request: Request },
    /// Choosing which signal to send (`k`).
    Signal {
        program: String,
        instance: Option<u32>,
        choice: usize,
    },
    /// Typing the filter (`/`).
    Filter,
    /// The help screen (`?`).
    Help,
    /// Following a log full screen (`l`).
    Log,
}

/// What the shell must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Send this request; its answer goes to the status line.
    Send(Request),
    /// Follow these lines full screen.
    Follow {
        program: String,
        instance: Option<u32>,
    },
    /// Stop following.
    StopFollow,
    /// The detail pane is about another instance now: ask for its figures at once.
    Reselect,
}

/// `NAME` or `NAME/INSTANCE`.
fn named(program: &str, instance: Option<u32>) -> String {
    instance.map_or_else(|| program.to_owned(), |i| format!("{program}/{i}"))
}

impl App {
    /// Handles one key; pure apart from `self`.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        let before = self.target();
        let action = match std::mem::take(&mut self.mode) {
            Mode::Normal => self.normal(key),
            Mode::Confirm { prompt, request } => match key.code {
                KeyCode::Char('y' | 'Y') => {
                    self.message = format!("{}...", prompt.trim_end_matches('?'));
                    Action::Send(request)
                }
                _ => {
                    self.message = "cancelled".to_owned();
                    Action::None
                }
            },
            Mode::Signal {
                program,
                instance,
                choice,
            } => self.signal_menu(key, program, instance, choice),
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => {}
                    KeyCode::Esc => self.filter.clear(),
                    KeyCode::Backspace => {
                        self.filter.pop();
                        self.mode = Mode::Filter;
                    }
                    KeyCode::Char(c) if !c.is_control() && self.filter.len() < 64 => {
                        self.filter.push(c);
                        self.mode = Mode::Filter;
                    }
                    _ => self.mode = Mode::Filter,
                }
                let at = self.cursor();
                self.select(at);
                Action::None
            }
            Mode::Help => Action::None,
            Mode::Log => match key.code {
                KeyCode::Char('q' | 'l') | KeyCode::Esc => {
                    self.log_view = None;
                    Action::StopFollow
                }
                _ => {
                    self.mode = Mode::Log;
                    Action::None
                }
            },
        };
        if action == Action::None && self.target() != before {
            self.detail = Detail {
                of: self.target(),
                ..Detail::default()
            };
            return Action::Reselect;
        }
        action
    }

    fn normal(&mut self, key: KeyEvent) -> Action {
        let rows = self.rows().len();
        let at = self.cursor();
        let target = self.selected.clone();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Up => self.select(at.saturating_sub(1)),
            KeyCode::Down => self.select((at + 1).min(rows.saturating_sub(1))),
            KeyCode::PageUp => self.select(at.saturating_sub(PAGE)),
            KeyCode::PageDown => self.select(at + PAGE),
            KeyCode::Home => self.select(0),
            KeyCode::End => self.select(rows.saturating_sub(1)),
            KeyCode::Enter | KeyCode::Right => self.expand(key.code == KeyCode::Enter),
            KeyCode::Left => self.collapse(),
            KeyCode::Char('M') => self.sort = SortKey::Memory,
            KeyCode::Char('P') => self.sort = SortKey::Cpu,
            KeyCode::Char('N' | 'n') => self.sort = SortKey::Name,
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('?' | 'h') => self.mode = Mode::Help,
            KeyCode::Char(c @ ('r' | 's' | 't' | 'k' | 'l')) => {
                let Some(RowKey { program, instance }) = target else {
                    return Action::None;
                };
                return self.act(c, program, instance);
            }
            _ => {}
        }
        Action::None
    }

    /// `r`, `s`, `t`, `k` or `l` on a program (every instance) or one instance.
    fn act(&mut self, c: char, program: String, instance: Option<u32>) -> Action {
        let whole =
            instance.is_none() || self.workers.iter().filter(|w| w.program == program).count() == 1;
        match c {
            'r' => {
                let prompt = match instance {
                    Some(i) => format!("restart {program}/{i}?"),
                    None => format!("restart every instance of {program}, one at a time?"),
                };
                self.mode = Mode::Confirm {
                    prompt,
                    request: Request::Restart {
                        program,
                        instance,
                        wait_ms: None,
                    },
                };
            }
            's' => {
                let one = if whole {
                    String::new()
                } else {
                    " (every instance of it)".to_owned()
                };
                self.mode = Mode::Confirm {
                    prompt: format!("stop {program}{one} until `t` starts it?"),
                    request: Request::Stop {
                        program,
                        wait_ms: None,
                    },
                };
            }
            't' => {
                self.message = format!("starting {program}...");
                return Action::Send(Request::Start {
                    program,
                    wait_ms: None,
                });
            }
            'k' => {
                self.mode = Mode::Signal {
                    program,
                    instance,
                    choice: 0,
                };
            }
            'l' => {
                self.mode = Mode::Log;
                self.log_view = Some(LogView {
                    program: program.clone(),
                    instance,
                    ..LogView::default()
                });
                return Action::Follow { program, instance };
            }
            _ => {}
        }
        Action::None
    }

    fn signal_menu(
        &mut self,
        key: KeyEvent,
        program: String,
        instance: Option<u32>,
        choice: usize,
    ) -> Action {
        let choice = match key.code {
            KeyCode::Esc | KeyCode::Char('q') => {
                self.message = "no signal sent".to_owned();
                return Action::None;
            }
            KeyCode::Enter => {
                let (name, signal) = SIGNALS[choice.min(SIGNALS.len() - 1)];
                self.message = format!("sending SIG{name} to {}...", named(&program, instance));
                return Action::Send(Request::Signal {
                    program,
                    instance,
                    signal,
                    group: false,
                });
            }
            KeyCode::Up => choice.saturating_sub(1),
            KeyCode::Down => (choice + 1).min(SIGNALS.len() - 1),
            KeyCode::Char(d @ '1'..='9') => (d as usize - '1' as usize).min(SIGNALS.len() - 1),
            KeyCode::Char('0') => SIGNALS.len() - 1,
            _ => choice,
        };
        self.mode = Mode::Signal {
            program,
            instance,
            choice,
        };
        Action::None
    }

    fn expand(&mut self, toggle: bool) {
        let Some(row) = self.selected_row() else {
            return;
        };
        if !row.grouped || row.key.instance.is_some() {
            return;
        }
        if row.expanded {
            if toggle {
                self.expanded.remove(&row.key.program);
            }
        } else {
            self.expanded.insert(row.key.program);
        }
    }

    fn collapse(&mut self) {
        let Some(row) = self.selected_row() else {
            return;
        };
        if row.expanded {
            self.expanded.remove(&row.key.program);
            self.selected = Some(RowKey {
                program: row.key.program,
                instance: None,
            });
        }
    }
}
