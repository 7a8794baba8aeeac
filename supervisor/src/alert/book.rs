//! The alerts held firing in Alertmanager: which ones, when each is sent again, and which an
//! end resolves. Pure: event numbers, instants and wall-clock times come in, posts go out.
//!
//! Events are numbered as they are offered (`seq`), and the numbers order what arrives by two
//! roads: alerts through the bounded, rate-limited queue, ends (a `started`, a `stopped`, a
//! `cleared`) through a table that never drops one. An end resolves the held alerts it matches
//! whose event came before it; an alert whose event came before an end already seen is sent
//! resolved at once (the condition it tells of is over).

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use super::alertmanager::{Alert, End, Hold, Post, HOLD_FOR, INSTANT_FOR, RESEND_EVERY};

#[derive(Debug)]
struct Held {
    alert: Alert,
    /// The event that (last) fired it.
    seq: u64,
    /// When to send it again.
    next: Instant,
}

/// The held alerts and the latest end of each kind.
#[derive(Debug, Default)]
pub struct Book {
    held: Vec<Held>,
    /// By [`End::key`]: the latest end and its event's number.
    ends: HashMap<End, (u64, End)>,
}

impl Book {
    /// Event `seq` fired `alert`, to send now: held until an end if its [`Hold`] says so.
    pub fn fire(&mut self, seq: u64, alert: Alert, now: Instant, wall: SystemTime) -> Post {
        if alert.hold == Hold::Instant {
            let ends_at = wall.max(alert.starts_at) + INSTANT_FOR;
            return Post { alert, ends_at };
        }
        let over = self
            .ends
            .values()
            .any(|(at, end)| *at > seq && end.ends(&alert));
        if over {
            return Post {
                alert,
                ends_at: wall,
            };
        }
        let next = now + RESEND_EVERY;
        let alert = match self
            .held
            .iter_mut()
            .find(|h| h.alert.labels == alert.labels)
        {
            // The same alert again: its latest words, since when it has held.
            Some(h) => {
                let since = h.alert.starts_at.min(alert.starts_at);
                h.alert = Alert {
                    starts_at: since,
                    ..alert
                };
                h.seq = h.seq.max(seq);
                h.next = next;
                h.alert.clone()
            }
            None => {
                self.held.push(Held {
                    alert: alert.clone(),
                    seq,
                    next,
                });
                alert
            }
        };
        Post {
            alert,
            ends_at: wall + HOLD_FOR,
        }
    }

    /// Event `seq` is `end`: the held alerts it resolves, to send with `endsAt` now.
    pub fn end(&mut self, seq: u64, end: End, wall: SystemTime) -> Vec<Post> {
        let key = end.key();
        if self.ends.get(&key).is_none_or(|(at, _)| *at < seq) {
            self.ends.insert(key, (seq, end.clone()));
        }
        let mut out = Vec::new();
        self.held.retain(|h| {
            let resolved = h.seq < seq && end.ends(&h.alert);
            if resolved {
                out.push(Post {
                    alert: h.alert.clone(),
                    ends_at: wall,
                });
            }
            !resolved
        });
        out
    }

    /// The held alerts due to be sent again (so that Alertmanager does not expire them).
    pub fn due(&mut self, now: Instant, wall: SystemTime) -> Vec<Post> {
        self.held
            .iter_mut()
            .filter(|h| h.next <= now)
            .map(|h| {
                h.next = now + RESEND_EVERY;
                Post {
                    alert: h.alert.clone(),
                    ends_at: wall + HOLD_FOR,
                }
            })
            .collect()
    }

