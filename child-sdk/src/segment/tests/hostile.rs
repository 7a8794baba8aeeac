//! A child that writes garbage, or holds the seqlock forever, cannot crash, stall or fool the
//! reader into returning out-of-bounds or non-UTF-8 names.

// Casts here cut random words into fields on purpose, or convert constants known to fit.
#![allow(clippy::cast_possible_truncation)]

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;

use super::super::{Metric, MetricKind, CAPACITY, MAGIC, NAME_MAX, SIZE, VERSION};
use super::{bare, segment, u32_at, u64_at, Scribbler};
use crate::segment::SegmentError;

/// A page of arbitrary bytes. Mode 0 leaves them raw (the header check will nearly always fail);
/// mode 1 writes a valid header; mode 2 also writes a plausible count and entry lengths and kinds,
/// and turns every other name into ASCII, so that the table parser is exercised in depth.
fn hostile_page() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(any::<u8>(), SIZE),
        0u8..3,
        0u32..=70,
        vec((0u8..=NAME_MAX as u8 + 4, 0u8..=3), CAPACITY),
    )
        .prop_map(|(mut page, mode, count, entries)| {
            if mode >= 1 {
                page[..8].copy_from_slice(&MAGIC.to_ne_bytes());
                page[8..12].copy_from_slice(&VERSION.to_ne_bytes());
                page[12..16].copy_from_slice(&(SIZE as u32).to_ne_bytes());
            }
            if mode == 2 {
                page[128..136].copy_from_slice(&(u64::from(count % 3 == 0) * 7).to_ne_bytes());
                page[136..140].copy_from_slice(&count.to_ne_bytes());
                for (i, (len, kind)) in entries.into_iter().enumerate() {
                    let at = 192 + 64 * i;
                    page[at] = len;
                    page[at + 1] = kind;
                    if i % 2 == 0 {
                        for b in &mut page[at + 8..at + 56] {
                            *b = b'a' + *b % 26;
                        }
                    }
                }
            }
            page
        })
}

/// What the spec says a reader must make of `page`, computed from plain bytes.
fn model(page: &[u8; SIZE]) -> Result<(Vec<Metric>, bool, u32), SegmentError> {
    if u64_at(page, 0) != MAGIC {
        return Err(SegmentError::BadMagic {
            found: u64_at(page, 0),
        });
    }
    if u32_at(page, 8) != VERSION {
        return Err(SegmentError::BadVersion {
            found: u32_at(page, 8),
        });
    }
    if u32_at(page, 12) as usize != SIZE {
        return Err(SegmentError::BadSize {
            found: u32_at(page, 12),
        });
    }
    let count = u32_at(page, 136);
    let mut metrics = Vec::new();
    for i in 0..(count as usize).min(CAPACITY) {
        let e = &page[192 + 64 * i..192 + 64 * (i + 1)];
        let len = usize::from(e[0]);
        let kind = MetricKind::from_byte(e[1]);
        match (kind, std::str::from_utf8(&e[8..8 + len.min(NAME_MAX)])) {
            (Some(kind), Ok(name)) if (1..=NAME_MAX).contains(&len) => metrics.push(Metric {
                name: name.to_owned(),
                kind,
                value: u64_at(page, 192 + 64 * i + 56),
            }),
            _ => {}
        }
    }
    let invalid = count - metrics.len() as u32;
    Ok((metrics, u64_at(page, 128).is_multiple_of(2), invalid))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_read_safely_and_as_the_spec_says(page in hostile_page()) {
        let (fd, reader) = bare().expect("segment");
        let file = std::fs::File::from(fd);
        // Written through the file, bypassing the Writer, as a hostile child could.
        file.write_all_at(&page, 0).expect("pwrite");
        let page: [u8; SIZE] = page.try_into().expect("one page");
        let expected = model(&page);
        match (reader.read(), expected) {
            (Ok(snap), Ok((metrics, consistent, invalid))) => {
                prop_assert!(snap.metrics.len() <= CAPACITY);
                for m in &snap.metrics {
                    prop_assert!((1..=NAME_MAX).contains(&m.name.len()));
                }
                prop_assert_eq!(snap.metrics, metrics);
                prop_assert_eq!(snap.metrics_consistent, consistent);
                prop_assert_eq!(snap.invalid_entries, invalid);
                prop_assert_eq!(snap.writer_pid, u32_at(&page, 16));
                prop_assert_eq!(snap.heartbeat_ns, u64_at(&page, 24));
                prop_assert_eq!(snap.in_flight, u64_at(&page, 80));
            }
            (Err(got), Err(want)) => prop_assert_eq!(got.to_string(), want.to_string()),
            (got, want) => prop_assert!(false, "read {got:?}, spec says {want:?}"),
        }
    }
}

