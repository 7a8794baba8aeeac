//! `netpeer`: a test worker that holds TCP sockets and moves traffic over them, for the network
//! probe's tests and demos.
//!
//! It listens (with `--listen`), opens `--connections` connections to its own listener or to
//! `--to`, echoes back whatever its listener's connections receive, and, with
//! `--bytes-per-sec`, sends that many bytes per second on each of its connections (so a
//! connection to its own listener moves that rate both ways). `--connect` adds one more
//! connection, held open without traffic. Once everything is connected (and, for connections
//! to itself, accepted) it prints `netpeer ready pid=<pid> listen=<addr|-> connections=<n>`,
//! preceded by `netpeer listening <addr>` when it listens.
//!
//! Flags:
//! - `--listen PORT`: listen on 127.0.0.1:PORT (0: a free port).
//! - `--connections N`: connections to open (default 0); needs `--listen` or `--to`.
//! - `--to ADDR`: where `--connections` go instead of its own listener.
//! - `--bytes-per-sec N`: bytes sent per second on each of those connections (default 0).
//! - `--connect ADDR`: one extra connection.
//! - `--prefork N`: N child processes accept on the listener instead of this one (a pre-forked
//!   server); they die with it.
//! - `--burst N` with `--burst-bytes B`: once ready, N short connections one after another to
//!   `--to` (or the own listener), each sending B bytes, half-closing, and reading until the
//!   peer closes; then `netpeer burst done connections=N sent=S received=R`.
//!
//! SIGTERM or SIGINT makes it print `netpeer exiting` and exit with code 0. A failure to listen
//! or connect is reported on stderr with exit code 1.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Most connections `--connections` accepts.
const MAX_CONNECTIONS: usize = 10_000;
/// Pacing step of the senders.
const STEP: Duration = Duration::from_millis(20);
/// Longest wait for connections to be accepted before `ready`.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// Holds TCP sockets and moves traffic over them until SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "netpeer", version)]
struct Args {
    /// Listen on 127.0.0.1:PORT (0: a free port).
    #[arg(long, value_name = "PORT")]
    listen: Option<u16>,

    /// Connections to open, to the own listener or to --to.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_CONNECTIONS as u64))]
    connections: u64,

    /// Target of --connections instead of the own listener.
    #[arg(long, value_name = "ADDR")]
    to: Option<SocketAddr>,

    /// Bytes sent per second on each of the --connections.
    #[arg(long, value_name = "N", default_value_t = 0)]
    bytes_per_sec: u64,

    /// One extra connection, held open without traffic.
    #[arg(long, value_name = "ADDR")]
    connect: Option<SocketAddr>,

    /// Child processes that accept on the listener instead of this one.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    prefork: u32,

    /// Short connections opened once ready, one after another.
    #[arg(long, value_name = "N", default_value_t = 0)]
    burst: u64,

    /// Bytes each --burst connection sends.
    #[arg(long, value_name = "B", default_value_t = 0)]
    burst_bytes: u64,
}

/// Accepts on `l` forever, echoing each connection on a thread of its own.
fn serve(l: &TcpListener, accepted: &AtomicUsize) {
    for s in l.incoming().flatten() {
        accepted.fetch_add(1, Ordering::SeqCst);
        thread::spawn(move || echo(s));
    }
}

/// Forks `n` children that accept on `l` and die with this process. Called before any thread
/// starts, so each child is a copy of a single-threaded process.
fn prefork(l: &TcpListener, n: u32) {
    for _ in 0..n {
        // SAFETY: fork in a single-threaded process; the child only calls prctl and then runs
        // ordinary Rust code of its own.
        match unsafe { libc::fork() } {
            -1 => fail("fork", &io::Error::last_os_error()),
            0 => {
                // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                serve(l, &AtomicUsize::new(0));
                process::exit(0);
            }
            _ => {}
        }
    }
}

