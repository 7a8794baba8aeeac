//! What keeping each line for `supervise logs` costs the forwarder, per line, against what the
//! forwarder already spends on it, in the same run.
//!
//! Run: `cargo bench -p supervisor --bench logs`
//!
//! One criterion group (`keep_one_line`), each case a 120-byte line (a `flood` line):
//! - `forwarder_arc_of_line`: turning the read line into the `Arc<[u8]>` the forwarder hands to the
//!   writer threads (one allocation and copy, and its free): what every line already costs.
//! - `push_full_ring`: [`Buffer::push`] into a full 256 KiB ring (the steady state of a worker that
//!   writes): the copy in, and the oldest records dropped to make room.
//! - `push_full_ring_timestamped`: the same with a read time (`--timestamps`).
//! - `push_no_ring`: with `--log-buffer 0` (nothing kept, nobody following): the floor.
//! - `push_one_stalled_follower`: a full ring and a follower whose queue is full (a client that
//!   does not read): the buffer has left it out, and offers it nothing.

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use supervisor::logs::{Buffer, Buffers, Stream};

const LINE: usize = 120;

/// A buffer of `cap` bytes for one instance, filled.
fn filled(cap: usize) -> (Rc<Buffers>, Rc<Buffer>) {
    let all = Buffers::new(cap);
    all.sync([("bench", 1)]);
    let b = all.buffer("bench", 0);
    let line: Arc<[u8]> = vec![b'x'; LINE].into();
    for _ in 0..(2 * cap / LINE + 10) {
        b.push(Stream::Stdout, &line, None);
    }
    (all, b)
}

fn keep(c: &mut Criterion) {
    let mut g = c.benchmark_group("keep_one_line");
    let line: Arc<[u8]> = vec![b'x'; LINE].into();
    let read = vec![b'x'; LINE];
    g.bench_function("forwarder_arc_of_line", |b| {
        b.iter(|| {
            let v = black_box(&read).clone();
            let a: Arc<[u8]> = v.into();
            black_box(a)
        });
    });
    let (_all, full) = filled(256 * 1024);
    g.bench_function("push_full_ring", |b| {
        b.iter(|| full.push(Stream::Stdout, black_box(&line), None));
    });
    let now = Some(SystemTime::now());
    g.bench_function("push_full_ring_timestamped", |b| {
        b.iter(|| full.push(Stream::Stderr, black_box(&line), now));
    });
    let (_none, off) = filled(0);
    g.bench_function("push_no_ring", |b| {
        b.iter(|| off.push(Stream::Stdout, black_box(&line), None));
    });
    let (all, followed) = filled(256 * 1024);
    let sel = all.select("bench", None).expect("bench");
    let _stalled = all.follow("bench", None, &sel);
    for _ in 0..10_000 {
        followed.push(Stream::Stdout, &line, None);
    }
    g.bench_function("push_one_stalled_follower", |b| {
        b.iter(|| followed.push(Stream::Stdout, black_box(&line), None));
    });
    g.finish();
}

criterion_group!(benches, keep);
criterion_main!(benches);
