//! systemd's notify protocol for unmodified programs: every worker gets `NOTIFY_SOCKET`, a
//! datagram socket of the supervisor's, and says `READY=1`, `STATUS=…`, `WATCHDOG=1` and so on
//! there, as `sd_notify(3)` and `systemd-notify(1)` do.
//!
//! Each datagram carries its sender's pid and uid, attested by the kernel (`SO_PASSCRED`), and
//! counts for the worker whose process tree holds that pid (systemd's `NotifyAccess=all`); one
//! from outside every tree is counted and dropped, so no program can speak for another.
//!
//! Who can reach it ([`Sockets`]): each user that workers run as has a socket of its own, owned
//! by that user with mode 0600, so no other local user can send a byte to it (root excepted).
//! What a sender can make supervise do ([`Intake`]): datagrams are read in batches without ever
//! blocking; each sender (by pid) has a budget per second of its own, and the walks up /proc that
//! attribute a process not yet known as a tree's member share one small budget, so a flood costs
//! the flooder's budget only and never crowds out a worker's own `WATCHDOG=1` or `READY=1`.
//! File descriptors a sender passes (`BARRIER=1`'s pipe, `FDSTORE=1`) are closed at once: the
//! kernel installs at most [`MAX_FDS`] of a datagram's (the control buffer has room for no more;
//! it closes the rest itself), and every one installed is closed, also when the control data was
//! cut. Closing the barrier's is what `systemd-notify` waits for. What cannot be parsed is counted
//! and ignored.

use std::time::Duration;

mod intake;
mod socket;

pub use intake::{Admit, Intake};
pub use socket::{Datagram, Dropped, NotifySocket, Sockets, MAX_DATAGRAM, MAX_FDS};

/// Longest `STATUS=` text kept.
pub const MAX_STATUS: usize = 256;

/// One assignment of a datagram, as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Ready,
    Reloading,
    Stopping,
    Status(String),
    MainPid(i32),
    Watchdog,
    WatchdogTrigger,
    ExtendTimeout(Duration),
    Errno(i32),
    /// A key this supervisor does not act on (`BARRIER=1`, `FDSTORE=1`, `MONOTONIC_USEC=…`).
    Other,
}

/// Parses a datagram's text: `KEY=VALUE` lines. `None` if it is not text of that shape at all
/// (then the whole datagram is ignored: systemd ignores a message it cannot parse).
#[must_use]
pub fn parse(bytes: &[u8]) -> Option<Vec<Field>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut out = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once('=')?;
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        {
            return None;
        }
        out.push(match (key, value) {
            ("READY", "1") => Field::Ready,
            ("RELOADING", "1") => Field::Reloading,
            ("STOPPING", "1") => Field::Stopping,
            ("STATUS", v) => Field::Status(clip(v)),
            ("MAINPID", v) => match v.parse::<i32>() {
                Ok(p) if p > 0 => Field::MainPid(p),
                _ => Field::Other,
            },
            ("WATCHDOG", "1") => Field::Watchdog,
            ("WATCHDOG", "trigger") => Field::WatchdogTrigger,
            ("EXTEND_TIMEOUT_USEC", v) => match v.parse::<u64>() {
                Ok(us) => Field::ExtendTimeout(Duration::from_micros(us)),
                Err(_) => Field::Other,
            },
            ("ERRNO", v) => match v.parse::<i32>() {
                Ok(e) if e >= 0 => Field::Errno(e),
                _ => Field::Other,
            },
            _ => Field::Other,
        });
    }
    Some(out)
}

