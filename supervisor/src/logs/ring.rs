//! The most recent lines of one worker instance, in at most a fixed number of bytes.
//!
//! Records lie end to end in one circular byte buffer: an 11-byte header (the line's sequence
//! number, `u64` little-endian; its length, `u16`; flags: which stream, whether a read time
//! follows), the read time when there is one (milliseconds since the Unix epoch, `u64`), then the
//! line's bytes. To make room for a new line the oldest records are dropped, so the buffer always
//! holds the newest lines that fit. A line longer than the whole buffer keeps its beginning.
//!
//! Pushing a line copies it into the buffer: no allocation once the buffer has reached its size.
//! It starts empty and doubles as lines come, up to its capacity, so an instance that writes
//! little costs little; its memory never passes the capacity (the `Vec` is grown with
//! `reserve_exact`, never by doubling past it).

/// Header bytes of a record: sequence number, length, flags.
const HEAD: usize = 8 + 2 + 1;
/// Bytes of a read time, when the record has one.
const TIME: usize = 8;
/// Flag: the line came from stderr.
const STDERR: u8 = 1;
/// Flag: a read time follows the header.
const TIMED: u8 = 2;
/// The first allocation of a buffer that receives a line.
const FIRST: usize = 4096;

/// Smallest capacity a ring may have (a header and a useful part of a line must fit): the plan's
/// smallest `--log-buffer`.
pub const MIN_CAPACITY: usize = crate::plan::MIN_LOG_BUFFER;

/// One line, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Order among every line the supervisor read (shared by every instance).
    pub seq: u64,
    pub stderr: bool,
    /// When it was read (ms since the Unix epoch), with `--timestamps`.
    pub time_ms: Option<u64>,
    pub bytes: Vec<u8>,
}

/// A circular buffer of records.
#[derive(Debug)]
pub struct Ring {
    /// Physical storage, at most `cap` bytes; positions wrap at its length.
    buf: Vec<u8>,
    /// Where the oldest record starts.
    start: usize,
    /// Bytes of records held.
    len: usize,
    /// Records held.
    count: usize,
    /// Most bytes it may hold; 0 keeps nothing.
    cap: usize,
}

