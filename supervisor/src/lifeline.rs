//! The lifeline: a tiny process that outlives a SIGKILLed supervisor just long enough to kill the
//! descendants that `PR_SET_PDEATHSIG` cannot reach (the death signal is not inherited across
//! `fork`, so a grandchild that double-forked away would survive its supervisor).
//!
//! The supervisor starts it once (`supervise-lifeline`, a small program of its own installed
//! beside `supervise`: a poll loop, no async runtime; where it is missing, supervise's own binary
//! as `supervise __lifeline`, which works the same and costs about 1 MiB more) with a pipe on its
//! stdin and tells it, one line each ([`Msg`]), of every process of a worker's tree as the tree
//! finds it, of every orphan as soon as the orphan scan sees it, and of the process groups and
//! sessions those processes lead (a worker leads its own group; a descendant that called `setsid`
//! leads a session and a group) until the tree ends or the orphan is reaped. Never the
//! supervisor's own group or session, which the workers share with it (and a terminal with both).
//!
//! The lifeline holds a pidfd for each process while it lives (checking the start time first, so
//! a reused pid is never taken) and closes it once the process has exited: it polls the pipe and
//! the pidfds together, so it holds fds for the living only and never wakes for nothing. If the
//! pipe reaches end-of-file, the supervisor is gone: it SIGKILLs every process it holds, every
//! watched process group (`killpg`) and every process of a watched session (a scan of /proc), so
//! a process forked since the supervisor's last look dies too if it stayed in its group or
//! session ([`serve`]). A process it holds that leads a group or session by then (it called
//! `setsid` after the look that found it) has that group and session killed too. A group or
//! session whose leader's pid now belongs to another process was emptied and reused: it is left
//! alone. A supervisor that shuts down cleanly kills the lifeline in its final sweep (after
//! every worker has stopped), so nothing is killed twice.
//!
//! What goes wrong is said once per kind, as a `lifeline_error` event and a warning: the lifeline
//! cannot be started, cannot watch a process (out of fds: it then watches it by pid and start
//! time alone), stops reading its pipe, or is gone (it exited, or its pipe broke). The lifeline
//! reports its own troubles on its stdout, a pipe the supervisor reads.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::rc::Rc;

use tokio::io::AsyncReadExt;

use crate::events::{Event, Kind};
use crate::logs::Output;
use crate::probe::tree::Joined;
use crate::reaper::Exit;

mod serve;

pub use serve::serve;

/// Registrations not yet written while the pipe is full: past this, new ones are dropped (and
/// that is reported). About 40,000 lines; the lifeline drains its pipe as fast as it can poll.
const MAX_PENDING: usize = 1 << 20;

/// One line of the supervisor's pipe to the lifeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// `p PID START`: kill this process, if it is still the one that started at START (clock
    /// ticks since boot, /proc/PID/stat's field 22).
    Process { pid: i32, start: u64 },
    /// `g ID START` (group), `s ID START` (session) or `gs ID START` (both): kill process group
    /// ID and/or every process of session ID, led by the process ID that started at START.
    Leader {
        id: i32,
        start: u64,
        group: bool,
        session: bool,
    },
    /// `f ID`: one registrant of the group and session ID (a tree that ended, an orphan that
    /// was reaped) is done with them; once every one is, they are no longer watched (the id
    /// may be reused once the group and session are empty).
    Forget { id: i32 },
}

impl Msg {
    /// The line, newline included.
    #[must_use]
    pub fn line(&self) -> String {
        match *self {
            Msg::Process { pid, start } => format!("p {pid} {start}\n"),
            Msg::Leader {
                id,
                start,
                group,
                session,
            } => {
                let kind = match (group, session) {
                    (true, true) => "gs",
                    (true, false) => "g",
                    _ => "s",
                };
                format!("{kind} {id} {start}\n")
            }
            Msg::Forget { id } => format!("f {id}\n"),
        }
    }

    /// Parses one line (without its newline); `None` for anything malformed. Ids are positive.
    #[must_use]
    pub fn parse(line: &[u8]) -> Option<Msg> {
        let text = std::str::from_utf8(line).ok()?;
        let mut words = text.split(' ');
        let kind = words.next()?;
        let id: i32 = words.next()?.parse().ok().filter(|&id| id > 0)?;
        let mut start = || words.next()?.parse::<u64>().ok();
        let msg = match kind {
            "p" => Msg::Process {
                pid: id,
                start: start()?,
            },
            "g" | "s" | "gs" => Msg::Leader {
                id,
                start: start()?,
                group: kind.contains('g'),
                session: kind.contains('s'),
            },
            "f" => Msg::Forget { id },
            _ => return None,
        };
        words.next().is_none().then_some(msg)
    }
}

/// The lifeline's own program, installed beside `supervise`.
pub const PROGRAM: &str = "supervise-lifeline";

