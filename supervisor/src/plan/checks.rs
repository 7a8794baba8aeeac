//! Readiness and health rules: `[program.NAME.ready]`, `[program.NAME.health]`, `--ready` and
//! `--health`, parsed into [`ReadySpec`] and [`HealthSpec`].

use std::time::Duration;

use serde::Deserialize;

/// Something to try against a running worker: it passes or fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connection to `HOST:PORT` is accepted.
    Tcp { host: String, port: u16 },
    /// `GET PATH` on `HOST:PORT` answers 2xx or 3xx.
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// The command exits 0 (run without a shell, tracked as a tree, nothing of it left after
    /// its try).
    Exec(Vec<String>),
    /// A process of the instance's own tree holds a TCP socket listening on `port` (any
    /// address): with `SO_REUSEPORT` a sibling on the same port cannot answer for it.
    Listen { port: u16 },
}

/// How a worker says it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyHow {
    /// systemd's notify protocol: `READY=1` on `NOTIFY_SOCKET`.
    Notify,
    /// s6's notification fd: the program writes a newline to this fd of its own.
    Fd(i32),
    /// A check that passes.
    Check(Check),
}

/// `[program.NAME.ready]`: until this says so, the worker is not ready (status, `/readyz`,
/// rolls, programs that start `after` it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadySpec {
    pub how: ReadyHow,
    /// Between two tries of a check.
    pub every: Duration,
    /// For one try of a check.
    pub timeout: Duration,
    /// Not ready this long after it started: restarted with reason `not_ready`.
    pub start_timeout: Option<Duration>,
}

/// `[program.NAME.health]`: a liveness check while the worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    pub check: Check,
    pub every: Duration,
    pub timeout: Duration,
    /// Consecutive failures that restart the worker with reason `unhealthy`.
    pub failures: u32,
}

pub const DEFAULT_READY_EVERY: Duration = Duration::from_secs(1);
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(1);
/// Kubernetes' defaults for a liveness probe: every 10 s, 1 s each, 3 failures.
pub const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(10);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;
/// The fds below this are stdio, the channel and the segment.
pub const MIN_READY_FD: i32 = 3;
pub const MAX_READY_FD: i32 = 1023;

/// The raw `[program.NAME.ready]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReady {
    #[serde(default)]
    notify: Option<bool>,
    #[serde(default)]
    fd: Option<i64>,
    #[serde(default)]
    tcp: Option<String>,
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    exec: Option<Vec<String>>,
    #[serde(default)]
    listen: Option<Port>,
    #[serde(default)]
    pub every: Option<super::values::Dur>,
    #[serde(default)]
    pub timeout: Option<super::values::Dur>,
    #[serde(default)]
    pub start_timeout: Option<super::values::Dur>,
}

/// A TCP port, 1 to 65535.
#[derive(Debug, Clone, Copy)]
pub(super) struct Port(u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a port number such as 8080"))?;
        u16::try_from(n)
            .ok()
            .filter(|&p| p != 0)
            .map(Port)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("must be a port from 1 to 65535, got {n}"))
            })
    }
}

/// The raw `[program.NAME.health]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(default)]
    tcp: Option<String>,
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    exec: Option<Vec<String>>,
    #[serde(default)]
    listen: Option<Port>,
    #[serde(default)]
    pub every: Option<super::values::Dur>,
    #[serde(default)]
    pub timeout: Option<super::values::Dur>,
    #[serde(default)]
    pub failures: Option<std::num::NonZeroU32>,
}

/// The check keys a `ready` or `health` table shares.
#[derive(Debug, Default)]
struct RawCheck {
    tcp: Option<String>,
    http: Option<String>,
    exec: Option<Vec<String>>,
    listen: Option<Port>,
}

