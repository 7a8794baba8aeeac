//! The writer thread: encodes queued ticks into segments and appends them to the file,
//! rotating it and riding out write errors.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::codec::{
    put_frame, put_varint, zigzag, FLAG_CONTINUATION, F_CPU, F_HEAP, F_PID, F_PSS, F_REASONS,
    F_RSS, F_STATE, KIND_FINDINGS, KIND_HEADER, KIND_LIMIT, KIND_NAME, KIND_OWN_FINDINGS,
    KIND_SLOT, KIND_TICK, MAGIC, VERSION,
};
use super::front::{Counts, Key, Msg, Row, Tick, NONE, NO_CPU};

/// A batch grown past this is written before more messages are taken from the queue.
const BATCH: usize = 256 * 1024;

fn kib(bytes: u64) -> u64 {
    bytes.saturating_add(512) >> 10
}

/// What the current segment has written about one instance: the bases of its deltas.
struct Slot {
    id: u64,
    pid: u32,
    state: u8,
    rss: u64,
    pss: u64,
    heap: u64,
    reasons: Counts,
    findings: Counts,
}

/// The decoding context a reader rebuilds from this segment's own frames.
struct Segment {
    time: u64,
    names: HashMap<Arc<str>, u64>,
    slots: HashMap<Key, Slot>,
    /// The supervisor's own finding counts as this segment said them.
    own: Counts,
}

