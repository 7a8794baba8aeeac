//! The reading side: frames from a byte stream, resynchronising on damage, into [`Series`].
//!
//! Every length and count read from the file is checked against what is left of its frame (at
//! most [`MAX_FRAME`]) before anything is allocated, and the totals kept are bounded (points per
//! instance, marks per instance, instances, names), so a hostile file costs bounded memory.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::sync::Arc;

use super::codec::{
    get_varint, Cursor, Damage, FLAG_CONTINUATION, F_CPU, F_HEAP, F_PID, F_PSS, F_REASONS, F_RSS,
    F_STATE, F_UNKNOWN, KIND_FINDINGS, KIND_HEADER, KIND_LIMIT, KIND_NAME, KIND_OWN_FINDINGS,
    KIND_SLOT, KIND_TICK, MAGIC, MAX_FRAME, MAX_NAME, MAX_VARINT, VERSION,
};
use super::series::{Build, Rises, Sample};
use super::Series;

/// Instances kept per read.
const MAX_SERIES: usize = 10_000;
/// Names and slots one segment may define.
const MAX_DEFS: usize = 65_536;
/// Largest memory figure accepted, KiB (2^54 KiB is 16 EiB).
const MAX_KIB: i64 = 1 << 54;
const CHUNK: usize = 256 * 1024;
/// The last millisecond of the year 9999: later times are damage (and have no RFC 3339 form).
const MAX_TIME: u64 = 253_402_300_799_999;

