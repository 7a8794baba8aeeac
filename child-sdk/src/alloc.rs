//! A counting global allocator that publishes the heap into the segment (feature `alloc`).
//!
//! # Theory of operation
//! [`CountingAlloc`] wraps [`std::alloc::System`]. Every allocation, deallocation and
//! reallocation adjusts four process-global atomics — live bytes, peak bytes, allocations,
//! deallocations — with relaxed operations (a peak update only when a new peak is reached). Once
//! [`attach`] has pointed it at a [`Writer`]'s segment, each operation also stores the new values
//! into the segment's heap slots, and the header's [`FLAG_HEAP`](crate::segment::FLAG_HEAP) tells
//! the supervisor that they are real. The supervisor compares them with the kernel's RSS: heap flat
//! while RSS grows points at native memory or fragmentation, not at a Rust leak.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: child_sdk::alloc::CountingAlloc = child_sdk::alloc::CountingAlloc::new();
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let fd = child_sdk::segment::create()?.0;
//! let writer = child_sdk::segment::Writer::from_fd(fd)?;
//! child_sdk::alloc::attach(&writer);
//! # Ok(()) }
//! ```
//!
//! The allocator itself never allocates, never panics, takes no lock and makes no system call
//! beyond `System`'s own.
//!
//! # Caveats
//! - Bytes are the sizes callers *requested* (`Layout::size`), not what malloc rounded them up
//!   to, nor its metadata and free lists: expect RSS above `heap_bytes` even without a leak.
//! - A `realloc` changes the byte count only; it is neither an allocation nor a deallocation.
//! - The segment gets *stores* of the values each operation computed. When threads allocate at
//!   the same moment, an older value can land after a newer one; the next operation on any thread
//!   corrects it. The process-global numbers ([`stats`]) are always exact; the peak in the
//!   segment never goes backwards.
//! - Memory from other allocators (C libraries calling malloc directly, mmap) is not seen.
//! - [`attach`] leaks one reference to the segment mapping (4 KiB): the allocator may use it at any
//!   moment from any thread, so it is never unmapped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{
    AtomicPtr, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use crate::segment::{HeapSlots, HeapStats, Writer};

static BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static DEALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// The attached segment's heap slots, or null. Points into a leaked mapping, never unmapped.
static SEGMENT: AtomicPtr<HeapSlots> = AtomicPtr::new(ptr::null_mut());

/// A [`GlobalAlloc`] that counts the heap and publishes it into the segment once [`attach`]ed.
/// See the module docs.
#[derive(Debug, Default)]
pub struct CountingAlloc {
    _private: (),
}

impl CountingAlloc {
    /// The allocator, for a `#[global_allocator]` static.
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and returns its
// result unchanged, so `System`'s implementation of the `GlobalAlloc` contract is ours; the
// bookkeeping around it touches only atomics (it neither allocates, nor unwinds, nor touches the
// memory it hands out).
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::dealloc`'s contract, and
        // `ptr` came from `System` through one of our methods.
        unsafe { System.dealloc(ptr, layout) };
        on_dealloc(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::realloc`'s contract, and
        // `ptr` came from `System` through one of our methods.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            on_resize(layout.size(), new_size);
        }
        p
    }
}

/// Points the allocator at `writer`'s segment: from now on every heap operation stores the heap
/// numbers there. Publishes the current numbers at once and sets
/// [`FLAG_HEAP`](crate::segment::FLAG_HEAP).
///
/// Returns `false`, and does nothing, if [`CountingAlloc`] is not this process's global
/// allocator (it has counted no allocation at all, which no Rust program that got this far can
/// have made): the heap slots would stay zero, and a supervisor would take that for a claim.
/// Attaching again (to this or another segment) moves the allocator; every segment it was ever
/// attached to stays mapped.
pub fn attach(writer: &Writer) -> bool {
    if ALLOCATIONS.load(Relaxed) == 0 {
        return false;
    }
    let slots = writer.leak_heap_slots();
    let now = stats();
    slots.bytes.store(now.bytes, Relaxed);
    slots.peak.fetch_max(now.peak, Relaxed);
    slots.allocations.store(now.allocations, Relaxed);
    slots.deallocations.store(now.deallocations, Relaxed);
    // Release: pairs with the allocator's acquire load, so a thread that sees the pointer also
    // sees the mapping it points into.
    SEGMENT.store(ptr::from_ref(slots).cast_mut(), Release);
    writer.mark_heap();
    true
}

/// Whether [`attach`] has pointed the allocator at a segment.
#[must_use]
pub fn attached() -> bool {
    !SEGMENT.load(Relaxed).is_null()
}

