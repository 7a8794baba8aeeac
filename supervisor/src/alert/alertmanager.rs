//! Events as Alertmanager alerts (its v2 API: `POST /api/v2/alerts`, a JSON array).
//!
//! An alert is identified by its labels: `alertname` (the event kind: `fatal`, `finding`,
//! `restarting`, …), `program`, `replica` (the instance), `reason` where the event has one (a
//! restart's or a stop's reason, a finding's kind), `severity` (from the tone of the event's
//! line on stderr: `critical`, `warning` or `info`) and `host` (this machine's name, so that a
//! fleet's supervisors do not merge). Its annotations are `summary`, the event's line, and
//! `description`, the event's detail where it has one.
//!
//! Alertmanager keeps an alert firing until its `endsAt`, and expires it then unless it is sent
//! again. So each alert has a [`Hold`]: an event of a moment (a restart) is sent once with an
//! `endsAt` [`INSTANT_FOR`] ahead; a condition (a `fatal`, a finding about a running process, a
//! directory over its limits) is held by the [`super::book::Book`], re-sent every
//! [`RESEND_EVERY`] with an `endsAt` [`HOLD_FOR`] ahead, and sent once more with `endsAt` = now
//! when an [`End`] says it no longer holds. Should the supervisor die, its alerts expire by
//! themselves within [`HOLD_FOR`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::events::{human, Event, Kind};

/// How long the alert of an event of a moment stays firing: longer than Alertmanager's default
/// `group_wait` (30 s), so that it is notified at all.
pub const INSTANT_FOR: Duration = Duration::from_secs(120);
/// How far ahead of each sending a held alert's `endsAt` is put.
pub const HOLD_FOR: Duration = Duration::from_secs(240);
/// How often a held alert is sent again.
pub const RESEND_EVERY: Duration = Duration::from_secs(60);

/// What ends an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing: the event was a moment (a restart, an exit); it ends [`INSTANT_FOR`] after it.
    Instant,
    /// The instance is started again (`supervise start`, a reload): a `fatal`.
    Started,
    /// The instance's process is replaced (a `started`) or stopped for good (a `stopped`): what
    /// a finding says about a running process (hung, leak, unhealthy, over its memory, …).
    Replaced,
    /// A `cleared` of the finding's kind with none remaining: a watched directory back under.
    Cleared,
}

/// An alert, its times aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
    /// When its event happened.
    pub starts_at: SystemTime,
    pub hold: Hold,
    pub program: String,
    pub instance: u32,
}

impl Alert {
    /// The value of label `key`, if it has it.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// What may end held alerts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum End {
    /// A `started` of this instance.
    Started { program: String, instance: u32 },
    /// A `stopped` of this instance.
    Stopped { program: String, instance: u32 },
    /// A `cleared` of findings of `kind`, `remaining` of which still hold.
    Cleared { kind: String, remaining: u32 },
}

impl End {
    /// The end `e` is, if any.
    #[must_use]
    pub fn of(e: &Event<'_>) -> Option<End> {
        let (program, instance) = (e.program.to_owned(), e.instance);
        match &e.kind {
            Kind::Started { .. } => Some(End::Started { program, instance }),
            Kind::Stopped => Some(End::Stopped { program, instance }),
            Kind::Cleared {
                kind, remaining, ..
            } => Some(End::Cleared {
                kind: (*kind).to_owned(),
                remaining: *remaining,
            }),
            _ => None,
        }
    }

    /// The same end, whatever `remaining` says: one entry per key keeps the latest of each.
    #[must_use]
    pub fn key(&self) -> End {
        match self {
            End::Cleared { kind, .. } => End::Cleared {
                kind: kind.clone(),
                remaining: 0,
            },
            other => other.clone(),
        }
    }

    /// Does this end `alert`?
    #[must_use]
    pub fn ends(&self, alert: &Alert) -> bool {
        let same =
            |program: &str, instance: u32| alert.program == program && alert.instance == instance;
        match (alert.hold, self) {
            (Hold::Started | Hold::Replaced, End::Started { program, instance }) => {
                same(program, *instance)
            }
            (Hold::Replaced, End::Stopped { program, instance }) => same(program, *instance),
            (Hold::Cleared, End::Cleared { kind, remaining }) => {
                *remaining == 0 && alert.label("reason") == Some(kind.as_str())
            }
            _ => false,
        }
    }
}