impl Segment {
    fn name(&mut self, name: &Arc<str>, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> u64 {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = self.names.len() as u64;
        self.names.insert(name.clone(), id);
        scratch.clear();
        scratch.push(KIND_NAME);
        put_varint(scratch, id);
        put_varint(scratch, name.len() as u64);
        scratch.extend_from_slice(name.as_bytes());
        put_frame(out, scratch);
        id
    }

    /// The ids of `counts`' names, name frames written for the new ones.
    fn ids(
        &mut self,
        counts: &Counts,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Vec<(u64, u64)> {
        counts
            .iter()
            .map(|(name, n)| (self.name(name, out, scratch), *n))
            .collect()
    }

    /// A frame of the supervisor's own finding counts that differ from what this segment said.
    fn own_findings(&mut self, latest: &Counts, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let changed = changes(&mut self.own, latest);
        if !changed.is_empty() {
            let ids = self.ids(&changed, out, scratch);
            counts_frame(KIND_OWN_FINDINGS, None, &ids, out, scratch);
        }
    }
}

/// The counts of `latest` that differ from what `said` holds; `said` is brought up to date.
fn changes(said: &mut Counts, latest: &[(Arc<str>, u64)]) -> Counts {
    let mut out = Vec::new();
    for (name, n) in latest {
        match said.iter_mut().find(|(r, _)| r == name) {
            Some(e) if e.1 == *n => {}
            Some(e) => {
                e.1 = *n;
                out.push((name.clone(), *n));
            }
            None => {
                said.push((name.clone(), *n));
                if *n != 0 {
                    out.push((name.clone(), *n));
                }
            }
        }
    }
    out
}

/// A frame of counts by name (`kind` 6 with the slot first, or 7), names already defined.
fn counts_frame(
    kind: u8,
    slot: Option<u64>,
    counts: &[(u64, u64)],
    out: &mut Vec<u8>,
    b: &mut Vec<u8>,
) {
    b.clear();
    b.push(kind);
    if let Some(slot) = slot {
        put_varint(b, slot);
    }
    put_varint(b, counts.len() as u64);
    for &(id, n) in counts {
        put_varint(b, id);
        put_varint(b, n);
    }
    put_frame(out, b);
}

/// The writer thread's state.
pub(super) struct Writer {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: Option<u64>,
    seg: Option<Segment>,
    /// No segment of this run has reached the file yet: the next one starts the run (restart
    /// counts from zero), and says so.
    fresh: bool,
    /// The batch being written starts the run.
    began_fresh: bool,
    /// Latest restart and finding counts per instance, the supervisor's own finding counts, and
    /// limits per program, whatever reached the file: a new segment states them again.
    reasons: HashMap<Key, Counts>,
    findings: HashMap<Key, Counts>,
    own: Counts,
    limits: HashMap<Arc<str>, Option<u64>>,
    out: Vec<u8>,
    body: Vec<u8>,
    scratch: Vec<u8>,
    last_batch: u64,
    /// Ticks the engine could not queue (counted on its side).
    dropped: Arc<AtomicU64>,
    behind: Option<u64>,
    failing: Option<u64>,
    rotate_failed: bool,
}

impl Writer {
    pub(super) fn new(
        path: &Path,
        file: File,
        size: u64,
        max: Option<u64>,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        Self {
            path: path.to_owned(),
            file: Some(file),
            size,
            max,
            seg: None,
            fresh: true,
            began_fresh: false,
            reasons: HashMap::new(),
            findings: HashMap::new(),
            own: Vec::new(),
            limits: HashMap::new(),
            out: Vec::new(),
            body: Vec::new(),
            scratch: Vec::new(),
            last_batch: 0,
            dropped,
            behind: None,
            failing: None,
            rotate_failed: false,
        }
    }

    /// Runs until every sender is gone, writing each burst of queued ticks with one write(2).
    pub(super) fn run(mut self, rx: &Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            self.rotate_if_full();
            let mut ticks = self.encode(first);
            while self.out.len() < BATCH {
                let Ok(m) = rx.try_recv() else { break };
                ticks += self.encode(m);
            }
            self.note_drops();
            self.write(ticks);
        }
    }

    /// One message as its own batch (the tests' way to write without the thread).
    #[cfg(test)]
    pub(super) fn feed(&mut self, m: Msg) {
        self.rotate_if_full();
        let ticks = self.encode(m);
        self.write(ticks);
    }

    fn note_drops(&mut self) {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        match (n, self.behind) {
            (0, None) => {}
            (0, Some(total)) => {
                tracing::warn!(
                    path = %self.path.display(),
                    dropped = total,
                    "history writer caught up; {total} samples were dropped"
                );
                self.behind = None;
            }
            (n, None) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "history writer is behind (slow disk?); dropping samples"
                );
                self.behind = Some(n);
            }
            (n, Some(total)) => self.behind = Some(total + n),
        }
    }

    fn rotate_if_full(&mut self) {
        let Some(max) = self.max else { return };
        if self.size == 0 || self.size.saturating_add(self.last_batch) <= max {
            return;
        }
        self.file = None;
        self.seg = None;
        match std::fs::rename(&self.path, super::rotated(&self.path)) {
            Ok(()) => {
                self.size = 0;
                self.rotate_failed = false;
            }
            Err(e) => {
                if !self.rotate_failed {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "cannot rotate the history file; it keeps growing"
                    );
                }
                self.rotate_failed = true;
            }
        }
    }

    fn write(&mut self, ticks: u64) {
        if self.out.is_empty() {
            return;
        }
        let result = self.write_out();
        self.last_batch = self.out.len() as u64;
        self.out.clear();
        if result.is_ok() && self.began_fresh {
            self.fresh = false;
        }
        self.began_fresh = false;
        match (result, self.failing) {
            (Ok(()), None) => {}
            (Ok(()), Some(lost)) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "writing the history again; {lost} samples were lost"
                );
                self.failing = None;
            }
            (Err(e), failing) => {
                // A partial write may have left a torn frame: start a new segment, whose
                // signature the reader resynchronises on.
                self.seg = None;
                self.file = None;
                if failing.is_none() {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "cannot write the history; samples are dropped until writes succeed"
                    );
                }
                self.failing = Some(failing.unwrap_or(0) + ticks);
            }
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                self.size = f.metadata()?.len();
                self.file.insert(f)
            }
        };
        file.write_all(&self.out)?;
        self.size += self.out.len() as u64;
        Ok(())
    }

    /// Encodes one message into the batch; returns the ticks it held.
    fn encode(&mut self, m: Msg) -> u64 {
        match m {
            Msg::Limit { program, bytes } => {
                self.limits.insert(program.clone(), bytes);
                if let Some(seg) = &mut self.seg {
                    limit_frame(seg, &program, bytes, &mut self.out, &mut self.scratch);
                }
                0
            }
            Msg::Own(counts) => {
                self.own = counts;
                if let Some(seg) = &mut self.seg {
                    seg.own_findings(&self.own, &mut self.out, &mut self.scratch);
                }
                0
            }
            Msg::Tick(t) => {
                self.tick(&t);
                1
            }
        }
    }

    fn begin(&mut self, unix_ms: u64) -> Segment {
        self.out.extend_from_slice(&MAGIC);
        let b = &mut self.scratch;
        b.clear();
        b.extend_from_slice(&[
            KIND_HEADER,
            VERSION,
            if self.fresh { 0 } else { FLAG_CONTINUATION },
        ]);
        put_varint(b, unix_ms);
        put_frame(&mut self.out, b);
        self.began_fresh = self.fresh;
        let mut seg = Segment {
            time: unix_ms,
            names: HashMap::new(),
            slots: HashMap::new(),
            own: Vec::new(),
        };
        for (program, &bytes) in &self.limits {
            limit_frame(&mut seg, program, bytes, &mut self.out, &mut self.scratch);
        }
        seg.own_findings(&self.own, &mut self.out, &mut self.scratch);
        seg
    }

    fn tick(&mut self, t: &Tick) {
        let mut seg = match self.seg.take() {
            Some(s) => s,
            None => self.begin(t.unix_ms),
        };
        let body = &mut self.body;
        body.clear();
        body.push(KIND_TICK);
        let dt = i64::try_from(t.unix_ms).unwrap_or(i64::MAX)
            - i64::try_from(seg.time).unwrap_or(i64::MAX);
        put_varint(body, zigzag(dt));
        seg.time = t.unix_ms;
        put_varint(body, t.rows.len() as u64);
        // Finding counts that changed, by slot: written after the tick, whose time they take.
        let mut found: Vec<(u64, Vec<(u64, u64)>)> = Vec::new();
        for row in &t.rows {
            let key = (row.program.clone(), row.instance);
            let known = latest(&mut self.reasons, &key, &t.reasons, row.reasons);
            let known_findings = latest(&mut self.findings, &key, &t.findings, row.findings);
            let fresh_slot = !seg.slots.contains_key(&key);
            if fresh_slot {
                let name = seg.name(&row.program, &mut self.out, &mut self.scratch);
                let id = seg.slots.len() as u64;
                let s = &mut self.scratch;
                s.clear();
                s.push(KIND_SLOT);
                put_varint(s, id);
                put_varint(s, name);
                put_varint(s, u64::from(row.instance));
                put_frame(&mut self.out, s);
                let slot = Slot {
                    id,
                    pid: 0,
                    state: u8::MAX,
                    rss: 0,
                    pss: 0,
                    heap: 0,
                    reasons: Vec::new(),
                    findings: Vec::new(),
                };
                seg.slots.insert(key.clone(), slot);
            }
            // Counts that differ from what this segment said last (absolute counts follow).
            let Some(slot) = seg.slots.get_mut(&key) else {
                continue;
            };
            let reasons = if known || fresh_slot {
                let list = self.reasons.get(&key).map_or(&[][..], Vec::as_slice);
                changes(&mut slot.reasons, list)
            } else {
                Vec::new()
            };
            let findings = if known_findings || fresh_slot {
                let list = self.findings.get(&key).map_or(&[][..], Vec::as_slice);
                changes(&mut slot.findings, list)
            } else {
                Vec::new()
            };
            let id = slot.id;
            let reasons = seg.ids(&reasons, &mut self.out, &mut self.scratch);
            if !findings.is_empty() {
                found.push((id, seg.ids(&findings, &mut self.out, &mut self.scratch)));
            }
            let Some(slot) = seg.slots.get_mut(&key) else {
                continue;
            };
            entry(body, slot, row, &reasons);
        }
        put_frame(&mut self.out, body);
        for (slot, counts) in &found {
            counts_frame(
                KIND_FINDINGS,
                Some(*slot),
                counts,
                &mut self.out,
                &mut self.scratch,
            );
        }
        self.seg = Some(seg);
    }
}