    /// When the next one is due, if any is held.
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.next).min()
    }

    /// Alerts held firing.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::alertmanager::alert_of;
    use crate::events::{Event, Kind, Reason};
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    fn alert(program: &'static str, instance: u32, kind: Kind) -> Alert {
        alert_of(
            &Event {
                ts: "2026-11-28T20:33:49.123Z".to_owned(),
                program,
                instance,
                pid: None,
                kind,
            },
            "h",
        )
    }

    fn fatal(instance: u32) -> Alert {
        alert(
            "api",
            instance,
            Kind::Fatal {
                restarts: 3,
                within_s: 60.0,
            },
        )
    }

    fn finding(program: &'static str, kind: &'static str, detail: &str) -> Alert {
        alert(
            program,
            0,
            Kind::Finding {
                kind,
                detail: detail.into(),
                numbers: std::collections::BTreeMap::new(),
            },
        )
    }

    fn started(instance: u32) -> End {
        End::Started {
            program: "api".into(),
            instance,
        }
    }

    fn stopped(instance: u32) -> End {
        End::Stopped {
            program: "api".into(),
            instance,
        }
    }

    #[test]
    fn a_fatal_is_held_resent_and_resolved_when_started_again() {
        let mut b = Book::default();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let post = b.fire(1, fatal(0), t0, w0);
        assert_eq!(post.ends_at, w0 + HOLD_FOR);
        assert_eq!((b.held(), b.next_due()), (1, Some(t0 + RESEND_EVERY)));
        assert!(b.due(t0 + 59 * S, w0 + 59 * S).is_empty());
        let again = b.due(t0 + 60 * S, w0 + 60 * S);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].ends_at, w0 + 60 * S + HOLD_FOR);
        assert_eq!(again[0].alert.starts_at, fatal(0).starts_at);
        assert_eq!(b.next_due(), Some(t0 + 120 * S));
        // Not another instance's start, nor a stop: only a start of this one ends it.
        assert!(b.end(2, started(1), w0).is_empty());
        assert!(b.end(3, stopped(0), w0).is_empty());
        let resolved = b.end(4, started(0), w0 + 70 * S);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].ends_at, w0 + 70 * S);
        assert_eq!(resolved[0].alert.label("alertname"), Some("fatal"));
        assert_eq!((b.held(), b.next_due()), (0, None));
        assert!(b.due(t0 + 600 * S, w0).is_empty());
    }

    #[test]
    fn findings_about_a_process_end_with_it() {
        let mut b = Book::default();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        b.fire(1, finding("api", "hung", "stale"), t0, w0);
        b.fire(2, finding("api", "leak", "grows"), t0, w0);
        let over = alert(
            "api",
            0,
            Kind::MemoryOver {
                bytes: 2,
                limit: 1,
                measure: "rss",
                count: 1,
                of: 3,
            },
        );
        b.fire(3, over, t0, w0);
        assert_eq!(b.held(), 3);
        // The restart that the finding caused: the new process is started, all three end.
        assert_eq!(b.end(4, started(0), w0).len(), 3);
        // A stop for good ends them too.
        b.fire(5, finding("api", "unhealthy", "503"), t0, w0);
        assert_eq!(b.end(6, stopped(0), w0).len(), 1);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn the_same_alert_again_is_one_alert() {
        let mut b = Book::default();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let mut first = finding("api", "unexpected_connection", "10.0.0.1:5432");
        first.starts_at -= 30 * S;
        b.fire(1, first.clone(), t0, w0);
        let post = b.fire(
            2,
            finding("api", "unexpected_connection", "10.0.0.2:6379"),
            t0 + 10 * S,
            w0,
        );
        assert_eq!(b.held(), 1);
        assert_eq!(post.alert.annotations["description"], "10.0.0.2:6379");
        assert_eq!(
            post.alert.starts_at, first.starts_at,
            "held since the first"
        );
        assert_eq!(b.next_due(), Some(t0 + 10 * S + RESEND_EVERY));
        // An end between the two events does not end the later one.
        assert!(b.end(2, started(0), w0).is_empty());
        assert_eq!(b.end(3, started(0), w0).len(), 1);
    }

    #[test]
    fn an_end_seen_before_its_alert_resolves_it_at_once() {
        // The queue of alerts lagged: the instance was started again (event 7) before the
        // alert thread got to the fatal (event 5).
        let mut b = Book::default();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        assert!(b.end(7, started(0), w0).is_empty());
        let post = b.fire(5, fatal(0), t0, w0);
        assert_eq!(post.ends_at, w0);
        assert_eq!(b.held(), 0);
        // A fatal after that start is held.
        let post = b.fire(9, fatal(0), t0, w0);
        assert_eq!((post.ends_at, b.held()), (w0 + HOLD_FOR, 1));
        // An older start seen late ends nothing and is not the latest: event 7's still is.
        assert!(b.end(6, started(0), w0).is_empty());
        assert_eq!(b.ends[&started(0).key()].0, 7);
        assert_eq!(b.held(), 1);
    }

    #[test]
    fn a_directory_finding_ends_when_none_is_over() {
        let mut b = Book::default();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        b.fire(1, finding("supervise", "disk", "/a holds 2MiB"), t0, w0);
        let cleared = |remaining| End::Cleared {
            kind: "disk".into(),
            remaining,
        };
        assert!(b.end(2, cleared(1), w0).is_empty(), "another is still over");
        assert!(b.end(3, started(0), w0).is_empty());
        assert_eq!(b.end(4, cleared(0), w0).len(), 1);
        // Other findings of supervise's own are moments.
        let notify = b.fire(5, finding("supervise", "notify_dropped", "x"), t0, w0);
        assert_eq!(b.held(), 0);
        assert_eq!(notify.ends_at, w0.max(notify.alert.starts_at) + INSTANT_FOR);
    }

    #[test]
    fn moments_are_sent_once_and_end_by_themselves() {
        let mut b = Book::default();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let r = alert(
            "api",
            0,
            Kind::Restarting {
                reason: Reason::Exit,
                delay_ms: 100,
            },
        );
        let post = b.fire(1, r, t0, w0);
        assert_eq!(post.ends_at, w0.max(post.alert.starts_at) + INSTANT_FOR);
        assert_eq!((b.held(), b.next_due()), (0, None));
        assert!(b.end(2, started(0), w0).is_empty());
    }
}