/// The alert for event `e`, on the machine named `host`.
#[must_use]
pub fn alert_of(e: &Event<'_>, host: &str) -> Alert {
    let (severity, summary) = human::alert_words(e);
    let mut labels = BTreeMap::new();
    labels.insert("alertname", e.kind.name().to_owned());
    labels.insert("program", e.program.to_owned());
    labels.insert("replica", e.instance.to_string());
    labels.insert("severity", severity.to_owned());
    labels.insert("host", host.to_owned());
    if let Some(reason) = reason(&e.kind) {
        labels.insert("reason", reason.to_owned());
    }
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", summary);
    if let Some(d) = detail(&e.kind) {
        annotations.insert("description", d);
    }
    Alert {
        labels,
        annotations,
        starts_at: humantime::parse_rfc3339(&e.ts).unwrap_or_else(|_| SystemTime::now()),
        hold: hold(e),
        program: e.program.to_owned(),
        instance: e.instance,
    }
}

/// The alert summing up `n` alerts of `kind` held back by the rate limit.
#[must_use]
pub fn suppressed(kind: &str, n: u64, host: &str) -> Alert {
    let mut labels = BTreeMap::new();
    labels.insert("alertname", super::SUPPRESSED.to_owned());
    labels.insert("program", "supervise".to_owned());
    labels.insert("replica", "0".to_owned());
    labels.insert("reason", kind.to_owned());
    labels.insert("severity", "warning".to_owned());
    labels.insert("host", host.to_owned());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary",
        format!("supervise held back {n} {kind} alerts (the rate limit, or a full queue)"),
    );
    Alert {
        labels,
        annotations,
        starts_at: SystemTime::now(),
        hold: Hold::Instant,
        program: "supervise".to_owned(),
        instance: 0,
    }
}

fn hold(e: &Event<'_>) -> Hold {
    match &e.kind {
        Kind::Fatal { .. } => Hold::Started,
        Kind::Finding { kind, .. } if e.program == "supervise" => {
            if *kind == crate::disk::DiskFinding::KIND {
                Hold::Cleared
            } else {
                Hold::Instant
            }
        }
        Kind::Finding { .. }
        | Kind::MemoryOver { .. }
        | Kind::MemoryPressure { .. }
        | Kind::ProtocolError { closed: true, .. } => Hold::Replaced,
        _ => Hold::Instant,
    }
}

fn reason(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::Restarting { reason, .. }
        | Kind::Stopping {
            reason: Some(reason),
            ..
        } => Some(reason.as_str()),
        Kind::Finding { kind, .. } | Kind::Cleared { kind, .. } => Some(kind),
        _ => None,
    }
}

fn detail(kind: &Kind) -> Option<String> {
    match kind {
        Kind::Finding { detail, .. } | Kind::Cleared { detail, .. } => Some(detail.clone()),
        Kind::SpawnFailed { error }
        | Kind::ProtocolError { error, .. }
        | Kind::LogError { error, .. } => Some(error.clone()),
        Kind::WorkerEvent { text, .. } => Some(text.clone()),
        Kind::Started { command } => Some(command.join(" ")),
        _ => None,
    }
    .filter(|d| !d.is_empty())
}

/// One alert to post, with its `endsAt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub alert: Alert,
    pub ends_at: SystemTime,
}

/// The JSON body of a `POST /api/v2/alerts` of `posts`.
#[must_use]
pub fn body(posts: &[Post]) -> String {
    let stamp = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let alerts: Vec<serde_json::Value> = posts
        .iter()
        .map(|p| {
            serde_json::json!({
                "labels": p.alert.labels,
                "annotations": p.alert.annotations,
                "startsAt": stamp(p.alert.starts_at),
                // Never before startsAt, which Alertmanager refuses (a clock stepped back).
                "endsAt": stamp(p.ends_at.max(p.alert.starts_at)),
            })
        })
        .collect();
    serde_json::Value::Array(alerts).to_string()
}

