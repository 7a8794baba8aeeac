//! A running worker's readiness and health: its readiness rule (an s6 notification fd, a check
//! tried every `every`, or systemd's `READY=1`), its start timeout, and its liveness check. Each
//! check runs as a task of its own and reports back, so a slow one never holds up the worker's
//! other inputs; the incarnation's end cancels the checks under way (see [`Checks`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::sleep_until_opt;

use crate::plan::{Check, HealthSpec, ReadyHow, ReadySpec};

/// What the checks found that matters to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Ready, by this rule (`fd`, `tcp`, `http`, `exec`).
    Ready(&'static str),
    /// Not ready when the start timeout ran out.
    NotReady(Duration),
    /// The health check failed this many times in a row; the last error.
    Unhealthy(u32, String),
}

/// Which check a result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ready,
    Health,
}

/// A check's result, for the check it was.
type Outcome = (Which, Result<(), String>);

/// The readiness and health state of one running incarnation. Dropped with the incarnation,
/// it drops the cancel senders of the checks under way: each ends at once, its command's tree
/// killed (see [`crate::checks`]), and none outlives the instance.
pub(super) struct Checks {
    ready: Option<ReadySpec>,
    health: Option<HealthSpec>,
    /// The rule said so (or there is no rule).
    is_ready: bool,
    /// The read end of an s6 notification pipe, until it says ready or closes.
    fd: Option<AsyncFd<OwnedFd>>,
    next_ready: Option<Instant>,
    next_health: Option<Instant>,
    start_deadline: Option<Instant>,
    failures: u32,
    /// Readiness tries so far: the first comes at once, the next ones quickly, backing off to
    /// `every` (see [`retry_after`]).
    ready_tries: u32,
    /// The listeners-only socket dump of a `listen` rule, kept open.
    listeners: Option<crate::net::diag::Dumper>,
    /// The checks under way (readiness, health): dropping one's sender cancels it.
    in_flight: [Option<oneshot::Sender<()>>; 2],
    results: (
        mpsc::UnboundedSender<Outcome>,
        mpsc::UnboundedReceiver<Outcome>,
    ),
    env: crate::checks::Env,
    /// Where systemd's `READY=1` and `EXTEND_TIMEOUT_USEC=` land (the engine reads the notify
    /// socket).
    shared: Rc<super::Shared>,
}

impl Checks {
    /// The state at start; `fd` is the read end of the notification pipe (`ReadyHow::Fd`).
    pub(super) fn new(
        ready: Option<ReadySpec>,
        health: Option<HealthSpec>,
        fd: Option<OwnedFd>,
        env: crate::checks::Env,
        shared: Rc<super::Shared>,
    ) -> Self {
        let now = Instant::now();
        let fd = fd.and_then(|fd| {
            crate::spawn::set_nonblocking(&fd).ok()?;
            // SAFETY: an `OwnedFd` stays open while owned and always returns the same number.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
        });
        let next_ready = ready
            .as_ref()
            .filter(|r| matches!(r.how, ReadyHow::Check(_)))
            .map(|_| now);
        Self {
            is_ready: ready.is_none(),
            start_deadline: ready
                .as_ref()
                .and_then(|r| r.start_timeout)
                .map(|t| now + t),
            next_health: health.as_ref().map(|h| now + h.every),
            ready,
            health,
            fd,
            next_ready,
            failures: 0,
            ready_tries: 0,
            listeners: None,
            in_flight: [None, None],
            results: mpsc::unbounded_channel(),
            env,
            shared,
        }
    }

    /// A reload changed the rule's timings or the health check (never the rule itself: that
    /// takes a new process). A start timeout not yet run out counts from the start again; a new
    /// or changed health check is first tried one `every` from now, with no failures counted.
    pub(super) fn update(&mut self, ready: Option<ReadySpec>, health: Option<HealthSpec>) {
        if !self.is_ready {
            let started = self.shared.started.get().map(Instant::from_std);
            self.start_deadline = ready
                .as_ref()
                .and_then(|r| r.start_timeout)
                .map(|t| started.unwrap_or_else(Instant::now) + t);
        }
        if health != self.health {
            self.failures = 0;
            self.next_health = health.as_ref().map(|h| Instant::now() + h.every);
        }
        self.ready = ready;
        self.health = health;
    }

    /// The rule is satisfied.
    fn mark_ready(&mut self) {
        self.is_ready = true;
        self.start_deadline = None;
    }

