//! Who is heard on the notify socket, and at what cost: a pure account of budgets per second.
//!
//! Every sender (a pid, as the kernel attests it) has a budget of its own, so a flood costs the
//! flooder's budget only: a worker's own `WATCHDOG=1` and `READY=1` are never crowded out by
//! someone else's datagrams. Attributing a sender that is neither a tree's root nor a member seen
//! by the last sample means a walk up its parents in /proc; those walks share one budget, and
//! what a walk found is remembered for the rest of the second, so a flood from one process costs
//! one walk. Senders past [`MAX_SENDERS`] in one second (a fork flood) share one small budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Datagrams a second heard from one sender. `sd_notify` callers send a few a second; a
/// program that pings in a tight loop is still heard 500 times a second.
pub const PER_SENDER: u32 = 500;
/// Walks up /proc a second, for all senders together (each is a few small reads).
pub const WALKS: u32 = 200;
/// Senders remembered in one second; the ones beyond share [`POOLED`].
pub const MAX_SENDERS: usize = 4096;
/// Datagrams a second heard from all senders beyond [`MAX_SENDERS`] together.
pub const POOLED: u32 = 200;
const WINDOW: Duration = Duration::from_secs(1);

/// The budgets of the current second.
#[derive(Debug, Default)]
pub struct Intake {
    start: Option<Instant>,
    senders: HashMap<i32, Sender>,
    pooled: u32,
    walks: u32,
}

#[derive(Debug, Default)]
struct Sender {
    count: u32,
    /// What attributing it found this second: the worker's slot, or outside every tree.
    owner: Option<Option<u64>>,
}

/// Whether a datagram is read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Its sender (or the pool of senders beyond `MAX_SENDERS`) used up this second's budget.
    OverRate,
}

impl Intake {
    /// A datagram from `pid` arrived at `now`: counted against its sender's budget.
    pub fn admit(&mut self, now: Instant, pid: i32) -> Admit {
        if self
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= WINDOW)
        {
            self.start = Some(now);
            self.senders.clear();
            self.pooled = 0;
            self.walks = 0;
        }
        let room = self.senders.len() < MAX_SENDERS;
        let (count, budget) = match self.senders.get_mut(&pid) {
            Some(s) => (&mut s.count, PER_SENDER),
            None if room => (&mut self.senders.entry(pid).or_default().count, PER_SENDER),
            None => (&mut self.pooled, POOLED),
        };
        if *count >= budget {
            return Admit::OverRate;
        }
        *count += 1;
        Admit::Go
    }

    /// What attributing `pid` found earlier this second, if it was attributed.
    #[must_use]
    pub fn owner(&self, pid: i32) -> Option<Option<u64>> {
        self.senders.get(&pid).and_then(|s| s.owner)
    }

    /// Remembers, for the rest of the second, which slot `pid` belongs to (`None`: none).
    pub fn remember(&mut self, pid: i32, owner: Option<u64>) {
        if let Some(s) = self.senders.get_mut(&pid) {
            s.owner = Some(owner);
        }
    }

    /// Whether a walk up /proc may be taken now (it is counted if so).
    pub fn may_walk(&mut self) -> bool {
        if self.walks >= WALKS {
            return false;
        }
        self.walks += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_go(intake: &mut Intake, now: Instant, pid: i32, n: u32) -> u32 {
        (0..n)
            .filter(|_| intake.admit(now, pid) == Admit::Go)
            .count()
            .try_into()
            .expect("small")
    }

    #[test]
    fn each_sender_has_a_budget_of_its_own() {
        let t = Instant::now();
        let mut i = Intake::default();
        // A flood from one pid uses up its own budget ...
        assert_eq!(count_go(&mut i, t, 100, 100_000), PER_SENDER);
        // ... and nobody else's: a worker's pings are all heard.
        assert_eq!(count_go(&mut i, t, 7, 10), 10);
        assert_eq!(i.admit(t, 100), Admit::OverRate);
        // The next second, every budget is whole again.
        let t2 = t + WINDOW;
        assert_eq!(count_go(&mut i, t2, 100, 10), 10);
        assert_eq!(count_go(&mut i, t2, 7, PER_SENDER + 1), PER_SENDER);
    }

    #[test]
    fn the_second_starts_with_its_first_datagram() {
        let t = Instant::now();
        let mut i = Intake::default();
        assert_eq!(count_go(&mut i, t, 1, PER_SENDER), PER_SENDER);
        assert_eq!(
            i.admit(t + WINDOW - Duration::from_millis(1), 1),
            Admit::OverRate
        );
        assert_eq!(i.admit(t + WINDOW, 1), Admit::Go);
        // A clock that goes back (it cannot, but) never panics and keeps the window.
        assert_eq!(i.admit(t, 1), Admit::Go);
    }

    #[test]
    fn senders_past_the_map_share_one_small_budget() {
        let t = Instant::now();
        let mut i = Intake::default();
        let known = i32::try_from(MAX_SENDERS).expect("fits");
        for pid in 0..known {
            assert_eq!(i.admit(t, pid), Admit::Go);
        }
        // A fork flood: every new pid after the map is full counts against the pool.
        let heard = (known..known + 10_000)
            .filter(|&p| i.admit(t, p) == Admit::Go)
            .count();
        assert_eq!(heard, POOLED as usize);
        // The senders already known still have their own budgets.
        assert_eq!(i.admit(t, 0), Admit::Go);
    }

    #[test]
    fn attributions_are_remembered_for_the_second_and_walks_are_budgeted() {
        let t = Instant::now();
        let mut i = Intake::default();
        assert_eq!(i.owner(5), None);
        i.remember(5, Some(3)); // not admitted yet: nothing to remember it on
        assert_eq!(i.owner(5), None);
        i.admit(t, 5);
        i.remember(5, Some(3));
        i.admit(t, 6);
        i.remember(6, None);
        assert_eq!(i.owner(5), Some(Some(3)));
        assert_eq!(i.owner(6), Some(None));
        let walks = (0..1000).filter(|_| i.may_walk()).count();
        assert_eq!(walks, WALKS as usize);
        // Forgotten, and the walks renewed, the next second.
        i.admit(t + WINDOW, 9);
        assert_eq!(i.owner(5), None);
        assert!(i.may_walk());
    }
}
