//! What a child writes is what the supervisor reads, at the offsets the spec names.

use std::os::unix::fs::FileExt;

use super::super::{
    monotonic_ns, HeapStats, MetricKind, Snapshot, CAPACITY, FLAG_HEAP, MAGIC, SIZE, VERSION,
};
use super::{bare, bytes, memfd, segment, u32_at, u64_at, Scribbler};
use crate::segment::{Metric, SegmentError, Writer};

#[test]
fn fresh_segment_has_header_and_nothing_else() -> Result<(), SegmentError> {
    let (fd, reader) = bare()?;
    let page = bytes(&std::fs::File::from(fd));
    assert_eq!(&page[..8], b"SUPVSEG1");
    assert_eq!(u32_at(&page, 8), VERSION);
    assert_eq!(u32_at(&page, 12) as usize, SIZE);
    assert!(page[16..].iter().all(|&b| b == 0));
    let snap = reader.read()?;
    assert_eq!(
        snap,
        Snapshot {
            metrics_consistent: true,
            processes: 1,
            ..Snapshot::default()
        }
    );
    assert_eq!(reader.heartbeat_ns(), 0);
    Ok(())
}

#[test]
fn writes_come_back_through_the_reader() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    let jobs = writer.counter("jobs")?;
    let depth = writer.gauge("queue_depth")?;
    let unicode = writer.counter("délai_µs")?;
    jobs.inc();
    jobs.add(41);
    depth.set(7);
    depth.set(3);
    unicode.add(5);
    writer.add_requests(10);
    writer.requests().inc();
    writer.add_errors(2);
    writer.set_in_flight(4);
    writer.set_heap(HeapStats {
        bytes: 100,
        peak: 200,
        allocations: 3,
        deallocations: 1,
    });
    let before = monotonic_ns();
    writer.heartbeat();
    let after = monotonic_ns();

    let snap = reader.read()?;
    assert_eq!(snap.writer_pid, std::process::id());
    assert!((before..=after).contains(&snap.heartbeat_ns), "{snap:?}");
    assert_eq!(reader.heartbeat_ns(), snap.heartbeat_ns);
    assert_eq!((snap.requests, snap.errors, snap.in_flight), (11, 2, 4));
    assert_eq!((snap.heap_bytes, snap.heap_peak), (100, 200));
    assert_eq!((snap.allocations, snap.deallocations), (3, 1));
    assert!(snap.heap_reported());
    assert!(snap.metrics_consistent);
    assert_eq!(snap.invalid_entries, 0);
    let m = |name: &str, kind, value| Metric {
        name: name.into(),
        kind,
        value,
    };
    assert_eq!(
        snap.metrics,
        [
            m("jobs", MetricKind::Counter, 42),
            m("queue_depth", MetricKind::Gauge, 3),
            m("délai_µs", MetricKind::Counter, 5),
        ]
    );
    assert_eq!((jobs.get(), depth.get()), (42, 3));
    Ok(())
}

#[test]
fn bytes_sit_at_the_spec_offsets() -> Result<(), SegmentError> {
    let (raw, _reader, writer) = segment()?;
    writer.counter("a")?.add(0x1111);
    writer.gauge("bb")?.set(0x2222);
    writer.add_requests(5);
    writer.add_errors(6);
    writer.set_in_flight(7);
    writer.set_heap(HeapStats {
        bytes: 1,
        peak: 2,
        allocations: 3,
        deallocations: 4,
    });
    writer.heartbeat();
    let page = bytes(&raw);
    assert_eq!(u64_at(&page, 0), MAGIC);
    assert_eq!(u32_at(&page, 16), std::process::id());
    assert_eq!(u32_at(&page, 20), FLAG_HEAP);
    assert_ne!(u64_at(&page, 24), 0);
    let slots: Vec<u64> = (0..7).map(|i| u64_at(&page, 32 + 8 * i)).collect();
    assert_eq!(slots, [1, 2, 3, 4, 5, 6, 7]);
    assert!(u64_at(&page, 128).is_multiple_of(2), "seqlock released");
    assert_eq!(u32_at(&page, 136), 2);
    let entry = |i: usize| &page[192 + 64 * i..192 + 64 * (i + 1)];
    assert_eq!(entry(0)[..2], [1, 1]);
    assert_eq!(&entry(0)[8..9], b"a");
    assert!(entry(0)[9..56].iter().all(|&b| b == 0));
    assert_eq!(u64_at(&page, 192 + 56), 0x1111);
    assert_eq!(entry(1)[..2], [2, 2]);
    assert_eq!(&entry(1)[8..10], b"bb");
    assert_eq!(u64_at(&page, 192 + 64 + 56), 0x2222);
    assert!(page[192 + 128..].iter().all(|&b| b == 0));
    Ok(())
}

