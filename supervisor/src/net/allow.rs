//! Network policy: `net.allow` (remote address and port patterns), `net.listen_allow` (ports)
//! and `net.max_connections`, judged against a [`NetSample`]. Pure: no sockets, no /proc.
//!
//! `net.allow` patterns:
//! - `*` or `*:*`: anything;
//! - `ADDR` or `ADDR/PREFIX` alone (`127.0.0.0/8`, `::1`, `fd00::/8`): any port;
//! - `HOST:PORTS`, where HOST is `*`, an IPv4 address or CIDR, or an IPv6 one in brackets
//!   (`[::1]`, `[fd00::/8]`), and PORTS is `*`, `N` or `N-M` (`10.1.2.3:5432`, `*:443`,
//!   `0.0.0.0/0:80-89`, `[::1]:*`).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, an IPv6 socket talking to an IPv4 peer) are
//! matched as the IPv4 address they carry. A CIDR must not have host bits set (`10.1.2.3/8` is
//! an error, so a typo cannot widen or narrow a rule silently).
//!
//! What is judged: outbound connections (TCP sockets not accepted by one of the worker's own
//! listeners, and connected UDP sockets) against `net.allow`; TCP listeners against
//! `net.listen_allow`; TCP sockets other than listeners (established or closing: a worker that
//! leaks `CLOSE_WAIT` sockets is caught too) against `net.max_connections`. Connections accepted
//! by a listener are judged through that listener. Unconnected UDP sockets are not judged as
//! listeners: a resolver's ephemeral socket looks the same as a UDP server's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::{NetSample, Proto};

#[cfg(test)]
mod tests;

/// A parse error of one pattern; it becomes a config error naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

fn err(pattern: &str, reason: impl Into<String>) -> PatternError {
    PatternError {
        pattern: pattern.to_owned(),
        reason: reason.into(),
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

impl Ports {
    pub const ANY: Self = Self {
        lo: 0,
        hi: u16::MAX,
    };

    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// An address block; `prefix` bits of `addr` are significant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(net)), 32, self.prefix)
                    == mask(u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), 128, self.prefix) == mask(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` of `width` bits of `v`.
fn mask(v: u128, width: u8, prefix: u8) -> u128 {
    let drop = u32::from(width.saturating_sub(prefix));
    v.checked_shr(drop).unwrap_or(0)
}

/// One `net.allow` rule: an address block (`None`: any address) and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowRule {
    pub net: Option<Cidr>,
    pub ports: Ports,
}

impl AllowRule {
    #[must_use]
    pub fn matches(&self, remote: SocketAddr) -> bool {
        self.ports.contains(remote.port()) && self.net.is_none_or(|n| n.contains(remote.ip()))
    }
}

/// Parsed `net.allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<AllowRule>);

impl AllowList {
    /// Parses every pattern; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        patterns
            .iter()
            .map(|p| parse_rule(p.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    #[must_use]
    pub fn allows(&self, remote: SocketAddr) -> bool {
        self.0.iter().any(|r| r.matches(remote))
    }
}

/// Parsed `net.listen_allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<Ports>);

impl PortList {
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        patterns
            .iter()
            .map(|p| parse_ports(p.as_ref().trim(), p.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    #[must_use]
    pub fn allows(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(port))
    }
}

/// Parses `*`, `N` or `N-M` (N <= M); `whole` is the pattern named in errors.
pub fn parse_ports(s: &str, whole: &str) -> Result<Ports, PatternError> {
    if s == "*" {
        return Ok(Ports::ANY);
    }
    let port = |t: &str| -> Result<u16, PatternError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(whole, format!("`{t}` is not a port number")));
        }
        t.parse()
            .map_err(|_| err(whole, format!("port {t} is above 65535")))
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(err(whole, format!("range {lo}-{hi} is empty")));
            }
            Ok(Ports { lo, hi })
        }
        None => port(s).map(|p| Ports { lo: p, hi: p }),
    }
}

