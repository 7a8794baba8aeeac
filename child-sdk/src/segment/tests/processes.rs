//! Process pages: claimed by forked processes, added up by the reader, and folded into the
//! program's totals once their process is gone, so that no counter goes backwards.

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use super::super::{process_page_offset, DIRECTORY, PROCESS_PAGES};
use crate::segment::{create, SegmentError, Writer};

fn value(snap: &crate::segment::Snapshot, name: &str) -> Option<u64> {
    snap.metrics
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.value)
}

#[test]
fn a_gone_process_is_folded_and_its_page_reused() -> Result<(), SegmentError> {
    let (fd, reader) = create()?;
    let keep = fd.try_clone()?;
    let raw = std::fs::File::from(fd.try_clone()?);
    let main = Writer::from_fd(fd)?;
    main.counter("jobs")?.add(1);
    let me = std::process::id();
    let child = Writer::claim(keep.as_fd())?;
    assert_eq!(child.page_offset(), process_page_offset(0));
    child.counter("jobs")?.add(10);
    child.gauge("queue")?.set(4);
    child.add_requests(7);
    let snap = reader.read()?;
    assert_eq!(
        (value(&snap, "jobs"), value(&snap, "queue")),
        (Some(11), Some(4))
    );
    assert_eq!((snap.requests, snap.processes, snap.released), (7, 2, 0));
    // Nothing is gone: nothing is freed.
    assert_eq!(reader.release(|_| false), 0);
    // The "child" is gone: its counters stay, its gauge goes, its page is free.
    assert_eq!(reader.release(|pid| pid == me), 1);
    let mut pid = [0u8; 4];
    raw.read_exact_at(&mut pid, DIRECTORY as u64)?;
    assert_eq!(pid, [0; 4]);
    let snap = reader.read()?;
    assert_eq!(
        (value(&snap, "jobs"), value(&snap, "queue")),
        (Some(11), None)
    );
    assert_eq!((snap.requests, snap.processes, snap.released), (7, 1, 1));
    // The next process gets the same page, empty, and the totals go on from there.
    let next = Writer::claim(keep.as_fd())?;
    assert_eq!(next.page_offset(), process_page_offset(0));
    next.counter("jobs")?.add(5);
    let snap = reader.read()?;
    assert_eq!(value(&snap, "jobs"), Some(16));
    assert_eq!(snap.requests, 7);
    // Folding twice never happens: a freed page is not in the directory any more.
    assert_eq!(reader.release(|pid| pid == me), 1);
    assert_eq!(reader.release(|pid| pid == me), 0);
    assert_eq!(value(&reader.read()?, "jobs"), Some(16));
    Ok(())
}

#[test]
fn heartbeats_of_every_page_count() -> Result<(), SegmentError> {
    let (fd, reader) = create()?;
    let keep = fd.try_clone()?;
    let _main = Writer::from_fd(fd)?;
    assert_eq!(reader.heartbeat_ns(), 0);
    let child = Writer::claim(keep.as_fd())?;
    child.heartbeat();
    assert_ne!(reader.heartbeat_ns(), 0);
    assert_eq!(reader.heartbeat_ns(), reader.read()?.heartbeat_ns);
    Ok(())
}

#[test]
fn claims_stop_when_every_page_is_taken() -> Result<(), SegmentError> {
    let (fd, reader) = create()?;
    let _main = Writer::from_fd(fd.try_clone()?)?;
    let writers: Vec<Writer> = (0..PROCESS_PAGES)
        .map(|_| Writer::claim(fd.as_fd()))
        .collect::<Result<_, _>>()?;
    for w in &writers {
        w.add_requests(1);
    }
    assert!(matches!(
        Writer::claim(fd.as_fd()),
        Err(SegmentError::TableFull)
    ));
    let snap = reader.read()?;
    assert_eq!(snap.requests, PROCESS_PAGES as u64);
    assert_eq!(snap.processes as usize, PROCESS_PAGES + 1);
    Ok(())
}

#[test]
fn a_scribbled_directory_costs_only_its_own_figures() -> Result<(), SegmentError> {
    let (fd, reader) = create()?;
    let raw = std::fs::File::from(fd.try_clone()?);
    let main = Writer::from_fd(fd)?;
    main.counter("jobs")?.add(3);
    // Every entry names a process whose page was never given a header.
    let garbage: Vec<u8> = (0..PROCESS_PAGES as u32)
        .flat_map(|i| (i * 7919 + 1).to_ne_bytes())
        .collect();
    raw.write_all_at(&garbage, DIRECTORY as u64)?;
    let snap = reader.read()?;
    assert_eq!(value(&snap, "jobs"), Some(3));
    assert_eq!(snap.processes, 1);
    assert_eq!(snap.invalid_entries as usize, PROCESS_PAGES);
    // Releasing pages that never held anything folds nothing.
    assert_eq!(reader.release(|_| true), PROCESS_PAGES);
    assert_eq!(value(&reader.read()?, "jobs"), Some(3));
    Ok(())
}