/// What runs the lifeline: [`PROGRAM`] beside this executable when it is there (true), else this
/// executable itself as `supervise __lifeline` (false).
fn program() -> io::Result<(std::path::PathBuf, bool)> {
    let me = std::env::current_exe()?;
    let own = me.with_file_name(PROGRAM);
    // A regular file we may execute; anything else (absent, a directory) is no lifeline.
    let runnable = std::fs::metadata(&own).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    Ok(if runnable { (own, true) } else { (me, false) })
}

/// What can go wrong, each reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// The lifeline reported it cannot watch something.
    Watch = 1,
    /// The pipe stayed full: registrations were dropped.
    Backlog = 2,
    /// The lifeline exited, or its pipe broke.
    Gone = 4,
}

/// The supervisor's end: a non-blocking pipe to the lifeline.
#[derive(Debug)]
pub struct Lifeline {
    pipe: File,
    /// Bytes the full pipe did not take yet, written before anything newer.
    pending: RefCell<Vec<u8>>,
    /// The pipe broke: nothing more is written.
    broken: Cell<bool>,
    /// The [`Trouble`]s reported so far (a bit each).
    reported: Cell<u8>,
    /// A clean shutdown is under way: the sweep kills the lifeline, which is no trouble.
    closing: Cell<bool>,
    output: Output,
    /// The lifeline's pid (a child of the supervisor, not a worker: orphan scans skip it).
    pub pid: i32,
}

impl Lifeline {
    /// Starts the lifeline process. Returns it and the read end of the pipe it reports its
    /// troubles on (for [`Lifeline::listen`]).
    pub fn start(output: Output) -> io::Result<(Self, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (reports, their_reports) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (program, own) = program()?;
        if !own {
            tracing::warn!(
                expected = %program.with_file_name(PROGRAM).display(),
                "no supervise-lifeline beside supervise: the lifeline runs as `supervise __lifeline`, about 1 MiB more resident"
            );
        }
        let mut cmd = Command::new(&program);
        // The argument is ignored by `supervise-lifeline`; it names the process the same in `ps`
        // whichever program runs it.
        cmd.arg("__lifeline")
            .stdin(Stdio::from(read))
            .stdout(Stdio::from(their_reports))
            .stderr(Stdio::null())
            // Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group) is
            // for the supervisor to act on, and must not kill the lifeline on the way.
            .process_group(0);
        // SAFETY: runs in the forked child before exec and calls only signal(2) and
        // sigprocmask(2), which are async-signal-safe.
        unsafe { cmd.pre_exec(crate::signals::restore_in_child) };
        let child = cmd.spawn();
        // Our copies of the lifeline's ends live in `cmd`: close them, or we would hold its
        // stdin open ourselves and never see its reports end.
        drop(cmd);
        let child = child?;
        // Writing must never block the engine: what the pipe does not take waits in `pending`.
        crate::spawn::set_nonblocking(&write)?;
        Ok((
            Self {
                pipe: File::from(write),
                pending: RefCell::new(Vec::new()),
                broken: Cell::new(false),
                reported: Cell::new(0),
                closing: Cell::new(false),
                output,
                pid: i32::try_from(child.id()).map_err(io::Error::other)?,
            },
            reports,
        ))
    }

    /// Registers a process: it is killed if the supervisor dies while it lives.
    pub fn watch_process(&self, pid: i32, start: u64) {
        self.send(Msg::Process { pid, start });
    }

    /// Registers the process group and the session that `m` leads, if it leads any; true if it
    /// does. Each registration is undone by one [`Lifeline::forget`] of `m.pid`: the lifeline
    /// counts them, so a group a tree and the orphan scan both watch stays watched until both
    /// are done with it.
    pub fn watch_leader(&self, m: &Joined) -> bool {
        let leads = m.pgid == m.pid || m.sid == m.pid;
        if leads {
            // One line: a single registration, whichever of the two it leads.
            self.send(Msg::Leader {
                id: m.pid,
                start: m.starttime,
                group: m.pgid == m.pid,
                session: m.sid == m.pid,
            });
        }
        leads
    }

    /// The group and session `id` are no longer a worker's.
    pub fn forget(&self, id: i32) {
        self.send(Msg::Forget { id });
    }

    fn send(&self, msg: Msg) {
        if self.broken.get() {
            return;
        }
        let line = msg.line();
        {
            let mut pending = self.pending.borrow_mut();
            if pending.len() + line.len() > MAX_PENDING {
                drop(pending);
                self.trouble(
                    Trouble::Backlog,
                    "the lifeline does not read its pipe: new processes are not protected"
                        .to_owned(),
                );
                return;
            }
            pending.extend_from_slice(line.as_bytes());
        }
        self.flush();
    }