/// A read-ahead window over a file.
struct Scanner<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> Scanner<R> {
    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Makes at least `need` bytes available, unless the file ends first.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        while self.buf.len() - self.pos < need && !self.eof {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + CHUNK.max(need), 0);
            let n = loop {
                match self.r.read(&mut self.buf[old..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            };
            self.buf.truncate(old + n);
            self.eof = n == 0;
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// Copies the frame at the current position into `body` and consumes it; on damage (a bad
    /// length, a torn tail, a checksum mismatch) consumes nothing.
    fn frame(&mut self, body: &mut Vec<u8>) -> io::Result<Result<(), Damage>> {
        self.fill(MAX_VARINT)?;
        let (len, n) = match get_varint(self.avail()) {
            Ok(Some(v)) => v,
            Ok(None) | Err(Damage) => return Ok(Err(Damage)),
        };
        let len = match usize::try_from(len) {
            Ok(l) if (1..=MAX_FRAME).contains(&l) => l,
            _ => return Ok(Err(Damage)),
        };
        let total = n + len + 4;
        self.fill(total)?;
        let a = self.avail();
        if a.len() < total {
            return Ok(Err(Damage));
        }
        let (b, crc) = (&a[n..n + len], &a[n + len..total]);
        if super::codec::crc32c(b).to_le_bytes() != crc {
            return Ok(Err(Damage));
        }
        body.clear();
        body.extend_from_slice(b);
        self.consume(total);
        Ok(Ok(()))
    }

    /// Skips to the next segment signature after the current position; returns the bytes skipped
    /// (all the rest when there is none).
    fn resync(&mut self) -> io::Result<u64> {
        // Step past the damaged byte, if there is one (at the end of the file there is none: a
        // skip must never count bytes that are not there).
        let mut skipped = self.avail().len().min(1) as u64;
        self.consume(1);
        loop {
            self.fill(CHUNK)?;
            let a = self.avail();
            if let Some(i) = a.windows(MAGIC.len()).position(|w| w == MAGIC) {
                self.consume(i);
                return Ok(skipped + i as u64);
            }
            if self.eof {
                let n = a.len();
                self.consume(n);
                return Ok(skipped + n as u64);
            }
            // Keep a possible signature cut by the window's end.
            let n = a.len().saturating_sub(MAGIC.len() - 1);
            self.consume(n);
            skipped += n as u64;
        }
    }
}

/// One instance as the current segment knows it: the bases of its deltas.
#[derive(Clone, Copy)]
struct SlotDec {
    build: Option<usize>,
    pid: u32,
    state: u8,
    rss: u64,
    pss: u64,
    heap: u64,
}

struct SegDec {
    time: u64,
    names: HashMap<u64, Arc<str>>,
    slots: HashMap<u64, SlotDec>,
}

/// One decoded entry, applied only once the whole tick decoded cleanly.
struct Entry {
    slot: u64,
    pid: Option<u32>,
    state: Option<u8>,
    rss: Option<u64>,
    pss: Option<u64>,
    heap: Option<u64>,
    cpu: Option<u32>,
    reasons: (usize, usize),
}

/// Everything read so far, across files and segments.
#[derive(Default)]
pub(super) struct Reader {
    builds: Vec<Build>,
    index: HashMap<(Arc<str>, u32), usize>,
    limits: BTreeMap<String, u64>,
    runs: Vec<u64>,
    ignored: u64,
    newer: u32,
    series_dropped: u64,
    entries: Vec<Entry>,
    pairs: Vec<(Arc<str>, u64)>,
    /// The supervisor's own findings.
    own: Rises,
}

/// Whether a file's first bytes make it a history file.
pub(super) enum Start {
    History,
    Empty,
    NotHistory,
}

impl Reader {
    /// Reads one file's segments.
    pub(super) fn file(&mut self, r: impl Read) -> io::Result<Start> {
        let mut s = Scanner {
            r,
            buf: Vec::new(),
            pos: 0,
            eof: false,
        };
        s.fill(MAGIC.len())?;
        let head = s.avail();
        if head.is_empty() {
            return Ok(Start::Empty);
        }
        if !head.starts_with(&MAGIC) {
            if head.len() < MAGIC.len() && MAGIC.starts_with(head) {
                // A signature cut short: a run that died writing its first bytes.
                self.ignored += head.len() as u64;
                return Ok(Start::Empty);
            }
            return Ok(Start::NotHistory);
        }
        let mut seg: Option<SegDec> = None;
        let mut body = Vec::new();
        loop {
            s.fill(MAGIC.len())?;
            let a = s.avail();
            if a.is_empty() {
                break;
            }
            if a.starts_with(&MAGIC) {
                s.consume(MAGIC.len());
                seg = None;
                match s.frame(&mut body)? {
                    Ok(()) => match self.header(&body) {
                        Ok(h) => seg = h,
                        Err(Damage) => self.ignored += (MAGIC.len() + body.len()) as u64,
                    },
                    Err(Damage) => self.ignored += MAGIC.len() as u64 + s.resync()?,
                }
                continue;
            }
            match s.frame(&mut body)? {
                Err(Damage) => {
                    seg = None;
                    self.ignored += s.resync()?;
                }
                Ok(()) => {
                    let ok = match &mut seg {
                        Some(sg) => self.apply(sg, &body).is_ok(),
                        // Frames of a segment whose header was unreadable or of a newer version.
                        None => false,
                    };
                    if !ok {
                        // Frames are intact but mean nothing without their segment's context.
                        seg = None;
                        self.ignored += body.len() as u64;
                    }
                }
            }
        }
        Ok(Start::History)
    }

    fn header(&mut self, body: &[u8]) -> Result<Option<SegDec>, Damage> {
        let mut c = Cursor::new(body);
        if c.u8()? != KIND_HEADER {
            return Err(Damage);
        }
        if c.u8()? != VERSION {
            self.newer += 1;
            return Ok(None);
        }
        let flags = c.u8()?;
        let time = c.varint()?;
        if time > MAX_TIME {
            return Err(Damage);
        }
        if flags & FLAG_CONTINUATION == 0 {
            // A new run: its workers are new processes and count restarts from zero.
            self.runs.push(time);
            for b in &mut self.builds {
                b.new_run();
            }
            self.own.new_run();
        }
        Ok(Some(SegDec {
            time,
            names: HashMap::new(),
            slots: HashMap::new(),
        }))
    }

    fn apply(&mut self, seg: &mut SegDec, body: &[u8]) -> Result<(), Damage> {
        let mut c = Cursor::new(body);
        match c.u8()? {
            KIND_NAME => {
                let id = c.varint()?;
                let len = usize::try_from(c.varint()?).map_err(|_| Damage)?;
                if len > MAX_NAME || seg.names.len() >= MAX_DEFS {
                    return Err(Damage);
                }
                let name = String::from_utf8_lossy(c.bytes(len)?);
                seg.names.insert(id, Arc::from(name.as_ref()));
            }
            KIND_SLOT => {
                let id = c.varint()?;
                let name = seg.names.get(&c.varint()?).ok_or(Damage)?.clone();
                let instance = c.u32()?;
                if seg.slots.len() >= MAX_DEFS {
                    return Err(Damage);
                }
                let build = self.build(&name, instance);
                let slot = SlotDec {
                    build,
                    pid: 0,
                    state: u8::MAX,
                    rss: 0,
                    pss: 0,
                    heap: 0,
                };
                seg.slots.insert(id, slot);
            }
            KIND_TICK => {
                self.tick(seg, &mut c)?;
                // Counts restated at a segment's start come before its first tick.
                self.own.know();
            }
            KIND_FINDINGS => {
                let slot = seg.slots.get(&c.varint()?).ok_or(Damage)?.build;
                self.counts(seg, &mut c)?;
                if let Some(b) = slot.and_then(|i| self.builds.get_mut(i)) {
                    b.findings(seg.time, &self.pairs);
                }
            }
            KIND_OWN_FINDINGS => {
                self.counts(seg, &mut c)?;
                self.own.observe(seg.time, &self.pairs);
            }
            KIND_LIMIT => {
                let name = seg.names.get(&c.varint()?).ok_or(Damage)?;
                let _time = c.varint()?;
                match c.varint()? {
                    0 => self.limits.remove(name.as_ref()),
                    n => self.limits.insert(name.to_string(), n),
                };
            }
            // A kind a later version added within this format version: skipped whole.
            _ => return Ok(()),
        }
        if c.at_end() {
            Ok(())
        } else {
            Err(Damage)
        }
    }

    /// `k`, then `k` pairs of `name id`, `count`, into `self.pairs`.
    fn counts(&mut self, seg: &SegDec, c: &mut Cursor<'_>) -> Result<(), Damage> {
        self.pairs.clear();
        let k = usize::try_from(c.varint()?).map_err(|_| Damage)?;
        // Every pair takes at least two bytes.
        if k > c.remaining() / 2 {
            return Err(Damage);
        }
        for _ in 0..k {
            let name = seg.names.get(&c.varint()?).ok_or(Damage)?.clone();
            self.pairs.push((name, c.varint()?));
        }
        if c.at_end() {
            Ok(())
        } else {
            Err(Damage)
        }
    }

    fn build(&mut self, program: &Arc<str>, instance: u32) -> Option<usize> {
        if let Some(&i) = self.index.get(&(program.clone(), instance)) {
            return Some(i);
        }
        if self.builds.len() >= MAX_SERIES {
            self.series_dropped += 1;
            return None;
        }
        let i = self.builds.len();
        // Seen first in a segment that continues a run whose start is not in these files
        // (rotated away): its first counts are a baseline, not restarts.
        let known = !self.runs.is_empty();
        self.builds
            .push(Build::new(program.clone(), instance, known));
        self.index.insert((program.clone(), instance), i);
        Some(i)
    }

    fn tick(&mut self, seg: &mut SegDec, c: &mut Cursor<'_>) -> Result<(), Damage> {
        let time = i64::try_from(seg.time)
            .ok()
            .and_then(|t| t.checked_add(c.signed().ok()?))
            .and_then(|t| u64::try_from(t).ok())
            .filter(|&t| t <= MAX_TIME)
            .ok_or(Damage)?;
        let n = usize::try_from(c.varint()?).map_err(|_| Damage)?;
        // Every entry takes at least two bytes.
        if n > c.remaining() / 2 {
            return Err(Damage);
        }
        self.entries.clear();
        self.pairs.clear();
        for _ in 0..n {
            let id = c.varint()?;
            let slot = seg.slots.get(&id).ok_or(Damage)?;
            let flags = c.u8()?;
            if flags & F_UNKNOWN != 0 {
                return Err(Damage);
            }
            let pid = if flags & F_PID != 0 {
                Some(c.u32()?)
            } else {
                None
            };
            let state = if flags & F_STATE != 0 {
                Some(c.u8()?)
            } else {
                None
            };
            let mut value = |f: u8, base: u64| -> Result<Option<u64>, Damage> {
                if flags & f == 0 {
                    return Ok(None);
                }
                let v = i64::try_from(base)
                    .ok()
                    .and_then(|b| b.checked_add(c.signed().ok()?))
                    .ok_or(Damage)?;
                if (0..MAX_KIB).contains(&v) {
                    Ok(Some(v.unsigned_abs()))
                } else {
                    Err(Damage)
                }
            };
            let rss = value(F_RSS, slot.rss)?;
            let pss = value(F_PSS, slot.pss)?;
            let heap = value(F_HEAP, slot.heap)?;
            let cpu = if flags & F_CPU != 0 {
                Some(c.u32()?)
            } else {
                None
            };
            let start = self.pairs.len();
            if flags & F_REASONS != 0 {
                let k = usize::try_from(c.varint()?).map_err(|_| Damage)?;
                if k > c.remaining() / 2 {
                    return Err(Damage);
                }
                for _ in 0..k {
                    let name = seg.names.get(&c.varint()?).ok_or(Damage)?.clone();
                    self.pairs.push((name, c.varint()?));
                }
            }
            self.entries.push(Entry {
                slot: id,
                pid,
                state,
                rss,
                pss,
                heap,
                cpu,
                reasons: (start, self.pairs.len()),
            });
        }
        seg.time = time;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let Some(slot) = seg.slots.get_mut(&e.slot) else {
                continue;
            };
            slot.pid = e.pid.unwrap_or(slot.pid);
            slot.state = e.state.unwrap_or(slot.state);
            slot.rss = e.rss.unwrap_or(slot.rss);
            slot.pss = e.pss.unwrap_or(slot.pss);
            slot.heap = e.heap.unwrap_or(slot.heap);
            let slot = *slot;
            if let Some(b) = slot.build.and_then(|i| self.builds.get_mut(i)) {
                let sample = Sample {
                    t: time,
                    pid: slot.pid,
                    state: slot.state,
                    rss: e.rss,
                    pss: e.pss,
                    heap: e.heap,
                    cpu: e.cpu,
                };
                b.observe(&sample, &self.pairs[e.reasons.0..e.reasons.1]);
            }
        }
        self.entries = entries;
        Ok(())
    }

    pub(super) fn finish(self) -> Series {
        let mut workers: Vec<_> = self.builds.into_iter().map(Build::finish).collect();
        workers.sort_by(|a, b| (&a.program, a.instance).cmp(&(&b.program, b.instance)));
        let (findings, findings_dropped) = self.own.finish();
        Series {
            workers,
            limits: self.limits,
            runs: self.runs,
            ignored_bytes: self.ignored,
            newer_segments: self.newer,
            series_dropped: self.series_dropped,
            findings,
            findings_dropped,
        }
    }
}
