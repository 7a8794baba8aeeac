//! The notify sockets themselves: one per user that workers run as, each reachable by that user
//! alone, read in batches without ever blocking, and every file descriptor a datagram brings
//! closed whatever the kernel did to the control data.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::Poll;

use nix::sys::socket::{setsockopt, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use tokio::io::unix::AsyncFd;

/// Longest datagram read (systemd's own limit is one pipe buffer).
pub const MAX_DATAGRAM: usize = 4096;
/// File descriptors one datagram can bring into the supervisor, however many it carries: the
/// control buffer has room for this many, so the kernel installs no more and closes the rest
/// itself (saying `MSG_CTRUNC`). `BARRIER=1` passes one. This is the notify socket's share of the
/// open-files budget (`plan::fd_budget`): the fds are closed before the next receive.
pub const MAX_FDS: usize = 8;
/// Datagrams read from one socket per turn of the engine's loop: a flood is read in batches,
/// one wake-up each, and the loop's other inputs get their turns in between.
const BATCH: usize = 64;

/// What a receive brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    /// A message from `pid` running as `uid` (both kernel-attested), its bytes as sent.
    /// `fds_cut`: it carried more fds than [`MAX_FDS`], or more than the supervisor had room
    /// for (every one that arrived was closed all the same).
    Message {
        pid: i32,
        uid: u32,
        bytes: Vec<u8>,
        fds_cut: bool,
    },
    /// Not read as a message.
    Dropped(Dropped),
}

/// Why a datagram was not read as a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Longer than [`MAX_DATAGRAM`].
    TooLong,
    /// Without credentials (or from a pid the kernel could not name in our namespace).
    NoCredentials,
}

/// The supervisor's notify sockets: one for the workers of each user, bound at first use, beside
/// the control socket.
#[derive(Debug, Default)]
pub struct Sockets {
    dir: PathBuf,
    list: Vec<NotifySocket>,
    /// Where the next look for a readable socket starts, so a flooded one cannot starve the rest.
    next: usize,
    /// Users whose socket could not be made (said once each).
    failed: Vec<u32>,
}

