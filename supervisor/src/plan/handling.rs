//! How a program's memory restarts are carried out so that its clients lose nothing (DESIGN.md
//! §9): which process goes (the tree, or only the member that holds the growth), how many of a
//! program's instances may be out at once, how far a waiting tree may grow, when a restart of a
//! young incarnation is a failure after all, and when to recycle ahead of the limit or on a
//! schedule. What the file and the flags say is gathered in [`Given`] and checked here, once.

use std::time::Duration;

use serde::Deserialize;

/// An incarnation stopped for memory younger than this is `limit_too_low`: its restart counts
/// toward the intensity and backs off, so a limit below what the program needs to start ends
/// `fatal` instead of looping.
pub const DEFAULT_MIN_UPTIME: Duration = Duration::from_secs(60);
/// Instances of a program that may be out at once for memory, a leak or a recycle.
pub const DEFAULT_MAX_UNAVAILABLE: u32 = 1;
/// The ceiling, as a multiple of `max`, past which a tree is restarted at once whatever its
/// siblings do.
pub const DEFAULT_CEILING: f64 = 1.5;
/// The window the trend for `recycle_before` is read over, without a `leak` of its own.
pub const DEFAULT_TREND_WINDOW: Duration = Duration::from_secs(600);

/// What goes when a tree is over its limit, its leak trend fires, or a recycle is due.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RecycleScope {
    /// The whole tree, by the program's stop rules.
    #[default]
    Tree,
    /// The member (not the root) that holds the growth, when one does: its master starts a
    /// fresh one (pre-forking servers: gunicorn, uWSGI, unicorn, Celery prefork).
    Member,
}

/// Recycling on a schedule: after `every` (± `jitter`), or after `requests` requests
/// (± `requests_jitter`) counted by the SDK's `requests` counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub every: Option<Duration>,
    pub jitter: Duration,
    pub requests: Option<u64>,
    pub requests_jitter: u64,
}

/// How one program's memory restarts are handled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Handling {
    pub min_uptime: Duration,
    pub max_unavailable: u32,
    /// Bytes past which a tree is restarted at once (with `max` only).
    pub ceiling: Option<u64>,
    pub recycle: RecycleScope,
    /// Recycle when the trend says the tree reaches `max` within this long.
    pub recycle_before: Option<Duration>,
    pub schedule: Schedule,
}

impl Default for Handling {
    fn default() -> Self {
        Self {
            min_uptime: DEFAULT_MIN_UPTIME,
            max_unavailable: DEFAULT_MAX_UNAVAILABLE,
            ceiling: None,
            recycle: RecycleScope::Tree,
            recycle_before: None,
            schedule: Schedule::default(),
        }
    }
}

/// What the config file or the flags gave, before it is checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    pub min_uptime: Option<Duration>,
    pub max_unavailable: Option<u32>,
    pub ceiling: Option<u64>,
    pub recycle: Option<RecycleScope>,
    pub recycle_before: Option<Duration>,
    pub schedule: Schedule,
}

