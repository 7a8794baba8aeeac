//! What `supervise logs` reads: the recent lines of every instance, and the clients following
//! them live.
//!
//! Each instance (a program's instance number, whichever incarnation runs) has a [`Buffer`]: a
//! [`Ring`] of its newest lines, stdout and stderr together, of `--log-buffer` bytes. The
//! forwarder that reads a worker's pipe pushes each line into it as it reads it, on the engine's
//! thread, before handing it to the writer threads; a sequence number shared by every instance
//! records the order lines were read in, so the lines of several instances can be interleaved.
//! A buffer outlives incarnations (the last lines of one that died stay for the operator to read)
//! and `stop`/`start`; it is dropped when its instance leaves the config on a reload.
//!
//! A client that follows (`logs -f`) is a [`Follower`]: every line pushed into a buffer it
//! follows is also queued for it, sharing the forwarder's allocation of the line (no copy).
//! Its queue holds at most [`FOLLOW_BUDGET`] bytes. Once a line does not fit, the follower
//! overflows: each buffer that has a line for it leaves it out from then on, noting how many
//! lines it had pushed, so a client that does not read costs nothing per line (33 that never
//! read once halved a flooding worker's rate, each line still offered to each). When the client
//! has read its queue empty, the follower is put back on those buffers, and the lines they pushed
//! meanwhile are counted into one [`Item::Skipped`], where it missed them. Nothing ever waits for
//! a follower: a client that does not read costs its queue, not the worker's progress nor the
//! engine's.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::ring::Ring;
use super::Stream;

/// What the lines of one `logs` answer may cost at most (their bytes and 64 more each):
/// its newest lines that fit. Bounds the memory a client's request takes, whatever `-n` it asks.
pub const REPLY_MAX: usize = 4 << 20;
/// Bytes of lines that may wait for one follower; more are skipped and counted.
pub const FOLLOW_BUDGET: usize = 256 * 1024;
/// What a line on its way to a client costs besides its bytes (its queue slot, the shared
/// allocation's header), so that a flood of empty lines is bounded too.
const ITEM_COST: usize = 64;

/// A line on its way to a `logs` client.
#[derive(Debug, Clone)]
pub struct RecentLine {
    pub program: Rc<str>,
    pub instance: u32,
    pub stream: Stream,
    /// When it was read (ms since the Unix epoch), with `--timestamps`.
    pub time_ms: Option<u64>,
    pub bytes: Arc<[u8]>,
}

/// What a follower is sent.
#[derive(Debug)]
pub enum Item {
    Line(RecentLine),
    /// This many lines were dropped here: the client did not keep up.
    Skipped(u64),
}

/// The recent lines of one instance, and who follows them.
#[derive(Debug)]
pub struct Buffer {
    /// Itself, for the followers that note it left them out.
    me: Weak<Buffer>,
    program: Rc<str>,
    instance: u32,
    seq: Rc<Cell<u64>>,
    /// Lines pushed, ever: what an overflowing follower missed is counted from it.
    pushed: Cell<u64>,
    ring: RefCell<Ring>,
    followers: RefCell<Vec<Weak<Follower>>>,
    /// Why lines of the instance never reach supervise, if some do not (its output is
    /// supervise's terminal, handed over).
    unseen: Cell<Option<&'static str>>,
}

impl Buffer {
    /// Notes why lines of the instance never reach supervise (`None`: they all do).
    pub fn set_unseen(&self, why: Option<&'static str>) {
        self.unseen.set(why);
    }

    /// Why lines of the instance never reach supervise, if some do not.
    #[must_use]
    pub fn unseen(&self) -> Option<&'static str> {
        self.unseen.get()
    }

    /// Keeps a line the worker wrote, and queues it for every follower; an overflowing one is
    /// left out from now on (see the module's doc).
    pub fn push(&self, stream: Stream, bytes: &Arc<[u8]>, read_at: Option<SystemTime>) {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let pushed = self.pushed.get();
        self.pushed.set(pushed + 1);
        let time_ms = read_at.map(unix_ms);
        self.ring
            .borrow_mut()
            .push(seq, stream == Stream::Stderr, time_ms, bytes);
        let mut followers = self.followers.borrow_mut();
        if followers.is_empty() {
            return;
        }
        followers.retain(|f| {
            let Some(f) = f.upgrade() else { return false };
            let taken = f.offer(RecentLine {
                program: self.program.clone(),
                instance: self.instance,
                stream,
                time_ms,
                bytes: bytes.clone(),
            });
            if !taken {
                // Missed from this line on: counted from `pushed` when it is back.
                f.left_out.borrow_mut().push((self.me.clone(), pushed));
            }
            taken
        });
    }

    fn attach(&self, f: &Rc<Follower>) {
        let mut followers = self.followers.borrow_mut();
        followers.retain(|w| w.strong_count() > 0);
        followers.push(Rc::downgrade(f));
    }
}

