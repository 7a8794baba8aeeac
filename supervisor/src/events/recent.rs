//! The recent events, kept in memory for `top`'s detail pane and the dashboard, and offered live
//! to the dashboard's streams.
//!
//! Every event goes through [`crate::logs::Output::event`], which hands its JSON line here. The
//! lines are kept per instance, at most [`MAX_EVENTS`] and [`MAX_BYTES`] in all; past either, the
//! oldest line of the instance that holds the most is dropped, so that a worker that flaps cannot
//! push a quiet one's last restart out. Each line is also sent on a broadcast channel to the
//! dashboard streams that follow: one that does not keep up misses lines (it is told how many),
//! and nothing ever waits for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

/// Events kept in all.
pub const MAX_EVENTS: usize = 1024;
/// Bytes of event lines kept in all.
pub const MAX_BYTES: usize = 256 * 1024;
/// Lines a live follower may fall behind by before it misses some.
const LIVE_BACKLOG: usize = 256;

/// One kept line, with its place in the order events happened.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    line: Arc<str>,
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    by_instance: BTreeMap<(Arc<str>, u32), VecDeque<Kept>>,
    count: usize,
    bytes: usize,
}

/// The kept events, and the live feed.
#[derive(Debug)]
pub struct Recent {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<str>>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            live: broadcast::channel(LIVE_BACKLOG).0,
        }
    }
}

impl Recent {
    /// Keeps the event line (`line`, JSON without its newline) of `program`'s `instance`, and
    /// sends it to the live followers.
    pub fn push(&self, program: &str, instance: u32, line: &str) {
        let line: Arc<str> = Arc::from(line.trim_end_matches('\n'));
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = inner.seq;
            inner.seq += 1;
            inner.count += 1;
            inner.bytes += line.len();
            let key = (Arc::from(program), instance);
            inner.by_instance.entry(key).or_default().push_back(Kept {
                seq,
                line: line.clone(),
            });
            while inner.count > MAX_EVENTS || inner.bytes > MAX_BYTES {
                if !inner.drop_one() {
                    break;
                }
            }
        }
        // No follower is no error.
        let _ = self.live.send(line);
    }

    /// The newest `n` lines of `program` (all programs if `None`) and `instance` (all of them
    /// if `None`), oldest first.
    #[must_use]
    pub fn lines(&self, program: Option<&str>, instance: Option<u32>, n: usize) -> Vec<Arc<str>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut picked: Vec<&Kept> = inner
            .by_instance
            .iter()
            .filter(|((p, i), _)| {
                program.is_none_or(|want| **p == *want) && instance.is_none_or(|want| *i == want)
            })
            .flat_map(|(_, q)| q.iter())
            .collect();
        picked.sort_unstable_by_key(|k| k.seq);
        let skip = picked.len().saturating_sub(n);
        picked[skip..].iter().map(|k| k.line.clone()).collect()
    }

    /// Every event line from now on.
    #[must_use]
    pub fn follow(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }
}

impl Inner {
    /// Drops the oldest line of the instance that holds the most (the oldest such instance's,
    /// on a tie). False when nothing is left.
    fn drop_one(&mut self) -> bool {
        let Some(key) = self
            .by_instance
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .max_by(|(_, a), (_, b)| {
                a.len().cmp(&b.len()).then_with(|| {
                    // Older first line wins the tie: compare reversed.
                    let first = |q: &VecDeque<Kept>| q.front().map_or(u64::MAX, |k| k.seq);
                    first(b).cmp(&first(a))
                })
            })
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        let Some(q) = self.by_instance.get_mut(&key) else {
            return false;
        };
        if let Some(k) = q.pop_front() {
            self.count -= 1;
            self.bytes -= k.line.len();
        }
        if q.is_empty() {
            self.by_instance.remove(&key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_in_order_by_instance() {
        let r = Recent::default();
        r.push("api", 0, "a0\n");
        r.push("api", 1, "a1");
        r.push("db", 0, "d0");
        r.push("api", 0, "a0'");
        let all = |v: Vec<Arc<str>>| v.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        assert_eq!(all(r.lines(None, None, 10)), ["a0", "a1", "d0", "a0'"]);
        assert_eq!(all(r.lines(Some("api"), None, 10)), ["a0", "a1", "a0'"]);
        assert_eq!(all(r.lines(Some("api"), Some(0), 10)), ["a0", "a0'"]);
        assert_eq!(all(r.lines(Some("api"), Some(0), 1)), ["a0'"]);
        assert!(r.lines(Some("nope"), None, 10).is_empty());
    }

    #[test]
    fn a_flapping_instance_does_not_push_a_quiet_ones_events_out() {
        let r = Recent::default();
        r.push("quiet", 0, "the one restart");
        for i in 0..MAX_EVENTS * 3 {
            r.push("flappy", 0, &format!("restart {i}"));
        }
        let quiet = r.lines(Some("quiet"), None, 10);
        assert_eq!(quiet.len(), 1);
        let flappy = r.lines(Some("flappy"), None, MAX_EVENTS * 3);
        assert_eq!(flappy.len(), MAX_EVENTS - 1);
        assert_eq!(
            flappy.last().map(|l| l.to_string()),
            Some(format!("restart {}", MAX_EVENTS * 3 - 1))
        );
    }

    #[test]
    fn bytes_are_bounded_too() {
        let r = Recent::default();
        let big = "x".repeat(MAX_BYTES / 4 + 1);
        for _ in 0..8 {
            r.push("api", 0, &big);
        }
        assert_eq!(r.lines(None, None, 100).len(), 3);
        let inner = r.inner.lock().expect("lock");
        assert!(inner.bytes <= MAX_BYTES);
        assert_eq!(inner.count, 3);
    }

    #[test]
    fn followers_get_each_line_and_slow_ones_miss_lines_not_the_feed() {
        let r = Recent::default();
        let mut f = r.follow();
        r.push("api", 0, "one");
        assert_eq!(f.try_recv().map(|l| l.to_string()).ok(), Some("one".into()));
        for i in 0..LIVE_BACKLOG + 10 {
            r.push("api", 0, &i.to_string());
        }
        assert!(matches!(
            f.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        assert_eq!(f.try_recv().map(|l| l.to_string()).ok(), Some("10".into()));
    }
}