#[test]
fn a_foreign_writer_following_the_spec_is_understood() -> Result<(), SegmentError> {
    // Write an entry byte by byte with pwrite, as a child in another language might.
    let (fd, reader) = bare()?;
    let file = std::fs::File::from(fd);
    let mut entry = [0u8; 64];
    entry[0] = 5;
    entry[1] = 2;
    entry[8..13].copy_from_slice(b"conns");
    entry[56..].copy_from_slice(&9u64.to_ne_bytes());
    file.write_all_at(&entry, 192)?;
    file.write_all_at(&1u32.to_ne_bytes(), 136)?;
    file.write_all_at(&4242u32.to_ne_bytes(), 16)?;
    let snap = reader.read()?;
    assert_eq!(snap.writer_pid, 4242);
    assert!(!snap.heap_reported());
    assert_eq!(
        snap.metrics,
        [Metric {
            name: "conns".into(),
            kind: MetricKind::Gauge,
            value: 9
        }]
    );
    Ok(())
}

#[test]
fn handles_outlive_the_writer() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    let c = writer.counter("c")?;
    let in_flight = writer.in_flight();
    drop(writer);
    let c2 = c.clone();
    std::thread::spawn(move || c2.add(2))
        .join()
        .expect("thread");
    c.inc();
    in_flight.set(9);
    let snap = reader.read()?;
    assert_eq!(snap.metrics[0].value, 3);
    assert_eq!(snap.in_flight, 9);
    Ok(())
}

#[test]
fn read_into_reuses_and_truncates() -> Result<(), SegmentError> {
    let (raw, reader, writer) = segment()?;
    for i in 0..5 {
        writer.counter(&format!("m{i}"))?;
    }
    let mut snap = Snapshot::default();
    reader.read_into(&mut snap)?;
    assert_eq!(snap.metrics.len(), 5);
    // Pretend the table shrank (only a hostile child can do that).
    raw.write_all_at(&2u32.to_ne_bytes(), 136)?;
    reader.read_into(&mut snap)?;
    assert_eq!(
        snap.metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1"]
    );
    // A failed read leaves the snapshot alone.
    raw.write_all_at(&0u64.to_ne_bytes(), 0)?;
    let kept = snap.clone();
    assert!(matches!(
        reader.read_into(&mut snap),
        Err(SegmentError::BadMagic { found: 0 })
    ));
    assert_eq!(snap, kept);
    Ok(())
}

#[test]
fn reader_rejects_a_scribbled_header() -> Result<(), SegmentError> {
    let (raw, reader, _writer) = segment()?;
    let scribbler = Scribbler::new(&raw);
    let header = &scribbler.page().header;
    header
        .version
        .store(1, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        reader.read(),
        Err(SegmentError::BadVersion { found: 1 })
    ));
    header
        .version
        .store(VERSION, std::sync::atomic::Ordering::Relaxed);
    header
        .size
        .store(1 << 30, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        reader.read(),
        Err(SegmentError::BadSize { found: 0x4000_0000 })
    ));
    header
        .magic
        .store(!MAGIC, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(reader.read(), Err(SegmentError::BadMagic { .. })));
    Ok(())
}

#[test]
fn writer_rejects_what_is_not_a_segment() -> Result<(), SegmentError> {
    // A wrong header.
    let (fd, _reader) = bare()?;
    let file = std::fs::File::from(fd.try_clone()?);
    file.write_all_at(b"NOTASEG!", 0)?;
    assert!(matches!(
        Writer::from_fd(fd),
        Err(SegmentError::BadMagic { .. })
    ));
    let (fd, _reader) = bare()?;
    std::fs::File::from(fd.try_clone()?).write_all_at(&9u32.to_ne_bytes(), 8)?;
    assert!(matches!(
        Writer::from_fd(fd),
        Err(SegmentError::BadVersion { found: 9 })
    ));
    // Files that are not memfds sealed against shrinking: a truncation could SIGBUS the child.
    let unsealed = memfd(SIZE as u64, 0)?;
    assert!(matches!(
        Writer::from_fd(unsealed.into()),
        Err(SegmentError::NotSealed)
    ));
    let not_memfd = std::fs::File::open("/dev/null")?;
    assert!(matches!(
        Writer::from_fd(not_memfd.into()),
        Err(SegmentError::NotSealed)
    ));
    // Sealed, but too short to hold a page.
    let short = memfd(100, libc::F_SEAL_SHRINK)?;
    assert!(matches!(
        Writer::from_fd(short.into()),
        Err(SegmentError::TooSmall { len: 100 })
    ));
    Ok(())
}

#[test]
fn heartbeats_follow_the_clock() -> Result<(), SegmentError> {
    let (_raw, reader, writer) = segment()?;
    writer.heartbeat();
    let first = reader.heartbeat_ns();
    std::thread::sleep(std::time::Duration::from_millis(2));
    writer.heartbeat();
    let second = reader.heartbeat_ns();
    assert!(second >= first + 1_000_000, "{first} -> {second}");
    writer.heartbeat_coarse();
    let coarse = reader.heartbeat_ns();
    // The coarse clock lags by at most a tick (10 ms at HZ=100); allow generously.
    assert!(
        coarse + 50_000_000 >= second && coarse <= monotonic_ns(),
        "{second} vs {coarse}"
    );
    Ok(())
}

#[test]
fn capacity_matches_the_page() {
    assert_eq!(192 + 64 * CAPACITY, SIZE);
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<crate::segment::Reader>();
    send_sync::<Writer>();
    send_sync::<crate::segment::Counter>();
    send_sync::<crate::segment::Gauge>();
    send_sync::<Snapshot>();
}
