//! Tests on real memfds. Shared helpers here; the behaviours in the submodules.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use memmap2::{MmapOptions, MmapRaw};

use super::layout::{Page, SIZE};
use super::{create, Reader, SegmentError, Writer};

mod hostile;
mod processes;
mod registration;
mod round_trip;
mod seals;

/// A fresh segment: a dup of the child's fd (for raw access, as a hostile child would have), the
/// supervisor's reader, and a writer attached through another dup.
fn segment() -> Result<(File, Reader, Writer), SegmentError> {
    let (fd, reader) = create()?;
    let raw = File::from(fd.try_clone()?);
    let writer = Writer::from_fd(fd)?;
    Ok((raw, reader, writer))
}

/// A fresh segment nobody attached to yet.
fn bare() -> Result<(OwnedFd, Reader), SegmentError> {
    Ok(create()?)
}

/// A memfd of `len` bytes with `seals` added.
fn memfd(len: u64, seals: libc::c_int) -> std::io::Result<File> {
    // SAFETY: a literal NUL-terminated name and plain flags; the result is checked before use.
    let raw = unsafe {
        libc::memfd_create(
            c"test".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned `raw`; nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    file.set_len(len)?;
    // SAFETY: F_ADD_SEALS with an int argument, on an fd we own.
    if seals != 0 && unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// The page's bytes as the file holds them.
fn bytes(file: &File) -> [u8; SIZE] {
    let mut buf = [0u8; SIZE];
    file.read_exact_at(&mut buf, 0)
        .expect("pread of the segment");
    buf
}

fn u32_at(page: &[u8; SIZE], offset: usize) -> u32 {
    u32::from_ne_bytes(page[offset..offset + 4].try_into().expect("4 bytes"))
}

fn u64_at(page: &[u8; SIZE], offset: usize) -> u64 {
    u64::from_ne_bytes(page[offset..offset + 8].try_into().expect("8 bytes"))
}

/// A second read-write mapping of a segment, bypassing the [`Writer`]: what a hostile (or
/// foreign-language) child writes with.
struct Scribbler(MmapRaw);

impl Scribbler {
    fn new(file: &File) -> Self {
        Self(
            MmapOptions::new()
                .len(SIZE)
                .map_raw(file)
                .expect("map the segment read-write"),
        )
    }

    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned addresses
    fn page(&self) -> &Page {
        // SAFETY: a live, page-aligned, read-write shared mapping of `SIZE` bytes of a memfd
        // sealed against shrinking, alive as long as `self`; `Page` is all atomics, so any bytes
        // are a valid `Page` and concurrent access through `UnsafeCell` is sound.
        unsafe { &*self.0.as_mut_ptr().cast::<Page>() }
    }
}
