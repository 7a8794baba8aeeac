//! The connections a small server (the metrics HTTP server, the control socket) serves at once,
//! and which of them gives way to a newcomer.
//!
//! Both servers answer one request per connection, each on a local task of the engine's
//! runtime, and both cap how many they hold so that clients cannot take every file descriptor
//! the supervisor has. A cap that turns newcomers away can be filled, though: 200 clients that
//! trickle their request a byte per second hold every slot until their request deadline, so a
//! liveness probe gets refused and Kubernetes restarts a healthy pod. So at the cap a newcomer is
//! always let in, and the connection that has waited longest for its request to arrive is closed
//! instead. A probe or a scrape sends its request at once and is answered within milliseconds;
//! the connections still reading after that are the slow ones, and the oldest of them has had
//! the most time. Only when no connection is still reading (every one is writing its answer) does
//! the oldest of all give way.
//!
//! A connection closed while still reading may be sent a farewell first (the control socket's
//! says, as an answer, that nothing was done and to ask again), so that a client whose request
//! was merely slow to be read out of a burst learns why, instead of reading a reset.
//!
//! A connection whose request asks it to wait for an action to complete (the control socket's
//! `--wait`) never gives way: its request was read and acted on, and closing it would leave the
//! client with a broken pipe for an answer. So that newcomers can still be let in, at most
//! `waiting` of the `cap` connections may wait at once; one more is refused before its action is
//! taken ([`Conn::wait`]), and told so, so that the client can ask again.
//!
//! A closed connection's task is aborted: its socket is dropped with it, wherever it was waiting.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::time::Instant;

use tokio::task::AbortHandle;

/// The live connections of one server.
#[derive(Debug)]
pub struct Connections {
    cap: usize,
    /// How many of them may wait at once (less than `cap`).
    waiting: usize,
    /// Sent to a connection closed while still reading, if it can be at once.
    farewell: Option<Vec<u8>>,
    next_id: Cell<u64>,
    live: RefCell<Vec<Slot>>,
}

/// Where a connection stands, for choosing which one gives way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Its request has not arrived yet: the first to give way.
    Reading,
    /// Its request was read; it is being answered (or following logs).
    Answering,
    /// Its request was read and acted on, and it waits for the action to complete: never
    /// closed to make room.
    Waiting,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    since: Instant,
    stage: Rc<Cell<Stage>>,
    /// The connection's socket, open while its task is (the task owns it).
    fd: RawFd,
    task: AbortHandle,
}

/// A connection's own handle, given to its task: it says when the request has been read, and
/// leaves the server's list when the task ends (or is aborted).
#[derive(Debug)]
pub struct Conn {
    stage: Rc<Cell<Stage>>,
    id: u64,
    conns: Weak<Connections>,
}

impl Conn {
    /// The request has been read (or given up on): from now on this connection is answering,
    /// and gives way to a newcomer only after every one still reading.
    pub fn request_read(&self) {
        self.stage.set(Stage::Answering);
    }

    /// Asks to wait for an action to complete, never to be closed to make room meanwhile. False
    /// when the server already has as many connections waiting as it allows: the request must
    /// then be refused, before its action is taken, so that the client can ask again.
    #[must_use]
    pub fn wait(&self) -> bool {
        let Some(conns) = self.conns.upgrade() else {
            return false;
        };
        let waiting = conns
            .live
            .borrow()
            .iter()
            .filter(|s| s.id != self.id && s.stage.get() == Stage::Waiting)
            .count();
        let ok = waiting < conns.waiting;
        if ok {
            self.stage.set(Stage::Waiting);
        }
        ok
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(conns) = self.conns.upgrade() {
            conns.live.borrow_mut().retain(|s| s.id != self.id);
        }
    }
}

impl Connections {
    /// At most `cap` (at least 1) connections at once, of which at most `waiting` (less than
    /// `cap`) may wait.
    #[must_use]
    pub fn new(cap: usize, waiting: usize) -> Rc<Self> {
        let cap = cap.max(1);
        Rc::new(Self {
            cap,
            waiting: waiting.min(cap - 1),
            farewell: None,
            next_id: Cell::new(0),
            live: RefCell::new(Vec::new()),
        })
    }

    /// Like [`Connections::new`], sending `farewell` to a connection closed while still reading
    /// (if its socket takes it at once; nothing is ever waited for).
    #[must_use]
    pub fn with_farewell(cap: usize, waiting: usize, farewell: Vec<u8>) -> Rc<Self> {
        let mut conns = Self::new(cap, waiting);
        if let Some(c) = Rc::get_mut(&mut conns) {
            c.farewell = Some(farewell);
        }
        conns
    }

    /// Connections waiting for an action to complete.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.live
            .borrow()
            .iter()
            .filter(|s| s.stage.get() == Stage::Waiting)
            .count()
    }

    /// Connections being served.
    #[must_use]
    pub fn len(&self) -> usize {
        self.live.borrow().len()
    }

    /// True when none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves a new connection, whose socket is `fd`, on a local task (`serve` gets its
    /// [`Conn`] and must own the socket until it ends), after closing another if the server is
    /// at its cap. Must be called within a `LocalSet`.
    pub fn spawn<F>(self: &Rc<Self>, fd: RawFd, serve: impl FnOnce(Conn) -> F)
    where
        F: Future<Output = ()> + 'static,
    {
        let evicted = {
            let mut live = self.live.borrow_mut();
            if live.len() >= self.cap {
                let ages: Vec<(Instant, Stage)> =
                    live.iter().map(|s| (s.since, s.stage.get())).collect();
                victim(&ages).map(|i| live.remove(i))
            } else {
                None
            }
        };
        if let Some(slot) = evicted {
            if let (Some(farewell), Stage::Reading) = (&self.farewell, slot.stage.get()) {
                // SAFETY: send(2) on the slot's socket, which is still open: its task owns it
                // and has not ended (an ended task's `Conn` has taken the slot out of the list),
                // nor been aborted yet. MSG_DONTWAIT: never waits; MSG_NOSIGNAL: a closed peer
                // is an error return, not a SIGPIPE. What does not fit is left unsaid.
                let _ = unsafe {
                    libc::send(
                        slot.fd,
                        farewell.as_ptr().cast(),
                        farewell.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
            }
            slot.task.abort();
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let stage = Rc::new(Cell::new(Stage::Reading));
        let conn = Conn {
            stage: stage.clone(),
            id,
            conns: Rc::downgrade(self),
        };
        let task = tokio::task::spawn_local(serve(conn)).abort_handle();
        self.live.borrow_mut().push(Slot {
            id,
            since: Instant::now(),
            stage,
            fd,
            task,
        });
    }
}

/// Which connection gives way, given each one's `(accepted at, stage)`: the oldest still reading,
/// else the oldest answering; never one that waits. `None` for none at all (with fewer waiting
/// than the cap, there is always one at the cap).
fn victim(conns: &[(Instant, Stage)]) -> Option<usize> {
    let oldest = |stage: Stage| {
        conns
            .iter()
            .enumerate()
            .filter(|(_, &(_, s))| s == stage)
            .min_by_key(|(_, &(since, _))| since)
            .map(|(i, _)| i)
    };
    oldest(Stage::Reading).or_else(|| oldest(Stage::Answering))
}

#[cfg(test)]
mod tests;
