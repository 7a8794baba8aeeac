//! `sdk_worker`: a worker that links child-sdk and uses all of it, to show and test the SDK.
//!
//! It connects to its supervisor (`Client::from_env`), heartbeats from its work loop, counts
//! what it does in the segment, says `Ready`, and stops cleanly when asked (`Shutdown`). Run
//! standalone it does the same work without a supervisor.
//!
//! Flags:
//! - `--serve`: listen on 127.0.0.1 (an ephemeral port, printed as `sdk_worker port=<port>`) and
//!   answer each line a client sends with the same line; each line counts as a request (fixed
//!   slot `requests`) and its bytes go to the counter `bytes_in`.
//! - `--leak MIB`: grow the heap by this many MiB per second and keep it (the allocator feature
//!   publishes live heap bytes, so heap and RSS grow together); the heap growth of the latest
//!   allocating pass is measured with `Client::profile` into the gauge `leak_step_bytes`, and the
//!   total held goes to the gauge `leaked_mib`.
//! - `--hang-after MS`: stop calling `heartbeat()` after this long, while staying alive.
//! - `--ignore-shutdown`: keep running after a `Shutdown` request.
//! - `--ignore-signals`: set TERM, INT, QUIT, HUP, ABRT, USR1 and USR2 to SIG_IGN at start, so
//!   that none of them ends it (a hung worker that outlives its heartbeat signal).
//! - `--events-on-shutdown N`: once asked to stop, send N events (`draining N`) over the channel,
//!   one after the other with blocking sends, before leaving: a worker that says a lot while it
//!   winds down.
//! - `--ready-after MS`: say `Ready` after this long (default 0).
//! - `--raw-echo`: skip the SDK; send every packet that arrives on fd 3 straight back, unread.
//!   The floor the channel benchmark compares the SDK's ping/pong with.
//!
//! It prints `sdk_worker pid=<pid> supervised=<bool>` at start, `sdk_worker pressure bytes=<n>
//! limit=<n>` for each memory-pressure warning, `sdk_worker limits memory_max=<n>` when the
//! supervisor sends new limits (a reload changed them), and `sdk_worker shutdown` when it leaves because
//! it was asked to.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use clap::Parser;

#[global_allocator]
static ALLOC: child_sdk::alloc::CountingAlloc = child_sdk::alloc::CountingAlloc::new();

#[derive(Parser)]
struct Args {
    #[arg(long)]
    serve: bool,
    #[arg(long, value_name = "MIB", default_value_t = 0.0)]
    leak: f64,
    #[arg(long, value_name = "MS")]
    hang_after: Option<u64>,
    #[arg(long)]
    ignore_shutdown: bool,
    #[arg(long)]
    ignore_signals: bool,
    #[arg(long, value_name = "N", default_value_t = 0)]
    events_on_shutdown: u32,
    #[arg(long, value_name = "MS", default_value_t = 0)]
    ready_after: u64,
    #[arg(long)]
    raw_echo: bool,
}

/// Echoes packets on fd 3 until the peer closes it.
fn raw_echo() -> ! {
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: recv/send on fd 3 (the inherited channel) with a buffer we own.
        let n = unsafe { libc::recv(3, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            std::process::exit(0);
        }
        // SAFETY: as above; n bytes of `buf` were just written by recv.
        unsafe { libc::send(3, buf.as_ptr().cast(), n as usize, libc::MSG_NOSIGNAL) };
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.raw_echo {
        raw_echo();
    }
    if args.ignore_signals {
        for signal in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGABRT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
            if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error().into());
            }
        }
    }
    let client = child_sdk::Client::from_env()?;
    println!(
        "sdk_worker pid={} supervised={}",
        std::process::id(),
        client.is_some()
    );
    let bytes_in = client.as_ref().map(|c| c.counter("bytes_in")).transpose()?;
    if let Some(c) = &client {
        c.on_memory_pressure(|bytes, limit| {
            println!("sdk_worker pressure callback bytes={bytes} limit={limit}");
        });
    }
    let leaked_gauge = client.as_ref().map(|c| c.gauge("leaked_mib")).transpose()?;

    if args.serve {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        println!("sdk_worker port={}", listener.local_addr()?.port());
        let segment = client.as_ref().map(|c| c.segment().clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let segment = segment.clone();
                let bytes_in = bytes_in.clone();
                std::thread::spawn(move || {
                    let mut out = match stream.try_clone() {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        if let Some(s) = &segment {
                            s.add_requests(1);
                        }
                        if let Some(b) = &bytes_in {
                            b.add(line.len() as u64 + 1);
                        }
                        if writeln!(out, "{line}").is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    let start = Instant::now();
    let mut ready_sent = false;
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    let mut leaked_mib = 0.0f64;
    let mut pressure_seen = 0;
    let mut limits = client.as_ref().map(|c| c.limits().memory_max);
    loop {
        let elapsed = start.elapsed();
        if let Some(c) = &client {
            if args
                .hang_after
                .is_none_or(|ms| elapsed < Duration::from_millis(ms))
            {
                c.heartbeat();
            }
            if !ready_sent && elapsed >= Duration::from_millis(args.ready_after) {
                c.ready()?;
                ready_sent = true;
            }
            if let Some((bytes, limit, count)) = c.memory_pressure() {
                if count > pressure_seen {
                    pressure_seen = count;
                    println!("sdk_worker pressure bytes={bytes} limit={limit}");
                }
            }
            let now = Some(c.limits().memory_max);
            if now != limits {
                limits = now;
                println!(
                    "sdk_worker limits memory_max={}",
                    now.flatten()
                        .map_or_else(|| "none".to_owned(), |m| m.to_string())
                );
            }
            if c.shutdown_requested() && !args.ignore_shutdown {
                for n in 0..args.events_on_shutdown {
                    c.event(child_sdk::proto::Level::Info, &format!("draining {n}"))?;
                }
                println!("sdk_worker shutdown");
                return Ok(());
            }
        }
        if args.leak > 0.0 {
            let due = args.leak * elapsed.as_secs_f64();
            if leaked_mib + 0.25 <= due {
                // The heap growth of one allocating pass, as the gauge `leak_step_bytes`.
                let _section = client
                    .as_ref()
                    .map(|c| c.profile("leak_step_bytes"))
                    .transpose()?;
                while leaked_mib + 0.25 <= due {
                    // A quarter MiB at a time, every page touched so it is resident.
                    let mut block = vec![0u8; 256 * 1024];
                    for i in (0..block.len()).step_by(4096) {
                        block[i] = 1;
                    }
                    leaked.push(block);
                    leaked_mib += 0.25;
                }
            }
            if let Some(g) = &leaked_gauge {
                g.set(leaked_mib as u64);
            }
        }
        match &client {
            // Sleep until the next step, waking at once on a shutdown request.
            Some(c) => {
                c.wait(Duration::from_millis(10));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