    /// Writes what the pipe will take of the pending registrations, without waiting.
    pub fn flush(&self) {
        let mut pending = self.pending.borrow_mut();
        while !pending.is_empty() && !self.broken.get() {
            match (&self.pipe).write(&pending) {
                Ok(n) => {
                    let n = n.min(pending.len());
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    pending.clear();
                    self.broken.set(true);
                    drop(pending);
                    self.trouble(
                        Trouble::Gone,
                        format!("cannot write to the lifeline ({e}): processes that left their worker will outlive a SIGKILLed supervisor"),
                    );
                    return;
                }
            }
        }
    }

    /// The lifeline exited (the reaper's word).
    pub fn exited(&self, exit: Exit) {
        let how = match exit {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
        };
        self.broken.set(true);
        self.trouble(
            Trouble::Gone,
            format!("the lifeline exited ({how}): processes that left their worker will outlive a SIGKILLed supervisor"),
        );
    }

    /// A clean shutdown begins: the sweep that follows kills the lifeline, which is no trouble.
    pub fn closing(&self) {
        self.closing.set(true);
    }

    /// Reads what the lifeline reports on its stdout, each line a trouble, until it closes.
    /// Runs as a local task.
    pub async fn listen(self: Rc<Self>, reports: OwnedFd) {
        let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(reports) else {
            return;
        };
        let mut buf = [0u8; 1024];
        let mut line = Vec::new();
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    self.trouble(Trouble::Watch, text);
                } else if line.len() < 1024 {
                    line.push(b);
                }
            }
        }
    }

    /// Says it once per kind: a `lifeline_error` event (which has its line on stderr).
    fn trouble(&self, kind: Trouble, detail: String) {
        let bit = kind as u8;
        if self.closing.get() || self.reported.get() & bit != 0 {
            return;
        }
        self.reported.set(self.reported.get() | bit);
        self.output.event(&Event::now(
            "supervise",
            0,
            Some(self.pid),
            Kind::LifelineError { detail },
        ));
    }
}

/// Tells the lifeline of one tree's members as they join, and when the tree is dropped (its
/// incarnation is over), that the groups and sessions its members led are no longer watched.
#[derive(Debug)]
pub struct TreeWatch {
    lifeline: Rc<Lifeline>,
    led: RefCell<Vec<i32>>,
}

impl TreeWatch {
    #[must_use]
    pub fn new(lifeline: Rc<Lifeline>) -> Self {
        Self {
            lifeline,
            led: RefCell::new(Vec::new()),
        }
    }

    /// A member joined the tree.
    pub fn join(&self, m: &Joined) {
        self.lifeline.watch_process(m.pid, m.starttime);
        let mut led = self.led.borrow_mut();
        if !led.contains(&m.pid) && self.lifeline.watch_leader(m) {
            led.push(m.pid);
        }
    }
}

/// A tree rooted at `root` (just spawned, leading its own process group) whose members the
/// lifeline, if there is one, is told of as they join; once the tree is dropped, the groups and
/// sessions they led are no longer watched for it. A worker's tree, or an exec check's.
#[must_use]
pub fn watched_tree(root: i32, lifeline: Option<Rc<Lifeline>>) -> crate::probe::tree::Tree {
    let mut tree = crate::probe::tree::Tree::new(root);
    if let Some(lifeline) = lifeline {
        let watch = TreeWatch::new(lifeline);
        tree.on_join(move |m| watch.join(m));
    }
    tree
}

impl Drop for TreeWatch {
    fn drop(&mut self) {
        for &id in self.led.borrow().iter() {
            self.lifeline.forget(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for m in [
            Msg::Process { pid: 42, start: 99 },
            Msg::Leader {
                id: 7,
                start: u64::MAX,
                group: true,
                session: false,
            },
            Msg::Leader {
                id: 1,
                start: 0,
                group: false,
                session: true,
            },
            Msg::Leader {
                id: 9,
                start: 3,
                group: true,
                session: true,
            },
            Msg::Forget { id: i32::MAX },
        ] {
            let line = m.line();
            assert!(line.ends_with('\n'));
            assert_eq!(Msg::parse(line.trim_end().as_bytes()), Some(m), "{line}");
        }
    }

    #[test]
    fn odd_lines_are_refused() {
        for line in [
            &b""[..],
            b"p",
            b"p 42",
            b"p 42 x",
            b"p -42 1",
            b"p 0 1",
            b"g 42 1 extra",
            b"f",
            b"f 42 1",
            b"x 42 1",
            b"sg 42 1",
            b"gg 42 1",
            b"p  42 1",
            b"p 42 1 ",
            b"p 99999999999 1",
            b"s 42 18446744073709551616",
            b"\xff 42 1",
        ] {
            assert_eq!(
                Msg::parse(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