impl Ring {
    /// An empty ring of `cap` bytes (0: it keeps nothing; else at least [`MIN_CAPACITY`]).
    /// Allocates nothing until a line comes.
    #[must_use]
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            len: 0,
            count: 0,
            cap: if cap == 0 { 0 } else { cap.max(MIN_CAPACITY) },
        }
    }

    /// Records held.
    #[cfg(test)]
    fn lines(&self) -> usize {
        self.count
    }

    /// Bytes allocated for the buffer.
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends a line, dropping the oldest records to make room.
    pub fn push(&mut self, seq: u64, stderr: bool, time_ms: Option<u64>, line: &[u8]) {
        if self.cap == 0 {
            return;
        }
        let head = HEAD + if time_ms.is_some() { TIME } else { 0 };
        let body = &line[..line.len().min(self.cap - head).min(usize::from(u16::MAX))];
        let need = head + body.len();
        while self.len + need > self.cap {
            self.pop();
        }
        if self.len + need > self.buf.len() {
            self.grow(self.len + need);
        }
        let mut header = [0u8; HEAD + TIME];
        header[..8].copy_from_slice(&seq.to_le_bytes());
        // Cut to u16::MAX above.
        let n = u16::try_from(body.len()).unwrap_or(u16::MAX);
        header[8..10].copy_from_slice(&n.to_le_bytes());
        header[10] = if stderr { STDERR } else { 0 } | if time_ms.is_some() { TIMED } else { 0 };
        if let Some(t) = time_ms {
            header[HEAD..].copy_from_slice(&t.to_le_bytes());
        }
        let at = self.wrap(self.start + self.len);
        let at = self.write_at(at, &header[..head]);
        self.write_at(at, body);
        self.len += need;
        self.count += 1;
    }

    /// The physical positions of the newest `k` records, oldest first. Records can only be
    /// walked forward from the oldest, but only `k` positions are kept: a ring of millions of
    /// empty lines costs a `logs -n 1` a walk, not a list of them all.
    #[must_use]
    pub fn last_positions(&self, k: usize) -> Vec<usize> {
        let skip = self.count.saturating_sub(k);
        let mut out = Vec::with_capacity(self.count - skip);
        let mut at = self.start;
        for i in 0..self.count {
            if i >= skip {
                out.push(at);
            }
            at = self.wrap(at + self.size_at(at));
        }
        out
    }

    /// The sequence number of the record at `at` (a position from [`Ring::last_positions`]).
    #[must_use]
    pub fn seq_at(&self, at: usize) -> u64 {
        let mut seq = [0u8; 8];
        self.read_at(at, &mut seq);
        u64::from_le_bytes(seq)
    }

    /// The record at `at` (a position from [`Ring::last_positions`]), copied out.
    #[must_use]
    pub fn record(&self, at: usize) -> Record {
        let (len, flags) = self.header_at(at);
        let mut pos = self.wrap(at + HEAD);
        let time_ms = (flags & TIMED != 0).then(|| {
            let mut t = [0u8; TIME];
            pos = self.read_at(pos, &mut t);
            u64::from_le_bytes(t)
        });
        let mut bytes = vec![0u8; len];
        self.read_at(pos, &mut bytes);
        Record {
            seq: self.seq_at(at),
            stderr: flags & STDERR != 0,
            time_ms,
            bytes,
        }
    }

    /// Every record, oldest first.
    #[cfg(test)]
    fn records(&self) -> Vec<Record> {
        self.last_positions(usize::MAX)
            .into_iter()
            .map(|at| self.record(at))
            .collect()
    }

    /// (line length, flags) of the record at `at`.
    fn header_at(&self, at: usize) -> (usize, u8) {
        let mut h = [0u8; HEAD];
        self.read_at(at, &mut h);
        (usize::from(u16::from_le_bytes([h[8], h[9]])), h[10])
    }

    /// Bytes taken by the record at `at`.
    fn size_at(&self, at: usize) -> usize {
        let (len, flags) = self.header_at(at);
        HEAD + if flags & TIMED != 0 { TIME } else { 0 } + len
    }

    /// Drops the oldest record.
    fn pop(&mut self) {
        if self.count == 0 {
            return;
        }
        let size = self.size_at(self.start);
        self.start = self.wrap(self.start + size);
        self.len -= size;
        self.count -= 1;
        if self.count == 0 {
            self.start = 0;
            self.len = 0;
        }
    }

    /// Makes the storage at least `need` bytes (at most `cap`), the records moved to its start.
    fn grow(&mut self, need: usize) {
        self.buf.rotate_left(self.start);
        self.start = 0;
        let size = need.max(self.buf.len() * 2).max(FIRST).min(self.cap);
        self.buf.reserve_exact(size - self.buf.len());
        self.buf.resize(size, 0);
    }

    /// A position past the end of the storage brought back to its start. Every position handled
    /// is less than twice the storage's length (a position within it plus at most its length), so
    /// a subtraction does what `%` would, without a division on every line.
    fn wrap(&self, at: usize) -> usize {
        if at >= self.buf.len() {
            at - self.buf.len()
        } else {
            at
        }
    }

    /// Copies `data` in at `at`, wrapping; returns the position after it.
    fn write_at(&mut self, at: usize, data: &[u8]) -> usize {
        let first = data.len().min(self.buf.len() - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.wrap(at + data.len())
    }

    /// Fills `out` from `at`, wrapping; returns the position after it.
    fn read_at(&self, at: usize, out: &mut [u8]) -> usize {
        let first = out.len().min(self.buf.len() - at);
        out[..first].copy_from_slice(&self.buf[at..at + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
        self.wrap(at + out.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(i: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|k| b'a' + ((i as usize + k) % 26) as u8)
            .collect()
    }

    #[test]
    fn keeps_the_newest_lines_that_fit() {
        let mut r = Ring::new(1024);
        for i in 0..100u64 {
            r.push(i, i % 3 == 0, None, &line(i, 50));
        }
        let got = r.records();
        // 61 bytes a record: 16 fit in 1024.
        assert_eq!(got.len(), 16);
        assert_eq!(got.first().map(|r| r.seq), Some(84));
        assert_eq!(got.last().map(|r| r.seq), Some(99));
        for rec in &got {
            assert_eq!(rec.bytes, line(rec.seq, 50));
            assert_eq!(rec.stderr, rec.seq % 3 == 0);
            assert_eq!(rec.time_ms, None);
        }
        assert!(r.allocated() <= 1024, "{}", r.allocated());
    }

    #[test]
    fn read_times_are_kept() {
        let mut r = Ring::new(4096);
        r.push(1, false, Some(1_700_000_000_123), b"timed");
        r.push(2, true, None, b"untimed");
        let got = r.records();
        assert_eq!(got[0].time_ms, Some(1_700_000_000_123));
        assert_eq!(got[0].bytes, b"timed");
        assert_eq!(got[1].time_ms, None);
        assert_eq!(got[1].bytes, b"untimed");
    }

    #[test]
    fn a_line_longer_than_the_buffer_keeps_its_beginning() {
        let mut r = Ring::new(1024);
        r.push(1, false, None, b"before");
        let long = line(7, 5000);
        r.push(2, false, None, &long);
        let got = r.records();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, &long[..1024 - HEAD]);
        r.push(3, false, None, b"after");
        assert_eq!(
            r.records().last().map(|r| r.bytes.clone()),
            Some(b"after".to_vec())
        );
    }

    #[test]
    fn a_ring_of_zero_keeps_nothing_and_allocates_nothing() {
        let mut r = Ring::new(0);
        r.push(1, false, None, b"x");
        assert_eq!(r.lines(), 0);
        assert_eq!(r.allocated(), 0);
        assert!(r.records().is_empty());
    }

    #[test]
    fn grows_only_as_lines_come_and_never_past_its_capacity() {
        let mut r = Ring::new(256 * 1024);
        assert_eq!(r.allocated(), 0);
        r.push(0, false, None, b"one line");
        assert_eq!(r.allocated(), FIRST);
        for i in 1..100_000u64 {
            r.push(i, false, None, &line(i, 100));
        }
        assert_eq!(r.allocated(), 256 * 1024);
        assert_eq!(r.records().last().map(|r| r.seq), Some(99_999));
    }

    proptest! {
        /// The ring holds exactly the newest records whose sizes fit in its capacity, in order,
        /// whatever the mix of lengths, streams and times.
        #[test]
        fn holds_the_longest_suffix_that_fits(
            cap in 1024usize..6000,
            pushes in prop::collection::vec((0usize..2500, any::<bool>(), any::<bool>()), 1..300),
        ) {
            let mut r = Ring::new(cap);
            let mut all = Vec::new();
            for (i, &(len, stderr, timed)) in pushes.iter().enumerate() {
                let seq = i as u64;
                let time = timed.then_some(seq * 1000);
                let head = HEAD + if timed { TIME } else { 0 };
                let body = line(seq, len);
                r.push(seq, stderr, time, &body);
                let kept = body[..len.min(cap - head)].to_vec();
                all.push((head + kept.len(), Record { seq, stderr, time_ms: time, bytes: kept }));
            }
            let mut expected = Vec::new();
            let mut used = 0;
            for (size, rec) in all.iter().rev() {
                if used + size > cap {
                    break;
                }
                used += size;
                expected.push(rec.clone());
            }
            expected.reverse();
            prop_assert_eq!(r.records(), expected);
            prop_assert!(r.allocated() <= cap);
        }
    }
}
