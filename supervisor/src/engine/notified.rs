//! What workers say on the notify socket ([`crate::notify`]): each datagram is attributed to the
//! worker whose tree holds its sender and applied to that instance's state; the rest is counted
//! and reported at most once a minute.

use std::time::{Duration, Instant};

use super::{Engine, Slot};
use crate::events::{Event, Kind};
use crate::notify::{Datagram, Field};

/// Datagrams handled per second, over all workers; the rest are dropped and counted (each costs
/// a syscall and, for a sender that is not a worker's root, a walk up its parents in /proc).
const MAX_PER_SECOND: u32 = 2000;
/// How far up its parents a sender is followed to find its worker.
const MAX_DEPTH: usize = 32;

/// Counts of what was dropped, reported together.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    unattributed: u64,
    garbage: u64,
    too_long: u64,
    over_rate: u64,
    window: Option<(Instant, u32)>,
    reported: Option<Instant>,
}

impl Engine {
    /// One datagram from the notify socket.
    pub(super) fn on_notify(&mut self, got: std::io::Result<Datagram>) {
        let now = Instant::now();
        let (start, n) = self.notify_dropped.window.unwrap_or((now, 0));
        let (start, n) = if now.duration_since(start) >= Duration::from_secs(1) {
            (now, 0)
        } else {
            (start, n)
        };
        self.notify_dropped.window = Some((start, n + 1));
        if n >= MAX_PER_SECOND {
            self.notify_dropped.over_rate += 1;
            return self.report_dropped(now);
        }
        let (pid, bytes) = match got {
            Ok(Datagram::Message { pid, bytes }) => (pid, bytes),
            Ok(Datagram::Dropped(_)) => {
                self.notify_dropped.too_long += 1;
                return self.report_dropped(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, "notify socket");
                return;
            }
        };
        let Some(fields) = crate::notify::parse(&bytes) else {
            self.notify_dropped.garbage += 1;
            return self.report_dropped(now);
        };
        let Some(id) = self.attribute(pid) else {
            self.notify_dropped.unattributed += 1;
            return self.report_dropped(now);
        };
        if let Some(slot) = self.slots.get(&id) {
            self.apply(slot, pid, &fields);
        }
    }

    /// The slot whose running tree holds `pid`.
    fn attribute(&self, pid: i32) -> Option<u64> {
        let holds = |p: i32| {
            self.slots.iter().find_map(|(&id, s)| {
                let sh = &s.shared;
                (sh.pid.get() == Some(p) || sh.members.borrow().contains(&p)).then_some(id)
            })
        };
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let mut p = pid;
        for _ in 0..MAX_DEPTH {
            if let Some(id) = holds(p) {
                return Some(id);
            }
            p = crate::orphans::stat_of(p)?.ppid;
            if p <= 1 || p == me {
                return None;
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
                Field::Reloading | Field::Stopping => sh.ready.set(false),
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
                         too long, or over the rate"
                    .into(),
                numbers: numbers.into(),
            },
        ));
    }
}
