//! `prefork`: a test worker shaped like a pre-forking server (gunicorn, unicorn, uWSGI): a master
//! that listens on a TCP port and forks `--workers` processes that accept connections on the
//! socket they inherit, answering every request with `200 ok`. The master respawns a worker that
//! exits, with the same index. One worker (`--leak-worker K`, by index) keeps `--leak-rate` MiB a
//! second, as a leaking request handler would; its replacement leaks again.
//!
//! Output, on stdout, flushed line by line: `prefork master pid=<pid> port=<port>` once
//! listening, `prefork worker pid=<pid> index=<i>` for each worker started, and `prefork worker
//! exited pid=<pid> index=<i>` for each that left. With `--port-file PATH` the port is also
//! written there (to a temporary name, then renamed, so a reader sees all of it or nothing).
//!
//! Stopping: a worker that gets TERM (or INT) finishes the request it is answering, stops
//! accepting and exits 0: what a graceful worker does. The master on TERM passes it on to its
//! workers, waits for them and exits 0; a worker whose master died gets TERM (its death
//! signal). Every process ignores SIGPIPE (a client that left).

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

const MIB: usize = 1024 * 1024;

/// A pre-forking server: a master and its workers, one of which may leak.
#[derive(Parser, Debug)]
#[command(name = "prefork", version)]
struct Args {
    /// Workers the master keeps running.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,

    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Also write the port to this file.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,

    /// The index of the worker that leaks (none by default).
    #[arg(long, value_name = "K")]
    leak_worker: Option<u32>,

    /// MiB a second the leaking worker keeps.
    #[arg(long, value_name = "MIB", default_value_t = 10)]
    leak_rate: usize,

    /// Bind with SO_REUSEPORT, so several masters (replicas) share the port.
    #[arg(long)]
    reuse_port: bool,

    /// Milliseconds to wait before binding (a server that takes its time to start).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    listen_after: u64,
}

/// Set by TERM or INT.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// TERM and INT set [`STOP`] and interrupt blocking calls (no `SA_RESTART`); SIGPIPE ignored.
fn handle_signals() {
    // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic
    // (async-signal-safe); sigaction and signal are called with valid arguments.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args = Args::parse();
    handle_signals();
    std::thread::sleep(Duration::from_millis(args.listen_after));
    let listener = bind(args.port, args.reuse_port).unwrap_or_else(|e| {
        eprintln!("prefork: bind: {e}");
        std::process::exit(2);
    });
    let port = listener.local_addr().map_or(0, |a| a.port());
    say(format_args!(
        "prefork master pid={} port={port}",
        std::process::id()
    ));
    if let Some(path) = &args.port_file {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, port.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            eprintln!("prefork: cannot write {}", path.display());
        }
    }
    let mut workers: Vec<(libc::pid_t, u32)> = Vec::new();
    for index in 0..args.workers {
        workers.push((spawn(&listener, index, &args), index));
    }
    // The master: respawn each worker that leaves, until told to stop.
    while !STOP.load(Ordering::SeqCst) {
        let mut status = 0;
        // SAFETY: waitpid on any child of ours, with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid <= 0 {
            continue;
        }
        if let Some(slot) = workers.iter_mut().find(|(p, _)| *p == pid) {
            say(format_args!(
                "prefork worker exited pid={pid} index={}",
                slot.1
            ));
            if !STOP.load(Ordering::SeqCst) {
                slot.0 = spawn(&listener, slot.1, &args);
            }
        }
    }
    for &(pid, _) in &workers {
        // SAFETY: kill(2) on our own, unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    for _ in &workers {
        let mut status = 0;
        // SAFETY: as above.
        unsafe { libc::waitpid(-1, &mut status, 0) };
    }
}

/// A listener on 127.0.0.1:`port`, with `SO_REUSEPORT` if asked (set before `bind`, which std's
/// `TcpListener::bind` cannot do).
fn bind(port: u16, reuse_port: bool) -> io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: socket(2) returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (on, opt) in [(true, libc::SO_REUSEADDR), (reuse_port, libc::SO_REUSEPORT)] {
        // SAFETY: setsockopt with a valid fd and a c_int option value of its size.
        if on
            && unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const one).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: bind and listen with a valid fd and a sockaddr_in of its size.
    let ok = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0
            && libc::listen(fd.as_raw_fd(), 128) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Forks worker `index`; the master gets its pid.
fn spawn(listener: &TcpListener, index: u32, args: &Args) -> libc::pid_t {
    let _ = io::stdout().flush();
    // SAFETY: getpid has no preconditions.
    let master = unsafe { libc::getpid() };
    // SAFETY: this program never starts a thread, so the child is a copy of a single-threaded
    // process and may run ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("prefork: fork: {}", io::Error::last_os_error());
            std::process::exit(1);
        }
        0 => {
            // A worker whose master died (SIGKILLed, say) goes too, as gunicorn's do.
            // SAFETY: prctl with constant arguments; getppid has no preconditions.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                if libc::getppid() != master {
                    std::process::exit(0);
                }
            }
            worker(listener, index, args);
            std::process::exit(0);
        }
        pid => pid,
    }
}

/// One worker: accept, answer, and (the leaking one) keep memory at the leak rate.
fn worker(listener: &TcpListener, index: u32, args: &Args) {
    say(format_args!(
        "prefork worker pid={} index={index}",
        std::process::id()
    ));
    let leaks = args.leak_worker == Some(index);
    let start = Instant::now();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut held_mib = 0;
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while !STOP.load(Ordering::SeqCst) {
        if leaks {
            let want = (start.elapsed().as_secs_f64() * args.leak_rate as f64) as usize;
            while held_mib < want {
                let mut block = vec![0u8; MIB];
                for b in block.iter_mut().step_by(4096) {
                    *b = 1;
                }
                held.push(black_box(block));
                held_mib += 1;
            }
        }
        // SAFETY: one valid pollfd, a 50 ms timeout.
        let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
        if ready <= 0 {
            continue;
        }
        // Another worker may have taken the connection first: accept without waiting.
        if listener.set_nonblocking(true).is_err() {
            continue;
        }
        if let Ok((stream, _)) = listener.accept() {
            answer(stream);
        }
    }
    black_box(&held);
}

/// Reads the request's head (at most 4 KiB, for at most 2 s) and answers `200 ok`.
fn answer(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
}