/// This machine's name (uname(2)'s nodename, which gethostname(2) returns), for the `host` label.
#[must_use]
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match name.trim() {
        "" => "unknown".to_owned(),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Reason;

    fn event(program: &'static str, instance: u32, kind: Kind) -> Event<'static> {
        Event {
            ts: "2026-11-28T20:33:49.123Z".to_owned(),
            program,
            instance,
            pid: Some(42),
            kind,
        }
    }

    fn finding(kind: &'static str) -> Kind {
        Kind::Finding {
            kind,
            detail: "the heartbeat stopped while the process is alive".into(),
            numbers: BTreeMap::new(),
        }
    }

    #[test]
    fn labels_and_annotations() {
        let a = alert_of(
            &event(
                "api",
                2,
                Kind::Fatal {
                    restarts: 5,
                    within_s: 60.0,
                },
            ),
            "web-1",
        );
        let labels: Vec<(&str, &str)> = a.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            labels,
            [
                ("alertname", "fatal"),
                ("host", "web-1"),
                ("program", "api"),
                ("replica", "2"),
                ("severity", "critical"),
            ]
        );
        assert_eq!(
            a.annotations["summary"],
            "api[2] gave up after 5 restarts in 60s (fatal)"
        );
        assert!(!a.annotations.contains_key("description"));
        assert_eq!(a.hold, Hold::Started);
        assert_eq!(
            humantime::format_rfc3339_millis(a.starts_at).to_string(),
            "2026-11-28T20:33:49.123Z"
        );

        let hung = alert_of(&event("api", 0, finding("hung")), "h");
        assert_eq!(
            (
                hung.label("alertname"),
                hung.label("reason"),
                hung.label("severity")
            ),
            (Some("finding"), Some("hung"), Some("warning"))
        );
        assert_eq!(
            hung.annotations["description"],
            "the heartbeat stopped while the process is alive"
        );
        assert_eq!(hung.hold, Hold::Replaced);

        let restart = alert_of(
            &event(
                "api",
                0,
                Kind::Restarting {
                    reason: Reason::Memory,
                    delay_ms: 0,
                },
            ),
            "h",
        );
        assert_eq!(
            (restart.label("reason"), restart.hold),
            (Some("memory"), Hold::Instant)
        );
    }

    #[test]
    fn what_holds_and_what_ends_it() {
        let of = |program: &'static str, kind: Kind| alert_of(&event(program, 1, kind), "h");
        let disk = of("supervise", finding("disk"));
        let notify = of("supervise", finding("notify_dropped"));
        let leak = of("api", finding("leak"));
        let fatal = of(
            "api",
            Kind::Fatal {
                restarts: 1,
                within_s: 1.0,
            },
        );
        let over = of(
            "api",
            Kind::MemoryOver {
                bytes: 2,
                limit: 1,
                measure: "rss",
                count: 1,
                of: 3,
            },
        );
        assert_eq!(
            [disk.hold, notify.hold, leak.hold, fatal.hold, over.hold],
            [
                Hold::Cleared,
                Hold::Instant,
                Hold::Replaced,
                Hold::Started,
                Hold::Replaced
            ]
        );
        let end = |program: &'static str, instance, kind| {
            End::of(&event(program, instance, kind)).expect("an end")
        };
        let started = end("api", 1, Kind::Started { command: vec![] });
        let stopped = end("api", 1, Kind::Stopped);
        let other = end("api", 0, Kind::Started { command: vec![] });
        let back = |remaining| {
            end(
                "supervise",
                0,
                Kind::Cleared {
                    kind: "disk",
                    detail: String::new(),
                    remaining,
                },
            )
        };
        assert!(started.ends(&fatal) && started.ends(&leak) && started.ends(&over));
        assert!(!stopped.ends(&fatal), "a fatal ends when started again");
        assert!(stopped.ends(&leak) && stopped.ends(&over));
        assert!(
            !other.ends(&fatal) && !other.ends(&leak),
            "another instance"
        );
        assert!(back(0).ends(&disk));
        assert!(!back(1).ends(&disk), "another directory is still over");
        assert!(!started.ends(&disk) && !back(0).ends(&leak) && !started.ends(&notify));
        assert_eq!(back(3).key(), back(0).key());
        assert_eq!(End::of(&event("api", 0, finding("hung"))), None);
    }

    #[test]
    fn the_body_alertmanager_takes() {
        let a = alert_of(&event("api", 0, finding("hung")), "h");
        let ends_at = a.starts_at + HOLD_FOR;
        let v: serde_json::Value =
            serde_json::from_str(&body(&[Post { alert: a, ends_at }])).expect("json");
        assert_eq!(v[0]["labels"]["alertname"], "finding");
        assert_eq!(v[0]["labels"]["replica"], "0");
        assert_eq!(v[0]["startsAt"], "2026-11-28T20:33:49.123Z");
        assert_eq!(v[0]["endsAt"], "2026-11-28T20:37:49.123Z");
        assert!(v[0]["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("api[0] finding hung")));
        // An end before the start (a clock stepped back) is sent as the start.
        let mut early = alert_of(&event("api", 0, finding("hung")), "h");
        early.starts_at += Duration::from_secs(10);
        let ends_at = early.starts_at - Duration::from_secs(5);
        let v: serde_json::Value = serde_json::from_str(&body(&[Post {
            alert: early,
            ends_at,
        }]))
        .expect("json");
        assert_eq!(v[0]["endsAt"], v[0]["startsAt"]);
        assert!(!hostname().is_empty());
    }
}