impl RawCheck {
    /// The one check given, if any; `Err((subkey, message))`.
    fn check(self) -> Result<Option<Check>, (String, String)> {
        let given = [
            self.tcp.is_some(),
            self.http.is_some(),
            self.exec.is_some(),
            self.listen.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err((
                String::new(),
                "give one of `tcp`, `http`, `exec` or `listen`".into(),
            ));
        }
        if let Some(Port(port)) = self.listen {
            return Ok(Some(Check::Listen { port }));
        }
        if let Some(t) = self.tcp {
            let (host, port) = host_port(&t).map_err(|m| ("tcp".to_owned(), m))?;
            return Ok(Some(Check::Tcp { host, port }));
        }
        if let Some(u) = self.http {
            return parse_http(&u).map(Some).map_err(|m| ("http".to_owned(), m));
        }
        if let Some(argv) = self.exec {
            if argv.first().is_none_or(String::is_empty) {
                return Err(("exec".into(), "must name a program to run".into()));
            }
            return Ok(Some(Check::Exec(argv)));
        }
        Ok(None)
    }
}

impl RawReady {
    /// The spec; `Err((subkey, message))`.
    pub(super) fn spec(self) -> Result<ReadySpec, (String, String)> {
        let every = self.every.map_or(DEFAULT_READY_EVERY, |d| d.0);
        let timeout = self.timeout.map_or(DEFAULT_READY_TIMEOUT, |d| d.0);
        let start_timeout = self.start_timeout.map(|d| d.0);
        let check = RawCheck {
            tcp: self.tcp,
            http: self.http,
            exec: self.exec,
            listen: self.listen,
        }
        .check()?;
        let notify = self.notify == Some(true);
        let how = match (notify, self.fd, check) {
            (true, None, None) => ReadyHow::Notify,
            (false, Some(fd), None) => ReadyHow::Fd(check_fd(fd).map_err(|m| ("fd".into(), m))?),
            (false, None, Some(c)) => ReadyHow::Check(c),
            (false, None, None) => {
                return Err((
                    String::new(),
                    "needs one of `notify = true`, `fd`, `tcp`, `http`, `exec` or `listen`".into(),
                ))
            }
            _ => {
                return Err((
                    String::new(),
                    "give one of `notify`, `fd`, `tcp`, `http`, `exec` or `listen`".into(),
                ))
            }
        };
        check_timing(every, timeout)?;
        if start_timeout.is_some_and(|t| t.is_zero()) {
            return Err(("start_timeout".into(), "must be longer than 0".into()));
        }
        Ok(ReadySpec {
            how,
            every,
            timeout,
            start_timeout,
        })
    }
}

impl RawHealth {
    /// The spec; `Err((subkey, message))`.
    pub(super) fn spec(self) -> Result<HealthSpec, (String, String)> {
        let every = self.every.map_or(DEFAULT_HEALTH_EVERY, |d| d.0);
        let timeout = self.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |d| d.0);
        let check = RawCheck {
            tcp: self.tcp,
            http: self.http,
            exec: self.exec,
            listen: self.listen,
        }
        .check()?;
        let Some(check) = check else {
            return Err((
                String::new(),
                "needs one of `tcp`, `http`, `exec` or `listen`".into(),
            ));
        };
        check_timing(every, timeout)?;
        Ok(HealthSpec {
            check,
            every,
            timeout,
            failures: self.failures.map_or(DEFAULT_HEALTH_FAILURES, |n| n.get()),
        })
    }
}

fn check_timing(every: Duration, timeout: Duration) -> Result<(), (String, String)> {
    if every < Duration::from_millis(10) {
        return Err(("every".into(), "must be at least 10ms".into()));
    }
    if timeout.is_zero() {
        return Err(("timeout".into(), "must be longer than 0".into()));
    }
    Ok(())
}

fn check_fd(fd: i64) -> Result<i32, String> {
    i32::try_from(fd)
        .ok()
        .filter(|fd| (MIN_READY_FD..=MAX_READY_FD).contains(fd))
        .ok_or_else(|| {
            format!("must be an fd number from {MIN_READY_FD} to {MAX_READY_FD}, got {fd}")
        })
}

/// `HOST:PORT`, `[V6]:PORT`.
fn host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("expected HOST:PORT, e.g. 127.0.0.1:8080, got {s:?}");
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?;
    Ok((host.to_owned(), port))
}

