//! The child's half: map the segment read-write and publish numbers into it.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

#[cfg(feature = "alloc")]
use super::layout::HeapSlots;
use super::layout::{
    pack_name, process_page_offset, Directory, Page, CAPACITY, DIRECTORY, FILE_SIZE, FLAG_HEAP,
    MAGIC, NAME_MAX, SIZE,
};
use super::{clock_ns, MetricKind, SegmentError, VERSION};

/// How long [`Writer::counter`] and [`Writer::gauge`] wait for another thread's registration.
/// A registration takes well under a microsecond; this bound only matters when something holds
/// the seqlock odd for good (a bug, or a scribbler), and turns a hang into [`SegmentError::Busy`].
const LOCK_PATIENCE: Duration = Duration::from_millis(100);

/// The read-write mapping, shared by the [`Writer`] and every [`Counter`] and [`Gauge`] it made;
/// unmapped when the last of them goes. `MmapRaw` rather than `MmapMut`: it never hands out a
/// `&[u8]`/`&mut [u8]`, which would claim the bytes do not change behind our back.
pub(crate) struct Mapping {
    map: MmapRaw,
    /// Where this writer's page starts: 0 for the main page, or a process page's offset.
    offset: usize,
}

impl Mapping {
    #[inline]
    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned addresses
    fn page(&self) -> &Page {
        // SAFETY: `offset` is 0 or a process page's offset (a multiple of `SIZE`, at most
        // `FILE_SIZE - SIZE`), inside a live, page-aligned, read-write shared mapping of
        // `FILE_SIZE` bytes of a file sealed against shrinking (checked in `map_segment`), so the
        // pointer is valid for reads and writes of a `Page` (`size_of::<Page>() == SIZE`, align
        // 8) for as long as `self`, and cannot SIGBUS. `Page` holds only atomics: every bit
        // pattern is valid, and all access goes through `UnsafeCell`, so other threads and
        // processes writing concurrently (even non-atomically, from another language) do not
        // break this shared reference.
        unsafe { &*self.map.as_mut_ptr().add(self.offset).cast::<Page>() }
    }

    #[allow(clippy::cast_ptr_alignment)] // mmap returns page-aligned addresses
    fn directory(&self) -> &Directory {
        // SAFETY: as in `page`: the directory is the mapping's second page, `Directory` is
        // `SIZE` bytes of atomics with align 4.
        unsafe { &*self.map.as_mut_ptr().add(DIRECTORY).cast::<Directory>() }
    }
}

/// How long [`Writer::claim`] waits for a sibling's claim to finish.
const CLAIM_PATIENCE: Duration = Duration::from_secs(1);

/// Checks `file`'s seals, size and main page header, and maps it read-write.
fn map_segment(file: &File) -> Result<MmapRaw, SegmentError> {
    // SAFETY: F_GET_SEALS takes no argument and only reads the fd's seals; the fd is open
    // because the caller holds it.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    // EINVAL: not a memfd (or a kernel without sealing): nothing stops a truncation.
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(SegmentError::NotSealed);
    }
    let len = file.metadata()?.len();
    if len < FILE_SIZE as u64 {
        return Err(SegmentError::TooSmall { len });
    }
    let map = MmapOptions::new().len(FILE_SIZE).map_raw(file)?;
    let main = Mapping { map, offset: 0 };
    let header = &main.page().header;
    // Relaxed is enough: the supervisor wrote the header before handing us the fd, and the
    // fork/exec (or fd passing) in between orders it before anything we do.
    let found = header.magic.load(Ordering::Relaxed);
    if found != MAGIC {
        return Err(SegmentError::BadMagic { found });
    }
    let found = header.version.load(Ordering::Relaxed);
    if found != VERSION {
        return Err(SegmentError::BadVersion { found });
    }
    let found = header.size.load(Ordering::Relaxed);
    if found as usize != SIZE {
        return Err(SegmentError::BadSize { found });
    }
    Ok(main.map)
}

