//! `alert_sink`: an alert command for tests. Reads its stdin to the end and appends it to FILE.
//!
//! Flags:
//! - `--exit CODE`: exit with this code after appending (default 0).
//! - `--hang`: after appending, start a `sleep` child (in the same process group), append
//!   `grandchild <pid>` on a line of its own, and never exit: a command its caller must kill.
//!
//! The append is one write(2) on a file opened with O_APPEND, so concurrent sinks do not
//! interleave within an event. Exits with code 1 and a message on stderr on any I/O error.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{self, Command, Stdio};
use std::time::Duration;

use clap::Parser;

/// Appends its stdin to a file.
#[derive(Parser, Debug)]
#[command(name = "alert_sink", version)]
struct Args {
    /// File to append to (created if missing).
    file: PathBuf,

    /// Exit code after appending.
    #[arg(long, default_value_t = 0)]
    exit: i32,

    /// Start a child and never exit.
    #[arg(long)]
    hang: bool,
}

fn fail(what: &str, err: &io::Error) -> ! {
    let _ = writeln!(io::stderr(), "alert_sink: {what}: {err}");
    process::exit(1);
}

fn append(args: &Args, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.file)
        .unwrap_or_else(|e| fail("open", &e));
    f.write_all(bytes).unwrap_or_else(|e| fail("write", &e));
}

fn main() {
    let args = Args::parse();
    let mut input = Vec::new();
    io::stdin()
        .read_to_end(&mut input)
        .unwrap_or_else(|e| fail("read stdin", &e));
    append(&args, &input);
    if args.hang {
        let mut child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail("spawn sleep", &e));
        append(&args, format!("grandchild {}\n", child.id()).as_bytes());
        // Blocks as long as the child lives, then hangs on regardless.
        let _ = child.wait();
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    process::exit(args.exit);
}
