//! The subcommands that talk to a running supervisor (and `report`, `completions`, `man`).

use std::path::PathBuf;
use std::time::Duration;

use crate::signals::Sig;

use crate::plan::{parse_duration, parse_signal};

/// Lines `logs` shows when not told how many (the control socket's default too).
pub const DEFAULT_LINES: u32 = 50;

/// The subcommands: all but `report` talk to a running supervisor over its control socket.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Control {
    /// Show every worker: state, uptime, restarts, memory against its limit, CPU, findings,
    /// what it said (STATUS=), and more as the terminal's width allows.
    Status {
        /// One JSON object per worker instead of a table.
        #[arg(long)]
        json: bool,
        /// Every column, however wide the terminal (the default when the output is not a
        /// terminal).
        #[arg(long, conflicts_with = "json")]
        wide: bool,
    },
    /// Restart a program's instances (all, or NAME/INSTANCE for one), gracefully.
    Restart {
        #[arg(value_name = "NAME[/INSTANCE]")]
        target: String,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Send a signal to a program's instances (all, or NAME/INSTANCE for one): to each one's
    /// main process, as `kill -SIG $MAINPID` does, or with `--group` to its whole process group.
    Signal {
        #[arg(value_name = "NAME[/INSTANCE]")]
        target: String,
        /// Any signal: USR1, HUP, WINCH, RTMIN+3, 10, ...
        #[arg(value_name = "SIG", value_parser = parse_signal)]
        signal: Sig,
        /// To every process of each instance's process group, not only its main process.
        #[arg(long)]
        group: bool,
    },
    /// Reload a running program without restarting it: its reload action (`reload.signal`, HUP
    /// unless set, or `reload.exec`) to each instance (all, or NAME/INSTANCE for one) in turn,
    /// the next once the one before is ready again. Not `reload`, which re-reads the config.
    ReloadProgram {
        #[arg(value_name = "NAME[/INSTANCE]")]
        target: String,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Stop a program and keep it stopped until `start`.
    Stop {
        #[arg(value_name = "NAME")]
        program: String,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Start a program stopped with `stop`.
    Start {
        #[arg(value_name = "NAME")]
        program: String,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Show the last lines a program's instances (all, or NAME/INSTANCE for one) wrote on stdout
    /// and stderr, in the order they were read, from the supervisor's buffer (--log-buffer).
    Logs {
        #[arg(value_name = "NAME[/INSTANCE]")]
        target: String,
        /// How many lines, all instances together.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = DEFAULT_LINES)]
        lines: u32,
        /// Then show each new line as it is read, until interrupted (Ctrl-C) or supervise exits.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Re-read the config file (as SIGHUP does): changed keys that need a new process replace
    /// the replicas one at a time, the others apply to the running instances.
    Reload {
        /// Say what a reload would change, per program (key: old → new), and what it would
        /// restart (rolling, live, added, removed); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// A live view of every worker, refreshed every second (q quits).
    Top,
    /// Print a shell completion script (e.g. `supervise completions bash >
    /// /etc/bash_completion.d/supervise`). Needs no running supervisor.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `supervise man | man -l -`). Needs no running supervisor.
    Man,
    /// Draw a history file (--history) as an SVG: memory and CPU over time, restarts marked.
    /// Needs no running supervisor.
    Report {
        /// The history file (its rotated FILE.1 is read first when present).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where to write the SVG (`-` for stdout).
        #[arg(short = 'o', long = "output", value_name = "OUT.svg")]
        output: PathBuf,
        /// Draw only this program.
        #[arg(long, value_name = "NAME")]
        program: Option<String>,
    },
}

/// `--wait` and `--timeout` of `start`, `stop` and `restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct WaitFlags {
    /// Return once the action has completed: `start`, every instance up (ready, where it has a
    /// readiness rule or speaks the protocol); `stop`, no process left; `restart`, every
    /// replacement up. Exit 1 if it has not within --timeout (the action goes on).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "wait")]
    pub timeout: Duration,
}

impl WaitFlags {
    /// What the request carries: the wait in milliseconds, if asked for.
    #[must_use]
    pub fn wait_ms(&self) -> Option<u64> {
        self.wait
            .then(|| u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
    }
}
