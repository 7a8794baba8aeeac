//! The hot paths of the segment against their floors, in the same run (DESIGN §8):
//! `Counter::inc` and `Gauge::set` against a bare `AtomicU64`, `heartbeat` against a bare
//! `clock_gettime` + store (fine and coarse clocks), and a full-table `Reader::read`.
//!
//! `cargo bench -p child-sdk --bench segment`; medians are in
//! `target/criterion/<group>/<name>/new/estimates.json`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use child_sdk::segment::{self, Snapshot, Writer, CAPACITY};
use criterion::{criterion_group, criterion_main, Criterion};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    #[allow(clippy::cast_sign_loss)]
    let (secs, nanos) = (ts.tv_sec as u64, ts.tv_nsec as u64);
    secs.wrapping_mul(1_000_000_000).wrapping_add(nanos)
}

fn writer() -> (Writer, segment::Reader) {
    let (fd, reader) = segment::create().expect("create a segment");
    (Writer::from_fd(fd).expect("attach"), reader)
}

fn updates(c: &mut Criterion) {
    let (writer, _reader) = writer();
    let counter = writer.counter("bench_counter").expect("counter");
    let gauge = writer.gauge("bench_gauge").expect("gauge");
    let floor = AtomicU64::new(0);
    let mut g = c.benchmark_group("update");
    g.bench_function("floor_atomic_fetch_add", |b| {
        b.iter(|| black_box(&floor).fetch_add(1, Ordering::Relaxed));
    });
    g.bench_function("counter_inc", |b| b.iter(|| black_box(&counter).inc()));
    g.bench_function("floor_atomic_store", |b| {
        let mut v = 0u64;
        b.iter(|| {
            v = v.wrapping_add(1);
            black_box(&floor).store(v, Ordering::Relaxed);
        });
    });
    g.bench_function("gauge_set", |b| {
        let mut v = 0u64;
        b.iter(|| {
            v = v.wrapping_add(1);
            black_box(&gauge).set(v);
        });
    });
    g.bench_function("writer_add_requests", |b| {
        b.iter(|| black_box(&writer).add_requests(1));
    });
    g.finish();
}

fn heartbeats(c: &mut Criterion) {
    let (writer, _reader) = writer();
    let floor = AtomicU64::new(0);
    let mut g = c.benchmark_group("heartbeat");
    g.bench_function("floor_clock_monotonic_store", |b| {
        b.iter(|| black_box(&floor).store(clock_ns(libc::CLOCK_MONOTONIC), Ordering::Release));
    });
    g.bench_function("heartbeat", |b| b.iter(|| black_box(&writer).heartbeat()));
    g.bench_function("floor_clock_monotonic_coarse_store", |b| {
        b.iter(|| {
            black_box(&floor).store(clock_ns(libc::CLOCK_MONOTONIC_COARSE), Ordering::Release);
        });
    });
    g.bench_function("heartbeat_coarse", |b| {
        b.iter(|| black_box(&writer).heartbeat_coarse());
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    let (writer, reader) = writer();
    for i in 0..CAPACITY {
        // Long names (40 bytes) so the UTF-8 checks and copies are not flattered.
        let name = format!("a_fairly_long_metric_name_number_{i:07}");
        writer.counter(&name).expect("register").add(i as u64);
    }
    writer.heartbeat();
    let mut g = c.benchmark_group("read");
    g.bench_function("reader_read_full_table", |b| {
        b.iter(|| black_box(reader.read().expect("read")));
    });
    let mut snap = Snapshot::default();
    g.bench_function("reader_read_into_full_table", |b| {
        b.iter(|| reader.read_into(black_box(&mut snap)).expect("read"));
    });
    g.bench_function("reader_heartbeat_ns", |b| {
        b.iter(|| black_box(reader.heartbeat_ns()));
    });
    g.finish();
}

/// A scrape of 1,000 worker processes' worth of counters: the main page and 1,000 process
/// pages of 10 counters each, read and added up (what the supervisor does every tick for a
/// pre-forking program that large), against prometheus_client's multiprocess collector reading
/// 1,000 files (`sdk/python/bench.py`).
fn processes(c: &mut Criterion) {
    let (fd, reader) = segment::create().expect("segment");
    let keep = fd.try_clone().expect("dup");
    let main = Writer::from_fd(fd).expect("writer");
    let names: Vec<String> = (0..10).map(|i| format!("requests_by_route_{i}")).collect();
    for n in &names {
        main.counter(n).expect("register").inc();
    }
    let pages: Vec<Writer> = (0..1000)
        .map(|_| Writer::claim(std::os::fd::AsFd::as_fd(&keep)).expect("claim"))
        .collect();
    for (p, w) in pages.iter().enumerate() {
        for n in &names {
            w.counter(n).expect("register").add(p as u64);
        }
    }
    let mut snap = Snapshot::default();
    let mut g = c.benchmark_group("processes");
    g.bench_function("read_1000_process_pages", |b| {
        b.iter(|| reader.read_into(black_box(&mut snap)).expect("read"));
    });
    g.finish();
    assert_eq!(snap.processes, 1001);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = updates, heartbeats, reads, processes
}
criterion_main!(benches);