impl Sockets {
    /// Sockets in `dir` (the control socket's directory). None is bound yet.
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            ..Self::default()
        }
    }

    /// The socket for workers that start as `uid` (group `gid`): bound, owned by them, at first
    /// use. `None` (said once per user) when it cannot be made: those workers get no
    /// `NOTIFY_SOCKET`. Needs a tokio runtime.
    pub fn path_for(&mut self, uid: u32, gid: u32) -> Option<Rc<Path>> {
        if let Some(s) = self.list.iter().find(|s| s.uid == uid) {
            return Some(s.path.clone());
        }
        if self.failed.contains(&uid) {
            return None;
        }
        let path = self.dir.join(file_name(std::process::id(), uid, euid()));
        match NotifySocket::bind(&path, uid, gid) {
            Ok(s) => {
                let p = s.path.clone();
                self.list.push(s);
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, uid, path = %path.display(),
                    "no notify socket: NOTIFY_SOCKET is not set for the workers of this user");
                self.failed.push(uid);
                None
            }
        }
    }

    /// The next datagrams: up to a batch from one readable socket, every fd they carried closed.
    /// Never completes while no socket is bound.
    pub async fn recv(&mut self) -> Vec<Datagram> {
        std::future::poll_fn(|cx| {
            let n = self.list.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                let got = self.list[i].poll_batch(cx);
                if !got.is_empty() {
                    self.next = (i + 1) % n;
                    return Poll::Ready(got);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// The socket's file name: the supervisor's own user's keeps the plain name.
fn file_name(pid: u32, uid: u32, own: u32) -> String {
    if uid == own {
        format!("supervise-notify.{pid}.sock")
    } else {
        format!("supervise-notify.{pid}.u{uid}.sock")
    }
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// One notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    /// The user it is for.
    uid: u32,
    fd: AsyncFd<OwnedFd>,
    path: Rc<Path>,
    buf: Vec<u8>,
    /// Control data: the sender's credentials and at most [`MAX_FDS`] fds, kept between
    /// receives.
    cmsg: Vec<u8>,
}

impl NotifySocket {
    /// Binds a datagram socket at `path` (replacing a stale file) that only `uid` can send to
    /// (mode 0600, owned by `uid`:`gid`), with `SO_PASSCRED`. Needs a tokio runtime.
    pub fn bind(path: &Path, uid: u32, gid: u32) -> io::Result<Self> {
        let fd = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        // The file `bind` makes takes the socket inode's mode (less the umask): 0600 from the
        // first moment, so nobody else can send in the gap before the chown below.
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let addr = UnixAddr::new(path)?;
        nix::sys::socket::bind(fd.as_raw_fd(), &addr)?;
        let made = (|| {
            if uid != euid() {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            setsockopt(&fd, sockopt::PassCred, &true)?;
            io::Result::Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        // SAFETY: an `OwnedFd` stays open while owned and always returns the same number.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self {
            uid,
            fd,
            path: Rc::from(path),
            buf: vec![0; MAX_DATAGRAM],
            // SAFETY: CMSG_SPACE only computes a size.
            cmsg: vec![0; unsafe { cmsg_space() }],
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up to a batch of datagrams, if the socket is readable; empty (and the waker registered)
    /// when it is not.
    fn poll_batch(&mut self, cx: &mut std::task::Context<'_>) -> Vec<Datagram> {
        let mut got = Vec::new();
        let Self { fd, buf, cmsg, .. } = self;
        loop {
            let mut guard = match fd.poll_read_ready(cx) {
                Poll::Pending => return got,
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => {
                    // Not registered with the runtime: nothing will ever be read here.
                    tracing::warn!(error = %e, "notify socket");
                    return got;
                }
            };
            while got.len() < BATCH {
                match receive(guard.get_inner().as_raw_fd(), buf, cmsg) {
                    Ok(Some(d)) => got.push(d),
                    Ok(None) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => {
                        // Never a busy loop: wait for the next readiness.
                        tracing::warn!(error = %e, "notify socket");
                        guard.clear_ready();
                        break;
                    }
                }
            }
            if !got.is_empty() {
                return got;
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Room for the sender's credentials and [`MAX_FDS`] fds.
///
/// # Safety
/// None needed: `CMSG_SPACE` is a size computation; it is `unsafe` only by its binding.
unsafe fn cmsg_space() -> usize {
    // The sizes are a few dozen bytes: they fit u32.
    #[allow(clippy::cast_possible_truncation)]
    let (cred, fds) = (
        std::mem::size_of::<libc::ucred>() as u32,
        (MAX_FDS * std::mem::size_of::<RawFd>()) as u32,
    );
    // SAFETY: size computations.
    unsafe { libc::CMSG_SPACE(cred) as usize + libc::CMSG_SPACE(fds) as usize }
}

/// One `recvmsg` that never waits: `None` when nothing is queued. Every fd the datagram brought
/// is closed before this returns. The control messages are walked here rather than by a parser
/// that gives up when the kernel cut them (`MSG_CTRUNC`: more fds than room, or the supervisor
/// out of fds), because the fds that *were* installed must still be closed.
pub(crate) fn receive(fd: RawFd, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Option<Datagram>> {
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr (no name, no iovecs, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.len();
        // SAFETY: `msg` points at `buf` and `cmsg`, both live and as long as said, for the call.
        let n = unsafe {
            libc::recvmsg(
                fd,
                &mut msg,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
        let len = usize::try_from(n).unwrap_or(0);
        let control = Control::walk(&msg);
        let fds_cut = msg.msg_flags & libc::MSG_CTRUNC != 0;
        let Some((pid, uid)) = control.cred.filter(|&(p, _)| p > 0) else {
            return Ok(Some(Datagram::Dropped(Dropped::NoCredentials)));
        };
        // With MSG_TRUNC, `n` is the datagram's real length.
        if len > buf.len() || msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Ok(Some(Datagram::Dropped(Dropped::TooLong)));
        }
        return Ok(Some(Datagram::Message {
            pid,
            uid,
            bytes: buf[..len].to_vec(),
            fds_cut,
        }));
    }
}

/// What a datagram's control messages said; every fd in them is closed by [`Control::walk`].
#[derive(Debug, Default)]
struct Control {
    cred: Option<(i32, u32)>,
}

impl Control {
    fn walk(msg: &libc::msghdr) -> Self {
        let mut out = Self::default();
        let start = msg.msg_control.cast::<u8>().cast_const();
        let end = start.wrapping_add(msg.msg_controllen);
        // SAFETY: `msg` is the header `recvmsg` just filled: its control pointer and length
        // describe our buffer, of which the kernel wrote the first `msg_controllen` bytes;
        // CMSG_FIRSTHDR and CMSG_NXTHDR return null past them.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
        while !c.is_null() {
            // SAFETY: non-null headers from CMSG_*HDR lie within the written control data.
            let h = unsafe { std::ptr::read_unaligned(c) };
            // SAFETY: as above; CMSG_DATA points just past the header.
            let data = unsafe { libc::CMSG_DATA(c) }.cast_const();
            // The data's length as the header says, never past what the kernel wrote.
            let said = h.cmsg_len.saturating_sub(data as usize - c as usize);
            let room = (end as usize).saturating_sub(data as usize);
            let n = said.min(room);
            match (h.cmsg_level, h.cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for k in 0..n / std::mem::size_of::<RawFd>() {
                        // SAFETY: within the data, read as unaligned ints.
                        let fd =
                            unsafe { std::ptr::read_unaligned(data.add(k * 4).cast::<RawFd>()) };
                        if fd >= 0 {
                            // SAFETY: the kernel just installed this fd for us; nothing else
                            // knows of it, and it is closed once, here.
                            unsafe { libc::close(fd) };
                        }
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if n >= std::mem::size_of::<libc::ucred>() =>
                {
                    // SAFETY: within the data and long enough for a ucred.
                    let cred = unsafe { std::ptr::read_unaligned(data.cast::<libc::ucred>()) };
                    out.cred = Some((cred.pid, cred.uid));
                }
                _ => {}
            }
            if h.cmsg_len == 0 {
                break;
            }
            // SAFETY: `c` is a header within the control data of `msg`.
            c = unsafe { libc::CMSG_NXTHDR(msg, c) };
        }
        out
    }
}

#[cfg(test)]
mod tests;
