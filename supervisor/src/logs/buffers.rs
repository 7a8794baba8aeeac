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
//! Its queue holds at most [`FOLLOW_BUDGET`] bytes: past that, lines are not queued but counted,
//! and the count takes their place in the queue, so the client is told how many it missed where
//! it missed them. Nothing ever waits for a follower: a client that does not read costs its
//! queue, not the worker's progress nor the engine's.

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
    program: Rc<str>,
    instance: u32,
    seq: Rc<Cell<u64>>,
    ring: RefCell<Ring>,
    followers: RefCell<Vec<Weak<Follower>>>,
}

impl Buffer {
    /// Keeps a line the worker wrote, and queues it for every follower.
    pub fn push(&self, stream: Stream, bytes: &Arc<[u8]>, read_at: Option<SystemTime>) {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
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
            f.offer(RecentLine {
                program: self.program.clone(),
                instance: self.instance,
                stream,
                time_ms,
                bytes: bytes.clone(),
            });
            true
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
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    /// What the queued lines cost, against [`FOLLOW_BUDGET`].
    bytes: usize,
    /// Nothing more will come, and why.
    closed: Option<String>,
}

impl Follower {
    fn wants(&self, program: &str, instance: u32) -> bool {
        self.program == program && self.instance.is_none_or(|i| i == instance)
    }

    fn offer(&self, line: RecentLine) {
        let mut q = self.queue.borrow_mut();
        if q.closed.is_some() {
            return;
        }
        let cost = line.bytes.len() + ITEM_COST;
        if q.bytes + cost > FOLLOW_BUDGET {
            match q.items.back_mut() {
                Some(Item::Skipped(n)) => *n += 1,
                _ => q.items.push_back(Item::Skipped(1)),
            }
        } else {
            q.bytes += cost;
            q.items.push_back(Item::Line(line));
        }
        drop(q);
        self.wake.notify_one();
    }

