//! The socket destroy path under short connections: what counting every closed TCP socket to its
//! last byte (sock_diag destroy messages, [`NetProbe::subscribe_destroyed`]) costs, against the
//! same load unobserved, in the same run.
//!
//! Run: `cargo bench -p supervisor --bench destroy`
//!
//! Fixture: a loopback listener this process holds (the "worker" is this process), and an
//! acceptor thread that reads each connection to its end and closes it (the server closes
//! first, as an HTTP/1.0 server does). A connection: connect, send 1 KiB, half-close, read until
//! the server's close, close. Each is two destroy messages (both ends).
//!
//! Group `destroy_per_connection`, one iteration = one connection at full speed:
//! - `unobserved`: no subscriber in this process.
//! - `observed`: a probe subscribed, its queue read after each connection (read, parse,
//!   attribute by cookie or listener: what the engine does when the socket is readable).
//!
//! Then, in the same run, the paced figure (DESIGN.md asks for a load, not a loop): 2,000
//! connections per second for [`PACED_FOR`] from a load thread, while a probe thread does what
//! the engine does (a tick every second; with the subscription, a read whenever the socket is
//! readable, at most every 25 ms): first unobserved (ticks only), then observed. Reported on stderr: CPU time of the
//! probe's thread and of the whole process per second of load (getrusage), the connections
//! made, and the destroy messages read and lost.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use supervisor::net::{Drained, NetProbe, NetSample};

#[path = "common/samples.rs"]
mod samples;
use samples::Samples;

const GROUP: &str = "destroy_per_connection";
/// Bytes each connection sends.
const PAYLOAD: usize = 1024;
/// Connections per second of the paced load, and how long each paced run lasts.
const PACED_RATE: u64 = 2_000;
const PACED_FOR: Duration = Duration::from_secs(5);
/// Samples per benchmark: each sample is many connections, and each leaves a TIME_WAIT socket
/// for a minute.
const SAMPLE_SIZE: usize = 30;
/// The engine's least time between two reads of the destroy socket (`engine::resources`).
const DESTROY_GAP: Duration = Duration::from_millis(25);

/// Accepts on `l` until the process ends: reads each connection to its end and closes it.
fn serve(l: TcpListener) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
}

/// One short connection to `to`.
fn connection(to: SocketAddr, payload: &[u8]) {
    let mut s = TcpStream::connect(to).expect("connect");
    s.write_all(payload).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = [0u8; 64];
    while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
}

/// CPU time (user + system) of this thread, or of the whole process.
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What one paced run measured.
struct Paced {
    connections: u64,
    wall: Duration,
    probe_cpu: Duration,
    process_cpu: Duration,
    events: u64,
    lost: u64,
}

