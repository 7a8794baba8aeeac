//! The seals hold, so nothing a child does to the file can make the supervisor's read fault.

#![allow(clippy::cast_possible_wrap)] // `SIZE * 4` fits an `off_t`

use std::io;
use std::os::fd::AsRawFd;

use super::super::{FILE_SIZE, SIZE};
use super::segment;
use crate::segment::SegmentError;

fn errno(result: io::Result<()>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

#[test]
fn seals_forbid_shrink_grow_and_unsealing() -> Result<(), SegmentError> {
    let (raw, reader, writer) = segment()?;
    writer.counter("survivor")?.add(3);
    // SAFETY: F_GET_SEALS takes no argument; the fd is ours.
    let seals = unsafe { libc::fcntl(raw.as_raw_fd(), libc::F_GET_SEALS) };
    assert_eq!(
        seals,
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL
    );
    assert_eq!(errno(raw.set_len(0)), Some(libc::EPERM), "shrink to 0");
    assert_eq!(
        errno(raw.set_len(SIZE as u64 / 2)),
        Some(libc::EPERM),
        "shrink to half"
    );
    assert_eq!(
        errno(raw.set_len(FILE_SIZE as u64 * 2)),
        Some(libc::EPERM),
        "grow"
    );
    // SAFETY: fallocate on an fd we own, with plain integer arguments.
    let grown = unsafe { libc::fallocate(raw.as_raw_fd(), 0, 0, (FILE_SIZE * 4) as libc::off_t) };
    assert_eq!(
        (grown, io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EPERM))
    );
    // F_SEAL_SEAL: the seals can't be changed, so no one can add F_SEAL_WRITE to lock the child
    // out either.
    // SAFETY: as above.
    let added = unsafe { libc::fcntl(raw.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_WRITE) };
    assert_eq!(
        (added, io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EPERM))
    );
    assert_eq!(raw.metadata()?.len(), FILE_SIZE as u64);
    assert_eq!(reader.read()?.metrics[0].value, 3);
    Ok(())
}

#[test]
fn a_punched_hole_reads_as_zeros_not_a_fault() -> Result<(), SegmentError> {
    // The one thing the seals allow that changes content wholesale: the reader must survive it.
    let (raw, reader, writer) = segment()?;
    writer.heartbeat();
    // SAFETY: fallocate on an fd we own, with plain integer arguments.
    let punched = unsafe {
        libc::fallocate(
            raw.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            SIZE as libc::off_t,
        )
    };
    assert_eq!(punched, 0, "{}", io::Error::last_os_error());
    assert!(matches!(
        reader.read(),
        Err(SegmentError::BadMagic { found: 0 })
    ));
    assert_eq!(reader.heartbeat_ns(), 0);
    Ok(())
}

#[test]
fn the_supervisor_mapping_is_read_only() -> Result<(), SegmentError> {
    let (_raw, reader, _writer) = segment()?;
    let addr = reader.addr();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let line = maps
        .lines()
        .find(|l| {
            l.split(['-', ' '])
                .next()
                .and_then(|start| usize::from_str_radix(start, 16).ok())
                == Some(addr)
        })
        .expect("the reader's mapping in /proc/self/maps");
    // Permissions "r--s": readable, not writable, not executable, shared.
    assert_eq!(line.split_whitespace().nth(1), Some("r--s"), "{line}");
    assert!(line.contains("memfd:supervise-segment"), "{line}");
    Ok(())
}
