//! One sock_diag tick with 1,000 established TCP sockets (DESIGN.md §8: target <= 1.3x the
//! kernel floor, the same dump received raw with no parsing or attribution, in the same run).
//!
//! Run: `cargo bench -p supervisor --bench sockdiag`
//!
//! Fixture: 500 loopback TCP connections whose both ends this process holds (1,000 established
//! sockets and their listener), the soft RLIMIT_NOFILE raised to the hard one for them. The
//! "worker" is this process. Group `sockdiag_tick`, one iteration = one tick:
//! - `floor_raw_dump`: the four dump requests (TCP with `INET_DIAG_INFO`, UDP; IPv4 and IPv6)
//!   sent on the kept-open socket and every reply received, walking only the netlink headers
//!   to find each dump's end ([`Dumper::dump_raw`]).
//! - `tick`: [`NetProbe::tick`], the engine's call: fd cache check (one stat of /proc/PID/fd),
//!   the same dumps, every socket parsed and attributed, per-socket deltas, rates, sorted lists.
//! - `dump_parse_all`: the dumps parsed (every socket wanted), no attribution: the parser's
//!   share of `tick`.
//! - `crate_deserialize`: the floor's datagrams parsed with `netlink-packet-sock-diag`'s own
//!   `NetlinkMessage::<SockDiagMessage>::deserialize` (it copies `tcp_info` into a `Vec` per
//!   socket): why the probe walks the replies itself.
//! - `tick_rescan_every_tick`: `tick` with the fd cache off (`set_rescan_every(1)`): one
//!   readlinkat per open fd of the worker, each tick. What the cache saves.
//!
//! Then a report on stderr: the median of each (of the samples criterion took in this run) and
//! its ratio to the floor.

use std::hint::black_box;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use supervisor::net::diag::Dumper;
use supervisor::net::{NetProbe, NetSample};

#[path = "common/samples.rs"]
mod samples;
use samples::{Samples, SAMPLE_SIZE};

/// Times `iters` calls of `f`.
fn timed(samples: &mut Samples, iters: u64, mut f: impl FnMut()) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    samples.record(iters, t0.elapsed())
}

const GROUP: &str = "sockdiag_tick";
const CONNECTIONS: usize = 500;

/// Raises the soft fd limit to the hard one; returns the new soft limit.
fn raise_nofile() -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard.max(soft)
}

/// `n` connections to one listener, both ends kept.
fn connections(n: usize) -> (TcpListener, Vec<(TcpStream, TcpStream)>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = l.local_addr().expect("addr");
    let pairs = (0..n)
        .map(|_| {
            let c = TcpStream::connect(addr).expect("connect");
            let (s, _) = l.accept().expect("accept");
            (c, s)
        })
        .collect();
    (l, pairs)
}

/// Parses every message of a datagram the way a plain user of the crate would.
fn crate_parse(datagram: &[u8]) -> usize {
    let mut off = 0;
    let mut n = 0;
    while off < datagram.len() {
        let Ok(buf) = NetlinkBuffer::new_checked(&datagram[off..]) else {
            break;
        };
        let len = buf.length() as usize;
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&datagram[off..off + len]);
        if let Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)),
            ..
        }) = msg
        {
            n += black_box(r).nlas.len();
        }
        off += (len + 3) & !3;
    }
    n
}

fn bench_sockdiag(c: &mut Criterion) {
    let limit = raise_nofile();
    let n = CONNECTIONS.min(usize::try_from(limit.saturating_sub(64) / 2).unwrap_or(0));
    let (_listener, pairs) = connections(n);
    let me = i32::try_from(std::process::id()).expect("pid fits");
    let pids = [me];
    let workers = [("bench", &pids[..])];

    let mut dumper = Dumper::new();
    let mut probe: NetProbe<&str> = NetProbe::new();
    let mut cold: NetProbe<&str> = NetProbe::new();
    cold.set_rescan_every(1);
    let mut out: Vec<NetSample> = Vec::new();
    // Every netlink socket open first (each is an fd of the worker, this process), then ticks
    // until the fd cache is warm and the rates have a previous tick.
    let raw = dumper.dump_raw().expect("raw dump");
    cold.tick(&workers, &mut out).expect("tick");
    probe.tick(&workers, &mut out).expect("tick");
    probe.tick(&workers, &mut out).expect("tick");
    let stats = probe.tick(&workers, &mut out).expect("tick");
    let s = &out[0];
    assert!(
        s.established as usize >= 2 * n && s.listening >= 1 && s.acked_per_sec.is_some(),
        "the fixture's sockets are attributed: {stats:?}"
    );
    assert_eq!(stats.rescans, 0, "a warm cache re-reads nothing");
    eprintln!(
        "sockdiag fixture: {} connections, {} established sockets attributed, {} sockets dumped in \
         {} datagrams ({} bytes); udp dumps: {}",
        n, s.established, raw.sockets, raw.datagrams, raw.bytes, raw.udp
    );

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut figures: Vec<(&str, Samples)> = Vec::new();

    let mut floor = Samples::default();
    g.bench_function("floor_raw_dump", |b| {
        b.iter_custom(|iters| {
            timed(&mut floor, iters, || {
                black_box(dumper.dump_raw().expect("raw dump"));
            })
        });
    });
    figures.push(("floor_raw_dump", floor));

    let mut tick = Samples::default();
    g.bench_function("tick", |b| {
        b.iter_custom(|iters| {
            timed(&mut tick, iters, || {
                black_box(probe.tick(&workers, &mut out).expect("tick"));
            })
        });
    });
    figures.push(("tick", tick));

    let mut parse = Samples::default();
    g.bench_function("dump_parse_all", |b| {
        b.iter_custom(|iters| {
            timed(&mut parse, iters, || {
                let mut n = 0u32;
                dumper
                    .dump(|_| true, |r| n = n.wrapping_add(r.inode))
                    .expect("dump");
                black_box(n);
            })
        });
    });
    figures.push(("dump_parse_all", parse));

    let mut krate = Samples::default();
    g.bench_function("crate_deserialize", |b| {
        b.iter_custom(|iters| {
            timed(&mut krate, iters, || {
                let mut n = 0;
                dumper
                    .dump_datagrams(|d| n += crate_parse(d))
                    .expect("dump");
                black_box(n);
            })
        });
    });
    figures.push(("crate_deserialize", krate));

    let mut rescan = Samples::default();
    g.bench_function("tick_rescan_every_tick", |b| {
        b.iter_custom(|iters| {
            timed(&mut rescan, iters, || {
                black_box(cold.tick(&workers, &mut out).expect("tick"));
            })
        });
    });
    figures.push(("tick_rescan_every_tick", rescan));
    g.finish();

    eprintln!("sockdiag report (medians of this run's samples, one tick each):");
    let floor = figures[0].1.median();
    for (name, samples) in &figures {
        let Some(m) = samples.median() else { continue };
        let ratio = floor.map_or(String::new(), |f| format!("  {:.2}x floor", m / f));
        eprintln!("  {name:<24} {:>9.1} µs{ratio}", m / 1000.0);
    }
    // The fixture was intact throughout: a lost connection would make the figures meaningless.
    probe.tick(&workers, &mut out).expect("tick");
    assert!(out[0].established as usize >= 2 * n, "fixture lost sockets");
    drop(pairs);
}

criterion_group!(benches, bench_sockdiag);
criterion_main!(benches);