/// 2,000 connections a second for [`PACED_FOR`], with a probe thread ticking every second and,
/// when `observed`, reading the destroy messages as they come.
fn paced(to: SocketAddr, observed: bool) -> Paced {
    let me = i32::try_from(std::process::id()).expect("pid");
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let probe_thread = {
        let (stop, ready) = (stop.clone(), ready.clone());
        thread::spawn(move || {
            let mut probe: NetProbe<&str> = NetProbe::new();
            if observed {
                probe.subscribe_destroyed().expect("subscribe");
            }
            let pids = [me];
            let workers = [("bench", &pids[..])];
            let mut out: Vec<NetSample> = Vec::new();
            probe.tick(&workers, &mut out).expect("tick");
            ready.store(true, Ordering::SeqCst);
            let cpu0 = cpu(libc::RUSAGE_THREAD);
            let mut next = Instant::now() + Duration::from_secs(1);
            while !stop.load(Ordering::SeqCst) {
                let wait = next.saturating_duration_since(Instant::now());
                let fd = probe.destroy_fd().map_or(-1, |f| f.as_raw_fd());
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = libc::c_int::try_from(wait.as_millis().min(100)).unwrap_or(100);
                // SAFETY: poll on one pollfd that lives across the call (fd -1 is ignored).
                unsafe { libc::poll(&mut pfd, 1, ms) };
                if pfd.revents & libc::POLLIN != 0 {
                    while probe.drain_destroyed(256) == Drained::Budget && !probe.destroy_paused() {
                    }
                    // As the engine: the next look after a gap, so messages come in batches.
                    thread::sleep(DESTROY_GAP);
                }
                if Instant::now() >= next {
                    probe.tick(&workers, &mut out).expect("tick");
                    next += Duration::from_secs(1);
                }
            }
            // What is still queued belongs to the run.
            probe.drain_destroyed(usize::MAX);
            let used = cpu(libc::RUSAGE_THREAD).saturating_sub(cpu0);
            let st = probe.destroy_status();
            (used, st.closed.events, st.socket.lost)
        })
    };
    while !ready.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    let payload = vec![b'p'; PAYLOAD];
    let process0 = cpu(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let gap = Duration::from_secs(1) / u32::try_from(PACED_RATE).unwrap_or(1);
    let total = PACED_RATE * PACED_FOR.as_secs();
    for i in 0..total {
        let due = t0 + gap * u32::try_from(i).unwrap_or(u32::MAX);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        connection(to, &payload);
        made.fetch_add(1, Ordering::Relaxed);
    }
    let wall = t0.elapsed();
    // Let the last messages arrive before the probe stops.
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let (probe_cpu, events, lost) = probe_thread.join().expect("probe thread");
    Paced {
        connections: made.load(Ordering::Relaxed),
        wall,
        probe_cpu,
        process_cpu: cpu(libc::RUSAGE_SELF).saturating_sub(process0),
        events,
        lost,
    }
}

fn bench_destroy(c: &mut Criterion) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let to = l.local_addr().expect("addr");
    serve(l);
    let payload = vec![b'p'; PAYLOAD];
    let me = i32::try_from(std::process::id()).expect("pid");
    let pids = [me];
    let workers = [("bench", &pids[..])];
    let mut probe: NetProbe<&str> = NetProbe::new();
    if let Err(e) = probe.subscribe_destroyed() {
        eprintln!("destroy bench skipped: the kernel refused the subscription: {e}");
        return;
    }
    let mut out: Vec<NetSample> = Vec::new();
    // A dump sees the listener: accepted connections are attributed by it.
    probe.tick(&workers, &mut out).expect("tick");
    assert_eq!(
        out[0].listening, 1,
        "the fixture's listener is the worker's"
    );

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut figures: Vec<(&str, Samples)> = Vec::new();

    // Messages of these connections reach only subscribers: this one must not hold a queue
    // meanwhile (it would fill and count them lost), so it is dropped and made anew after.
    drop(probe);
    let mut unobserved = Samples::default();
    g.bench_function("unobserved", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                connection(to, &payload);
            }
            unobserved.record(iters, t0.elapsed())
        });
    });
    figures.push(("unobserved", unobserved));

    let mut probe: NetProbe<&str> = NetProbe::new();
    probe.subscribe_destroyed().expect("subscribe");
    probe.tick(&workers, &mut out).expect("tick");
    let mut observed = Samples::default();
    g.bench_function("observed", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                connection(to, &payload);
                black_box(probe.drain_destroyed(64));
            }
            let took = observed.record(iters, t0.elapsed());
            // Untimed: a tick, as the engine's, starts a new period of DESTROY_PER_TICK reads.
            probe.tick(&workers, &mut out).expect("tick");
            took
        });
    });
    figures.push(("observed", observed));
    g.finish();
    probe.drain_destroyed(usize::MAX);
    probe.tick(&workers, &mut out).expect("tick");
    let st = probe.destroy_status();

    eprintln!("destroy report (medians of this run's samples, one connection each):");
    let base = figures[0].1.median();
    for (name, samples) in &figures {
        let Some(m) = samples.median() else { continue };
        let ratio = base.map_or(String::new(), |b| format!("  {:.3}x unobserved", m / b));
        eprintln!("  {name:<12} {:>8.1} µs{ratio}", m / 1000.0);
    }
    eprintln!(
        "  observed run: {} messages, {} by listener, {} by cookie, {} unattributed, {} lost, \
         {} malformed",
        st.closed.events,
        st.closed.by_listener,
        st.closed.by_cookie,
        st.closed.unattributed,
        st.socket.lost,
        st.socket.malformed
    );
    drop(probe);

    // The paced load, each way.
    for observed in [false, true] {
        // TIME_WAIT sockets of the runs before settle a little.
        thread::sleep(Duration::from_secs(1));
        let p = paced(to, observed);
        let secs = p.wall.as_secs_f64();
        eprintln!(
            "destroy paced, {}: {} connections in {:.2} s ({:.0}/s); probe thread {:.3} % of a \
             core, whole process {:.1} %; {} messages read, {} lost",
            if observed { "observed" } else { "unobserved" },
            p.connections,
            secs,
            p.connections as f64 / secs,
            p.probe_cpu.as_secs_f64() * 100.0 / secs,
            p.process_cpu.as_secs_f64() * 100.0 / secs,
            p.events,
            p.lost
        );
    }
}

criterion_group!(benches, bench_destroy);
criterion_main!(benches);
