//! `notifier`: a test worker that speaks systemd's notify protocol by hand, as `sd_notify(3)`
//! does: one datagram per message on a unix datagram socket, sent with a blocking `sendto`.
//!
//! - `--ping MS`: says `READY=1`, then `WATCHDOG=1` every MS milliseconds for ever, and prints
//!   `notifier pid=<pid> ready` once the first is sent.
//! - `--reload-ms MS` (with `--ping`): on SIGHUP, says `RELOADING=1`, MS milliseconds later
//!   `READY=1`, and prints `notifier pid=<pid> reloaded` (systemd's `Type=notify-reload`).
//! - `--flood SECONDS`: sends `WATCHDOG=1` as fast as the socket takes it for SECONDS seconds,
//!   then prints `flooded <count>` and sleeps for ever (so a supervisor sees no exit).
//!
//! The socket is `--socket PATH`, else `$NOTIFY_SOCKET`. A send that fails (the socket gone, a
//! full queue with a non-blocking socket) is counted and retried, never fatal.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

/// Speaks systemd's notify protocol: pings, or floods.
#[derive(Parser, Debug)]
#[command(name = "notifier", version)]
struct Args {
    /// Say READY=1, then WATCHDOG=1 every MS milliseconds.
    #[arg(long, value_name = "MS", conflicts_with = "flood")]
    ping: Option<u64>,

    /// Send WATCHDOG=1 as fast as possible for SECONDS seconds.
    #[arg(long, value_name = "SECONDS")]
    flood: Option<u64>,

    /// With --ping: on SIGHUP, say RELOADING=1, then READY=1 MS milliseconds later.
    #[arg(long, value_name = "MS", requires = "ping")]
    reload_ms: Option<u64>,

    /// The notify socket (default: $NOTIFY_SOCKET).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// A SIGHUP came, not yet answered.
static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    HUP.store(true, Ordering::Relaxed);
}

fn main() {
    let args = Args::parse();
    if args.reload_ms.is_some() {
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe {
            libc::signal(
                libc::SIGHUP,
                on_hup as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    let Some(path) = args
        .socket
        .or_else(|| std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from))
    else {
        eprintln!("notifier: no --socket and no NOTIFY_SOCKET");
        std::process::exit(2);
    };
    let sock = UnixDatagram::unbound().unwrap_or_else(|e| {
        eprintln!("notifier: socket: {e}");
        std::process::exit(2);
    });
    let send = |text: &[u8]| sock.send_to(text, &path).is_ok();
    if let Some(ms) = args.ping {
        while !send(b"READY=1") {
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("notifier pid={} ready", std::process::id());
        let every = Duration::from_millis(ms);
        let mut next = Instant::now();
        loop {
            next += every;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            send(b"WATCHDOG=1");
            if let Some(ms) = args
                .reload_ms
                .filter(|_| HUP.swap(false, Ordering::Relaxed))
            {
                send(b"RELOADING=1");
                std::thread::sleep(Duration::from_millis(ms));
                send(b"READY=1");
                println!("notifier pid={} reloaded", std::process::id());
            }
        }
    }
    if let Some(secs) = args.flood {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut sent: u64 = 0;
        while Instant::now() < end {
            for _ in 0..64 {
                sent += u64::from(send(b"WATCHDOG=1"));
            }
        }
        println!("flooded {sent}");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
