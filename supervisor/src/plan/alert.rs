//! The `[alert]` table: what to run or post, for which events, how often.
//!
//! ```toml
//! [alert]
//! exec = ["/usr/local/bin/page-oncall", "--team", "ops"]   # the event as JSON on stdin
//! webhook = "http://127.0.0.1:9000/alerts"                 # the event as a JSON POST
//! alertmanager = "http://127.0.0.1:9093"                   # Alertmanager's v2 API
//! on = ["restart", "fatal", "finding"]                     # the default
//! rate = "10/1m"                                           # per event kind; the default
//! ```

use std::time::Duration;

/// Event kinds an alert can be for: the `event` names of [`crate::events::Kind`].
pub const EVENT_KINDS: [&str; crate::events::Kind::NAMES.len()] = crate::events::Kind::NAMES;

/// Shorter names accepted in `on`, and the event kind each means.
pub const ALIASES: [(&str, &str); 2] = [("restart", "restarting"), ("spawn", "spawn_failed")];

/// `on` when not given: a worker restarted (whatever the reason), a program given up on, and a
/// finding (hung, leak, disk, ...).
pub const DEFAULT_ON: [&str; 3] = ["restarting", "fatal", "finding"];

/// Events queued for the alert thread at most; more are dropped and counted.
pub const DEFAULT_QUEUE: usize = 64;
/// Time an `exec` command may run before it is killed.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one webhook exchange (connect, send, status line) may take.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// At most `count` alerts of one kind per `per`, in bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Default for Rate {
    fn default() -> Self {
        Self {
            count: 10,
            per: Duration::from_secs(60),
        }
    }
}

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// As written.
    pub url: String,
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Request target: the path and query, at least `/`.
    pub path: String,
}

impl Webhook {
    /// The `Host` header's value.
    #[must_use]
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A validated `[alert]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// Program and arguments (no shell), run once per alert with the event on stdin.
    pub exec: Option<Vec<String>>,
    pub webhook: Option<Webhook>,
    /// Alertmanager: its URL, with `path` the v2 API's `/api/v2/alerts` (after any prefix the
    /// URL has, for an Alertmanager behind `--web.route-prefix`).
    pub alertmanager: Option<Webhook>,
    /// Event kinds alerted on (names from [`EVENT_KINDS`]).
    pub on: Vec<&'static str>,
    pub rate: Rate,
    pub exec_timeout: Duration,
    pub http_timeout: Duration,
    pub queue: usize,
}

/// What is wrong with an `[alert]` value. [`SpecError::key`] names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("an alert needs `exec`, `webhook` or `alertmanager` (or several)")]
    NoTarget,
    #[error("empty command; give the program and its arguments, e.g. [\"/usr/local/bin/page\", \"--team\", \"ops\"]")]
    EmptyExec,
    #[error("{url:?}: https is not supported (alerts are sent over plain HTTP); use an http:// URL, e.g. a relay on localhost")]
    Https { url: String },
    #[error("invalid URL {url:?}: {why}; use e.g. http://127.0.0.1:9000/alerts")]
    BadUrl { url: String, why: &'static str },
    #[error("invalid Alertmanager URL {url:?}: {why}; use e.g. http://127.0.0.1:9093")]
    BadAlertmanager { url: String, why: String },
    #[error("no event kinds; leave `on` out for the default (restart, fatal, finding)")]
    EmptyOn,
    #[error("unknown event kind {0:?}; use restart, fatal, finding or any event name ({names})", names = EVENT_KINDS.join(", "))]
    UnknownKind(String),
    #[error("invalid rate {0:?}; use COUNT/DURATION with a count of at least 1, e.g. 10/1m")]
    BadRate(String),
}

impl SpecError {
    /// The key of `[alert]` at fault.
    #[must_use]
    pub fn key(&self) -> &'static str {
        match self {
            SpecError::NoTarget => "alert",
            SpecError::EmptyExec => "exec",
            SpecError::Https { .. } | SpecError::BadUrl { .. } => "webhook",
            SpecError::BadAlertmanager { .. } => "alertmanager",
            SpecError::EmptyOn | SpecError::UnknownKind(_) => "on",
            SpecError::BadRate(_) => "rate",
        }
    }
}

impl AlertSpec {
    /// Validates the raw values of an `[alert]` table; `on` and `rate` default when `None`.
    pub fn new(
        exec: Option<Vec<String>>,
        webhook: Option<&str>,
        on: Option<&[String]>,
        rate: Option<&str>,
    ) -> Result<Self, SpecError> {
        Self::with_alertmanager(exec, webhook, None, on, rate)
    }

    /// [`AlertSpec::new`] with an `alertmanager` URL too.
    pub fn with_alertmanager(
        exec: Option<Vec<String>>,
        webhook: Option<&str>,
        alertmanager: Option<&str>,
        on: Option<&[String]>,
        rate: Option<&str>,
    ) -> Result<Self, SpecError> {
        let exec = exec.map(parse_exec).transpose()?;
        let webhook = webhook.map(parse_webhook).transpose()?;
        let alertmanager = alertmanager.map(parse_alertmanager).transpose()?;
        if exec.is_none() && webhook.is_none() && alertmanager.is_none() {
            return Err(SpecError::NoTarget);
        }
        Ok(Self {
            exec,
            webhook,
            alertmanager,
            on: match on {
                Some(names) => parse_on(names)?,
                None => DEFAULT_ON.to_vec(),
            },
            rate: rate.map(parse_rate).transpose()?.unwrap_or_default(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            queue: DEFAULT_QUEUE,
        })
    }
}

/// `exec`: a non-empty argv whose program is not an empty string.
pub fn parse_exec(argv: Vec<String>) -> Result<Vec<String>, SpecError> {
    match argv.first() {
        Some(p) if !p.trim().is_empty() => Ok(argv),
        _ => Err(SpecError::EmptyExec),
    }
}

/// `webhook`: `http://HOST[:PORT][/PATH][?QUERY]`; a `#fragment` is dropped.
pub fn parse_webhook(url: &str) -> Result<Webhook, SpecError> {
    let bad = |why| SpecError::BadUrl {
        url: url.to_owned(),
        why,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    if scheme.eq_ignore_ascii_case("https") {
        return Err(SpecError::Https {
            url: url.to_owned(),
        });
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad("only http:// is supported"));
    }
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| bad("invalid port"))?),
        };
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if host.is_empty() || !host.chars().all(host_ok) {
            return Err(bad("invalid host"));
        }
        (host, port)
    };
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad("invalid port"))?,
    };
    // The target goes into the request line as is: visible ASCII only, so nothing can end the
    // line early or smuggle a header.
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("spaces or control characters in the path"));
    }
    let path = match target.strip_prefix('?') {
        Some(_) => format!("/{target}"),
        None if target.is_empty() => "/".to_owned(),
        None => target.to_owned(),
    };
    Ok(Webhook {
        url: url.to_owned(),
        host: host.to_owned(),
        port,
        path,
    })
}

