//! `stubborn`: a test worker that ignores SIGTERM, SIGINT and SIGHUP, so that only SIGKILL (or
//! another signal) ends it.
//!
//! It sets TERM, INT and HUP to SIG_IGN first, then allocates `--hold` MiB writing one byte in
//! every 4096 so the memory is resident, prints `stubborn pid=<pid> ignoring TERM` (so once that
//! line is out, both are done), and then sleeps forever, printing `stubborn alive` every second
//! (paced against a monotonic start instant, so the lines do not drift).
//!
//! Flags:
//! - `--hold MIB`: MiB to allocate and touch before the first line (whole MiB; default 0).
//!
//! Output goes to stdout, flushed line by line. If stdout is a pipe whose reader has gone, it
//! exits quietly (code 0) at its next line, so it does not outlive a dead supervisor for long;
//! on any other write error it exits with code 1.

use std::hint::black_box;
use std::io::{self, Write};
use std::process;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

const MIB: u64 = 1024 * 1024;
/// One byte in every this many is written, so every page of the block is resident.
const PAGE: usize = 4096;
/// Largest MiB count `--hold` accepts (1 PiB), so that MiB * 2^20 cannot overflow.
const MAX_MIB: u64 = 1 << 30;

/// Ignores SIGTERM, SIGINT and SIGHUP and sleeps forever.
#[derive(Parser, Debug)]
#[command(name = "stubborn", version)]
struct Args {
    /// MiB to allocate and touch before the first line.
    #[arg(long, value_name = "MIB", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_MIB))]
    hold: u64,
}

/// Writes one line to stdout and flushes it. Exits quietly (code 0) if the reader of a stdout
/// pipe has gone, and with code 1 on any other write error.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if err.kind() == io::ErrorKind::BrokenPipe {
            process::exit(0);
        }
        let _ = writeln!(io::stderr(), "stubborn: cannot write to stdout: {err}");
        process::exit(1);
    }
}

fn main() {
    let args = Args::parse();

    for (signal, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
        if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
            let err = io::Error::last_os_error();
            let _ = writeln!(io::stderr(), "stubborn: cannot ignore {name}: {err}");
            process::exit(1);
        }
    }

    let bytes = usize::try_from(args.hold * MIB).unwrap_or(usize::MAX);
    let mut held = vec![0u8; bytes];
    held.iter_mut().step_by(PAGE).for_each(|byte| *byte = 1);
    if let Some(last) = held.last_mut() {
        *last = 1;
    }
    // Opaque to the optimiser, so neither the block nor the writes can be elided; it stays
    // alive because `main` never returns.
    let _held = black_box(held);

    say(format_args!("stubborn pid={} ignoring TERM", process::id()));
    let t0 = Instant::now();
    for second in 1u64.. {
        let due = t0 + Duration::from_secs(second);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        say(format_args!("stubborn alive"));
    }
}
