//! The supervisor's half: create, seal and read a segment, trusting none of its bytes.
//!
//! Every access to the page in this file is a `load(Relaxed)` of at most eight bytes. That is the
//! whole soundness argument for reading a mapping that is read-only (a store would fault) and
//! concurrently written by a process we do not trust: such loads never write, on the 64-bit
//! targets this module is compiled for (std's "Atomic accesses to read-only memory"), and
//! acquire ordering, where needed, comes from separate fences.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{fence, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use memmap2::{MmapOptions, MmapRaw};

use super::layout::{
    process_page_offset, Directory, Entry, Page, Table, CAPACITY, DIRECTORY, FILE_SIZE, MAGIC,
    NAME_MAX, PROCESS_PAGES, SIZE, VERSION,
};
use super::merge::{fold_page, merge_page};
use super::snapshot::{Metric, Snapshot};
use super::{MetricKind, SegmentError};

/// Passes over the table before a read gives up on the seqlock settling. A writer holding the
/// seqlock odd for good must not stall the supervisor (DESIGN §8).
const READ_ATTEMPTS: u32 = 4;
/// Spin hints between passes: long enough for a legitimate registration (well under a
/// microsecond) to finish, short enough that a hostile writer costs a read a few microseconds.
const SPINS_BETWEEN_ATTEMPTS: u32 = 64;