/// One short connection: sends `bytes`, half-closes, reads until the peer closes. Returns
/// (sent, received).
fn short(to: SocketAddr, bytes: u64) -> io::Result<(u64, u64)> {
    let mut s = TcpStream::connect(to)?;
    let mut reader = s.try_clone()?;
    let got = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        while let Ok(k) = reader.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    let chunk = vec![b'b'; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let k = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
        s.write_all(&chunk[..k])?;
        left -= k as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let received = got.join().unwrap_or(0);
    Ok((bytes, received))
}

fn fail(what: &str, err: &io::Error) -> ! {
    let _ = writeln!(io::stderr(), "netpeer: {what}: {err}");
    process::exit(1);
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        process::exit(0);
    }
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned after), so that
/// only `sigwait` in `main` receives them.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set before use; pthread_sigmask changes only
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Echoes everything a connection sends until it closes.
fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads and drops everything until the connection closes.
fn drain(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Sends `rate` bytes per second, paced against a monotonic start.
fn send(mut s: TcpStream, rate: u64) {
    let chunk = vec![b'n'; 64 * 1024];
    let t0 = Instant::now();
    let mut sent = 0u64;
    loop {
        thread::sleep(STEP);
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let n = usize::try_from(due - sent)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            sent += n as u64;
        }
    }
}

fn main() {
    let args = Args::parse();
    if args.connections > 0 && args.listen.is_none() && args.to.is_none() {
        let _ = writeln!(
            io::stderr(),
            "netpeer: --connections needs --listen or --to"
        );
        process::exit(2);
    }
    let stop = block_stop_signals();

    let accepted = Arc::new(AtomicUsize::new(0));
    let listen = args.listen.map(|port| {
        let l =
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| fail("listen", &e));
        let addr = l.local_addr().unwrap_or_else(|e| fail("listen", &e));
        say(format_args!("netpeer listening {addr}"));
        if args.prefork > 0 {
            prefork(&l, args.prefork);
        } else {
            let accepted = Arc::clone(&accepted);
            thread::spawn(move || serve(&l, &accepted));
        }
        addr
    });

    let target = args.to.or(listen);
    let mut held = Vec::new();
    for _ in 0..args.connections {
        let Some(target) = target else { break };
        let s = TcpStream::connect(target).unwrap_or_else(|e| fail("connect", &e));
        let reader = s.try_clone().unwrap_or_else(|e| fail("connect", &e));
        thread::spawn(move || drain(reader));
        if args.bytes_per_sec > 0 {
            let writer = s.try_clone().unwrap_or_else(|e| fail("connect", &e));
            let rate = args.bytes_per_sec;
            thread::spawn(move || send(writer, rate));
        }
        held.push(s);
    }
    if let Some(addr) = args.connect {
        held.push(TcpStream::connect(addr).unwrap_or_else(|e| fail("connect", &e)));
    }
    if args.to.is_none() && listen.is_some() && args.prefork == 0 {
        let own = usize::try_from(args.connections).unwrap_or(usize::MAX);
        let end = Instant::now() + ACCEPT_WAIT;
        while accepted.load(Ordering::SeqCst) < own && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let shown = listen.map_or_else(|| "-".to_owned(), |a| a.to_string());
    say(format_args!(
        "netpeer ready pid={} listen={shown} connections={}",
        process::id(),
        held.len()
    ));

    if args.burst > 0 {
        if let Some(to) = target {
            let (mut sent, mut received) = (0u64, 0u64);
            for _ in 0..args.burst {
                let (s, r) = short(to, args.burst_bytes).unwrap_or_else(|e| fail("burst", &e));
                sent += s;
                received += r;
            }
            say(format_args!(
                "netpeer burst done connections={} sent={sent} received={received}",
                args.burst
            ));
        }
    }

    let mut sig = 0;
    // SAFETY: `stop` is an initialised set of signals blocked in every thread; sigwait stores
    // the received signal in `sig`.
    while unsafe { libc::sigwait(&stop, &mut sig) } != 0 {}
    say(format_args!("netpeer exiting"));
    process::exit(0);
}