    /// The next verdict. Cancel-safe: state changes only after a branch has fired.
    pub(super) async fn next(&mut self) -> Verdict {
        loop {
            if !self.is_ready && self.shared.ready.get() {
                // `READY=1` came (the engine read it).
                self.mark_ready();
            }
            let health_due = self
                .next_health
                .filter(|_| self.is_ready && self.in_flight[1].is_none());
            let ready_due = self
                .next_ready
                .filter(|_| !self.is_ready && self.in_flight[0].is_none());
            tokio::select! {
                biased;
                Some((which, result)) = self.results.1.recv() => {
                    if let Some(v) = self.finished(which, result) {
                        return v;
                    }
                }
                got = readable(self.fd.as_ref()), if self.fd.is_some() && !self.is_ready => {
                    match got {
                        Ok(true) => {
                            self.fd = None;
                            self.mark_ready();
                            return Verdict::Ready("fd");
                        }
                        Ok(false) => {}
                        // Closed without a newline, or unreadable: it will never say it.
                        Err(()) => self.fd = None,
                    }
                }
                () = sleep_until_opt(self.start_deadline), if !self.is_ready => {
                    if self.shared.ready.get() {
                        self.mark_ready();
                        continue;
                    }
                    // `EXTEND_TIMEOUT_USEC=`: the worker asked for more time.
                    let extended = self.shared.notified.borrow().extended_until;
                    if let Some(until) = extended.map(Instant::from_std).filter(|&u| u > Instant::now()) {
                        self.start_deadline = Some(until);
                        continue;
                    }
                    self.start_deadline = None;
                    let waited = self.ready.as_ref().and_then(|r| r.start_timeout).unwrap_or_default();
                    return Verdict::NotReady(waited);
                }
                () = sleep_until_opt(ready_due) => {
                    if let Some(r) = &self.ready {
                        self.next_ready =
                            Some(Instant::now() + retry_after(self.ready_tries, r.every));
                        self.ready_tries = self.ready_tries.saturating_add(1);
                        if let ReadyHow::Check(c) = &r.how {
                            let (c, t) = (c.clone(), r.timeout);
                            self.launch(Which::Ready, c, t);
                        }
                    }
                }
                () = sleep_until_opt(health_due) => {
                    if let Some(h) = &self.health {
                        self.next_health = Some(Instant::now() + h.every);
                        let (c, t) = (h.check.clone(), h.timeout);
                        self.launch(Which::Health, c, t);
                    }
                }
            }
        }
    }

    /// Starts a try as a task of its own. The task is never aborted: cancelled, it still kills
    /// what its command left before it ends.
    fn launch(&mut self, which: Which, check: Check, timeout: Duration) {
        let tx = self.results.0.clone();
        if let Check::Listen { port } = check {
            // A look at the kernel's listeners and the tree's fds: no task, no wait.
            let result = self.listens(port);
            let _ = tx.send((which, result));
            return;
        }
        let env = self.env.clone();
        let (cancel, cancelled) = oneshot::channel();
        tokio::task::spawn_local(async move {
            let result = crate::checks::run(&check, timeout, &env, cancelled).await;
            let _ = tx.send((which, result));
        });
        self.in_flight[which as usize] = Some(cancel);
    }

    fn finished(&mut self, which: Which, result: Result<(), String>) -> Option<Verdict> {
        self.in_flight[which as usize] = None;
        match (which, result) {
            (Which::Ready, Ok(())) if !self.is_ready => {
                self.mark_ready();
                let by = match self.ready.as_ref().map(|r| &r.how) {
                    Some(ReadyHow::Check(Check::Tcp { .. })) => "tcp",
                    Some(ReadyHow::Check(Check::Http { .. })) => "http",
                    Some(ReadyHow::Check(Check::Listen { .. })) => "listen",
                    _ => "exec",
                };
                Some(Verdict::Ready(by))
            }
            (Which::Ready, _) => None,
            (Which::Health, Ok(())) => {
                self.failures = 0;
                None
            }
            (Which::Health, Err(e)) => {
                self.failures += 1;
                let limit = self.health.as_ref().map_or(u32::MAX, |h| h.failures);
                (self.failures >= limit).then(|| {
                    self.next_health = None;
                    Verdict::Unhealthy(self.failures, e)
                })
            }
        }
    }
}

impl Checks {
    /// Whether a process of this instance's tree (its root, and the members its last sample
    /// found) holds a TCP socket listening on `port`.
    fn listens(&mut self, port: u16) -> Result<(), String> {
        let dumper = self
            .listeners
            .get_or_insert_with(crate::net::diag::Dumper::listeners);
        let inodes = crate::net::listen::listening_inodes(dumper, port)
            .map_err(|e| format!("cannot list the listeners: {e}"))?;
        let mut pids: Vec<i32> = self.shared.pid.get().into_iter().collect();
        pids.extend(self.shared.members.borrow().iter().copied());
        if crate::net::listen::holds_any(&pids, &inodes) {
            Ok(())
        } else if inodes.is_empty() {
            Err(format!("nothing listens on port {port}"))
        } else {
            Err(format!(
                "port {port} has listeners, none of them this instance's"
            ))
        }
    }
}

/// The wait before readiness try `tries + 1`: 25 ms, doubling with each try, at most `every`.
/// A server listening within milliseconds is seen ready within milliseconds, and a chain of
/// programs that start `after` each other does not wait a full period per link.
#[must_use]
fn retry_after(tries: u32, every: Duration) -> Duration {
    FIRST_RETRY.saturating_mul(1u32 << tries.min(16)).min(every)
}

/// The first wait between readiness tries.
const FIRST_RETRY: Duration = Duration::from_millis(25);

/// Reads what is there: `Ok(true)` once a newline came, `Err` at end of file or on an error.
async fn readable(fd: Option<&AsyncFd<OwnedFd>>) -> Result<bool, ()> {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    let mut guard = fd.readable().await.map_err(|_| ())?;
    let mut buf = [0u8; 64];
    // SAFETY: read into a buffer we own, of its length, from an open fd.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        0 => Err(()),
        n if n > 0 => Ok(buf[..usize::try_from(n).unwrap_or(0)].contains(&b'\n')),
        _ => {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                guard.clear_ready();
                Ok(false)
            } else if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_tries_back_off_to_every() {
        let every = Duration::from_secs(1);
        let waits: Vec<u128> = (0..8).map(|k| retry_after(k, every).as_millis()).collect();
        assert_eq!(waits, [25, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry_after(u32::MAX, every), every);
        assert_eq!(
            retry_after(0, Duration::from_millis(10)),
            Duration::from_millis(10)
        );
    }
}
