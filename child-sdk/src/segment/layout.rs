//! The page as Rust types: `#[repr(C)]` structs made only of atomics, so that any bit pattern is a
//! valid value and a racing writer in another process can never make a read undefined behaviour.
//!
//! The offsets below are the spec in the module docs of [`crate::segment`]; the `const` assertions
//! at the end keep the two in step.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// `b"SUPVSEG1"` read as a little-endian `u64`: the first eight bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SUPVSEG1");
/// The layout version this crate writes and accepts.
pub const VERSION: u32 = 2;
/// The size of one page of the segment in bytes, and the `size` field of the main page.
pub const SIZE: usize = 4096;
/// How many process pages follow the directory: one `u32` pid each fills the directory page.
pub const PROCESS_PAGES: usize = SIZE / 4;
/// Where the directory page starts.
pub const DIRECTORY: usize = SIZE;
/// The size of the whole file: the main page, the directory, the process pages.
pub const FILE_SIZE: usize = SIZE * (2 + PROCESS_PAGES);
/// The longest metric name, in bytes of UTF-8.
pub const NAME_MAX: usize = 48;
/// How many named metrics fit in the table.
pub const CAPACITY: usize = 61;
/// Bit of the header's `flags`: the child maintains the heap slots (a counting allocator, or its
/// own accounting). Without it the heap slots mean nothing, not "zero bytes".
pub const FLAG_HEAP: u32 = 1;

/// Words of an entry's name.
pub(crate) const NAME_WORDS: usize = NAME_MAX / 8;

/// Bytes 0..32.
#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub size: AtomicU32,
    pub writer_pid: AtomicU32,
    pub flags: AtomicU32,
    pub heartbeat: AtomicU64,
}

/// The four slots a counting allocator publishes (bytes 32..64), kept together so that the
/// allocator holds a single pointer.
#[repr(C)]
pub(crate) struct HeapSlots {
    pub bytes: AtomicU64,
    pub peak: AtomicU64,
    pub allocations: AtomicU64,
    pub deallocations: AtomicU64,
}

/// Bytes 32..128.
#[repr(C)]
pub(crate) struct Slots {
    pub heap: HeapSlots,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
    pub reserved: [AtomicU64; 5],
}

/// One named metric, 64 bytes.
#[repr(C)]
pub(crate) struct Entry {
    pub len: AtomicU8,
    pub kind: AtomicU8,
    pub reserved: [AtomicU8; 6],
    /// The name's bytes in memory order, accessed eight at a time (a spec reader may use any
    /// width: the bytes are guarded by the seqlock, not by atomicity).
    pub name: [AtomicU64; NAME_WORDS],
    pub value: AtomicU64,
}

/// The directory (the file's second page): who owns each process page; `0` for a free one.
#[repr(C)]
pub(crate) struct Directory {
    pub pids: [AtomicU32; PROCESS_PAGES],
}

/// Where process page `index` (`0..PROCESS_PAGES`) starts in the file.
#[must_use]
pub const fn process_page_offset(index: usize) -> usize {
    SIZE * (2 + index)
}

/// Bytes 128..4096.
#[repr(C)]
pub(crate) struct Table {
    pub seq: AtomicU64,
    pub count: AtomicU32,
    pub reserved0: AtomicU32,
    pub reserved: [AtomicU64; 6],
    pub entries: [Entry; CAPACITY],
}

/// The whole segment.
#[repr(C)]
pub(crate) struct Page {
    pub header: Header,
    pub slots: Slots,
    pub table: Table,
}

impl Entry {
    /// The name bytes as stored, all [`NAME_MAX`] of them (relaxed loads).
    pub fn load_name(&self) -> [u8; NAME_MAX] {
        let mut out = [0u8; NAME_MAX];
        for (chunk, word) in out.chunks_exact_mut(8).zip(&self.name) {
            chunk.copy_from_slice(&word.load(Relaxed).to_ne_bytes());
        }
        out
    }

    /// Whether this entry currently holds exactly `name`.
    pub fn holds(&self, name: &str) -> bool {
        usize::from(self.len.load(Relaxed)) == name.len()
            && self.load_name().get(..name.len()) == Some(name.as_bytes())
    }
}

/// `name` as the words of an entry, zero-padded. The caller has checked `name.len() <= NAME_MAX`.
pub(crate) fn pack_name(name: &str) -> [u64; NAME_WORDS] {
    let mut bytes = [0u8; NAME_MAX];
    let n = name.len().min(NAME_MAX);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut words = [0u64; NAME_WORDS];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *word = u64::from_ne_bytes(b);
    }
    words
}

// The spec, checked at compile time.
const _: () = {
    assert!(MAGIC == 0x3147_4553_5650_5553);
    assert!(size_of::<Page>() == SIZE);
    assert!(size_of::<Header>() == 32);
    assert!(size_of::<Entry>() == 64);
    assert!(NAME_MAX.is_multiple_of(8));
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, size) == 12);
    assert!(offset_of!(Header, writer_pid) == 16);
    assert!(offset_of!(Header, flags) == 20);
    assert!(offset_of!(Header, heartbeat) == 24);
    assert!(offset_of!(Page, slots) == 32);
    assert!(offset_of!(Page, slots) + offset_of!(Slots, heap) + offset_of!(HeapSlots, bytes) == 32);
    assert!(offset_of!(Page, slots) + offset_of!(Slots, heap) + offset_of!(HeapSlots, peak) == 40);
    assert!(
        offset_of!(Page, slots) + offset_of!(Slots, heap) + offset_of!(HeapSlots, allocations)
            == 48
    );
    assert!(
        offset_of!(Page, slots) + offset_of!(Slots, heap) + offset_of!(HeapSlots, deallocations)
            == 56
    );
    assert!(offset_of!(Page, slots) + offset_of!(Slots, requests) == 64);
    assert!(offset_of!(Page, slots) + offset_of!(Slots, errors) == 72);
    assert!(offset_of!(Page, slots) + offset_of!(Slots, in_flight) == 80);
    assert!(offset_of!(Page, slots) + offset_of!(Slots, reserved) == 88);
    assert!(offset_of!(Page, table) == 128);
    assert!(offset_of!(Page, table) + offset_of!(Table, seq) == 128);
    assert!(offset_of!(Page, table) + offset_of!(Table, count) == 136);
    assert!(offset_of!(Page, table) + offset_of!(Table, entries) == 192);
    assert!(offset_of!(Entry, len) == 0);
    assert!(offset_of!(Entry, kind) == 1);
    assert!(offset_of!(Entry, name) == 8);
    assert!(offset_of!(Entry, value) == 56);
    assert!(192 + CAPACITY * 64 == SIZE);
    assert!(size_of::<Directory>() == SIZE);
    assert!(process_page_offset(0) == 2 * SIZE);
    assert!(process_page_offset(PROCESS_PAGES) == FILE_SIZE);
};
