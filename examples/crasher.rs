//! `crasher`: a test worker that prints a little, then exits with a chosen code or dies by a
//! chosen signal.
//!
//! It prints `crasher pid=<pid> starting`, then `--lines` numbered lines `line 1` .. `line <N>`
//! as fast as it can (buffered, flushed once after the last), then sleeps `--after`
//! milliseconds. Then it either prints `crasher exiting code=<code>` and exits with `--code`,
//! or, with `--signal`, prints `crasher raising signal=<sig>`, resets that signal's disposition
//! to the default, unblocks it and raises it on itself, so that it dies by that signal.
//!
//! Flags:
//! - `--lines N`: numbered lines to print after the first line (default 0).
//! - `--after MS`: milliseconds to sleep before exiting (default 100).
//! - `--code N`: exit code, 0..=255 (default 1).
//! - `--healed FILE`: if FILE exists when it starts, it prints `crasher healed` after the lines
//!   and sleeps until it is stopped instead of exiting (a program that was fixed meanwhile).
//! - `--signal N`: die by signal N instead (1..=31 or SIGRTMIN..=SIGRTMAX); before raising it,
//!   RLIMIT_CORE is set to 0 so SEGV, ABRT and the like leave no core file behind and the wait
//!   status deterministically carries no core-dump flag. A signal whose default action does not
//!   end the process (CHLD, CONT, URG, WINCH) is noted on stderr and then `--code` is used; a
//!   stop signal (STOP, TSTP, TTIN, TTOU) stops it until it is continued, and then the same.
//!
//! Output goes to stdout, flushed line by line. Write errors (a closed pipe, say) are ignored,
//! and nothing more is written after one, so the exit status is always the one asked for.

use std::io::{self, BufWriter, Write};
use std::process;
use std::ptr;
use std::thread;
use std::time::Duration;

use clap::Parser;

/// Prints a little, then exits with a chosen code or dies by a chosen signal.
#[derive(Parser, Debug)]
#[command(name = "crasher", version)]
struct Args {
    /// Numbered lines (`line <i>`) to print as fast as possible after the first line.
    #[arg(long, value_name = "N", default_value_t = 0)]
    lines: u64,

    /// Milliseconds to sleep after the lines, before exiting.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    after: u64,

    /// Exit code.
    #[arg(long, value_name = "N", default_value_t = 1)]
    code: u8,

    /// Die by this signal (raised on itself) instead of exiting with --code.
    #[arg(long, value_name = "N", value_parser = parse_signal)]
    signal: Option<i32>,

    /// If this file exists at start, never exit: sleep until stopped.
    #[arg(long, value_name = "FILE")]
    healed: Option<std::path::PathBuf>,
}

fn parse_signal(text: &str) -> Result<i32, String> {
    let signal: i32 = text.parse().map_err(|err| format!("{err}"))?;
    // 32 and 33 lie between the classic and the real-time signals; glibc keeps them for itself.
    if (1..=31).contains(&signal) || (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal) {
        Ok(signal)
    } else {
        Err(format!(
            "not a signal that can be raised: use 1..=31 or {}..={}",
            libc::SIGRTMIN(),
            libc::SIGRTMAX()
        ))
    }
}

/// stdout, written until the first error and ignored after it.
struct Out {
    ok: bool,
}

impl Out {
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        if self.ok {
            let mut out = io::stdout().lock();
            self.ok = writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
        }
    }

    /// `line 1` .. `line <count>`, through one buffer that is flushed once at the end.
    fn numbered_lines(&mut self, count: u64) {
        if self.ok && count > 0 {
            let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
            self.ok = (1..=count)
                .try_for_each(|i| writeln!(out, "line {i}"))
                .and_then(|()| out.flush())
                .is_ok();
        }
    }
}

/// Resets `signal` to its default action, unblocks it and raises it. Returns only if that did
/// not end the process.
fn raise_with_default_action(signal: i32) {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `no_core` is a valid rlimit that setrlimit only reads. Lowering a limit never
    // needs privileges; should it fail anyway, the only effect is a possible core file.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // SAFETY: SIG_DFL installs no handler code. It fails (EINVAL) only for KILL and STOP, whose
    // action is always the default anyway, so the result needs no check.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
    // SAFETY: `set` is a local sigset_t, zeroed and then initialised by sigemptyset before use;
    // sigprocmask only reads it and accepts a null old-set pointer. The process has a single
    // thread, so the process mask is that thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
    }
    // SAFETY: raise has no memory-safety preconditions; with the default action unblocked, a
    // terminating signal is delivered before raise returns.
    unsafe { libc::raise(signal) };
}

fn main() {
    let args = Args::parse();
    let mut out = Out { ok: true };

    out.line(format_args!("crasher pid={} starting", process::id()));
    out.numbered_lines(args.lines);
    if args.healed.as_deref().is_some_and(std::path::Path::exists) {
        out.line(format_args!("crasher healed"));
        loop {
            thread::park();
        }
    }
    thread::sleep(Duration::from_millis(args.after));

    if let Some(signal) = args.signal {
        out.line(format_args!("crasher raising signal={signal}"));
        raise_with_default_action(signal);
        let _ = writeln!(
            io::stderr(),
            "crasher: still alive after signal {signal}; exiting with code {}",
            args.code
        );
    } else {
        out.line(format_args!("crasher exiting code={}", args.code));
    }
    process::exit(i32::from(args.code));
}
