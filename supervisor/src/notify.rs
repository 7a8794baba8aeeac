//! systemd's notify protocol for unmodified programs: every worker gets `NOTIFY_SOCKET`, a
//! datagram socket of the supervisor's, and says `READY=1`, `STATUS=…`, `WATCHDOG=1` and so on
//! there, as `sd_notify(3)` and `systemd-notify(1)` do.
//!
//! Each datagram carries its sender's pid, attested by the kernel (`SO_PASSCRED`), and counts
//! for the worker whose process tree holds that pid (systemd's `NotifyAccess=all`); one from
//! outside every tree is counted and dropped, so the socket may be reachable by every local user
//! (workers may run as other users) without letting one program speak for another. File
//! descriptors a sender passes (`BARRIER=1`'s pipe, `FDSTORE=1`) are closed at once: closing the
//! barrier's is what `systemd-notify` waits for, and a child must not be able to fill the
//! supervisor's fd table. Datagrams are size-capped and read without ever blocking; what cannot
//! be parsed is counted and ignored.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use tokio::io::unix::AsyncFd;

/// Longest datagram read (systemd's own limit is one pipe buffer).
pub const MAX_DATAGRAM: usize = 4096;
/// File descriptors one datagram can carry: the kernel's own cap (`SCM_MAX_FD`). Room for all
/// of them, so the control data is never cut (`MSG_CTRUNC`): then the fds that did arrive could
/// not be read out to be closed, and a sender could fill the supervisor's fd table.
const MAX_FDS: usize = 253;
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

/// What a receive brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    /// A message from `pid` (kernel-attested), its bytes as sent.
    Message { pid: i32, bytes: Vec<u8> },
    /// Longer than [`MAX_DATAGRAM`], or without credentials: ignored.
    Dropped(&'static str),
}

/// The supervisor's notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    fd: AsyncFd<OwnedFd>,
    path: PathBuf,
    buf: Vec<u8>,
    /// Control data: the sender's credentials and any fds, kept between receives.
    cmsg: Vec<u8>,
}

impl NotifySocket {
    /// Binds a datagram socket at `path` (replacing a stale file), readable and writable by every
    /// user, with `SO_PASSCRED`. Needs a tokio runtime.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let fd = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let addr = UnixAddr::new(path)?;
        nix::sys::socket::bind(fd.as_raw_fd(), &addr)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        setsockopt(&fd, sockopt::PassCred, &true)?;
        // SAFETY: an `OwnedFd` stays open while owned and always returns the same number.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self {
            fd,
            path: path.to_owned(),
            buf: vec![0; MAX_DATAGRAM],
            cmsg: nix::cmsg_space!(libc::ucred, [RawFd; MAX_FDS]),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram. Every fd it carried is closed before this returns.
    pub async fn recv(&mut self) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match receive(
                guard.get_inner().as_fd().as_raw_fd(),
                &mut self.buf,
                &mut self.cmsg,
            ) {
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
                Ok(d) => return Ok(d),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One `recvmsg`, with its fds closed at once.
fn receive(fd: RawFd, buf: &mut [u8], cmsg: &mut [u8]) -> nix::Result<Datagram> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut pid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(cred) => pid = Some(cred.pid()),
                ControlMessageOwned::ScmRights(fds) => {
                    for f in fds {
                        // SAFETY: the kernel just gave us this fd; we own it and close it here.
                        drop(unsafe { OwnedFd::from_raw_fd(f) });
                    }
                }
                _ => {}
            }
        }
    }
    let len = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    let Some(pid) = pid.filter(|&p| p > 0) else {
        return Ok(Datagram::Dropped("no credentials"));
    };
    if truncated {
        return Ok(Datagram::Dropped("too long"));
    }
    Ok(Datagram::Message {
        pid,
        bytes: buf[..len].to_vec(),
    })
}

/// Where the notify socket goes: beside the control socket.
#[must_use]
pub fn path_beside(admin: &Path) -> PathBuf {
    let dir = admin.parent().unwrap_or_else(|| Path::new("/tmp"));
    dir.join(format!("supervise-notify.{}.sock", std::process::id()))
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

    #[test]
    fn datagrams_carry_the_sender_and_passed_fds_are_closed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("n.sock");
            let mut sock = NotifySocket::bind(&path).expect("bind");
            let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
            client.send_to(b"READY=1", &path).expect("send");
            let me = i32::try_from(std::process::id()).expect("pid");
            assert_eq!(
                sock.recv().await.expect("recv"),
                Datagram::Message {
                    pid: me,
                    bytes: b"READY=1".to_vec()
                }
            );
            // A barrier: a pipe's write end passed along; once we close it the reader sees EOF.
            let (r, w) = nix::unistd::pipe().expect("pipe");
            let fds = [w.as_raw_fd()];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let addr = UnixAddr::new(&path).expect("addr");
            nix::sys::socket::sendmsg(
                client.as_raw_fd(),
                &[io::IoSlice::new(b"BARRIER=1")],
                &cmsg,
                MsgFlags::empty(),
                Some(&addr),
            )
            .expect("sendmsg");
            drop(w);
            let got = sock.recv().await.expect("recv");
            assert!(matches!(got, Datagram::Message { .. }), "{got:?}");
            let mut b = [0u8; 1];
            assert_eq!(nix::unistd::read(&r, &mut b).expect("read"), 0, "EOF");
            // As many fds as the kernel lets one datagram carry: every copy closed, none kept.
            let (r, w) = nix::unistd::pipe().expect("pipe");
            nix::fcntl::fcntl(
                &r,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .expect("nonblocking");
            let fds = [w.as_raw_fd(); 253];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            nix::sys::socket::sendmsg(
                client.as_raw_fd(),
                &[io::IoSlice::new(b"FDSTORE=1")],
                &cmsg,
                MsgFlags::empty(),
                Some(&addr),
            )
            .expect("sendmsg");
            drop(w);
            let got = sock.recv().await.expect("recv");
            assert!(matches!(got, Datagram::Message { .. }), "{got:?}");
            assert_eq!(
                nix::unistd::read(&r, &mut b),
                Ok(0),
                "EOF: no copy left open"
            );
            // Too long: dropped, and the next one still arrives.
            client
                .send_to(&vec![b'x'; MAX_DATAGRAM + 10], &path)
                .expect("send");
            assert_eq!(
                sock.recv().await.expect("recv"),
                Datagram::Dropped("too long")
            );
        });
    }
}