/// `http://HOST:PORT/PATH` (plain HTTP; the port defaults to 80, the path to `/`).
fn parse_http(url: &str) -> Result<Check, String> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| format!("expected http://HOST:PORT/PATH (plain http), got {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let (host, port) = host_port(&with_port)?;
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "the path of {url:?} has spaces or control characters"
        ));
    }
    Ok(Check::Http {
        host,
        port,
        path: path.to_owned(),
    })
}

/// The `--ready` flag: `notify`, `fd:N`, `listen:PORT`, `tcp://HOST:PORT`,
/// `http://HOST:PORT/PATH` or `exec:CMD ARGS…` (split on white space, no quoting).
pub fn parse_ready_flag(s: &str) -> Result<ReadyHow, String> {
    let t = s.trim();
    if t == "notify" {
        return Ok(ReadyHow::Notify);
    }
    if let Some(n) = t.strip_prefix("fd:") {
        let fd = n
            .parse::<i64>()
            .map_err(|_| format!("invalid fd in {s:?}"))?;
        return check_fd(fd).map(ReadyHow::Fd);
    }
    parse_check_flag(t).map(ReadyHow::Check).map_err(|_| {
        format!(
            "invalid readiness {s:?}; use notify, fd:N, listen:PORT, tcp://HOST:PORT, \
             http://HOST:PORT/PATH or exec:CMD"
        )
    })
}

/// The `--health` flag: `listen:PORT`, `tcp://HOST:PORT`, `http://HOST:PORT/PATH` or
/// `exec:CMD ARGS…`.
pub fn parse_check_flag(s: &str) -> Result<Check, String> {
    let t = s.trim();
    if let Some(p) = t.strip_prefix("listen:") {
        return p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .map(|port| Check::Listen { port })
            .ok_or_else(|| format!("{s:?}: listen: needs a port from 1 to 65535"));
    }
    if let Some(hp) = t.strip_prefix("tcp://") {
        let (host, port) = host_port(hp)?;
        return Ok(Check::Tcp { host, port });
    }
    if t.starts_with("http://") {
        return parse_http(t);
    }
    if let Some(cmd) = t.strip_prefix("exec:") {
        let argv: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
        if argv.is_empty() {
            return Err(format!("{s:?}: exec: needs a command"));
        }
        return Ok(Check::Exec(argv));
    }
    Err(format!(
        "invalid check {s:?}; use listen:PORT, tcp://HOST:PORT, http://HOST:PORT/PATH or exec:CMD"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(parse_ready_flag("notify"), Ok(ReadyHow::Notify));
        assert_eq!(parse_ready_flag("fd:5"), Ok(ReadyHow::Fd(5)));
        assert!(parse_ready_flag("fd:2").is_err());
        assert!(parse_ready_flag("fd:x").is_err());
        assert_eq!(
            parse_ready_flag("tcp://127.0.0.1:8080"),
            Ok(ReadyHow::Check(Check::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            }))
        );
        assert_eq!(
            parse_check_flag("tcp://[::1]:99"),
            Ok(Check::Tcp {
                host: "::1".into(),
                port: 99
            })
        );
        assert_eq!(
            parse_check_flag("http://localhost:9000/healthz?x=1"),
            Ok(Check::Http {
                host: "localhost".into(),
                port: 9000,
                path: "/healthz?x=1".into()
            })
        );
        assert_eq!(
            parse_check_flag("http://example"),
            Ok(Check::Http {
                host: "example".into(),
                port: 80,
                path: "/".into()
            })
        );
        assert_eq!(
            parse_check_flag("exec:pg_isready -h localhost"),
            Ok(Check::Exec(vec![
                "pg_isready".into(),
                "-h".into(),
                "localhost".into()
            ]))
        );
        for bad in [
            "tcp://nohost",
            "tcp://:80",
            "tcp://h:0",
            "tcp://h:70000",
            "https://x:1/",
            "http://x:1/a b",
            "exec:",
            "udp://x:1",
            "",
        ] {
            assert!(parse_check_flag(bad).is_err(), "{bad:?}");
        }
    }
}
