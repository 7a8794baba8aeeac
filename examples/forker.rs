//! `forker`: a test worker that leaves an orphaned, memory-holding grandchild behind, by the
//! classic double fork.
//!
//! The worker process forks a child; the child forks a grandchild and exits at once, so the
//! grandchild is orphaned and reparented (to init or the nearest subreaper). With `--setsid`
//! the grandchild first calls setsid(), leaving the worker's process group and session. The
//! grandchild then allocates `--hold` MiB, writing one byte in every 4096 so it is resident,
//! prints `forker grandchild pid=<pid> held_mib=<n>`, sends its pid to the worker through a
//! pipe and sleeps forever. The worker reaps its child (waitpid), reads the grandchild's pid
//! from the pipe, prints `forker worker pid=<pid> grandchild=<gpid>` and sleeps forever.
//!
//! So the grandchild's line always comes first, and once the worker's line is out the
//! grandchild exists and holds its memory.
//!
//! Flags:
//! - `--setsid`: the grandchild calls setsid() to escape the process group (and session).
//! - `--hold MIB`: MiB the grandchild allocates and touches (whole MiB; default 64).
//! - `--grandchild-ignores-term`: the grandchild sets SIGTERM to SIG_IGN before it reports its
//!   pid, so once the worker's line is out, only SIGKILL (or another signal) ends it.
//! - `--exit-after MS`: instead of sleeping forever, the worker exits MS milliseconds after its
//!   line, with `--exit-code` (default 3), leaving the grandchild behind.
//! - `--fork-after MS`: the grandchild is forked MS milliseconds after the worker starts rather
//!   than at once (the process that forks it waits first): a descendant that appears between
//!   two samples of the tree, after the first one.
//! - `--relay`: the child forks a relay process and exits at once; the relay, an orphan by then
//!   (reparented to the nearest subreaper, a supervisor), forks the grandchild (after
//!   `--fork-after`) and exits: so the grandchild's parent is a process the subreaper reaps
//!   without ever having spawned it.
//! - `--grandchild-forks`: the grandchild (after `--setsid`, before it holds memory) forks a
//!   child of its own, which stays in its group and session, prints `forker great-grandchild
//!   pid=<pid>` (before or after the grandchild's line) and sleeps forever. It exists once the
//!   worker's line is out.
//!
//! Output goes to stdout (inherited by all three processes), flushed line by line. If the
//! worker cannot write it, it exits quietly (code 0) for a pipe whose reader has gone and with
//! code 1 otherwise. The grandchild ignores write errors (to stdout and to the pipe) and
//! lingers regardless. Any failure to set the processes up is reported on stderr and the
//! worker exits with code 1.

use std::fs::File;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process;
use std::thread;
use std::time::Duration;

use clap::Parser;

const MIB: u64 = 1024 * 1024;
/// One byte in every this many is written, so every page of the block is resident.
const PAGE: usize = 4096;
/// Largest MiB count `--hold` accepts (1 PiB), so that MiB * 2^20 cannot overflow.
const MAX_MIB: u64 = 1 << 30;

/// Double-forks an orphaned grandchild that holds memory, then sleeps.
#[derive(Parser, Debug)]
#[command(name = "forker", version)]
struct Args {
    /// The grandchild calls setsid() first, leaving the process group.
    #[arg(long)]
    setsid: bool,

    /// MiB the grandchild allocates and touches.
    #[arg(long, value_name = "MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(0..=MAX_MIB))]
    hold: u64,

    /// The grandchild ignores SIGTERM.
    #[arg(long)]
    grandchild_ignores_term: bool,

    /// The worker exits this many milliseconds after its line instead of sleeping forever.
    #[arg(long, value_name = "MS")]
    exit_after: Option<u64>,

    /// Exit code of the worker with `--exit-after`.
    #[arg(long, value_name = "N", default_value_t = 3)]
    exit_code: u8,

    /// Fork the grandchild this many milliseconds after the start rather than at once.
    #[arg(long, value_name = "MS")]
    fork_after: Option<u64>,

    /// The child forks a relay and exits; the relay, orphaned, forks the grandchild and exits.
    #[arg(long)]
    relay: bool,

    /// The grandchild forks a child of its own, which sleeps forever.
    #[arg(long)]
    grandchild_forks: bool,
}

/// Reports a failed setup step on stderr and exits with code 1.
fn fail(what: &str, err: io::Error) -> ! {
    let _ = writeln!(io::stderr(), "forker: {what}: {err}");
    process::exit(1);
}

/// Writes one line to stdout and flushes it.
fn say(line: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// A pipe as (read end, write end), both close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two c_ints, which is what pipe2 fills in.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn main() {
    let args = Args::parse();
    let hold_bytes = args.hold * MIB;

    let (read_end, write_end) = pipe().unwrap_or_else(|err| fail("pipe", err));
    // Nothing may sit in stdout's buffer at fork time, or it would be written twice. (Every
    // line is flushed when written, so this is only a precaution.)
    let _ = io::stdout().flush();

    // SAFETY: fork has no memory-safety preconditions of its own. What makes running Rust code
    // in the child sound is that this process is single-threaded here (no thread was ever
    // spawned, and clap spawns none): no other thread can hold a lock (the allocator's, stdout's)
    // that would stay locked forever in the child, so the child may use ordinary Rust rather
    // than only async-signal-safe calls.
    match unsafe { libc::fork() } {
        -1 => fail("fork", io::Error::last_os_error()),
        0 => child(read_end, write_end, &args, hold_bytes),
        child_pid => {
            // Only the child and the grandchild keep the write end, so a grandchild that dies
            // before sending its pid shows up here as end of file rather than a hang.
            drop(write_end);
            worker(child_pid, read_end, &args)
        }
    }
}

