//! The shared-memory segment: live numbers a worker publishes with single atomic operations and
//! the supervisor reads every tick, without a syscall on either side.
//!
//! # Theory of operation
//! For every worker incarnation the supervisor calls [`create`]: a memfd with a header, sealed so
//! that it can never shrink or grow, mapped read-only on the supervisor's side ([`Reader`]). The
//! worker receives the memfd as fd 4 (named in `SUPERVISE_SEGMENT_FD`), maps it read-write with
//! [`Writer::from_fd`] (the *main page*), and from then on:
//! - [`Writer::heartbeat`] stamps the header with `CLOCK_MONOTONIC` (one vDSO clock read and one
//!   store). Call it from the work loop: a stale stamp means the *work* stopped, not merely that
//!   some thread is alive.
//! - [`Counter::inc`], [`Counter::add`] and [`Gauge::set`] are one atomic operation each on a
//!   slot of the page. Named metrics are registered once ([`Writer::counter`],
//!   [`Writer::gauge`]) under a seqlock; the fixed slots (requests, errors, in-flight, heap) need
//!   no registration.
//! - With the `alloc` feature, `child_sdk::alloc::CountingAlloc` keeps the heap slots current.
//!
//! A pre-forking server (gunicorn, uWSGI, Celery's prefork pool, `multiprocessing`) forks after
//! the main page is attached. Each forked process claims a *process page* of its own
//! ([`Writer::claim`]), so no two processes ever write the same word; the supervisor adds the
//! pages up, and when a page's process is gone it folds that page's counters into the program's
//! totals and frees the page for the next process ([`Reader::release`]). No file per process, no
//! directory scan, and a freed page is never folded twice: the supervisor frees it by clearing
//! its directory entry, and a claimant only takes an entry that is clear.
//!
//! The supervisor's [`Reader::read`] treats every byte as hostile: the worker may scribble
//! anything at any time. It validates the header, clamps the table's count, checks every name's
//! length and UTF-8, retries the seqlock a bounded number of times
//! ([`Snapshot::metrics_consistent`] says whether it settled), and reads the page only through
//! relaxed atomic loads of at most eight bytes — which Rust guarantees never write, so they are
//! sound on a read-only mapping (see "Atomic accesses to read-only memory" in
//! [`std::sync::atomic`]). A reader bug cannot write: the mapping has no `PROT_WRITE`.
//!
//! # Specification (layout version 2)
//! A child in any language can publish its numbers by following this section alone. The Python
//! package in `sdk/python` does, and `spec/examples.json` holds byte examples that its tests and
//! this crate's tests both check.
//!
//! **The file.** A memfd created with `MFD_CLOEXEC | MFD_ALLOW_SEALING`, exactly [`FILE_SIZE`]
//! bytes (4096 × 1026), sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` (not
//! `F_SEAL_WRITE`: the child writes). A child should check `fcntl(fd, F_GET_SEALS)` includes
//! `F_SEAL_SHRINK` and `fstat` says at least [`FILE_SIZE`] bytes before mapping,
//! `mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`. A child that never forks
//! may then close the fd (the mapping keeps the memory); one that forks keeps it (close-on-exec)
//! for the claim lock. The seals are why the supervisor can never take a `SIGBUS` from a
//! truncated file, nor the child either. The file is sparse: pages nobody writes cost nothing.
//!
//! | bytes | what |
//! |---|---|
//! | `0..4096` | the main page: written by the process that attached first (the one that said `Hello`) |
//! | `4096..8192` | the directory: `u32` pid of the owner of each process page, `0` = free ([`PROCESS_PAGES`] entries) |
//! | `8192 + 4096 × i` | process page `i`, for `i` in `0..1024`, owned by the pid in directory entry `i` |
//!
//! **Byte order and access.** Every integer is native-endian, which is little-endian on every
//! target `supervise` supports. Every field is naturally aligned and accessed with a single
//! atomic load or store of its own width (8-byte fields as 8-byte atomics), so no reader ever sees
//! half a value.
//!
//! **A page** (the main page and every process page have this layout):
//!
//! | offset | size | field | written by | meaning |
//! |---:|---:|---|---|---|
//! | 0 | 8 | `magic` | supervisor (main), claimant (process page) | `0x3147455356505553`, the bytes `SUPVSEG1` |
//! | 8 | 4 | `version` | likewise | layout version, `2` |
//! | 12 | 4 | `size` | likewise | the page's size, `4096` |
//! | 16 | 4 | `writer_pid` | child | its pid, stored when it attaches; `0` before |
//! | 20 | 4 | `flags` | child | bit 0 [`FLAG_HEAP`]: heap slots maintained; other bits `0` |
//! | 24 | 8 | `heartbeat` | child | `CLOCK_MONOTONIC` nanoseconds at the last beat; `0` = never |
//! | 32 | 8 | `heap_bytes` | child | live heap bytes (requested sizes) |
//! | 40 | 8 | `heap_peak` | child | highest `heap_bytes` so far |
//! | 48 | 8 | `allocations` | child | allocations so far |
//! | 56 | 8 | `deallocations` | child | deallocations so far |
//! | 64 | 8 | `requests` | child | counter: units of work done |
//! | 72 | 8 | `errors` | child | counter: units of work failed |
//! | 80 | 8 | `in_flight` | child | gauge: units of work in progress |
//! | 88 | 40 | reserved | — | five `u64`, `0` |
//! | 128 | 8 | `seq` | child | the table's seqlock: odd while a name is being written |
//! | 136 | 4 | `count` | child | entries in use, `0..=61` |
//! | 140 | 52 | reserved | — | `0` |
//! | 192 | 61 × 64 | `entries` | child | the named metrics, entry `i` at `192 + 64 * i` |
//!
//! Each entry:
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 1 | `len` | name length in bytes, `1..=48` |
//! | 1 | 1 | `kind` | `1` counter (only grows), `2` gauge (any value) |
//! | 2 | 6 | reserved | `0` |
//! | 8 | 48 | `name` | UTF-8, the first `len` bytes; the rest `0` |
//! | 56 | 8 | `value` | the metric's value |
//!
//! **Forked processes.** A page has one writer process. A process forked from a writer (its
//! parent's mapping survives `fork`) must not go on writing its parent's page: it claims a
//! process page, and writes only there.
//! 1. Take the claim lock: a POSIX record lock, `fcntl(fd, F_SETLK, {F_WRLCK, SEEK_SET,
//!    l_start = 4096, l_len = 1})`, retried while it fails with `EAGAIN` or `EACCES` (a sibling
//!    is claiming; this crate gives up after a second). Record locks belong to the process (a
//!    forked child does not inherit its parent's), and the kernel drops them when it exits.
//! 2. Find the first directory entry that is `0`. None: every page is taken; the process
//!    publishes nothing (this crate: [`SegmentError::TableFull`]).
//! 3. Zero the page, then write its `magic`, `version`, `size` and `writer_pid`.
//! 4. Store the pid into the directory entry (release): from then on the supervisor reads the
//!    page and adds it to the main page's figures.
//! 5. Release the lock (`F_UNLCK`).
//!
//! The supervisor frees a process page once its owner has exited: it reads the page one last
//! time, adds its counters (`requests`, `errors`, `allocations`, `deallocations` and every named
//! counter) to the program's totals, and stores `0` into the directory entry with `pwrite` (its
//! mapping stays read-only). Gauges, heap bytes and in-flight work of a gone process are dropped.
//! A child never clears an entry, and never writes a page whose entry does not hold its pid.
//!
//! **Values.** Counters are bumped with an atomic add, gauges with an atomic store, both relaxed:
//! each value stands alone and the reader infers nothing about other memory from it. The
//! heartbeat is a release store (a reader that sees a beat and then fences acquire also sees the
//! slot updates its thread made before it). Values are read without the seqlock.
//!
//! **Registering a name** (names are write-once; an entry is never removed or renamed):
//! 1. Lock: read `seq`; if it is even, compare-and-swap it from `s` to `s + 1` (acquire), then
//!    issue a release fence. If it stays odd, another thread is registering: spin, then yield; give
//!    up after a bound (this crate: 100 ms).
//! 2. Scan entries `0..min(count, 61)`. An entry with the same name and kind is the answer; the
//!    same name with the other kind is an error.
//! 3. Otherwise, if `count < 61`, fill entry `count`: `value = 0`, the name bytes (zero-padded),
//!    `len`, `kind`; then store `count + 1` with release ordering (so that even a reader whose
//!    pass the seqlock rejects sees every entry below the count it read complete).
//! 4. Unlock: store `s + 2` (release), or `s` again if nothing changed.
//!
//! **Reading** (what the supervisor does, for the main page and for every process page the
//! directory names): check `magic`, `version` and `size` (a process page that fails is left out
//! and counted as invalid); read the fixed fields; then up to 4 times: load `seq`, fence acquire,
//! read `count` (clamped to 61), fence acquire, read the entries (skipping any whose `len` is
//! outside `1..=48`, whose `kind` is unknown or whose name is not UTF-8), fence acquire, load
//! `seq` again; the table is consistent if both loads are equal and even. After 4 failed
//! attempts the last pass is returned, flagged as not consistent. No step waits on the child.
//! The pages are then added up by name: counters, gauges, heap bytes and the fixed slots are
//! summed, the latest heartbeat is kept, a name seen as both kinds keeps the first kind it was
//! seen with, and at most [`MAX_MERGED_NAMES`] names are kept.
//!
//! # Caveats
//! - Every number is the child's claim. The supervisor cross-checks it against the kernel
//!   (`/proc`) and treats a disagreement as a finding, never as truth.
//! - `CLOCK_MONOTONIC` is per time namespace: a child in a different one (`CLONE_NEWTIME`) stamps
//!   heartbeats offset from the supervisor's clock.
//! - A page has one writer process. A Rust child that forks keeps its [`Writer`] in both
//!   processes, and their writes to the same page mix unless the forked one calls
//!   [`Writer::claim`] with a descriptor of the segment it kept; the Python package claims a page
//!   in every process forked with `os.fork`, by itself.
//! - A process page is freed when its owner's pid no longer exists. A pid reused before the
//!   supervisor looked keeps the page until that process exits too: its counters stay counted
//!   meanwhile, so the totals are right, only the page is late to be reused.
//! - [`create`] and [`Reader`] exist on 64-bit targets only: Rust guarantees relaxed atomic loads
//!   on read-only memory only up to the register width, and the reader loads 8-byte fields.