/// At most [`MAX_STATUS`] bytes, cut on a character boundary, control characters replaced.
fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_STATUS);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The supervisor's own line to *its* service manager: when systemd (or another manager that
/// speaks the protocol) runs supervise with `Type=notify`, supervise says `READY=1` once every
/// program is up, `STATUS=` as that changes, `STOPPING=1`, `RELOADING=1`, and pings
/// `WATCHDOG=1` when the manager asked for it (`WATCHDOG_USEC`).
#[derive(Debug)]
pub struct Manager {
    socket: std::os::unix::net::UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
    /// Half the manager's watchdog period, when it wants pings.
    pub watchdog_every: Option<Duration>,
    last_status: String,
    ready: bool,
}

impl Manager {
    /// From the supervisor's own environment, which it then clears of `NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID`: they are for supervise, not for what it starts (its
    /// workers get its own socket). Call before any thread starts.
    #[must_use]
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let for_pid = std::env::var("WATCHDOG_PID").ok();
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(key);
        }
        let path = path?;
        let addr = manager_addr(path.as_encoded_bytes())?;
        let socket = std::os::unix::net::UnixDatagram::unbound().ok()?;
        socket.set_nonblocking(true).ok()?;
        let mine = for_pid.is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog_every = usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && mine)
            .map(|u| Duration::from_micros(u) / 2);
        Some(Self {
            socket,
            addr,
            watchdog_every,
            last_status: String::new(),
            ready: false,
        })
    }

    fn send(&self, text: &str) {
        // Never waits: a manager that does not read loses the message, no more.
        if let Err(e) = self.socket.send_to_addr(text.as_bytes(), &self.addr) {
            tracing::debug!(error = %e, "cannot notify the service manager");
        }
    }

    /// Everything is up (`status` says how): `READY=1` once, and `STATUS=` when it changes.
    pub fn up(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.last_status = status.to_owned();
            self.send(&format!("READY=1\nSTATUS={status}"));
        } else {
            self.status(status);
        }
    }

    pub fn status(&mut self, status: &str) {
        if self.last_status != status {
            self.last_status = status.to_owned();
            self.send(&format!("STATUS={status}"));
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// A reload starts; the next [`Manager::up`] says `READY=1` again.
    pub fn reloading(&mut self) {
        self.ready = false;
        let usec = crate::worker::monotonic_ns() / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// `NOTIFY_SOCKET` as an address: a path, or `@name` in the abstract namespace.
fn manager_addr(bytes: &[u8]) -> Option<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match bytes.split_first() {
        Some((b'@', name)) => std::os::unix::net::SocketAddr::from_abstract_name(name).ok(),
        Some((b'/', _)) => {
            use std::os::unix::ffi::OsStrExt;
            std::os::unix::net::SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(bytes)).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=Serving 3 clients\nMAINPID=42\n"),
            Some(vec![
                Field::Ready,
                Field::Status("Serving 3 clients".into()),
                Field::MainPid(42)
            ])
        );
        assert_eq!(
            parse(b"WATCHDOG=1\nWATCHDOG=trigger\nEXTEND_TIMEOUT_USEC=5000000\nERRNO=2"),
            Some(vec![
                Field::Watchdog,
                Field::WatchdogTrigger,
                Field::ExtendTimeout(Duration::from_secs(5)),
                Field::Errno(2)
            ])
        );
        assert_eq!(
            parse(b"BARRIER=1\nFDSTORE=1\nX_CUSTOM=whatever\nREADY=0\nMAINPID=-1"),
            Some(vec![Field::Other; 5])
        );
        assert_eq!(parse(b""), Some(vec![]));
        for garbage in [
            &b"\xff\xfe"[..],
            b"READY",
            b"=1",
            b"ready=1",
            b"READY =1",
            b"\0\0\0",
        ] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
        let long = format!("STATUS={}\u{e9}\t\x07", "x".repeat(MAX_STATUS - 1));
        match parse(long.as_bytes()).as_deref() {
            Some([Field::Status(s)]) => {
                assert!(s.len() <= MAX_STATUS);
                assert!(s.starts_with("xxx"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse("STATUS=a\u{7}b".as_bytes()),
            Some(vec![Field::Status("a b".into())])
        );
    }
}