/// Takes (`F_WRLCK`) or drops (`F_UNLCK`) the claim lock: a POSIX record lock on the
/// directory's first byte, held per process and released by the kernel if the process dies.
fn claim_lock(fd: BorrowedFd<'_>, kind: libc::c_short) -> std::io::Result<()> {
    // SAFETY: all-zero is a valid `flock`; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = DIRECTORY as libc::off_t;
    lock.l_len = 1;
    // SAFETY: F_SETLK with a pointer to a valid `flock` that lives for the call; the fd is
    // borrowed, so it is open.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &raw const lock) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The child's handle on its segment. Cheap to clone; `Send + Sync`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use child_sdk::segment::{self, Writer};
///
/// // In a real child the fd comes from `SUPERVISE_SEGMENT_FD`; here we play both sides.
/// let (fd, reader) = segment::create()?;
/// let writer = Writer::from_fd(fd)?;
/// let served = writer.counter("jobs_served")?;
/// let queue = writer.gauge("queue_len")?;
/// served.inc();
/// queue.set(7);
/// writer.heartbeat();
///
/// let snap = reader.read()?;
/// assert_eq!(snap.writer_pid, std::process::id());
/// assert_eq!(snap.metrics[0].name, "jobs_served");
/// assert_eq!(snap.metrics[1].value, 7);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Writer {
    map: Arc<Mapping>,
}

/// A named counter (or a fixed counter slot). One atomic add per update; `Clone + Send + Sync`.
#[derive(Clone)]
pub struct Counter(Cell);

/// A named gauge (or a fixed gauge slot). One atomic store per update; `Clone + Send + Sync`.
#[derive(Clone)]
pub struct Gauge(Cell);

/// The heap numbers of the fixed slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Live heap bytes.
    pub bytes: u64,
    /// Highest `bytes` so far.
    pub peak: u64,
    /// Allocations so far.
    pub allocations: u64,
    /// Deallocations so far.
    pub deallocations: u64,
}

/// A pointer to one value of the page, keeping the mapping alive.
#[derive(Clone)]
struct Cell {
    value: NonNull<AtomicU64>,
    /// Keeps the mapping `value` points into alive.
    _map: Arc<Mapping>,
}

// SAFETY: `value` points into the mapping that `_map` keeps alive for as long as this `Cell`
// exists, and `AtomicU64` is `Sync`: the cell is a `&AtomicU64` with a reference-counted owner.
unsafe impl Send for Cell {}
// SAFETY: as above.
unsafe impl Sync for Cell {}

impl Cell {
    fn new(map: &Arc<Mapping>, value: &AtomicU64) -> Self {
        Self {
            value: NonNull::from(value),
            _map: Arc::clone(map),
        }
    }

    #[inline]
    fn get(&self) -> &AtomicU64 {
        // SAFETY: see the `Send`/`Sync` impls: the pointee lives in the mapping `self._map` keeps
        // alive, and was made from a valid `&AtomicU64`.
        unsafe { self.value.as_ref() }
    }
}