/// The process-global heap numbers, whether or not a segment is attached.
#[must_use]
pub fn stats() -> HeapStats {
    HeapStats {
        bytes: BYTES.load(Relaxed),
        peak: PEAK.load(Relaxed),
        allocations: ALLOCATIONS.load(Relaxed),
        deallocations: DEALLOCATIONS.load(Relaxed),
    }
}

/// The attached slots, if any.
#[inline]
fn segment() -> Option<&'static HeapSlots> {
    let p = SEGMENT.load(Acquire);
    // SAFETY: `SEGMENT` is null or was stored by `attach` from a `&'static HeapSlots` (a leaked
    // mapping that is never unmapped); the acquire load pairs with that release store.
    unsafe { p.as_ref() }
}

/// Raises the peak to `bytes` if it is one; returns the new peak.
#[inline]
fn raise_peak(bytes: u64) -> Option<u64> {
    // A plain load first: the read-modify-write happens only when a new peak is reached.
    (bytes > PEAK.load(Relaxed)).then(|| PEAK.fetch_max(bytes, Relaxed).max(bytes))
}

#[inline]
fn on_alloc(size: usize) {
    let size = size as u64;
    let bytes = BYTES.fetch_add(size, Relaxed).wrapping_add(size);
    let allocations = ALLOCATIONS.fetch_add(1, Relaxed).wrapping_add(1);
    let peak = raise_peak(bytes);
    if let Some(slots) = segment() {
        slots.bytes.store(bytes, Relaxed);
        slots.allocations.store(allocations, Relaxed);
        if let Some(peak) = peak {
            slots.peak.fetch_max(peak, Relaxed);
        }
    }
}

#[inline]
fn on_dealloc(size: usize) {
    let size = size as u64;
    let bytes = BYTES.fetch_sub(size, Relaxed).wrapping_sub(size);
    let deallocations = DEALLOCATIONS.fetch_add(1, Relaxed).wrapping_add(1);
    if let Some(slots) = segment() {
        slots.bytes.store(bytes, Relaxed);
        slots.deallocations.store(deallocations, Relaxed);
    }
}

#[inline]
fn on_resize(old: usize, new: usize) {
    let (old, new) = (old as u64, new as u64);
    let (bytes, peak) = if new >= old {
        let grow = new - old;
        let bytes = BYTES.fetch_add(grow, Relaxed).wrapping_add(grow);
        (bytes, raise_peak(bytes))
    } else {
        let shrink = old - new;
        (BYTES.fetch_sub(shrink, Relaxed).wrapping_sub(shrink), None)
    };
    if let Some(slots) = segment() {
        slots.bytes.store(bytes, Relaxed);
        if let Some(peak) = peak {
            slots.peak.fetch_max(peak, Relaxed);
        }
    }
}

#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: CountingAlloc = CountingAlloc::new();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment;

    #[test]
    fn counts_allocations_and_frees() {
        let before = stats();
        let v: Vec<u8> = Vec::with_capacity(1 << 20);
        let during = stats();
        assert!(during.allocations > before.allocations);
        assert!(during.peak >= 1 << 20);
        drop(v);
        assert!(stats().deallocations > before.deallocations);
    }

    /// Polls `cond` for up to 5 s, allocating a little each time so that the allocator stores
    /// fresh numbers (a store from a racing thread may briefly publish an older value).
    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            drop(std::hint::black_box(Box::new(0u64)));
            if cond() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    #[test]
    fn attach_publishes_into_the_segment() -> Result<(), segment::SegmentError> {
        let (fd, reader) = segment::create()?;
        let writer = Writer::from_fd(fd)?;
        assert!(!reader.read()?.heap_reported());
        assert!(attach(&writer));
        assert!(attached());
        let snap = reader.read()?;
        assert!(snap.heap_reported());
        assert!(snap.allocations > 0);
        // 64 MiB more, held: other test threads allocate too, but nowhere near this much.
        let base = reader.read()?.heap_bytes;
        let big: Vec<u8> = vec![1; 64 << 20];
        let read = || reader.read().map_or(0, |s| s.heap_bytes);
        assert!(
            eventually(|| read() >= base + (32 << 20)),
            "{} vs {base}",
            read()
        );
        assert!(reader.read()?.heap_peak >= 64 << 20);
        drop(big);
        assert!(
            eventually(|| read() < base + (32 << 20)),
            "{} vs {base}",
            read()
        );
        assert!(reader.read()?.deallocations > 0);
        Ok(())
    }
}