    /// The next queued item, if any.
    pub fn pop(&self) -> Option<Item> {
        let mut q = self.queue.borrow_mut();
        let item = q.items.pop_front()?;
        if let Item::Line(l) = &item {
            q.bytes -= l.bytes.len() + ITEM_COST;
        }
        Some(item)
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
        let b = Rc::new(Buffer {
            program: Rc::from(program),
            instance,
            seq: self.seq.clone(),
            ring: RefCell::new(Ring::new(self.cap)),
            followers: RefCell::default(),
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
mod tests {
    use super::*;

    fn push(b: &Buffer, stream: Stream, text: &str) {
        b.push(stream, &Arc::from(text.as_bytes()), None);
    }

    fn texts(lines: &[RecentLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                format!(
                    "{}/{} {}",
                    l.instance,
                    if l.stream == Stream::Stderr { "e" } else { "o" },
                    String::from_utf8_lossy(&l.bytes)
                )
            })
            .collect()
    }

    fn buffers() -> Rc<Buffers> {
        let b = Buffers::new(4096);
        b.sync([("api", 2)]);
        b
    }

    #[test]
    fn lines_of_several_instances_interleave_in_the_order_they_were_read() {
        let all = buffers();
        let (a, b) = (all.buffer("api", 0), all.buffer("api", 1));
        push(&a, Stream::Stdout, "one");
        push(&b, Stream::Stderr, "two");
        push(&a, Stream::Stderr, "three");
        push(&b, Stream::Stdout, "four");
        let both = all.select("api", None).expect("api");
        assert_eq!(
            texts(&Buffers::recent(&both, 3)),
            ["1/e two", "0/e three", "1/o four"]
        );
        let one = all.select("api", Some(0)).expect("api/0");
        assert_eq!(texts(&Buffers::recent(&one, 50)), ["0/o one", "0/e three"]);
        assert!(Buffers::recent(&both, 0).is_empty());
    }

    #[test]
    fn unknown_programs_and_instances_are_refused() {
        let all = buffers();
        assert_eq!(
            all.select("db", None).err().as_deref(),
            Some("no program named db")
        );
        assert_eq!(
            all.select("api", Some(2)).err().as_deref(),
            Some("api has no instance 2 (its instances are 0 to 1)")
        );
    }

    #[test]
    fn a_buffer_outlives_its_incarnations_but_not_its_place_in_the_config() {
        let all = buffers();
        push(&all.buffer("api", 1), Stream::Stdout, "last words");
        // A new incarnation (or a stop and start) gets the same buffer.
        let again = all.select("api", Some(1)).expect("api/1");
        assert_eq!(texts(&Buffers::recent(&again, 5)), ["1/o last words"]);
        all.sync([("api", 1)]);
        assert!(all.select("api", Some(1)).is_err());
        all.sync([("api", 2)]);
        let fresh = all.select("api", Some(1)).expect("api/1");
        assert!(Buffers::recent(&fresh, 5).is_empty());
    }

    #[test]
    fn a_follower_gets_new_lines_and_a_count_of_those_it_could_not_take() {
        let all = buffers();
        let sel = all.select("api", None).expect("api");
        let f = all.follow("api", None, &sel);
        push(&sel[1], Stream::Stdout, "hello");
        let Some(Item::Line(l)) = f.pop() else {
            panic!("a line")
        };
        assert_eq!((l.instance, &*l.bytes), (1, &b"hello"[..]));
        assert!(f.pop().is_none());
        // Nobody reads: the queue fills, then lines are counted, in one place.
        let line = "x".repeat(1000);
        for _ in 0..1000 {
            push(&sel[0], Stream::Stdout, &line);
        }
        let (mut lines, mut skipped, mut markers) = (0, 0, 0);
        while let Some(item) = f.pop() {
            match item {
                Item::Line(_) => {
                    assert_eq!(markers, 0, "lines after the marker");
                    lines += 1;
                }
                Item::Skipped(n) => {
                    skipped += n;
                    markers += 1;
                }
            }
        }
        assert_eq!(lines + skipped, 1000);
        assert_eq!(markers, 1);
        assert_eq!(lines, (FOLLOW_BUDGET / (1000 + ITEM_COST)) as u64);
        // Once read, it takes lines again.
        push(&sel[0], Stream::Stdout, "again");
        assert!(matches!(f.pop(), Some(Item::Line(_))));
    }

    #[test]
    fn a_follower_of_a_program_gets_the_instances_it_gains_and_hears_when_it_goes() {
        let all = Buffers::new(4096);
        all.sync([("api", 1)]);
        let sel = all.select("api", None).expect("api");
        let f = all.follow("api", None, &sel);
        let one = all.follow("api", Some(0), &sel[..1]);
        all.sync([("api", 2)]);
        push(&all.buffer("api", 1), Stream::Stdout, "new instance");
        assert!(matches!(f.pop(), Some(Item::Line(l)) if l.instance == 1));
        assert!(one.pop().is_none());
        assert_eq!(all.followers(), 2);
        all.sync([("web", 1)]);
        assert_eq!(
            f.closed().as_deref(),
            Some("api was removed from the config")
        );
        drop((f, one));
        assert_eq!(all.followers(), 0);
    }

    #[test]
    fn a_follower_of_an_instance_a_reload_removes_hears_it() {
        let all = Buffers::new(4096);
        all.sync([("api", 3)]);
        let sel = all.select("api", None).expect("api");
        let last = all.follow("api", Some(2), &sel[2..]);
        let first = all.follow("api", Some(0), &sel[..1]);
        let every = all.follow("api", None, &sel);
        all.sync([("api", 2)]);
        assert_eq!(
            last.closed().as_deref(),
            Some("api/2 was removed from the config (api now has 2)")
        );
        assert_eq!((first.closed(), every.closed()), (None, None));
        assert_eq!(all.followers(), 2);
    }

    #[test]
    fn with_no_buffer_lines_are_followed_but_not_kept() {
        let all = Buffers::new(0);
        all.sync([("api", 1)]);
        let sel = all.select("api", None).expect("api");
        let f = all.follow("api", None, &sel);
        push(&sel[0], Stream::Stdout, "live");
        assert!(Buffers::recent(&sel, 10).is_empty());
        assert!(matches!(f.pop(), Some(Item::Line(_))));
    }
}
