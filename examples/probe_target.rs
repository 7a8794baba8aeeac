//! `probe_target`: a test worker for readiness and health checks — a server that is slow to come
//! up, and one that falls ill.
//!
//! After `--listen-after` it listens on 127.0.0.1:`--port` and answers every HTTP request with
//! `--status` (until `--fail-after`, then with 500), closing each connection after the answer. A
//! plain TCP connect counts as a request too (it is accepted, then closed). With `--notify-fd N`
//! it writes a newline to fd N (s6's notification fd) after `--notify-after`, and closes it.
//!
//! It prints `probe_target listening port=<port>` once it listens, `probe_target notified` once
//! it wrote its newline, and `probe_target ill` once it answers 500. SIGTERM and SIGINT end it
//! with their default action.
//!
//! Flags:
//! - `--port PORT`: the port to listen on (required).
//! - `--listen-after MS`: wait this long before listening (default 0).
//! - `--status CODE`: the status of every answer (default 200).
//! - `--fail-after MS`: answer 500 from this long after start on.
//! - `--notify-fd N`, `--notify-after MS` (default 0): s6-style readiness.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "probe_target", version)]
struct Args {
    #[arg(long)]
    port: u16,
    #[arg(long, value_name = "MS", default_value_t = 0)]
    listen_after: u64,
    #[arg(long, value_name = "CODE", default_value_t = 200)]
    status: u16,
    #[arg(long, value_name = "MS")]
    fail_after: Option<u64>,
    #[arg(long, value_name = "N")]
    notify_fd: Option<i32>,
    #[arg(long, value_name = "MS", default_value_t = 0)]
    notify_after: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let t0 = Instant::now();
    if let Some(fd) = args.notify_fd {
        let after = Duration::from_millis(args.notify_after);
        thread::spawn(move || {
            thread::sleep(after);
            // SAFETY: the fd was given to us by whoever started us, to write one newline to;
            // nothing else in this program uses it. It is closed when `file` drops.
            let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            if file.write_all(b"\n").is_ok() {
                println!("probe_target notified");
            }
        });
    }
    thread::sleep(Duration::from_millis(args.listen_after));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))?;
    println!("probe_target listening port={}", args.port);
    let mut ill = false;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let failing = args
            .fail_after
            .is_some_and(|ms| t0.elapsed() >= Duration::from_millis(ms));
        if failing && !ill {
            ill = true;
            println!("probe_target ill");
        }
        let status = if failing { 500 } else { args.status };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 1024];
        // A request, if one comes: a bare TCP check sends nothing and closes.
        if matches!(conn.read(&mut buf), Ok(n) if n > 0) {
            let _ = write!(
                conn,
                "HTTP/1.0 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
    Ok(())
}