/// Creates a segment for one worker incarnation: a memfd of [`FILE_SIZE`] bytes with a valid
/// header, sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`, and a read-only mapping of it.
///
/// The fd (close-on-exec) is for the child, at fd 4; the [`Reader`] is the supervisor's. The
/// memory is freed when the fd, every dup of it and every mapping are gone. Pages nobody writes
/// cost nothing: the file is sparse, and the reader touches a process page only once the
/// directory names its owner.
///
/// # Errors
/// Any failing system call (`memfd_create`, `ftruncate`, `pwrite`, `fcntl`, `mmap`).
pub fn create() -> io::Result<(OwnedFd, Reader)> {
    // SAFETY: the name is a NUL-terminated literal that memfd_create only reads; the flags are
    // plain integers.
    let raw = unsafe {
        libc::memfd_create(
            c"supervise-segment".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a valid fd that nothing else owns: memfd_create just returned it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    file.set_len(FILE_SIZE as u64)?;
    // The header through pwrite rather than a temporary writable mapping: same bytes, no unsafe.
    // The rest of the page is zero (ftruncate).
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&MAGIC.to_ne_bytes());
    header[8..12].copy_from_slice(&VERSION.to_ne_bytes());
    #[allow(clippy::cast_possible_truncation)] // SIZE is 4096
    header[12..16].copy_from_slice(&(SIZE as u32).to_ne_bytes());
    file.write_all_at(&header, 0)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int argument and only changes the file's seals; we own the fd.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let map = MmapOptions::new().len(FILE_SIZE).map_raw_read_only(&file)?;
    // Our own description of the file, for the one write the supervisor makes: freeing a dead
    // process's page (`pwrite`, never through the mapping, which stays read-only).
    let own = file.try_clone()?;
    Ok((
        OwnedFd::from(file),
        Reader {
            map,
            file: own,
            state: Mutex::new(State::default()),
        },
    ))
}

/// The supervisor's read-only view of one segment. `Send + Sync`; reads take `&self`.
///
/// `MmapRaw` (mapped `PROT_READ`), not `Mmap`: an `Mmap` dereferences to `&[u8]`, which
/// promises the bytes do not change while borrowed (false here); `MmapRaw` only hands out a
/// pointer.
pub struct Reader {
    map: MmapRaw,
    /// The memfd, to free directory entries with `pwrite`.
    file: File,
    state: Mutex<State>,
}

/// What a reader keeps between reads.
#[derive(Debug, Default)]
struct State {
    /// The counters of process pages freed so far (see [`Reader::release`]): added to every
    /// read, so that a counter never goes backwards because a process exited.
    folded: Snapshot,
    /// One process page's read, reused.
    scratch: Snapshot,
}

impl Reader {
    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned addresses
    fn page(&self) -> &Page {
        self.page_at(0)
    }

    /// The page at byte `offset` (a multiple of [`SIZE`] below [`FILE_SIZE`]).
    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned addresses
    fn page_at(&self, offset: usize) -> &Page {
        debug_assert!(offset.is_multiple_of(SIZE) && offset < FILE_SIZE);
        let offset = offset.min(FILE_SIZE - SIZE);
        // SAFETY: the pointer is `offset` bytes (a multiple of the page size, at most
        // `FILE_SIZE - SIZE`) into a live, page-aligned, `PROT_READ` shared mapping of
        // `FILE_SIZE` bytes that lives as long as `self`, of a memfd we sealed against shrinking
        // before mapping it, so it is valid for reads of a `Page` (`size_of::<Page>() == SIZE`,
        // align 8) and can never SIGBUS. `Page` holds only atomics: any bytes the child writes
        // are a valid `Page`, and its concurrent writes go through `UnsafeCell`, so they do not
        // break a shared reference. The memory is read-only: nothing in this file stores through
        // the reference, and it only performs relaxed loads of at most 8 bytes, which never write
        // (module docs).
        unsafe { &*self.map.as_ptr().add(offset).cast::<Page>() }
    }

    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned addresses
    fn directory(&self) -> &Directory {
        // SAFETY: as in `page_at`: `DIRECTORY` is the second page of the mapping, and
        // `Directory` (`SIZE` bytes, align 4) holds only atomics that we only load.
        unsafe { &*self.map.as_ptr().add(DIRECTORY).cast::<Directory>() }
    }

    /// The claimed process pages: (index, owner pid), in directory order.
    fn claimed(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.directory()
            .pids
            .iter()
            .enumerate()
            .map(|(i, pid)| (i, pid.load(Relaxed)))
            .filter(|&(_, pid)| pid != 0)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the page is mapped, for tests that look it up in `/proc/self/maps`.
    #[cfg(test)]
    pub(crate) fn addr(&self) -> usize {
        self.map.as_ptr() as usize
    }

    /// The latest heartbeat of the main page and the live process pages: relaxed loads, no
    /// validation (a hostile child can put any number here, as it can through [`Reader::read`]).
    /// One process's beat is enough: the work goes on somewhere in the program.
    #[inline]
    #[must_use]
    pub fn heartbeat_ns(&self) -> u64 {
        let main = self.page().header.heartbeat.load(Relaxed);
        self.claimed()
            .map(|(i, _)| {
                self.page_at(process_page_offset(i))
                    .header
                    .heartbeat
                    .load(Relaxed)
            })
            .fold(main, u64::max)
    }

    /// Frees the process pages whose owner `gone` says has exited, after folding their counters
    /// (the fixed `requests`, `errors`, `allocations`, `deallocations` and every named counter)
    /// into what every later read adds: a counter never goes backwards because a process
    /// exited. Gauges and heap figures of a gone process are dropped. Returns how many pages
    /// were freed.
    ///
    /// A page is freed by storing `0` into its directory entry with `pwrite` (the mapping stays
    /// read-only); a page whose entry cannot be written stays counted and is not folded, so
    /// nothing is counted twice.
    pub fn release(&self, mut gone: impl FnMut(u32) -> bool) -> usize {
        let mut state = self.state();
        let State { folded, scratch } = &mut *state;
        let mut freed = 0;
        for (i, pid) in self.claimed().collect::<Vec<_>>() {
            if !gone(pid) {
                continue;
            }
            let page = self.page_at(process_page_offset(i));
            let valid = read_page(page, scratch).is_ok();
            let at = (DIRECTORY + 4 * i) as u64;
            if self.file.write_all_at(&0u32.to_ne_bytes(), at).is_err() {
                continue;
            }
            if valid {
                fold_page(folded, scratch);
            }
            folded.released = folded.released.saturating_add(1);
            freed += 1;
        }
        freed
    }

    /// Reads and validates the whole segment.
    ///
    /// # Errors
    /// [`SegmentError::BadMagic`], [`SegmentError::BadVersion`] or [`SegmentError::BadSize`]
    /// when the child overwrote the header. A torn or garbled table is not an error: see
    /// [`Snapshot::metrics_consistent`] and [`Snapshot::invalid_entries`].
    pub fn read(&self) -> Result<Snapshot, SegmentError> {
        let mut snap = Snapshot::default();
        self.read_into(&mut snap)?;
        Ok(snap)
    }

    /// Like [`Reader::read`], reusing `snap`'s allocations (its metric vector and names) for a
    /// supervisor that reads every tick. On error `snap` is left as it was.
    ///
    /// # Errors
    /// As [`Reader::read`].
    pub fn read_into(&self, snap: &mut Snapshot) -> Result<(), SegmentError> {
        read_page(self.page(), snap)?;
        snap.processes = 1;
        snap.released = 0;
        let mut state = self.state();
        let State { folded, scratch } = &mut *state;
        for (i, _) in self.claimed() {
            // A process page whose header its owner did not write (or scribbled over) is not
            // counted: the owner harms only its own figures.
            if read_page(self.page_at(process_page_offset(i)), scratch).is_ok() {
                merge_page(snap, scratch);
                snap.processes = snap.processes.saturating_add(1);
            } else {
                snap.invalid_entries = snap.invalid_entries.saturating_add(1);
            }
        }
        if folded.released > 0 {
            merge_page(snap, folded);
            snap.released = folded.released;
        }
        Ok(())
    }
}

/// Reads one page (the main page or a process page) into `snap`, after checking its header.
fn read_page(page: &Page, snap: &mut Snapshot) -> Result<(), SegmentError> {
    let header = &page.header;
    let found = header.magic.load(Relaxed);
    if found != MAGIC {
        return Err(SegmentError::BadMagic { found });
    }
    let found = header.version.load(Relaxed);
    if found != VERSION {
        return Err(SegmentError::BadVersion { found });
    }
    let found = header.size.load(Relaxed);
    if found as usize != SIZE {
        return Err(SegmentError::BadSize { found });
    }
    snap.writer_pid = header.writer_pid.load(Relaxed);
    snap.flags = header.flags.load(Relaxed);
    snap.heartbeat_ns = header.heartbeat.load(Relaxed);
    // Pairs with the child's release store of the heartbeat: slot updates it made before that
    // beat are visible below.
    fence(Acquire);
    let slots = &page.slots;
    snap.heap_bytes = slots.heap.bytes.load(Relaxed);
    snap.heap_peak = slots.heap.peak.load(Relaxed);
    snap.allocations = slots.heap.allocations.load(Relaxed);
    snap.deallocations = slots.heap.deallocations.load(Relaxed);
    snap.requests = slots.requests.load(Relaxed);
    snap.errors = slots.errors.load(Relaxed);
    snap.in_flight = slots.in_flight.load(Relaxed);
    let (consistent, invalid) = read_table(&page.table, &mut snap.metrics);
    snap.metrics_consistent = consistent;
    snap.invalid_entries = invalid;
    Ok(())
}

/// The reader half of the seqlock (the fence-based form, Boehm 2012, since acquire *loads* are
/// not guaranteed on read-only memory): load `seq`, fence acquire, read, fence acquire, load `seq`.
/// If a read saw a table write made after the writer's release fence (which follows its odd
/// `seq`), the second fence makes the second load see that odd value or later, so a settled
/// even `seq` means no registration overlapped the pass. At most [`READ_ATTEMPTS`] passes.
fn read_table(table: &Table, out: &mut Vec<Metric>) -> (bool, u32) {
    let mut invalid = 0;
    for attempt in 1..=READ_ATTEMPTS {
        let before = table.seq.load(Relaxed);
        fence(Acquire);
        let last = attempt == READ_ATTEMPTS;
        if before & 1 == 1 && !last {
            pause();
            continue;
        }
        invalid = read_entries(table, out);
        fence(Acquire);
        let after = table.seq.load(Relaxed);
        if before & 1 == 0 && before == after {
            return (true, invalid);
        }
        if !last {
            pause();
        }
    }
    (false, invalid)
}

fn pause() {
    for _ in 0..SPINS_BETWEEN_ATTEMPTS {
        std::hint::spin_loop();
    }
}

/// One pass over the table into `out` (reusing its strings); returns how many claimed entries
/// were not delivered.
fn read_entries(table: &Table, out: &mut Vec<Metric>) -> u32 {
    let count = table.count.load(Relaxed);
    // Pairs with the writer's release store of `count`: entries below it are complete, even in
    // a pass the seqlock later rejects.
    fence(Acquire);
    #[allow(clippy::cast_possible_truncation)] // CAPACITY is 61
    let mut invalid = count.saturating_sub(CAPACITY as u32);
    let claimed = usize::try_from(count).map_or(CAPACITY, |c| c.min(CAPACITY));
    let mut n = 0;
    for entry in table.entries.iter().take(claimed) {
        let mut name = [0u8; NAME_MAX];
        let Some((name, kind, value)) = decode(entry, &mut name) else {
            invalid += 1;
            continue;
        };
        if let Some(metric) = out.get_mut(n) {
            metric.name.clear();
            metric.name.push_str(name);
            metric.kind = kind;
            metric.value = value;
        } else {
            out.push(Metric {
                name: name.to_owned(),
                kind,
                value,
            });
        }
        n += 1;
    }
    out.truncate(n);
    invalid
}

/// A well-formed entry's name (borrowed from `buf`), kind and value; `None` if any is malformed.
fn decode<'a>(entry: &Entry, buf: &'a mut [u8; NAME_MAX]) -> Option<(&'a str, MetricKind, u64)> {
    let len = usize::from(entry.len.load(Relaxed));
    let kind = MetricKind::from_byte(entry.kind.load(Relaxed))?;
    let value = entry.value.load(Relaxed);
    if len == 0 {
        return None;
    }
    *buf = entry.load_name();
    // `get` rather than indexing: a length over NAME_MAX is malformed, not a panic.
    let name = std::str::from_utf8(buf.get(..len)?).ok()?;
    Some((name, kind, value))
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("page", &self.map.as_ptr())
            .field("pages", &PROCESS_PAGES)
            .finish_non_exhaustive()
    }
}