impl Writer {
    /// Maps the segment `fd` read-write, checks its seals, size and header, and stores this
    /// process's pid in it. The fd is closed once mapped (the mapping keeps the memory), so it is
    /// not inherited by the child's own children.
    ///
    /// # Errors
    /// [`SegmentError::NotSealed`] if the fd is not a memfd sealed against shrinking (mapping it
    /// could end in `SIGBUS`), [`SegmentError::TooSmall`], [`SegmentError::BadMagic`],
    /// [`SegmentError::BadVersion`], [`SegmentError::BadSize`], or [`SegmentError::Io`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        let file = File::from(fd);
        let map = map_segment(&file)?;
        drop(file);
        let map = Arc::new(Mapping { map, offset: 0 });
        map.page()
            .header
            .writer_pid
            .store(std::process::id(), Ordering::Release);
        Ok(Self { map })
    }

    /// Claims a process page of the segment `fd` for this process, as the spec's "Forked
    /// processes" says: under the claim lock, the first free directory entry, its page zeroed and
    /// given a header, then the entry set to this pid. For a process forked from one that
    /// writes the main page (or another process page), so that the two never write the same
    /// page; the supervisor adds the pages up and folds a page's counters into the program's
    /// totals once its process is gone.
    ///
    /// # Errors
    /// As [`Writer::from_fd`]; [`SegmentError::TableFull`] when every process page is taken;
    /// [`SegmentError::Busy`] when the claim lock stays held for a second;
    /// [`SegmentError::Io`] when the lock cannot be taken for another reason.
    pub fn claim(fd: BorrowedFd<'_>) -> Result<Self, SegmentError> {
        let file = File::from(fd.try_clone_to_owned()?);
        let map = map_segment(&file)?;
        let deadline = Instant::now() + CLAIM_PATIENCE;
        loop {
            match claim_lock(fd, libc::F_WRLCK as libc::c_short) {
                Ok(()) => break,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                    return Err(SegmentError::Busy)
                }
                Err(e) => return Err(SegmentError::Io(e)),
            }
        }
        let mut mapping = Mapping { map, offset: 0 };
        let pid = std::process::id();
        let free = mapping
            .directory()
            .pids
            .iter()
            .position(|p| p.load(Ordering::Acquire) == 0);
        if let Some(index) = free {
            mapping.offset = process_page_offset(index);
            let page = mapping.page();
            zero_page(page);
            page.header.magic.store(MAGIC, Ordering::Relaxed);
            page.header.version.store(VERSION, Ordering::Relaxed);
            #[allow(clippy::cast_possible_truncation)] // SIZE is 4096
            page.header.size.store(SIZE as u32, Ordering::Relaxed);
            page.header.writer_pid.store(pid, Ordering::Relaxed);
            // Release: a reader that sees the pid sees the page it publishes.
            mapping.directory().pids[index].store(pid, Ordering::Release);
        }
        // The page is ours whether or not the unlock works (it cannot fail on a lock we hold).
        let _ = claim_lock(fd, libc::F_UNLCK as libc::c_short);
        if free.is_none() {
            return Err(SegmentError::TableFull);
        }
        Ok(Self {
            map: Arc::new(mapping),
        })
    }

    /// Where this writer's page starts in the file: 0 for the main page.
    #[must_use]
    pub fn page_offset(&self) -> usize {
        self.map.offset
    }

    fn page(&self) -> &Page {
        self.map.page()
    }

    /// Stamps the heartbeat with `CLOCK_MONOTONIC`: one vDSO clock read and one atomic store, no
    /// system call. Call it from the loop that does the work.
    #[inline]
    pub fn heartbeat(&self) {
        self.stamp(clock_ns(libc::CLOCK_MONOTONIC));
    }

    /// Like [`Writer::heartbeat`], with `CLOCK_MONOTONIC_COARSE`: about four times cheaper, and
    /// up to one kernel tick (1–10 ms) old, which is nothing against a heartbeat timeout of
    /// seconds. For loops hot enough that 20 ns per beat shows.
    #[inline]
    pub fn heartbeat_coarse(&self) {
        self.stamp(clock_ns(libc::CLOCK_MONOTONIC_COARSE));
    }

    #[inline]
    fn stamp(&self, ns: u64) {
        self.page().header.heartbeat.store(ns, Ordering::Release);
    }

    /// The counter named `name`, registering it on first use; the same name gives the same slot.
    ///
    /// # Errors
    /// [`SegmentError::InvalidName`] (empty or longer than [`NAME_MAX`] bytes),
    /// [`SegmentError::KindMismatch`] (registered as a gauge), [`SegmentError::TableFull`],
    /// [`SegmentError::Busy`].
    pub fn counter(&self, name: &str) -> Result<Counter, SegmentError> {
        self.register(name, MetricKind::Counter).map(Counter)
    }

    /// The gauge named `name`, registering it on first use; the same name gives the same slot.
    ///
    /// # Errors
    /// As [`Writer::counter`].
    pub fn gauge(&self, name: &str) -> Result<Gauge, SegmentError> {
        self.register(name, MetricKind::Gauge).map(Gauge)
    }

    /// The fixed `requests` counter.
    #[must_use]
    pub fn requests(&self) -> Counter {
        Counter(Cell::new(&self.map, &self.page().slots.requests))
    }

    /// The fixed `errors` counter.
    #[must_use]
    pub fn errors(&self) -> Counter {
        Counter(Cell::new(&self.map, &self.page().slots.errors))
    }

    /// The fixed `in_flight` gauge.
    #[must_use]
    pub fn in_flight(&self) -> Gauge {
        Gauge(Cell::new(&self.map, &self.page().slots.in_flight))
    }

    /// Adds `n` to the fixed `requests` counter (one atomic add).
    #[inline]
    pub fn add_requests(&self, n: u64) {
        self.page().slots.requests.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `n` to the fixed `errors` counter (one atomic add).
    #[inline]
    pub fn add_errors(&self, n: u64) {
        self.page().slots.errors.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the fixed `in_flight` gauge (one atomic store).
    #[inline]
    pub fn set_in_flight(&self, v: u64) {
        self.page().slots.in_flight.store(v, Ordering::Relaxed);
    }

    /// Publishes heap numbers from the child's own accounting (jemalloc's stats, a language
    /// runtime's), and sets [`FLAG_HEAP`](super::FLAG_HEAP) so the supervisor knows they mean
    /// something. With the `alloc` feature, `child_sdk::alloc::attach` does this on every
    /// allocation instead.
    pub fn set_heap(&self, heap: HeapStats) {
        let slots = &self.page().slots.heap;
        slots.bytes.store(heap.bytes, Ordering::Relaxed);
        slots.peak.store(heap.peak, Ordering::Relaxed);
        slots.allocations.store(heap.allocations, Ordering::Relaxed);
        slots
            .deallocations
            .store(heap.deallocations, Ordering::Relaxed);
        self.mark_heap();
    }

    /// Sets [`FLAG_HEAP`] (one load, and one atomic or the first time).
    pub(crate) fn mark_heap(&self) {
        let flags = &self.page().header.flags;
        if flags.load(Ordering::Relaxed) & FLAG_HEAP == 0 {
            flags.fetch_or(FLAG_HEAP, Ordering::Relaxed);
        }
    }

    /// The heap slots, valid for the rest of the process: the mapping is leaked (one reference
    /// is never released), because a global allocator may use the pointer at any moment from any
    /// thread and can never be told to stop.
    #[cfg(feature = "alloc")]
    pub(crate) fn leak_heap_slots(&self) -> &'static HeapSlots {
        let keep = Arc::into_raw(Arc::clone(&self.map));
        // SAFETY: `keep` is a strong reference that is never turned back into an `Arc`, so the
        // `Mapping` (and the mapping it owns) is never dropped; the slots inside it are therefore
        // valid for `'static`, and are atomics, so a shared reference is all anyone needs.
        unsafe { &(*keep).page().slots.heap }
    }

    fn register(&self, name: &str, kind: MetricKind) -> Result<Cell, SegmentError> {
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(SegmentError::InvalidName);
        }
        let seq = self.lock()?;
        let found = self.register_locked(name, kind);
        let changed = matches!(found, Ok((_, true)));
        self.unlock(seq, changed);
        let (index, _) = found?;
        Ok(Cell::new(
            &self.map,
            &self.page().table.entries[index].value,
        ))
    }

    /// Steps 2 and 3 of the spec's registration: the entry's index, and whether it is new.
    fn register_locked(&self, name: &str, kind: MetricKind) -> Result<(usize, bool), SegmentError> {
        let table = &self.page().table;
        // Clamped: only this process writes the table, but a stray write must not send us past
        // the end.
        let count = (table.count.load(Ordering::Relaxed) as usize).min(CAPACITY);
        for (index, entry) in table.entries[..count].iter().enumerate() {
            if entry.holds(name) {
                let existing = entry.kind.load(Ordering::Relaxed);
                return if existing == kind.as_byte() {
                    Ok((index, false))
                } else {
                    // A kind byte that is neither (a stray write) is "the other kind" too.
                    let other = match kind {
                        MetricKind::Counter => MetricKind::Gauge,
                        MetricKind::Gauge => MetricKind::Counter,
                    };
                    Err(SegmentError::KindMismatch {
                        existing: MetricKind::from_byte(existing).unwrap_or(other),
                    })
                };
            }
        }
        let Some(entry) = table.entries.get(count) else {
            return Err(SegmentError::TableFull);
        };
        entry.value.store(0, Ordering::Relaxed);
        for (word, packed) in entry.name.iter().zip(pack_name(name)) {
            word.store(packed, Ordering::Relaxed);
        }
        for byte in &entry.reserved {
            byte.store(0, Ordering::Relaxed);
        }
        // `name.len() <= NAME_MAX` (48) was checked by the caller, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        entry.len.store(name.len() as u8, Ordering::Relaxed);
        entry.kind.store(kind.as_byte(), Ordering::Relaxed);
        // `count < CAPACITY` (61) here. Release (beyond the seqlock): a reader whose pass is torn
        // still sees every entry below the count it read complete.
        #[allow(clippy::cast_possible_truncation)]
        table.count.store(count as u32 + 1, Ordering::Release);
        Ok((count, true))
    }

    /// Takes the table's seqlock (spec step 1); returns the even value it held.
    fn lock(&self) -> Result<u64, SegmentError> {
        let seq = &self.page().table.seq;
        let mut spins = 0u32;
        let mut deadline = None;
        loop {
            let s = seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && seq
                    .compare_exchange_weak(
                        s,
                        s.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                // Orders the odd `seq` before every table write that follows, for readers (the
                // writer half of the fence-based seqlock, see the reader).
                fence(Ordering::Release);
                return Ok(s);
            }
            if spins < 100 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + LOCK_PATIENCE);
                if Instant::now() >= deadline {
                    return Err(SegmentError::Busy);
                }
                std::thread::yield_now();
            }
        }
    }

    /// Releases the seqlock (spec step 4).
    fn unlock(&self, s: u64, changed: bool) {
        let next = if changed { s.wrapping_add(2) } else { s };
        self.page().table.seq.store(next, Ordering::Release);
    }
}

