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
//! A closed connection's task is aborted: its socket is dropped with it, wherever it was waiting.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::Instant;

use tokio::task::AbortHandle;

/// The live connections of one server.
#[derive(Debug)]
pub struct Connections {
    cap: usize,
    next_id: Cell<u64>,
    live: RefCell<Vec<Slot>>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    since: Instant,
    reading: Rc<Cell<bool>>,
    task: AbortHandle,
}

/// A connection's own handle, given to its task: it says when the request has been read, and
/// leaves the server's list when the task ends (or is aborted).
#[derive(Debug)]
pub struct Conn {
    reading: Rc<Cell<bool>>,
    id: u64,
    conns: Weak<Connections>,
}

impl Conn {
    /// The request has been read (or given up on): from now on this connection is answering,
    /// and gives way to a newcomer only after every one still reading.
    pub fn request_read(&self) {
        self.reading.set(false);
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
    /// At most `cap` (at least 1) connections at once.
    #[must_use]
    pub fn new(cap: usize) -> Rc<Self> {
        Rc::new(Self {
            cap: cap.max(1),
            next_id: Cell::new(0),
            live: RefCell::new(Vec::new()),
        })
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

    /// Serves a new connection on a local task (`serve` gets its [`Conn`]), after closing
    /// another if the server is at its cap. Must be called within a `LocalSet`.
    pub fn spawn<F>(self: &Rc<Self>, serve: impl FnOnce(Conn) -> F)
    where
        F: Future<Output = ()> + 'static,
    {
        let evicted = {
            let mut live = self.live.borrow_mut();
            if live.len() >= self.cap {
                let ages: Vec<(Instant, bool)> =
                    live.iter().map(|s| (s.since, s.reading.get())).collect();
                victim(&ages).map(|i| live.remove(i))
            } else {
                None
            }
        };
        if let Some(slot) = evicted {
            slot.task.abort();
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let reading = Rc::new(Cell::new(true));
        let conn = Conn {
            reading: reading.clone(),
            id,
            conns: Rc::downgrade(self),
        };
        let task = tokio::task::spawn_local(serve(conn)).abort_handle();
        self.live.borrow_mut().push(Slot {
            id,
            since: Instant::now(),
            reading,
            task,
        });
    }
}

/// Which connection gives way, given each one's `(accepted at, still reading its request)`: the
/// oldest still reading, else the oldest. `None` for none at all.
fn victim(conns: &[(Instant, bool)]) -> Option<usize> {
    let oldest = |reading_only: bool| {
        conns
            .iter()
            .enumerate()
            .filter(|(_, &(_, reading))| reading || !reading_only)
            .min_by_key(|(_, &(since, _))| since)
            .map(|(i, _)| i)
    };
    oldest(true).or_else(|| oldest(false))
}

#[cfg(test)]
mod tests;
