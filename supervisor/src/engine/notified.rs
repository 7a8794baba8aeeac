//! What workers say on the notify sockets ([`crate::notify`]): each datagram is attributed to
//! the worker whose tree holds its sender and applied to that instance's state; the rest is
//! counted and reported at most once a minute. Each sender has a budget of its own
//! ([`crate::notify::Intake`]), so a flood from anyone costs its own budget only.

use std::time::{Duration, Instant};

use super::{Engine, Slot};
use crate::events::{Event, Kind};
use crate::notify::{Admit, Datagram, Dropped as Why, Field};

/// How far up its parents a sender is followed to find its worker.
const MAX_DEPTH: usize = 32;

/// Counts of what was dropped, reported together.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    unattributed: u64,
    garbage: u64,
    too_long: u64,
    over_rate: u64,
    no_credentials: u64,
    /// Messages whose fds were more than could arrive (each one that did was closed).
    fds_cut: u64,
    reported: Option<Instant>,
}

impl Engine {
    /// A batch of datagrams from the notify sockets.
    pub(super) fn on_notify(&mut self, batch: Vec<Datagram>) {
        let now = Instant::now();
        let mut dropped = false;
        for d in batch {
            dropped |= !self.on_datagram(now, d);
        }
        if dropped {
            self.report_dropped(now);
        }
    }

    /// One datagram; false if it was dropped.
    fn on_datagram(&mut self, now: Instant, d: Datagram) -> bool {
        let (pid, bytes, fds_cut) = match d {
            Datagram::Message {
                pid,
                bytes,
                fds_cut,
                ..
            } => (pid, bytes, fds_cut),
            Datagram::Dropped(Why::TooLong) => {
                self.notify_dropped.too_long += 1;
                return false;
            }
            Datagram::Dropped(Why::NoCredentials) => {
                self.notify_dropped.no_credentials += 1;
                return false;
            }
        };
        if fds_cut {
            self.notify_dropped.fds_cut += 1;
        }
        if self.notify_intake.admit(now, pid) == Admit::OverRate {
            self.notify_dropped.over_rate += 1;
            return false;
        }
        let Some(fields) = crate::notify::parse(&bytes) else {
            self.notify_dropped.garbage += 1;
            return false;
        };
        let Some(id) = self.attribute(pid) else {
            self.notify_dropped.unattributed += 1;
            return false;
        };
        if let Some(slot) = self.slots.get(&id) {
            self.apply(slot, pid, &fields);
        }
        !fds_cut
    }

    /// The slot whose running tree holds `pid`: a root or a member seen by the last sample, at
    /// once; else what a walk up its parents finds, remembered for the rest of the second, with
    /// the walks budgeted (a sender that cannot be walked now is not heard).
    fn attribute(&mut self, pid: i32) -> Option<u64> {
        if let Some(id) = self.holder(pid) {
            return Some(id);
        }
        match self.notify_intake.owner(pid) {
            Some(Some(id))
                if self
                    .slots
                    .get(&id)
                    .is_some_and(|s| s.shared.pid.get().is_some()) =>
            {
                return Some(id)
            }
            Some(None) => return None,
            _ => {}
        }
        if !self.notify_intake.may_walk() {
            return None;
        }
        let owner = self.walk_up(pid);
        self.notify_intake.remember(pid, owner);
        owner
    }

    /// The slot whose running process is `p` or whose last sample saw `p` in its tree.
    fn holder(&self, p: i32) -> Option<u64> {
        self.slots.iter().find_map(|(&id, s)| {
            let sh = &s.shared;
            (sh.pid.get() == Some(p) || sh.members.borrow().contains(&p)).then_some(id)
        })
    }

    /// The slot of the nearest ancestor of `pid` that a tree holds, following parents in /proc.
    fn walk_up(&self, pid: i32) -> Option<u64> {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let mut p = pid;
        for _ in 0..MAX_DEPTH {
            p = crate::orphans::stat_of(p)?.ppid;
            if p <= 1 || p == me {
                return None;
            }
            if let Some(id) = self.holder(p) {
                return Some(id);
            }
        }
        None
    }

    fn apply(&self, slot: &Slot, pid: i32, fields: &[Field]) {
        let sh = &slot.shared;
        let event = |kind: Kind| {
            self.output
                .event(&Event::now(&slot.spec.name, slot.instance, Some(pid), kind));
        };
        let mut n = sh.notified.borrow_mut();
        // With another readiness rule, that rule alone decides: READY=1 and its undoing are not
        // the program's to say.
        let says_ready = slot
            .spec
            .ready
            .as_ref()
            .is_none_or(|r| r.how == crate::plan::ReadyHow::Notify);
        for f in fields {
            match f {
                Field::Ready | Field::Reloading | Field::Stopping if !says_ready => {}
                Field::Ready => {
                    if !sh.ready.get() {
                        sh.ready.set(true);
                        event(Kind::Ready { by: "notify" });
                    }
                }
                // Not ready again until the next `READY=1`.
                Field::Reloading => {
                    sh.ready.set(false);
                    n.reloadings += 1;
                }
                Field::Stopping => sh.ready.set(false),
                Field::Status(s) => n.status = Some(s.clone()),
                Field::MainPid(p) => {
                    if sh.pid.get() == Some(*p) || sh.members.borrow().contains(p) {
                        n.main_pid = Some(*p);
                    }
                }
                Field::Watchdog => n.watchdog_ns = crate::worker::monotonic_ns(),
                Field::WatchdogTrigger => n.triggered = true,
                Field::ExtendTimeout(d) => n.extended_until = Instant::now().checked_add(*d),
                Field::Errno(e) => n.errno = Some(*e),
                Field::Other => {}
            }
        }
    }

    /// Says what was dropped, at most once a minute.
    fn report_dropped(&mut self, now: Instant) {
        let d = &mut self.notify_dropped;
        if d.reported
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        d.reported = Some(now);
        let numbers = [
            ("unattributed", d.unattributed),
            ("garbage", d.garbage),
            ("too_long", d.too_long),
            ("over_rate", d.over_rate),
            ("no_credentials", d.no_credentials),
            ("fds_cut", d.fds_cut),
        ];
        tracing::warn!(?numbers, "notify socket: datagrams dropped");
        crate::worker::count_finding(&mut self.own_findings, "notify_dropped");
        self.output.event(&Event::now(
            "supervise",
            0,
            i32::try_from(std::process::id()).ok(),
            Kind::Finding {
                kind: "notify_dropped",
                detail: "datagrams on the notify socket from no worker's tree, unparsable, \
                         too long, over their sender's rate, or with more fds than could arrive"
                    .into(),
                numbers: numbers.into(),
            },
        ));
    }
}
