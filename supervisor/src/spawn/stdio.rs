//! Where a worker's fds 0, 1 and 2 go: decided once at start from the mode and from what
//! supervise's own fds are (see "A transparent entrypoint" in docs/lifecycle.md).
//!
//! In single-command mode with one instance supervise stands in for the program, as tini and
//! dumb-init do: the program gets supervise's stdin, and its output unprefixed; a stdout or
//! stderr that is a terminal is handed over as it is (the program sees `isatty` true), unless
//! supervise needs the lines itself (`--prefix`, `--timestamps`, `--log-dir`, `--log-format
//! json`). A worker that holds a terminal starts in a session of its own, so that it is no
//! background job of supervise's session (which would stop it with SIGTTIN or SIGTTOU when it
//! reads the terminal or sets its modes); the terminal's keys reach supervise, the foreground
//! job, which passes them on.
//!
//! Everywhere else (a config, replicas) stdin is /dev/null and output goes through supervise's
//! pipes, prefixed `name[instance] `.

/// One of the worker's output fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// A pipe to supervise, which forwards, keeps and logs the lines.
    Pipe,
    /// Supervise's own fd, a terminal, handed over: supervise never sees the lines.
    Terminal,
}

/// Where the worker's fds 0, 1 and 2 go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stdio {
    /// Supervise's stdin (else /dev/null).
    pub stdin: bool,
    pub stdout: Out,
    pub stderr: Out,
    /// Forwarded lines start with `name[instance] `.
    pub prefix: bool,
    /// The worker starts in a session of its own (it holds a terminal).
    pub own_session: bool,
}

impl Stdio {
    /// A supervisor's: stdin /dev/null, both streams piped and prefixed.
    pub const SUPERVISED: Stdio = Stdio {
        stdin: false,
        stdout: Out::Pipe,
        stderr: Out::Pipe,
        prefix: true,
        own_session: false,
    };

    /// What `supervise logs` and `top` are told about lines supervise never sees, if any.
    #[must_use]
    pub fn unseen(&self) -> Option<&'static str> {
        match (self.stdout, self.stderr) {
            (Out::Pipe, Out::Pipe) => None,
            (Out::Terminal, Out::Terminal) => Some(
                "its stdout and stderr are supervise's terminal, handed over: supervise keeps no lines of it",
            ),
            (Out::Terminal, Out::Pipe) => Some(
                "its stdout is supervise's terminal, handed over: only its stderr lines are kept",
            ),
            (Out::Pipe, Out::Terminal) => Some(
                "its stderr is supervise's terminal, handed over: only its stdout lines are kept",
            ),
        }
    }
}

/// What the choice depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Given {
    /// Single-command mode with one instance.
    pub entrypoint: bool,
    /// `--prefix`: `name[0] ` before each line, and the lines through supervise.
    pub prefix: bool,
    /// Supervise needs every line itself: `--timestamps`, `--log-dir`, `--log-format json`.
    pub lines_needed: bool,
    /// Whether supervise's stdin, stdout and stderr are terminals.
    pub stdin_tty: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
}

/// Where the worker's stdio goes.
#[must_use]
pub fn decide(g: Given) -> Stdio {
    if !g.entrypoint {
        return Stdio::SUPERVISED;
    }
    let hand_over = !g.prefix && !g.lines_needed;
    let out = |tty: bool| {
        if tty && hand_over {
            Out::Terminal
        } else {
            Out::Pipe
        }
    };
    let (stdout, stderr) = (out(g.stdout_tty), out(g.stderr_tty));
    Stdio {
        stdin: true,
        stdout,
        stderr,
        prefix: g.prefix,
        // A terminal on stdin is handed over whatever becomes of the output.
        own_session: g.stdin_tty || stdout == Out::Terminal || stderr == Out::Terminal,
    }
}

/// Where the stdio of `spec`'s instances goes under `plan`, by what supervise's fds are now.
#[must_use]
pub fn for_plan(plan: &crate::plan::Plan, spec: &crate::plan::ProgramSpec) -> Stdio {
    use std::io::IsTerminal as _;
    decide(Given {
        entrypoint: plan.single && spec.replicas == 1,
        prefix: plan.prefix,
        lines_needed: plan.timestamps
            || plan.log.is_some()
            || plan.log_format == crate::plan::LogFormat::Json,
        stdin_tty: std::io::stdin().is_terminal(),
        stdout_tty: std::io::stdout().is_terminal(),
        stderr_tty: std::io::stderr().is_terminal(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Out::{Pipe as P, Terminal as T};
        // (entrypoint, prefix, lines needed, stdin, stdout, stderr ttys)
        //   -> (stdin, stdout, stderr, prefix, own session)
        type Row = ((bool, bool, bool, [bool; 3]), (bool, Out, Out, bool, bool));
        let (none, all) = ([false; 3], [true; 3]);
        let rows: [Row; 15] = [
            // A config or replicas: as a supervisor, whatever the terminal.
            ((false, false, false, none), (false, P, P, true, false)),
            ((false, false, false, all), (false, P, P, true, false)),
            ((false, true, true, all), (false, P, P, true, false)),
            // One instance: stdin passed, output unprefixed, a terminal handed over.
            ((true, false, false, none), (true, P, P, false, false)),
            ((true, false, false, all), (true, T, T, false, true)),
            (
                (true, false, false, [false, true, false]),
                (true, T, P, false, true),
            ),
            (
                (true, false, false, [false, false, true]),
                (true, P, T, false, true),
            ),
            // `cmd < /dev/tty | less`, say: the terminal on stdin alone.
            (
                (true, false, false, [true, false, false]),
                (true, P, P, false, true),
            ),
            // The prefix asked for, or lines supervise needs: output through its pipes.
            ((true, true, false, all), (true, P, P, true, true)),
            ((true, true, false, none), (true, P, P, true, false)),
            ((true, false, true, all), (true, P, P, false, true)),
            (
                (true, false, true, [false, true, true]),
                (true, P, P, false, false),
            ),
            (
                (true, true, true, [false, true, false]),
                (true, P, P, true, false),
            ),
            ((true, false, true, none), (true, P, P, false, false)),
            (
                (true, true, false, [true, false, false]),
                (true, P, P, true, true),
            ),
        ];
        for ((entrypoint, prefix, lines_needed, [stdin_tty, stdout_tty, stderr_tty]), want) in rows
        {
            let got = decide(Given {
                entrypoint,
                prefix,
                lines_needed,
                stdin_tty,
                stdout_tty,
                stderr_tty,
            });
            assert_eq!(
                (
                    got.stdin,
                    got.stdout,
                    got.stderr,
                    got.prefix,
                    got.own_session
                ),
                want,
                "entrypoint {entrypoint}, prefix {prefix}, lines needed {lines_needed}, \
                 ttys {stdin_tty}/{stdout_tty}/{stderr_tty}"
            );
        }
    }

    #[test]
    fn unseen_lines_are_explained() {
        assert_eq!(Stdio::SUPERVISED.unseen(), None);
        let t = decide(Given {
            entrypoint: true,
            stdin_tty: true,
            stdout_tty: true,
            stderr_tty: true,
            ..Given::default()
        });
        assert!(t.unseen().is_some_and(|m| m.contains("no lines")));
    }
}
