//! The impure shell around [`App`]: the terminal, the poller thread, and the threads that send
//! actions and follow a log.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};

use super::{render, Action, App, Detail, LogEvent};
use crate::admin::{self, Request, Response};
use crate::status::{HostStatus, WorkerStatus};

/// How often the poller asks for `status` (and the selected instance's details).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Events and log lines the detail pane asks for.
const DETAIL_LINES: u32 = 50;
/// Log lines the full-screen view starts with.
const FOLLOW_LINES: u32 = 500;

enum Msg {
    Status(Box<Polled>),
    Detail(Detail),
    Answer(Result<Response, String>),
    /// A log line for the follow numbered `.0`.
    Log(u64, LogEvent),
    /// The handle that ends the follow numbered `.0`.
    Closer(u64, std::os::unix::net::UnixStream),
}

/// One poll of the control socket: every worker and the host, or why not.
type Polled = Result<(Vec<WorkerStatus>, Option<HostStatus>), String>;

fn status(path: &Path) -> Polled {
    match admin::call(path, &Request::Status) {
        Ok(Response::Status {
            workers,
            supervisor,
        }) => Ok((workers, supervisor.host.map(|h| *h))),
        Ok(Response::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The events, log lines and memory of one instance; what cannot be had (an older supervisor)
/// stays empty.
fn detail(path: &Path, program: &str, instance: u32) -> Detail {
    let mut d = Detail {
        of: Some((program.to_owned(), instance)),
        ..Detail::default()
    };
    let (p, i) = (Some(program.to_owned()), Some(instance));
    if let Ok(Response::Events { events }) = admin::call(
        path,
        &Request::Events {
            program: p.clone(),
            instance: i,
            lines: DETAIL_LINES,
        },
    ) {
        d.events = events;
    }
    if let Ok(Response::Memory { mut series }) = admin::call(
        path,
        &Request::Memory {
            program: p,
            instance: i,
        },
    ) {
        d.memory = series.pop();
    }
    let request = Request::Logs {
        program: program.to_owned(),
        instance: i,
        lines: DETAIL_LINES,
        follow: false,
    };
    if let Ok(lines) = admin::logs(path, &request) {
        for answer in lines {
            match answer {
                Ok(Response::Line { stream, text, .. }) => {
                    d.logs.push((stream == crate::logs::Stream::Stderr, text));
                }
                _ => break,
            }
        }
    }
    d
}

/// Runs the view against the supervisor at `path` until `q`. The terminal is restored on return
/// and on panic (ratatui's `try_init` installs a hook that restores it before the panic message).
pub fn run(path: PathBuf) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let want: Arc<Mutex<Option<(String, u32)>>> = Arc::default();
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let (poll_tx, poll_path, poll_want) = (tx.clone(), path.clone(), want.clone());
    // Detached: it ends at its next send once the UI has returned and dropped `rx`.
    std::thread::spawn(move || loop {
        if poll_tx
            .send(Msg::Status(Box::new(status(&poll_path))))
            .is_err()
        {
            break;
        }
        let target = poll_want
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((p, i)) = target {
            if poll_tx
                .send(Msg::Detail(detail(&poll_path, &p, i)))
                .is_err()
            {
                break;
            }
        }
        if let Err(mpsc::RecvTimeoutError::Disconnected) = wake_rx.recv_timeout(POLL_EVERY) {
            break;
        }
    });
    let mut terminal = ratatui::try_init()?;
    let mut shell = Shell {
        path,
        tx,
        want,
        wake: wake_tx,
        follow: 0,
        closer: None,
    };
    let result = shell.ui(&mut terminal, &rx);
    shell.stop_follow();
    ratatui::try_restore()?;
    result
}

struct Shell {
    path: PathBuf,
    tx: mpsc::Sender<Msg>,
    want: Arc<Mutex<Option<(String, u32)>>>,
    wake: mpsc::Sender<()>,
    /// The number of the latest follow (lines of older ones are dropped).
    follow: u64,
    closer: Option<std::os::unix::net::UnixStream>,
}

impl Shell {
    fn ui(
        &mut self,
        terminal: &mut ratatui::DefaultTerminal,
        rx: &mpsc::Receiver<Msg>,
    ) -> io::Result<()> {
        let mut app = App::default();
        let mut asked: Option<(String, u32)> = None;
        loop {
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Status(answer) => match *answer {
                        Ok((workers, host)) => app.update(workers, host),
                        Err(e) => app.disconnect(e),
                    },
                    Msg::Detail(d) => app.detail_answered(d),
                    Msg::Answer(a) => app.answered(a),
                    Msg::Log(n, line) if n == self.follow => app.log_line(line),
                    Msg::Log(..) => {}
                    Msg::Closer(n, c) if n == self.follow => self.closer = Some(c),
                    Msg::Closer(_, c) => {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                }
            }
            let target = app.target();
            if target != asked {
                asked.clone_from(&target);
                *self.want.lock().unwrap_or_else(PoisonError::into_inner) = target;
                let _ = self.wake.send(());
            }
            terminal.draw(|f| render(&app, f))?;
            if !event::poll(Duration::from_millis(100))? {
                continue;
            }
            let Event::Key(key) = event::read()? else {
                continue;
            };
            match app.on_key(key) {
                Action::None | Action::Reselect => {}
                Action::Quit => return Ok(()),
                Action::Send(request) => {
                    let (tx, path) = (self.tx.clone(), self.path.clone());
                    std::thread::spawn(move || {
                        let answer = admin::call(&path, &request).map_err(|e| e.to_string());
                        let _ = tx.send(Msg::Answer(answer));
                    });
                }
                Action::Follow { program, instance } => self.start_follow(program, instance),
                Action::StopFollow => self.stop_follow(),
            }
        }
    }

    fn start_follow(&mut self, program: String, instance: Option<u32>) {
        self.stop_follow();
        self.follow += 1;
        let (n, tx, path) = (self.follow, self.tx.clone(), self.path.clone());
        std::thread::spawn(move || {
            let request = Request::Logs {
                program,
                instance,
                lines: FOLLOW_LINES,
                follow: true,
            };
            let lines = match admin::logs(&path, &request) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Msg::Log(n, LogEvent::End(e.to_string())));
                    return;
                }
            };
            if let Ok(c) = lines.closer() {
                let _ = tx.send(Msg::Closer(n, c));
            }
            for answer in lines {
                let event = match answer {
                    Ok(Response::Line { stream, text, .. }) => {
                        LogEvent::Line(stream == crate::logs::Stream::Stderr, text)
                    }
                    Ok(Response::Skipped { lines }) => LogEvent::Skipped(lines),
                    Ok(Response::End { message }) => {
                        LogEvent::End(message.unwrap_or_else(|| "the log ended".into()))
                    }
                    Ok(Response::Error { message }) => LogEvent::End(message),
                    Ok(other) => LogEvent::End(format!("unexpected answer: {other:?}")),
                    Err(e) => LogEvent::End(e.to_string()),
                };
                if tx.send(Msg::Log(n, event)).is_err() {
                    return;
                }
            }
        });
    }

    fn stop_follow(&mut self) {
        self.follow += 1;
        if let Some(c) = self.closer.take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}