/// `alertmanager`: `http://HOST[:PORT][/PREFIX]`, the address Alertmanager serves (its
/// `--web.listen-address`, and `--web.route-prefix` if it has one); alerts go to
/// `PREFIX/api/v2/alerts`. No query: the API takes none.
pub fn parse_alertmanager(url: &str) -> Result<Webhook, SpecError> {
    let bad = |why: String| SpecError::BadAlertmanager {
        url: url.to_owned(),
        why,
    };
    let mut hook = parse_webhook(url).map_err(|e| match e {
        SpecError::BadUrl { why, .. } => bad(why.to_owned()),
        SpecError::Https { .. } => bad("https is not supported (plain HTTP only)".to_owned()),
        other => bad(other.to_string()),
    })?;
    if hook.path.contains('?') {
        return Err(bad("a query has no place here".to_owned()));
    }
    let prefix = hook.path.trim_end_matches('/');
    hook.path = format!("{prefix}/api/v2/alerts");
    Ok(hook)
}

/// `on`: event kinds or their aliases, deduplicated, at least one.
pub fn parse_on(names: &[String]) -> Result<Vec<&'static str>, SpecError> {
    let mut out: Vec<&'static str> = Vec::new();
    for name in names {
        let name = name.trim();
        let kind = ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map(|(_, kind)| *kind)
            .or_else(|| EVENT_KINDS.iter().copied().find(|k| *k == name))
            .ok_or_else(|| SpecError::UnknownKind(name.to_owned()))?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        return Err(SpecError::EmptyOn);
    }
    Ok(out)
}