use std::fmt;
use std::io;

mod layout;
#[cfg(target_pointer_width = "64")]
mod merge;
#[cfg(target_pointer_width = "64")]
mod reader;
mod snapshot;
mod writer;

#[cfg(all(test, target_pointer_width = "64"))]
mod tests;

pub use layout::{
    process_page_offset, CAPACITY, DIRECTORY, FILE_SIZE, FLAG_HEAP, MAGIC, NAME_MAX, PROCESS_PAGES,
    SIZE, VERSION,
};
#[cfg(target_pointer_width = "64")]
pub use merge::MAX_MERGED_NAMES;
#[cfg(target_pointer_width = "64")]
pub use reader::{create, Reader};
pub use snapshot::{Metric, Snapshot};
pub use writer::{Counter, Gauge, HeapStats, Writer};

#[cfg(feature = "alloc")]
pub(crate) use layout::HeapSlots;

/// What a named metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MetricKind {
    /// A number that only grows (requests served, bytes sent); the byte `1`.
    Counter = 1,
    /// A number that goes up and down (queue length, connections); the byte `2`.
    Gauge = 2,
}

impl MetricKind {
    /// The kind stored as `byte`, if it is one.
    #[must_use]
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Counter),
            2 => Some(Self::Gauge),
            _ => None,
        }
    }

    /// The byte that stores this kind.
    #[must_use]
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