/// An error about one key: its name (as the file spells it, under `memory.` or `recycle.`) and
/// what is wrong.
pub type KeyError = (&'static str, String);

impl Given {
    /// Checks what was given against the memory limit `max` (if any) and fills in the defaults.
    pub fn build(self, max: Option<u64>) -> Result<Handling, KeyError> {
        let d = Handling::default();
        if self.max_unavailable == Some(0) {
            return Err((
                "memory.max_unavailable",
                "must be at least 1 (a memory restart would otherwise wait for ever)".into(),
            ));
        }
        let ceiling = match (self.ceiling, max) {
            (Some(_), None) => {
                return Err(("memory.ceiling", "needs `memory.max`".into()));
            }
            (Some(c), Some(m)) if c <= m => {
                return Err((
                    "memory.ceiling",
                    format!("must be above `max` ({m} bytes), got {c} bytes"),
                ));
            }
            (Some(c), Some(_)) => Some(c),
            (None, Some(m)) => Some(default_ceiling(m)),
            (None, None) => None,
        };
        if self.recycle_before.is_some() && max.is_none() {
            return Err(("memory.recycle_before", "needs `memory.max`".into()));
        }
        if self.recycle_before.is_some_and(|d| d.is_zero()) {
            return Err(("memory.recycle_before", "must be longer than 0".into()));
        }
        let s = self.schedule;
        if s.every.is_some_and(|e| e.is_zero()) {
            return Err(("recycle.every", "must be longer than 0".into()));
        }
        if !s.jitter.is_zero() && s.every.is_none() {
            return Err(("recycle.jitter", "needs `every`".into()));
        }
        if let Some(e) = s.every {
            if s.jitter >= e {
                return Err((
                    "recycle.jitter",
                    "must be shorter than `every` (it spreads each recycle by up to ± jitter)"
                        .into(),
                ));
            }
        }
        if s.requests == Some(0) {
            return Err(("recycle.requests", "must be at least 1".into()));
        }
        if s.requests_jitter > 0 && s.requests.is_none() {
            return Err(("recycle.requests_jitter", "needs `requests`".into()));
        }
        if let Some(r) = s.requests {
            if s.requests_jitter >= r {
                return Err((
                    "recycle.requests_jitter",
                    "must be below `requests` (it spreads each recycle by up to ± that many)"
                        .into(),
                ));
            }
        }
        Ok(Handling {
            min_uptime: self.min_uptime.unwrap_or(d.min_uptime),
            max_unavailable: self.max_unavailable.unwrap_or(d.max_unavailable),
            ceiling,
            recycle: self.recycle.unwrap_or(d.recycle),
            recycle_before: self.recycle_before,
            schedule: s,
        })
    }
}

/// `max × 1.5`, saturating.
#[must_use]
pub fn default_ceiling(max: u64) -> u64 {
    let c = max as f64 * DEFAULT_CEILING;
    if c >= u64::MAX as f64 {
        u64::MAX
    } else {
        c as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 100 << 20;

    #[test]
    fn defaults_and_the_ceiling() {
        let h = Given::default().build(Some(M)).expect("ok");
        assert_eq!(h.ceiling, Some(150 << 20));
        assert_eq!(h.min_uptime, DEFAULT_MIN_UPTIME);
        assert_eq!(h.max_unavailable, 1);
        assert_eq!(h.recycle, RecycleScope::Tree);
        assert_eq!(Given::default().build(None).expect("ok").ceiling, None);
        assert_eq!(default_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn every_bad_combination_names_its_key() {
        let s = Schedule::default();
        for (given, max, key) in [
            (
                Given {
                    max_unavailable: Some(0),
                    ..Given::default()
                },
                Some(M),
                "memory.max_unavailable",
            ),
            (
                Given {
                    ceiling: Some(M * 2),
                    ..Given::default()
                },
                None,
                "memory.ceiling",
            ),
            (
                Given {
                    ceiling: Some(M),
                    ..Given::default()
                },
                Some(M),
                "memory.ceiling",
            ),
            (
                Given {
                    recycle_before: Some(Duration::from_secs(60)),
                    ..Given::default()
                },
                None,
                "memory.recycle_before",
            ),
            (
                Given {
                    recycle_before: Some(Duration::ZERO),
                    ..Given::default()
                },
                Some(M),
                "memory.recycle_before",
            ),
            (
                Given {
                    schedule: Schedule {
                        every: Some(Duration::ZERO),
                        ..s
                    },
                    ..Given::default()
                },
                None,
                "recycle.every",
            ),
            (
                Given {
                    schedule: Schedule {
                        jitter: Duration::from_secs(1),
                        ..s
                    },
                    ..Given::default()
                },
                None,
                "recycle.jitter",
            ),
            (
                Given {
                    schedule: Schedule {
                        every: Some(Duration::from_secs(60)),
                        jitter: Duration::from_secs(60),
                        ..s
                    },
                    ..Given::default()
                },
                None,
                "recycle.jitter",
            ),
            (
                Given {
                    schedule: Schedule {
                        requests: Some(0),
                        ..s
                    },
                    ..Given::default()
                },
                None,
                "recycle.requests",
            ),
            (
                Given {
                    schedule: Schedule {
                        requests_jitter: 5,
                        ..s
                    },
                    ..Given::default()
                },
                None,
                "recycle.requests_jitter",
            ),
            (
                Given {
                    schedule: Schedule {
                        requests: Some(5),
                        requests_jitter: 5,
                        ..s
                    },
                    ..Given::default()
                },
                None,
                "recycle.requests_jitter",
            ),
        ] {
            let (got, why) = given.build(max).expect_err(key);
            assert_eq!(got, key, "{why}");
        }
    }

    #[test]
    fn what_is_given_is_kept() {
        let g = Given {
            min_uptime: Some(Duration::from_secs(5)),
            max_unavailable: Some(2),
            ceiling: Some(M * 3),
            recycle: Some(RecycleScope::Member),
            recycle_before: Some(Duration::from_secs(300)),
            schedule: Schedule {
                every: Some(Duration::from_secs(86_400)),
                jitter: Duration::from_secs(3600),
                requests: Some(10_000),
                requests_jitter: 1000,
            },
        };
        let h = g.build(Some(M)).expect("ok");
        assert_eq!(h.min_uptime, Duration::from_secs(5));
        assert_eq!(h.max_unavailable, 2);
        assert_eq!(h.ceiling, Some(M * 3));
        assert_eq!(h.recycle, RecycleScope::Member);
        assert_eq!(h.recycle_before, Some(Duration::from_secs(300)));
        assert_eq!(h.schedule, g.schedule);
    }
}
