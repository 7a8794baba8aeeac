//! `holder`: a test worker that holds disk space no directory listing shows: it writes a file,
//! unlinks it, keeps it open and sleeps until killed.
//!
//! The data is real (a repeating non-zero pattern, written and fsynced, not a sparse hole), so
//! the file's blocks are allocated and `df` counts them while `du` finds nothing: the case the
//! supervisor's deleted-file scan is there to see.
//!
//! Flags:
//! - `--dir DIR`: where to create the file (default: the system's temp dir).
//! - `--size SIZE`: how much to write (`50MiB`, `1.5GiB`, `4096`; default 50MiB).
//! - `--grow SIZE`: then go on writing this much per second (in steps of 100 ms, each synced),
//!   as a worker writing a log that a rotation unlinked (default 0).
//!
//! Output, on stdout, once the file is unlinked: `holding <bytes> bytes`. Exits with code 1 and
//! a message on stderr if the file cannot be written.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process;
use std::time::{Duration, Instant};

use clap::Parser;

/// Bytes written per write(2).
const CHUNK: usize = 1 << 20;

/// Writes a file, unlinks it and keeps it open.
#[derive(Parser, Debug)]
#[command(name = "holder", version)]
struct Args {
    /// Directory to create the file in (default: the temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Bytes of data to write.
    #[arg(long, value_name = "SIZE", default_value = "50MiB", value_parser = parse_size)]
    size: u64,

    /// Bytes per second written after that.
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
    grow: u64,
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {text:?} ({e}); use e.g. 50MiB"))
}

fn fail(what: &str, err: &io::Error) -> ! {
    let _ = writeln!(io::stderr(), "holder: {what}: {err}");
    process::exit(1);
}

fn main() {
    let args = Args::parse();
    let dir = args.dir.unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("holder-{}.dat", process::id()));
    let mut file = File::create(&path).unwrap_or_else(|e| fail("create", &e));
    // Unlink first: if anything below fails, nothing is left behind.
    std::fs::remove_file(&path).unwrap_or_else(|e| fail("unlink", &e));
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8 | 1).collect();
    let mut left = args.size;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        file.write_all(&chunk[..n])
            .unwrap_or_else(|e| fail("write", &e));
        left -= n as u64;
    }
    file.sync_all().unwrap_or_else(|e| fail("fsync", &e));
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "holding {} bytes", args.size).and_then(|()| out.flush());
    drop(out);
    if args.grow == 0 {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    // Paced against a monotonic start, so the rate holds however long each write takes.
    let t0 = Instant::now();
    let mut written = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let due = (t0.elapsed().as_secs_f64() * args.grow as f64) as u64;
        while written < due {
            let n = usize::try_from(due - written).map_or(CHUNK, |l| l.min(CHUNK));
            file.write_all(&chunk[..n])
                .unwrap_or_else(|e| fail("write", &e));
            written += n as u64;
        }
        file.sync_data().unwrap_or_else(|e| fail("fsync", &e));
    }
}