/// A client following some instances' lines.
#[derive(Debug)]
pub struct Follower {
    program: String,
    instance: Option<u32>,
    queue: RefCell<Queue>,
    /// While it overflows: the buffers that left it out, and how many lines each had pushed
    /// then.
    left_out: RefCell<Vec<(Weak<Buffer>, u64)>>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    /// What the queued lines cost, against [`FOLLOW_BUDGET`].
    bytes: usize,
    /// A line did not fit: no more are taken until the queue has been read empty.
    overflowing: bool,
    /// Nothing more will come, and why.
    closed: Option<String>,
}

impl Follower {
    fn wants(&self, program: &str, instance: u32) -> bool {
        self.program == program && self.instance.is_none_or(|i| i == instance)
    }

    /// Queues a line; false if it overflows (the line is then missed, and the buffer leaves
    /// this follower out until it is back). A closed follower takes lines and drops them.
    fn offer(&self, line: RecentLine) -> bool {
        let mut q = self.queue.borrow_mut();
        if q.closed.is_some() {
            return true;
        }
        let cost = line.bytes.len() + ITEM_COST;
        if q.overflowing {
            return false;
        }
        if q.bytes + cost > FOLLOW_BUDGET {
            q.overflowing = true;
            drop(q);
            // Its task may be idle with the queue empty (a line larger than the budget): it must
            // look, or nothing would ever wake it again.
            self.wake.notify_one();
            return false;
        }
        q.bytes += cost;
        q.items.push_back(Item::Line(line));
        drop(q);
        self.wake.notify_one();
        true
    }

    /// The next queued item, if any. Once an overflowing follower's queue is empty, it is put
    /// back on the buffers that left it out, and its next item says how many lines they pushed
    /// meanwhile.
    pub fn pop(self: &Rc<Self>) -> Option<Item> {
        let mut q = self.queue.borrow_mut();
        if let Some(item) = q.items.pop_front() {
            if let Item::Line(l) = &item {
                q.bytes -= l.bytes.len() + ITEM_COST;
            }
            return Some(item);
        }
        if !q.overflowing {
            return None;
        }
        q.overflowing = false;
        drop(q);
        let mut missed = 0;
        for (b, pushed) in self.left_out.take() {
            if let Some(b) = b.upgrade() {
                missed += b.pushed.get() - pushed;
                b.attach(self);
            }
        }
        (missed > 0).then_some(Item::Skipped(missed))
    }

    /// Why nothing more will come, once that is so.
    pub fn closed(&self) -> Option<String> {
        self.queue.borrow().closed.clone()
    }

    /// Completes when something was queued (or the follower closed) since the last call.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    fn close(&self, why: &str) {
        self.queue
            .borrow_mut()
            .closed
            .get_or_insert_with(|| why.to_owned());
        self.wake.notify_one();
    }
}

/// Every instance's buffer, and the followers. Lives on the engine's thread.
#[derive(Debug)]
pub struct Buffers {
    /// Bytes of each instance's ring.
    cap: usize,
    seq: Rc<Cell<u64>>,
    buffers: RefCell<BTreeMap<(String, u32), Rc<Buffer>>>,
    /// The programs of the config and their replica counts.
    replicas: RefCell<BTreeMap<String, u32>>,
    followers: RefCell<Vec<Weak<Follower>>>,
}

impl Buffers {
    /// Buffers of `cap` bytes per instance (0: lines are not kept, only followed).
    #[must_use]
    pub fn new(cap: usize) -> Rc<Self> {
        Rc::new(Self {
            cap,
            seq: Rc::default(),
            buffers: RefCell::default(),
            replicas: RefCell::default(),
            followers: RefCell::default(),
        })
    }

