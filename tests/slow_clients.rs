//! Clients that trickle their request a byte a second cannot starve the metrics server's health
//! probes, nor the control socket's requests: at its cap, a server closes the connection that
//! has waited longest for its request instead of turning the new one away.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{example, unique, wait_until, ProgramGuard, Sup};

/// Slow clients connected at once.
const SLOW: usize = 200;
/// Probes, and how many must be answered.
const PROBES: usize = 20;
const ANSWERED: usize = 19;
/// A probe's whole exchange, as a kubelet's `timeoutSeconds` would bound it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `SLOW` connections, each sending one byte of `request` per second and never finishing it;
/// one the server closes connects again a second later. One thread drives them all.
struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Connections made so far, reconnections included.
    connects: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl SlowClients {
    fn start<S: Write + Send + 'static>(
        request: &'static [u8],
        connect: impl Fn() -> std::io::Result<S> + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicUsize::new(0));
        let (stop2, connects2) = (stop.clone(), connects.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<Option<(S, usize)>> = (0..SLOW).map(|_| None).collect();
            while !stop2.load(Ordering::Relaxed) {
                let round = Instant::now();
                for slot in &mut conns {
                    match slot {
                        Some((s, sent)) => {
                            let byte = request[*sent % request.len()];
                            if s.write_all(&[byte]).is_ok() {
                                *sent += 1;
                            } else {
                                *slot = None;
                            }
                        }
                        None => {
                            if let Ok(s) = connect() {
                                connects2.fetch_add(1, Ordering::Relaxed);
                                *slot = Some((s, 0));
                            }
                        }
                    }
                }
                // One byte (or one reconnection) per client per second.
                let rest = Duration::from_secs(1).saturating_sub(round.elapsed());
                let end = Instant::now() + rest;
                while Instant::now() < end && !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Self {
            stop,
            connects,
            thread: Some(thread),
        }
    }

    /// Waits until every client has connected once.
    fn wait_connected(&self) {
        assert!(
            wait_until(Duration::from_secs(20), || self
                .connects
                .load(Ordering::Relaxed)
                >= SLOW),
            "only {} slow clients connected",
            self.connects.load(Ordering::Relaxed)
        );
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Probes `PROBES` times, a few tenths of a second apart as a prober's period spaces them;
/// returns how many `answered` within `PROBE_TIMEOUT`.
fn probe(mut answered: impl FnMut() -> bool) -> usize {
    let mut ok = 0;
    for _ in 0..PROBES {
        let start = Instant::now();
        if answered() && start.elapsed() <= PROBE_TIMEOUT {
            ok += 1;
        }
        let pause = Instant::now() + Duration::from_millis(300);
        wait_until(Duration::from_secs(1), || Instant::now() >= pause);
    }
    ok
}

fn healthz(addr: &str) -> bool {
    let Ok(sock) = addr.parse() else { return false };
    let Ok(mut s) = TcpStream::connect_timeout(&sock, PROBE_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200 ") && out.ends_with("\r\n\r\nok\n")
}

#[test]
fn healthz_answers_while_slow_clients_trickle() {
    let (sup, addr, _guard) = common::idle_with_metrics("slowhttp", "127.0.0.1:0");
    assert!(healthz(&addr), "healthz before the slow clients");
    let target = addr.clone();
    let slow = SlowClients::start(b"GET /healthz HTTP/1.1\r\n", move || {
        let s =
            TcpStream::connect_timeout(&target.parse().expect("addr"), Duration::from_millis(200))?;
        s.set_write_timeout(Some(Duration::from_millis(200)))?;
        Ok(s)
    });
    slow.wait_connected();
    let ok = probe(|| healthz(&addr));
    assert!(
        ok >= ANSWERED,
        "/healthz answered {ok} of {PROBES} probes\n{}",
        sup.dump()
    );
    drop(slow);
    assert!(common::alive(sup.pid()));
}
/// Connects without waiting: a server whose backlog is full refuses at once (`EAGAIN`) where a
/// blocking connect would wait for it for good.
fn connect_now(path: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

fn status(socket: &Path) -> bool {
    let Ok(mut s) = connect_now(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(b"{\"cmd\":\"status\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line.starts_with("{\"result\":\"status\"")
}

#[test]
fn the_control_socket_answers_while_slow_clients_trickle() {
    let name = unique("slowctl");
    let _guard = ProgramGuard(name.clone());
    let leaky = example("leaky");
    // With the common default of 1024 open files and a few hundred more slow clients, a
    // supervisor that takes every connection runs out of descriptors; 192 (a little above what
    // the start-up budget asks for one instance) shows it with 200.
    let sup = Sup::start_with(&[], |cmd, dir| {
        use std::os::unix::process::CommandExt;
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--name", &name, "--", &leaky, "--rate", "0"]);
        // SAFETY: the closure only calls setrlimit, a plain system call (async-signal-safe),
        // on a local value.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 192,
                    rlim_max: 192,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    sup.wait_socket(Duration::from_secs(10));
    sup.wait_event("started", Duration::from_secs(10));
    let socket = sup.socket();
    assert!(status(&socket), "status before the slow clients");
    let target = socket.clone();
    let slow = SlowClients::start(b"{\"cmd\":\"status\"", move || {
        let s = connect_now(&target)?;
        s.set_write_timeout(Some(Duration::from_millis(200)))?;
        Ok(s)
    });
    slow.wait_connected();
    let ok = probe(|| status(&socket));
    assert!(
        ok >= ANSWERED,
        "the control socket answered {ok} of {PROBES} requests\n{}",
        sup.dump()
    );
    drop(slow);
    assert!(common::alive(sup.pid()));
}