/// Takes a row's counts (its slice of `all`, when it carries them) as the latest for `key`;
/// true when it did.
fn latest(
    map: &mut HashMap<Key, Counts>,
    key: &Key,
    all: &Counts,
    range: Option<(u32, u32)>,
) -> bool {
    let Some((start, len)) = range else {
        return false;
    };
    let from = start as usize;
    let list = all
        .get(from..from.saturating_add(len as usize))
        .unwrap_or(&[]);
    map.insert(key.clone(), list.to_vec());
    true
}

/// One instance's entry in a tick: its slot, which fields follow, then the fields.
fn entry(body: &mut Vec<u8>, slot: &mut Slot, row: &Row, reasons: &[(u64, u64)]) {
    let mut flags = 0;
    if row.pid != slot.pid {
        flags |= F_PID;
    }
    if row.state != slot.state {
        flags |= F_STATE;
    }
    for (v, f) in [(row.rss, F_RSS), (row.pss, F_PSS), (row.heap, F_HEAP)] {
        if v != NONE {
            flags |= f;
        }
    }
    if row.cpu != NO_CPU {
        flags |= F_CPU;
    }
    if !reasons.is_empty() {
        flags |= F_REASONS;
    }
    put_varint(body, slot.id);
    body.push(flags);
    if flags & F_PID != 0 {
        put_varint(body, u64::from(row.pid));
        slot.pid = row.pid;
    }
    if flags & F_STATE != 0 {
        body.push(row.state);
        slot.state = row.state;
    }
    for (v, base) in [
        (row.rss, &mut slot.rss),
        (row.pss, &mut slot.pss),
        (row.heap, &mut slot.heap),
    ] {
        if v != NONE {
            let k = kib(v);
            // Both sides are below 2^54 KiB, so the difference fits.
            put_varint(body, zigzag(k as i64 - *base as i64));
            *base = k;
        }
    }
    if row.cpu != NO_CPU {
        put_varint(body, u64::from(row.cpu));
    }
    if !reasons.is_empty() {
        put_varint(body, reasons.len() as u64);
        for &(id, n) in reasons {
            put_varint(body, id);
            put_varint(body, n);
        }
    }
}

fn limit_frame(
    seg: &mut Segment,
    program: &Arc<str>,
    bytes: Option<u64>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    let id = seg.name(program, out, scratch);
    scratch.clear();
    scratch.push(KIND_LIMIT);
    put_varint(scratch, id);
    put_varint(scratch, seg.time);
    put_varint(scratch, bytes.unwrap_or(0));
    put_frame(out, scratch);
}