/// Sets the flag when dropped, so that a failing assertion in a scope's main thread still stops
/// the scope's other threads (instead of the scope waiting on them forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// A small, fast, deterministic generator for the scribbling thread.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_writer_holding_the_seqlock_cannot_stall_the_reader() -> Result<(), SegmentError> {
    let (raw, reader, writer) = segment()?;
    writer.counter("before_the_attack")?.inc();
    let scribbler = Scribbler::new(&raw);
    let table = &scribbler.page().table;
    let stop = AtomicBool::new(false);
    // Odd before the first read, so that no read can settle.
    table.seq.store(1, Relaxed);
    let (reads, slowest) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
            while !stop.load(Relaxed) {
                let r = xorshift(&mut rng);
                // Held odd for good, but never the same odd value for long.
                table.seq.store(r | 1, Relaxed);
                table.count.store((r >> 8) as u32 % 80, Relaxed);
                let entry = &table.entries[(r >> 40) as usize % CAPACITY];
                entry.len.store((r >> 16) as u8, Relaxed);
                entry.kind.store((r >> 24) as u8 % 4, Relaxed);
                entry.name[(r >> 32) as usize % entry.name.len()]
                    .store(xorshift(&mut rng), Relaxed);
                entry.value.store(r, Relaxed);
            }
        });
        let _stop = StopOnDrop(&stop);
        let deadline = Instant::now() + Duration::from_millis(300);
        let (mut reads, mut slowest) = (0u32, Duration::ZERO);
        while Instant::now() < deadline {
            let started = Instant::now();
            let snap = reader.read().expect("the header is left alone");
            slowest = slowest.max(started.elapsed());
            reads += 1;
            assert!(
                !snap.metrics_consistent,
                "an odd seqlock never reads as settled"
            );
            assert!(snap.metrics.len() <= CAPACITY);
            assert!(snap
                .metrics
                .iter()
                .all(|m| (1..=NAME_MAX).contains(&m.name.len())));
        }
        (reads, slowest)
    });
    // A read is a few microseconds; the bound only says it was never waited for, whatever
    // else a loaded 2-core machine is doing (timings belong to the benchmarks).
    assert!(
        slowest < Duration::from_secs(2),
        "slowest read took {slowest:?}"
    );
    assert!(reads > 100, "only {reads} reads in 300 ms");
    Ok(())
}

#[test]
fn a_seqlock_that_keeps_moving_is_flagged_not_waited_for() -> Result<(), SegmentError> {
    let (raw, reader, _writer) = segment()?;
    let scribbler = Scribbler::new(&raw);
    let seq = &scribbler.page().table.seq;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Even values only, changing all the time: every pass sees a different one.
            let mut v = 0u64;
            while !stop.load(Relaxed) {
                v = v.wrapping_add(2);
                seq.store(v, Relaxed);
            }
        });
        let _stop = StopOnDrop(&stop);
        let deadline = Instant::now() + Duration::from_millis(100);
        while Instant::now() < deadline {
            let started = Instant::now();
            reader.read().expect("header intact");
            // Never waited for (a few microseconds, bounded loosely for a loaded machine).
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    });
    Ok(())
}

#[test]
fn a_stuck_seqlock_makes_registration_busy_not_hung() -> Result<(), SegmentError> {
    let (raw, reader, writer) = segment()?;
    let scribbler = Scribbler::new(&raw);
    let seq = &scribbler.page().table.seq;
    seq.store(41, Relaxed);
    let started = Instant::now();
    assert!(matches!(writer.counter("late"), Err(SegmentError::Busy)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The invalid-name check comes first and never waits.
    assert!(matches!(writer.counter(""), Err(SegmentError::InvalidName)));
    seq.store(42, Relaxed);
    writer.counter("late")?.inc();
    assert_eq!(reader.read()?.metrics[0].name, "late");
    Ok(())
}