/// The original process: reaps the child, learns the grandchild's pid, reports it, sleeps (or
/// exits, with `--exit-after`).
fn worker(child_pid: libc::pid_t, read_end: OwnedFd, args: &Args) -> ! {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid c_int for waitpid to write; `child_pid` is our own child.
        if unsafe { libc::waitpid(child_pid, &mut status, 0) } != -1 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            fail("waitpid", err);
        }
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let err = io::Error::other(format!("wait status {status:#x}"));
        fail("the child failed to fork the grandchild", err);
    }

    let mut pid_bytes = [0u8; 4];
    if let Err(err) = File::from(read_end).read_exact(&mut pid_bytes) {
        fail("reading the grandchild's pid", err);
    }
    let grandchild = libc::pid_t::from_ne_bytes(pid_bytes);

    let pid = process::id();
    if let Err(err) = say(format_args!(
        "forker worker pid={pid} grandchild={grandchild}"
    )) {
        if err.kind() == io::ErrorKind::BrokenPipe {
            process::exit(0);
        }
        fail("cannot write to stdout", err);
    }
    if let Some(ms) = args.exit_after {
        thread::sleep(Duration::from_millis(ms));
        process::exit(i32::from(args.exit_code));
    }
    sleep_forever()
}

/// The child: forks the grandchild (or, with `--relay`, a relay that forks it) and exits,
/// orphaning it.
fn child(read_end: OwnedFd, write_end: OwnedFd, args: &Args, hold_bytes: u64) -> ! {
    drop(read_end);
    if !args.relay {
        fork_grandchild(write_end, args, hold_bytes);
    }
    // SAFETY: as for the first fork: this process is a copy of a single-threaded one, so it has
    // exactly one thread too.
    match unsafe { libc::fork() } {
        -1 => {
            let err = io::Error::last_os_error();
            let _ = writeln!(io::stderr(), "forker: fork (relay): {err}");
            // SAFETY: _exit ends this process at once, skipping exit handlers and stdio
            // flushing, which belong to the worker process this one was copied from.
            unsafe { libc::_exit(1) }
        }
        0 => fork_grandchild(write_end, args, hold_bytes),
        // SAFETY: as above.
        _ => unsafe { libc::_exit(0) },
    }
}

/// Waits `--fork-after`, forks the grandchild and exits at once, orphaning it.
fn fork_grandchild(write_end: OwnedFd, args: &Args, hold_bytes: u64) -> ! {
    if let Some(ms) = args.fork_after {
        thread::sleep(Duration::from_millis(ms));
    }
    // SAFETY: as for the first fork: this process is a copy of a single-threaded one, so it has
    // exactly one thread too.
    match unsafe { libc::fork() } {
        -1 => {
            let err = io::Error::last_os_error();
            let _ = writeln!(io::stderr(), "forker: fork (grandchild): {err}");
            // SAFETY: _exit ends this process at once, skipping exit handlers and stdio
            // flushing, which belong to the worker process this one was copied from.
            unsafe { libc::_exit(1) }
        }
        0 => grandchild(write_end, args, hold_bytes),
        // SAFETY: as above.
        _ => unsafe { libc::_exit(0) },
    }
}

/// The grandchild: optionally a new session and TERM ignored, then holds memory, reports and
/// sleeps forever.
fn grandchild(write_end: OwnedFd, args: &Args, hold_bytes: u64) -> ! {
    // SAFETY: setsid has no memory-safety preconditions. It cannot fail here (EPERM is for
    // process group leaders, and this fresh process is not one), but is checked anyway.
    if args.setsid && unsafe { libc::setsid() } == -1 {
        fail("setsid", io::Error::last_os_error());
    }
    // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
    if args.grandchild_ignores_term
        && unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) } == libc::SIG_ERR
    {
        fail("ignoring SIGTERM", io::Error::last_os_error());
    }

    if args.grandchild_forks {
        // SAFETY: as for the first fork: this process is a copy of a single-threaded one.
        match unsafe { libc::fork() } {
            -1 => fail("fork (great-grandchild)", io::Error::last_os_error()),
            0 => {
                drop(write_end);
                let _ = say(format_args!(
                    "forker great-grandchild pid={}",
                    process::id()
                ));
                sleep_forever()
            }
            _ => {}
        }
    }

    let bytes = usize::try_from(hold_bytes).unwrap_or(usize::MAX);
    let mut held = vec![0u8; bytes];
    held.iter_mut().step_by(PAGE).for_each(|byte| *byte = 1);
    if let Some(last) = held.last_mut() {
        *last = 1;
    }
    // Opaque to the optimiser, so neither the block nor the writes can be elided.
    let held = black_box(held);

    let pid = process::id();
    // Write errors are ignored: this process is meant to linger whatever happens to stdout.
    let _ = say(format_args!(
        "forker grandchild pid={pid} held_mib={}",
        held.len() as u64 / MIB
    ));

    // An error here means the worker is gone already; the grandchild lingers all the same.
    let _ = File::from(write_end).write_all(&(pid as libc::pid_t).to_ne_bytes());
    sleep_forever()
}
