//! Registering names: duplicates, kinds, limits, and many threads at once.

use std::sync::atomic::{AtomicBool, Ordering};

use super::super::{MetricKind, CAPACITY, NAME_MAX};
use super::segment;
use crate::segment::SegmentError;

#[test]
fn the_same_name_gives_the_same_slot() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    let a = writer.counter("hits")?;
    let b = writer.counter("hits")?;
    let g1 = writer.gauge("level")?;
    let g2 = writer.clone().gauge("level")?;
    a.inc();
    b.add(2);
    g1.set(5);
    assert_eq!(g2.get(), 5);
    let snap = reader.read()?;
    assert_eq!(snap.metrics.len(), 2);
    assert_eq!(snap.metrics[0].value, 3);
    Ok(())
}

#[test]
fn a_name_keeps_its_kind() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    writer.counter("x")?;
    writer.gauge("y")?;
    assert!(matches!(
        writer.gauge("x"),
        Err(SegmentError::KindMismatch {
            existing: MetricKind::Counter
        })
    ));
    assert!(matches!(
        writer.counter("y"),
        Err(SegmentError::KindMismatch {
            existing: MetricKind::Gauge
        })
    ));
    assert_eq!(reader.read()?.metrics.len(), 2);
    Ok(())
}

#[test]
fn names_are_one_to_max_bytes() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    assert!(matches!(writer.counter(""), Err(SegmentError::InvalidName)));
    assert!(matches!(
        writer.counter(&"n".repeat(NAME_MAX + 1)),
        Err(SegmentError::InvalidName)
    ));
    // 47 bytes plus a two-byte character is 49: too long, although it is 48 characters.
    let long_chars = format!("{}é", "n".repeat(NAME_MAX - 1));
    assert!(matches!(
        writer.counter(&long_chars),
        Err(SegmentError::InvalidName)
    ));
    let longest = "m".repeat(NAME_MAX);
    let fits = format!("{}é", "n".repeat(NAME_MAX - 2));
    writer.counter(&longest)?.inc();
    writer.gauge(&fits)?.set(1);
    writer.counter("1")?;
    let names: Vec<String> = reader.read()?.metrics.into_iter().map(|m| m.name).collect();
    assert_eq!(names, [longest, fits, "1".to_owned()]);
    // A prefix of a registered name is another name.
    writer.counter(&"m".repeat(NAME_MAX - 1))?;
    assert_eq!(reader.read()?.metrics.len(), 4);
    Ok(())
}

#[test]
fn a_full_table_refuses_new_names_but_finds_old_ones() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    for i in 0..CAPACITY {
        writer.counter(&format!("metric_{i}"))?.add(i as u64);
    }
    assert!(matches!(
        writer.counter("one_too_many"),
        Err(SegmentError::TableFull)
    ));
    assert!(matches!(
        writer.gauge("one_too_many"),
        Err(SegmentError::TableFull)
    ));
    writer.counter("metric_60")?.inc();
    let snap = reader.read()?;
    assert_eq!(snap.metrics.len(), CAPACITY);
    assert_eq!(snap.metrics[60].value, 61);
    assert!(snap.metrics_consistent);
    Ok(())
}

#[test]
fn threads_registering_at_once_share_slots() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    std::thread::scope(|s| {
        for t in 0..8 {
            let writer = writer.clone();
            s.spawn(move || {
                for i in 0..40 {
                    // Each name is registered by two threads; both must get the same slot.
                    let name = format!("n{}", (i * 8 + t) % 60);
                    writer.counter(&name).expect("register").inc();
                }
            });
        }
    });
    let snap = reader.read()?;
    assert!(snap.metrics_consistent);
    assert_eq!(snap.metrics.len(), 60);
    let mut names: Vec<&str> = snap.metrics.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 60, "no name registered twice");
    assert_eq!(snap.metrics.iter().map(|m| m.value).sum::<u64>(), 8 * 40);
    Ok(())
}

#[test]
fn a_reader_during_registration_sees_whole_names() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    let expected: Vec<String> = (0..CAPACITY)
        .map(|i| format!("{i:0>width$}", width = 10 + i % 30))
        .collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for name in &expected {
                writer.gauge(name).expect("register");
            }
            done.store(true, Ordering::Release);
        });
        let mut reads = 0;
        while !done.load(Ordering::Acquire) || reads == 0 {
            let snap = reader.read().expect("header intact");
            reads += 1;
            if snap.metrics_consistent {
                let names: Vec<&str> = snap.metrics.iter().map(|m| m.name.as_str()).collect();
                assert_eq!(
                    names,
                    expected[..names.len()],
                    "a consistent read is a prefix"
                );
            }
            assert_eq!(
                snap.invalid_entries, 0,
                "an honest writer never looks malformed"
            );
        }
    });
    assert!(reader.read()?.metrics_consistent);
    Ok(())
}
