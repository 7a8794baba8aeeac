//! `leaky`: a test worker whose resident memory grows at a steady rate and is never freed.
//!
//! Every `--step-ms` milliseconds it allocates `rate * step / 1000` MiB, writes one byte in
//! every 4096 of the new block so the kernel really backs it with RAM (it shows up in RSS),
//! and keeps every block alive. Steps are paced against a monotonic start instant, not by
//! summing sleeps, so after `t` seconds it holds `start + rate * t` MiB (counted to the last
//! whole step) however late single wake-ups were; a late wake-up catches up in one block.
//!
//! Flags:
//! - `--rate MIB`: MiB to allocate per second (decimal, >= 0; default 10).
//! - `--step-ms MS`: milliseconds between allocation steps (integer >= 1; default 50).
//! - `--max MIB`: stop growing once this many MiB are held and keep sleeping at that plateau
//!   (whole MiB; default: no limit).
//! - `--start MIB`: allocate this many MiB at once at start (whole MiB, at most `--max`;
//!   default 0).
//! - `--free-every SECS`: free everything every SECS seconds and grow again from `--start` (a
//!   sawtooth: allocate/free cycles, not a leak).
//! - `--ignore-term`: set SIGTERM to SIG_IGN at start, so that a stop by TERM must end in SIGKILL.
//! - `--say TEXT`: print TEXT as a line of its own once at start, before anything else.
//!
//! Output, on stdout, flushed line by line: `leaky pid=<pid> held_mib=<n>` once right after the
//! `--start` allocation and then once a second, where `<n>` is the memory it holds in whole MiB
//! (rounded down; the process's RSS is that plus a few MiB of runtime).
//!
//! Without `--ignore-term` it leaves its signal dispositions alone, so SIGTERM kills it unless its
//! parent started it with TERM ignored or blocked. If stdout is a pipe whose reader has gone, it
//! exits quietly with code 0; if memory cannot be had, Rust's allocator aborts it (SIGABRT) with a
//! message on stderr.

use std::hint::black_box;
use std::io::{self, Write};
use std::process;
use std::thread;
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

const MIB: u64 = 1024 * 1024;
/// One byte in every this many is written, so every page of a block is resident.
const PAGE: usize = 4096;
/// Largest MiB count the flags accept (1 PiB), so that MiB * 2^20 cannot overflow.
const MAX_MIB: u64 = 1 << 30;
const SECOND: Duration = Duration::from_secs(1);

/// Grows its resident memory steadily, for testing a supervisor's memory limits.
#[derive(Parser, Debug)]
#[command(name = "leaky", version)]
struct Args {
    /// MiB to allocate per second.
    #[arg(long, value_name = "MIB", default_value_t = 10.0, value_parser = parse_rate)]
    rate: f64,

    /// Milliseconds between allocation steps; each step allocates rate*step/1000 MiB.
    #[arg(long, value_name = "MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..))]
    step_ms: u64,

    /// Stop growing once this many MiB are held, then keep sleeping.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(0..=MAX_MIB))]
    max: Option<u64>,

    /// MiB to allocate at once at start.
    #[arg(long, value_name = "MIB", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_MIB))]
    start: u64,

    /// Free everything every this many seconds and grow again from `--start`: a sawtooth, the
    /// shape of a program that allocates and frees in cycles (not a leak).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    free_every: Option<u64>,

    /// Ignore SIGTERM, so that only another signal (or SIGKILL) ends it.
    #[arg(long)]
    ignore_term: bool,

    /// Print this line once at start, before anything else (whatever it holds: markup, say).
    #[arg(long, value_name = "TEXT")]
    say: Option<String>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|err| format!("{err}"))?;
    if rate.is_finite() && (0.0..=MAX_MIB as f64).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be a number from 0 to {MAX_MIB}"))
    }
}