/// `rate`: `COUNT/DURATION` (`10/1m`, `1/30s`, `100/1h`).
pub fn parse_rate(s: &str) -> Result<Rate, SpecError> {
    let bad = || SpecError::BadRate(s.to_owned());
    let (count, per) = s.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = humantime::parse_duration(per.trim()).map_err(|_| bad())?;
    if count == 0 || per.is_zero() {
        return Err(bad());
    }
    Ok(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn kind_names_are_the_event_names() {
        let names: Vec<String> = Kind::one_of_each()
            .into_iter()
            .map(|k| {
                let v: serde_json::Value =
                    serde_json::from_str(&Event::now("p", 0, None, k).to_line()).expect("json");
                v["event"].as_str().expect("event name").to_owned()
            })
            .collect();
        assert_eq!(names, EVENT_KINDS);
        for (alias, kind) in ALIASES {
            assert!(EVENT_KINDS.contains(&kind), "{alias}");
        }
    }

    #[test]
    fn on_names_and_aliases() {
        let on = parse_on(&strings(&["restart", "fatal", "finding", "restarting"])).expect("ok");
        assert_eq!(on, ["restarting", "fatal", "finding"]);
        assert_eq!(
            parse_on(&strings(&[" spawn "])).expect("ok"),
            ["spawn_failed"]
        );
        let e = parse_on(&strings(&["restart", "crash"])).expect_err("unknown");
        assert_eq!(e, SpecError::UnknownKind("crash".into()));
        assert_eq!(e.key(), "on");
        assert!(e.to_string().contains("memory_over"), "{e}");
        assert_eq!(parse_on(&[]).expect_err("empty"), SpecError::EmptyOn);
    }

    #[test]
    fn webhook_urls() {
        let w = parse_webhook("http://127.0.0.1:9000/alerts?team=ops#x").expect("ok");
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("127.0.0.1", 9000, "/alerts?team=ops")
        );
        assert_eq!(w.host_header(), "127.0.0.1:9000");
        let w = parse_webhook("HTTP://hooks.example").expect("ok");
        assert_eq!(
            (w.port, w.path.as_str(), w.host_header().as_str()),
            (80, "/", "hooks.example")
        );
        let w = parse_webhook("http://[::1]:8080?x=1").expect("ok");
        assert_eq!((w.host.as_str(), w.path.as_str()), ("::1", "/?x=1"));
        assert_eq!(w.host_header(), "[::1]:8080");
        let https = parse_webhook("https://hooks.example/x").expect_err("https");
        assert!(matches!(https, SpecError::Https { .. }) && https.key() == "webhook");
        assert!(
            https.to_string().contains("https is not supported"),
            "{https}"
        );
        for bad in [
            "hooks.example/x",
            "ftp://h/x",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://user:pw@h/",
            "http://h/a b",
            "http://h/a\r\nX-Evil: 1",
            "http://[::1/",
            "http://[nope]/",
            "http://h st/",
            "http://::1/",
            "http://[::1]x/",
        ] {
            let e = parse_webhook(bad).expect_err(bad);
            assert!(matches!(e, SpecError::BadUrl { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn alertmanager_urls() {
        let a = parse_alertmanager("http://127.0.0.1:9093").expect("ok");
        assert_eq!(
            (a.host.as_str(), a.port, a.path.as_str()),
            ("127.0.0.1", 9093, "/api/v2/alerts")
        );
        let a = parse_alertmanager("http://am.local/alertmanager/").expect("ok");
        assert_eq!(
            (a.port, a.path.as_str()),
            (80, "/alertmanager/api/v2/alerts")
        );
        for bad in [
            "https://am:9093",
            "am:9093",
            "http://am:9093/?x=1",
            "http://am:0",
        ] {
            let e = parse_alertmanager(bad).expect_err(bad);
            assert_eq!(e.key(), "alertmanager", "{bad}: {e}");
            assert!(e.to_string().contains("Alertmanager URL"), "{e}");
        }
        let s = AlertSpec::with_alertmanager(None, None, Some("http://[::1]:9093"), None, None)
            .expect("alertmanager alone is a target");
        assert_eq!(
            s.alertmanager.map(|a| a.path),
            Some("/api/v2/alerts".into())
        );
    }

    #[test]
    fn rates() {
        let r = parse_rate("10/1m").expect("ok");
        assert_eq!((r.count, r.per), (10, Duration::from_secs(60)));
        assert_eq!(
            parse_rate(" 1 / 30s ").expect("ok").per,
            Duration::from_secs(30)
        );
        for bad in ["10", "0/1m", "10/0s", "x/1m", "10/soon", "-1/1m", ""] {
            let e = parse_rate(bad).expect_err(bad);
            assert_eq!(e.key(), "rate");
        }
        assert_eq!(Rate::default(), parse_rate("10/1m").expect("ok"));
    }

    #[test]
    fn spec_needs_a_target_and_a_program() {
        assert_eq!(
            AlertSpec::new(None, None, None, None),
            Err(SpecError::NoTarget)
        );
        let e = AlertSpec::new(Some(vec![]), None, None, None).expect_err("empty");
        assert_eq!((e.key(), e), ("exec", SpecError::EmptyExec));
        let e = AlertSpec::new(Some(strings(&[" "])), None, None, None).expect_err("blank");
        assert_eq!(e, SpecError::EmptyExec);
        let s = AlertSpec::new(Some(strings(&["/bin/true"])), None, None, None).expect("ok");
        assert_eq!(s.on, DEFAULT_ON);
        assert_eq!(s.rate, Rate::default());
        let s = AlertSpec::new(
            None,
            Some("http://127.0.0.1:1/"),
            Some(&strings(&["fatal"])),
            Some("2/1s"),
        )
        .expect("ok");
        assert_eq!((s.on.as_slice(), s.rate.count), (&["fatal"][..], 2));
    }
}