/// Parses `ADDR` or `ADDR/PREFIX`.
fn parse_cidr(s: &str, whole: &str) -> Result<Cidr, PatternError> {
    let (a, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| err(whole, format!("`{a}` is not an IP address")))?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => width,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= width && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| err(whole, format!("prefix `/{p}` is not 0..={width}")))?,
    };
    let bits = match addr {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let kept = mask(bits, width, prefix)
        .checked_shl(u32::from(width - prefix))
        .unwrap_or(0);
    if kept != bits {
        return Err(err(
            whole,
            format!("{addr}/{prefix} has host bits set (the network is {})", {
                match addr {
                    IpAddr::V4(_) => IpAddr::from(u32::try_from(kept).unwrap_or(0).to_be_bytes()),
                    IpAddr::V6(_) => IpAddr::from(kept.to_be_bytes()),
                }
            }),
        ));
    }
    Ok(Cidr { addr, prefix })
}

/// Parses one `net.allow` pattern (module docs).
pub fn parse_rule(pattern: &str) -> Result<AllowRule, PatternError> {
    let s = pattern.trim();
    if s.is_empty() {
        return Err(err(pattern, "empty"));
    }
    if s == "*" {
        return Ok(AllowRule {
            net: None,
            ports: Ports::ANY,
        });
    }
    let colons = s.matches(':').count();
    if !s.starts_with('[') && colons != 1 {
        // No colon: a bare IPv4 address or block. Two or more: a bare IPv6 one.
        let net = parse_cidr(s, pattern).map_err(|e| {
            if colons > 1 {
                err(
                    pattern,
                    format!(
                        "{}; an IPv6 address with ports needs brackets: [ADDR]:PORTS",
                        e.reason
                    ),
                )
            } else {
                e
            }
        })?;
        return Ok(AllowRule {
            net: Some(net),
            ports: Ports::ANY,
        });
    }
    let (host, ports) = if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| err(pattern, "`[` without `]`"))?;
        let p = tail
            .strip_prefix(':')
            .ok_or_else(|| err(pattern, "expected `:PORTS` after `]`"))?;
        (h, p)
    } else {
        s.split_once(':')
            .ok_or_else(|| err(pattern, "expected ADDR[/PREFIX], HOST:PORTS or `*`"))?
    };
    let ports = parse_ports(ports, pattern)?;
    let net = match host {
        "*" => None,
        "" => return Err(err(pattern, "missing address before `:`")),
        h => Some(parse_cidr(h, pattern)?),
    };
    Ok(AllowRule { net, ports })
}

/// A policy breach found in a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An outbound connection no `net.allow` rule matches.
    UnexpectedConnection { proto: Proto, remote: SocketAddr },
    /// A TCP listener on a port `net.listen_allow` does not hold.
    UnexpectedListener { local: SocketAddr },
    /// More TCP connections than `net.max_connections`.
    TooManyConnections { count: u32, max: u32 },
}

impl Violation {
    /// The finding this is reported as.
    #[must_use]
    pub fn finding(&self) -> &'static str {
        match self {
            Self::UnexpectedConnection { .. } | Self::UnexpectedListener { .. } => {
                "unexpected_connection"
            }
            Self::TooManyConnections { .. } => "too_many_connections",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedConnection { proto, remote } => {
                let p = if *proto == Proto::Tcp { "tcp" } else { "udp" };
                write!(f, "{p} connection to {remote} is outside net.allow")
            }
            Self::UnexpectedListener { local } => {
                write!(
                    f,
                    "listening on {local}: port {} is outside net.listen_allow",
                    local.port()
                )
            }
            Self::TooManyConnections { count, max } => {
                write!(
                    f,
                    "{count} TCP connections, more than net.max_connections = {max}"
                )
            }
        }
    }
}

/// Every breach of the policy in `sample`, in a stable order: connections, listeners, count.
/// `None` for a list or limit means "not set": not checked.
#[must_use]
pub fn violations(
    sample: &NetSample,
    allow: Option<&AllowList>,
    listen_allow: Option<&PortList>,
    max_connections: Option<u32>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(allow) = allow {
        out.extend(
            sample
                .remotes
                .iter()
                .filter(|r| !allow.allows(r.addr))
                .map(|r| Violation::UnexpectedConnection {
                    proto: r.proto,
                    remote: r.addr,
                }),
        );
    }
    if let Some(ports) = listen_allow {
        out.extend(
            sample
                .listen
                .iter()
                .filter(|l| !ports.allows(l.port()))
                .map(|&local| Violation::UnexpectedListener { local }),
        );
    }
    if let Some(max) = max_connections {
        let count = sample.connections();
        if count > max {
            out.push(Violation::TooManyConnections { count, max });
        }
    }
    out
}