/// Writes one line to stdout and flushes it. Exits quietly (code 0) if the reader of a stdout
/// pipe has gone, and with code 1 on any other write error.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if err.kind() == io::ErrorKind::BrokenPipe {
            process::exit(0);
        }
        let _ = writeln!(io::stderr(), "leaky: cannot write to stdout: {err}");
        process::exit(1);
    }
}

/// Allocates `bytes` bytes and writes one byte per 4096 (and the last one), so that every page
/// of the block is backed by RAM rather than by the kernel's shared zero page.
fn touched_block(bytes: usize) -> Vec<u8> {
    let mut block = vec![0u8; bytes];
    block.iter_mut().step_by(PAGE).for_each(|byte| *byte = 1);
    if let Some(last) = block.last_mut() {
        *last = 1;
    }
    // Opaque to the optimiser, so neither the block nor the writes can be elided.
    black_box(block)
}

/// Every block allocated so far, kept alive until the process dies.
#[derive(Default)]
struct Held {
    blocks: Vec<Vec<u8>>,
    bytes: u64,
}

impl Held {
    /// Allocates one more touched block so that `target` bytes are held in all.
    fn grow_to(&mut self, target: u64) {
        if target > self.bytes {
            let more = usize::try_from(target - self.bytes).unwrap_or(usize::MAX);
            self.blocks.push(touched_block(more));
            self.bytes = target;
        }
    }
}

/// The one line leaky prints, at start and then every second.
fn report(pid: u32, held: &Held) {
    say(format_args!(
        "leaky pid={pid} held_mib={}",
        held.bytes / MIB
    ));
}

fn main() {
    let args = Args::parse();
    if args.max.is_some_and(|max| args.start > max) {
        Args::command()
            .error(ErrorKind::ArgumentConflict, "--start must not exceed --max")
            .exit();
    }

    // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
    if args.ignore_term && unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) } == libc::SIG_ERR {
        let err = io::Error::last_os_error();
        let _ = writeln!(io::stderr(), "leaky: cannot ignore SIGTERM: {err}");
        process::exit(1);
    }

    if let Some(text) = &args.say {
        say(format_args!("{text}"));
    }
    let pid = process::id();
    let step = args.step_ms;
    let start_bytes = args.start * MIB;
    let max_bytes = args.max.map_or(u64::MAX, |max| max * MIB);
    let bytes_per_ms = args.rate * MIB as f64 / 1000.0;

    let mut t0 = Instant::now();
    let mut held = Held::default();
    held.grow_to(start_bytes);
    report(pid, &held);
    let mut next_report = t0 + SECOND;

    loop {
        let now = Instant::now();
        if args
            .free_every
            .is_some_and(|secs| now.duration_since(t0) >= Duration::from_secs(secs))
        {
            // Blocks of this size are mmap'd by the allocator: freeing them returns them to
            // the kernel, so RSS really drops.
            held = Held::default();
            t0 = now;
            held.grow_to(start_bytes);
        }
        let mut next_step = None;
        if args.rate > 0.0 && held.bytes < max_bytes {
            // Steps completed since t0; the amount held is a function of this alone.
            let steps = now.duration_since(t0).as_millis() / u128::from(step);
            let steps = u64::try_from(steps).unwrap_or(u64::MAX);
            let grown = (bytes_per_ms * steps.saturating_mul(step) as f64) as u64;
            held.grow_to(start_bytes.saturating_add(grown).min(max_bytes));
            if held.bytes < max_bytes {
                let due_ms = steps.saturating_add(1).saturating_mul(step);
                next_step = Some(t0 + Duration::from_millis(due_ms));
            }
        }
        if now >= next_report {
            report(pid, &held);
            // Reports missed while busy are skipped, not sent in a burst.
            while next_report <= now {
                next_report += SECOND;
            }
        }
        let wake = next_step.map_or(next_report, |due| due.min(next_report));
        let now = Instant::now();
        if wake > now {
            thread::sleep(wake - now);
        }
    }
}