/// Every word of `page` set to 0 (relaxed stores): a claimed page starts empty.
fn zero_page(page: &Page) {
    let h = &page.header;
    h.writer_pid.store(0, Ordering::Relaxed);
    h.flags.store(0, Ordering::Relaxed);
    h.heartbeat.store(0, Ordering::Relaxed);
    let s = &page.slots;
    for v in [
        &s.heap.bytes,
        &s.heap.peak,
        &s.heap.allocations,
        &s.heap.deallocations,
        &s.requests,
        &s.errors,
        &s.in_flight,
    ]
    .into_iter()
    .chain(&s.reserved)
    {
        v.store(0, Ordering::Relaxed);
    }
    let t = &page.table;
    t.seq.store(0, Ordering::Relaxed);
    t.count.store(0, Ordering::Relaxed);
    t.reserved0.store(0, Ordering::Relaxed);
    for v in &t.reserved {
        v.store(0, Ordering::Relaxed);
    }
    for e in &t.entries {
        e.len.store(0, Ordering::Relaxed);
        e.kind.store(0, Ordering::Relaxed);
        for b in &e.reserved {
            b.store(0, Ordering::Relaxed);
        }
        for w in &e.name {
            w.store(0, Ordering::Relaxed);
        }
        e.value.store(0, Ordering::Relaxed);
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("page", &self.map.map.as_ptr())
            .field("offset", &self.map.offset)
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// Adds one (one relaxed atomic add).
    #[inline]
    pub fn inc(&self) {
        self.0.get().fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` (one relaxed atomic add).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.get().fetch_add(n, Ordering::Relaxed);
    }

    /// The current value, as the supervisor would read it.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.get().load(Ordering::Relaxed)
    }
}

impl Gauge {
    /// Sets the value (one relaxed atomic store).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.get().store(v, Ordering::Relaxed);
    }

    /// The current value, as the supervisor would read it.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.get().load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}
