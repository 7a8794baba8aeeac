//! `flood`: a test worker that writes lines as fast as it can, forever, optionally while its
//! memory grows.
//!
//! Each line is `flood <counter> ` followed by `--width` filler characters (`x`), the counter
//! starting at 1. Lines go through a 64 KiB buffer and are handed to it whole, so the buffer
//! only ever holds whole lines. With `--stderr`, lines alternate between stdout (odd counters)
//! and stderr (even counters), each stream buffered separately; as the process has a single
//! thread, lines stay whole even when both streams share one pipe.
//!
//! With `--leak-rate`, it also grows its memory like `leaky`: between writes (every 16 lines)
//! it checks the time elapsed since start, and once at least 50 ms have passed since its last
//! allocation it allocates enough to hold `rate * elapsed` MiB, writing one byte in every 4096
//! so the memory is resident, and keeps it all. That needs the writes to go on: while the
//! reader of a full pipe reads nothing, the process is blocked in write and cannot grow
//! (it catches up at once when unblocked).
//!
//! Flags:
//! - `--width N`: filler characters after `flood <counter> ` on each line (default 100).
//! - `--stderr`: alternate lines between stdout and stderr.
//! - `--leak-rate MIB`: also grow memory by this many MiB per second (decimal, >= 0;
//!   default 0, no growth).
//!
//! If a write fails because the reader of a pipe has gone (EPIPE), it exits quietly with code
//! 0; any other write error is reported on stderr and it exits with code 1.

use std::hint::black_box;
use std::io::{self, BufWriter, Write};
use std::process;
use std::time::{Duration, Instant};

use clap::Parser;

const MIB: u64 = 1024 * 1024;
/// One byte in every this many is written, so every page of a block is resident.
const PAGE: usize = 4096;
/// Largest rate `--leak-rate` accepts, in MiB per second.
const MAX_RATE: f64 = (1u64 << 30) as f64;
const BUFFER: usize = 64 * 1024;
/// The clock is read once per this many lines.
const CHECK_EVERY: u64 = 16;
/// Least time between two allocations.
const LEAK_STEP: Duration = Duration::from_millis(50);

/// Writes lines as fast as it can, forever.
#[derive(Parser, Debug)]
#[command(name = "flood", version)]
struct Args {
    /// Filler characters after `flood <counter> ` on each line.
    #[arg(long, value_name = "N", default_value_t = 100)]
    width: usize,

    /// Alternate lines between stdout and stderr.
    #[arg(long)]
    stderr: bool,

    /// Also grow memory by this many MiB per second.
    #[arg(long, value_name = "MIB", default_value_t = 0.0, value_parser = parse_rate)]
    leak_rate: f64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|err| format!("{err}"))?;
    if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be a number from 0 to {MAX_RATE}"))
    }
}

/// Exits quietly (code 0) if the reader of a pipe has gone, and with code 1 on any other error.
fn write_failed(err: io::Error) -> ! {
    if err.kind() == io::ErrorKind::BrokenPipe {
        process::exit(0);
    }
    let _ = writeln!(io::stderr(), "flood: write failed: {err}");
    process::exit(1);
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

/// Memory growing at a fixed rate since `t0`, kept alive until the process dies.
struct Leak {
    t0: Instant,
    bytes_per_sec: f64,
    blocks: Vec<Vec<u8>>,
    held: u64,
    next: Instant,
}

impl Leak {
    fn new(mib_per_sec: f64) -> Leak {
        let t0 = Instant::now();
        Leak {
            t0,
            bytes_per_sec: mib_per_sec * MIB as f64,
            blocks: Vec::new(),
            held: 0,
            next: t0 + LEAK_STEP,
        }
    }

    /// Allocates what the elapsed time calls for, if a step's time has passed.
    fn catch_up(&mut self) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        let target = (self.bytes_per_sec * now.duration_since(self.t0).as_secs_f64()) as u64;
        if target > self.held {
            let more = usize::try_from(target - self.held).unwrap_or(usize::MAX);
            self.blocks.push(touched_block(more));
            self.held = target;
        }
        self.next = now + LEAK_STEP;
    }
}

fn main() {
    let args = Args::parse();
    let filler = "x".repeat(args.width);
    let mut leak = (args.leak_rate > 0.0).then(|| Leak::new(args.leak_rate));
    let mut out = BufWriter::with_capacity(BUFFER, io::stdout().lock());
    let mut err = args
        .stderr
        .then(|| BufWriter::with_capacity(BUFFER, io::stderr().lock()));

    let mut line = Vec::with_capacity(args.width + 32);
    let mut counter: u64 = 0;
    loop {
        counter += 1;
        line.clear();
        // Writing into a Vec cannot fail.
        let _ = writeln!(line, "flood {counter} {filler}");
        let sink: &mut dyn Write = match err.as_mut() {
            Some(err) if counter.is_multiple_of(2) => err,
            _ => &mut out,
        };
        if let Err(err) = sink.write_all(&line) {
            write_failed(err);
        }
        if counter.is_multiple_of(CHECK_EVERY) {
            if let Some(leak) = leak.as_mut() {
                leak.catch_up();
            }
        }
    }
}