/// Why a segment could not be created, attached, read or extended.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// A system call failed (mapping, `fstat`, `fcntl`).
    Io(io::Error),
    /// The fd is not a memfd sealed against shrinking, so mapping it could end in `SIGBUS`.
    NotSealed,
    /// The file is smaller than a segment.
    TooSmall {
        /// Its size in bytes.
        len: u64,
    },
    /// The first eight bytes are not [`MAGIC`].
    BadMagic {
        /// What was there.
        found: u64,
    },
    /// The layout version is not [`VERSION`].
    BadVersion {
        /// What was there.
        found: u32,
    },
    /// The size field is not [`SIZE`].
    BadSize {
        /// What was there.
        found: u32,
    },
    /// A metric name is empty or longer than [`NAME_MAX`] bytes.
    InvalidName,
    /// The name is already registered as the other kind of metric.
    KindMismatch {
        /// The kind it has.
        existing: MetricKind,
    },
    /// All [`CAPACITY`] entries are in use.
    TableFull,
    /// The table's seqlock stayed held (odd) for longer than the registration bound.
    Busy,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "segment system call failed: {e}"),
            Self::NotSealed => f.write_str("segment fd is not a memfd sealed against shrinking"),
            Self::TooSmall { len } => write!(f, "segment file is {len} bytes, need {SIZE}"),
            Self::BadMagic { found } => {
                write!(f, "segment magic is {found:#018x}, not {MAGIC:#018x}")
            }
            Self::BadVersion { found } => {
                write!(
                    f,
                    "segment layout version is {found}, this SDK speaks {VERSION}"
                )
            }
            Self::BadSize { found } => write!(f, "segment size field is {found}, not {SIZE}"),
            Self::InvalidName => write!(f, "metric names must be 1 to {NAME_MAX} bytes"),
            Self::KindMismatch { existing } => {
                write!(f, "metric name already registered as a {existing:?}")
            }
            Self::TableFull => write!(f, "all {CAPACITY} metric entries are in use"),
            Self::Busy => f.write_str("segment metric table stayed locked"),
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SegmentError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of [`Writer::heartbeat`], for comparing a
/// heartbeat with the present.
#[inline]
#[must_use]
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Reads `clock` in nanoseconds. glibc and musl answer `CLOCK_MONOTONIC` and
/// `CLOCK_MONOTONIC_COARSE` from the vDSO, without entering the kernel (vdso(7)).
#[inline]
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` that outlives the call; clock_gettime writes
    // only it. It cannot fail for the monotonic clocks we pass (clock_gettime(2): EINVAL only for
    // unknown clocks, EFAULT only for a bad pointer), and `ts` stays zero if it somehow did.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    // Monotonic clocks count from boot and are never negative, so the casts cannot lose a sign.
    #[allow(clippy::cast_sign_loss)]
    let (secs, nanos) = (ts.tv_sec as u64, ts.tv_nsec as u64);
    secs.wrapping_mul(1_000_000_000).wrapping_add(nanos)
}