    /// The config's programs and their replica counts, at start and after each reload: the
    /// buffers of instances no longer in it are dropped, and their followers told.
    pub fn sync<'a>(&self, programs: impl IntoIterator<Item = (&'a str, u32)>) {
        let replicas: BTreeMap<String, u32> = programs
            .into_iter()
            .map(|(p, n)| (p.to_owned(), n))
            .collect();
        self.buffers
            .borrow_mut()
            .retain(|(p, i), _| replicas.get(p).is_some_and(|&n| *i < n));
        self.followers.borrow_mut().retain(|w| {
            let Some(f) = w.upgrade() else { return false };
            match (replicas.get(&f.program), f.instance) {
                (None, _) => f.close(&format!("{} was removed from the config", f.program)),
                (Some(&n), Some(i)) if i >= n => f.close(&format!(
                    "{}/{i} was removed from the config ({} now has {n})",
                    f.program, f.program
                )),
                _ => return true,
            }
            false
        });
        *self.replicas.borrow_mut() = replicas;
    }

    /// The buffer of an instance, made (and given the followers that want it) the first time.
    pub fn buffer(&self, program: &str, instance: u32) -> Rc<Buffer> {
        let mut buffers = self.buffers.borrow_mut();
        if let Some(b) = buffers.get(&(program.to_owned(), instance)) {
            return b.clone();
        }
        let b = Rc::new_cyclic(|me| Buffer {
            me: me.clone(),
            program: Rc::from(program),
            instance,
            seq: self.seq.clone(),
            pushed: Cell::new(0),
            ring: RefCell::new(Ring::new(self.cap)),
            followers: RefCell::default(),
            unseen: Cell::new(None),
        });
        for f in self.followers.borrow().iter().filter_map(Weak::upgrade) {
            if f.wants(program, instance) {
                b.attach(&f);
            }
        }
        buffers.insert((program.to_owned(), instance), b.clone());
        b
    }

    /// The buffers of `program` (or of one instance); `Err` says why there are none.
    pub fn select(&self, program: &str, instance: Option<u32>) -> Result<Vec<Rc<Buffer>>, String> {
        let Some(n) = self.replicas.borrow().get(program).copied() else {
            return Err(format!("no program named {program}"));
        };
        match instance {
            Some(i) if i >= n => Err(format!(
                "{program} has no instance {i} (its instances are 0 to {})",
                n.saturating_sub(1)
            )),
            Some(i) => Ok(vec![self.buffer(program, i)]),
            None => Ok((0..n).map(|i| self.buffer(program, i)).collect()),
        }
    }

    /// The newest `n` lines of `buffers`, in the order they were read (as many as fit in
    /// [`REPLY_MAX`]).
    #[must_use]
    pub fn recent(buffers: &[Rc<Buffer>], n: usize) -> Vec<RecentLine> {
        let rings: Vec<_> = buffers.iter().map(|b| b.ring.borrow()).collect();
        // No answer holds more lines than this, so no ring need give more.
        let most = n.min(REPLY_MAX / ITEM_COST);
        let mut positions: Vec<Vec<usize>> = rings.iter().map(|r| r.last_positions(most)).collect();
        // The newest line left of each buffer, newest first: a merge from the end.
        let mut heap: BinaryHeap<(u64, usize)> = positions
            .iter()
            .enumerate()
            .filter_map(|(k, p)| Some((rings[k].seq_at(*p.last()?), k)))
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < n {
            let Some((_, k)) = heap.pop() else { break };
            let Some(at) = positions[k].pop() else { break };
            let rec = rings[k].record(at);
            bytes += rec.bytes.len() + ITEM_COST;
            if bytes > REPLY_MAX {
                break;
            }
            out.push(RecentLine {
                program: buffers[k].program.clone(),
                instance: buffers[k].instance,
                stream: if rec.stderr {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                time_ms: rec.time_ms,
                bytes: rec.bytes.into(),
            });
            if let Some(&prev) = positions[k].last() {
                heap.push((rings[k].seq_at(prev), k));
            }
        }
        out.reverse();
        out
    }

    /// A new follower of `program` (or one instance), attached to `buffers` (from
    /// [`Buffers::select`]) and to the instances it gains later.
    pub fn follow(
        &self,
        program: &str,
        instance: Option<u32>,
        buffers: &[Rc<Buffer>],
    ) -> Rc<Follower> {
        let f = Rc::new(Follower {
            program: program.to_owned(),
            instance,
            queue: RefCell::default(),
            left_out: RefCell::default(),
            wake: Notify::new(),
        });
        for b in buffers {
            b.attach(&f);
        }
        let mut followers = self.followers.borrow_mut();
        followers.retain(|w| w.strong_count() > 0);
        followers.push(Rc::downgrade(&f));
        f
    }

    /// Whether lines are kept at all (`--log-buffer 0` keeps none).
    #[must_use]
    pub fn keeps(&self) -> bool {
        self.cap > 0
    }

    /// Tells every follower that nothing more will come (the supervisor is exiting).
    pub fn close(&self, why: &str) {
        for f in self.followers.borrow().iter().filter_map(Weak::upgrade) {
            f.close(why);
        }
    }

    /// Followers connected.
    #[must_use]
    pub fn followers(&self) -> usize {
        self.followers
            .borrow()
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
