//! Socket destroy events: the kernel's own record of a TCP socket's final counters, sent to the
//! sock_diag destroy multicast groups as the socket is freed (`linux/sock_diag.h`,
//! `SKNLGRP_INET_TCP_DESTROY` and `SKNLGRP_INET6_TCP_DESTROY`; what `ss -E` listens to).
//!
//! A dump sees only the sockets alive at a tick: a connection opened and closed between two
//! ticks never shows, and a socket that is seen loses what it moved after its last dump. The
//! destroy message closes both gaps: it carries the socket's `tcp_info` as it was when the
//! kernel freed it (`bytes_acked`, `bytes_received` final), its addresses and its cookie.
//!
//! What the message does not carry, as the kernel builds it (`inet_diag_handler_get_info`,
//! checked on Linux 6.18): the inode (the socket has left its file by then: 0), the uid (0) and
//! the cgroup. So a destroyed socket is known by its cookie, which a dump reported while it was
//! alive, or by its local address and port, which a listener of some worker may own; see
//! [`super::NetProbe`].
//!
//! The UDP groups are not joined: the kernel has no byte counters for UDP sockets (no
//! `tcp_info`, nothing in `udp_diag`), so their destroy messages would cost and tell nothing
//! about traffic.
//!
//! The socket is non-blocking and read a bounded number of datagrams per call. When the
//! supervisor reads too slowly, the kernel drops what does not fit in the receive buffer and
//! says so once with ENOBUFS; the exact number dropped is the socket's drop counter
//! (`SO_MEMINFO`, `SK_MEMINFO_DROPS`), which is read after each ENOBUFS and reported as lost.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::Parseable;
use netlink_packet_core::{NetlinkBuffer, NlasIterator, NLA_TYPE_MASK};
use netlink_packet_sock_diag::constants::{
    INET_DIAG_INFO, INET_DIAG_PROTOCOL, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::InetResponseHeader;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

use super::diag::{parse_tcp_info, Proto, INET_DIAG_MSG_LEN};

/// `enum sknetlink_groups` (`linux/sock_diag.h`): multicast group numbers.
pub const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
pub const SKNLGRP_INET_UDP_DESTROY: u32 = 2;
pub const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
pub const SKNLGRP_INET6_UDP_DESTROY: u32 = 4;

/// Receive buffer asked for. The kernel caps `SO_RCVBUF` at `net.core.rmem_max` (often 208 KiB:
/// some 300 messages); `SO_RCVBUFFORCE`, allowed with `CAP_NET_ADMIN`, is not capped.
pub const RCVBUF: usize = 8 << 20;
/// One destroy message is about 400 bytes; a datagram holds one. Longer ones are cut and
/// counted as malformed.
const RECV_BUF: usize = 8 * 1024;

/// `SO_MEMINFO` (Linux 4.12) and `SO_RCVBUFFORCE` (`asm-generic/socket.h`; sparc numbers its
/// own).
#[cfg(not(target_arch = "sparc64"))]
const SO_MEMINFO: libc::c_int = 55;
#[cfg(not(target_arch = "sparc64"))]
const SO_RCVBUFFORCE: libc::c_int = 33;
#[cfg(target_arch = "sparc64")]
const SO_MEMINFO: libc::c_int = 0x0039;
#[cfg(target_arch = "sparc64")]
const SO_RCVBUFFORCE: libc::c_int = 0x100b;
/// `SK_MEMINFO_VARS`: the length of the `SO_MEMINFO` array (Linux 4.12+; older kernels have
/// fewer, and the kernel writes what it has).
const SK_MEMINFO_VARS: usize = 9;

/// One destroyed socket, as its destroy message tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destroyed {
    pub proto: Proto,
    /// `TCP_*` state when freed (`TCP_CLOSE`, 7, for a connection; 10 for a listener).
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `idiag_cookie`: the socket's identity, as dumps reported it while it was alive.
    pub cookie: u64,
    /// Final `tcpi_bytes_acked` / `tcpi_bytes_received`; `None` without a long enough
    /// `tcp_info`.
    pub acked: Option<u64>,
    pub received: Option<u64>,
}

/// What reading the destroy socket found, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestroyStats {
    pub datagrams: u64,
    /// Destroy messages of TCP sockets handed on.
    pub events: u64,
    /// Messages that could not be read (cut, short, unknown family): skipped.
    pub malformed: u64,
    /// Datagrams not from the kernel: skipped.
    pub foreign: u64,
    /// ENOBUFS: times the receive buffer overflowed.
    pub overflows: u64,
    /// Messages the kernel dropped on overflow (the socket's drop counter).
    pub lost: u64,
}

/// How one [`DestroySocket::read`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Nothing left queued.
    Empty,
    /// The call's datagram budget ran out: more may be queued.
    Budget,
}

/// The subscribed, non-blocking sock_diag socket.
pub struct DestroySocket {
    sock: Socket,
    buf: Vec<u8>,
    drops: u32,
    stats: DestroyStats,
    rcvbuf: usize,
}

impl std::fmt::Debug for DestroySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestroySocket")
            .field("fd", &self.sock.as_raw_fd())
            .field("rcvbuf", &self.rcvbuf)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn setsockopt_int(fd: BorrowedFd<'_>, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt on an open socket with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SK_MEMINFO_DROPS` of a socket.
fn drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut mem = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&mem) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `mem`, which is that long, and stores
    // the length written in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            mem.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < std::mem::size_of_val(&mem) {
        return Err(io::Error::other("SO_MEMINFO without a drop counter"));
    }
    Ok(mem[libc::SK_MEMINFO_DROPS as usize])
}

impl DestroySocket {
    /// Opens a sock_diag socket and joins the TCP destroy groups (IPv4 and IPv6). Fails as the
    /// kernel refuses it: `EPERM` where joining needs `CAP_NET_ADMIN`, `EPROTONOSUPPORT` or
    /// `ENOENT` without sock_diag.
    pub fn subscribe() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.set_non_blocking(true)?;
        // Before joining, so no message is dropped for want of room at the start. Forced where
        // allowed (CAP_NET_ADMIN), else as large as net.core.rmem_max lets it be.
        let want = libc::c_int::try_from(RCVBUF).unwrap_or(libc::c_int::MAX);
        if setsockopt_int(sock.as_fd(), SO_RCVBUFFORCE, want).is_err() {
            let _ = setsockopt_int(sock.as_fd(), libc::SO_RCVBUF, want);
        }
        // nl_groups is a bit mask of groups 1..=32 (netlink(7)).
        let mask = (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1));
        sock.bind(&netlink_sys::SocketAddr::new(0, mask))?;
        let drops = drops(sock.as_fd()).unwrap_or(0);
        // The kernel reports twice what it grants (socket(7)).
        let rcvbuf = sock.get_rx_buf_sz().unwrap_or(0) / 2;
        Ok(Self {
            sock,
            buf: vec![0; RECV_BUF],
            drops,
            stats: DestroyStats::default(),
            rcvbuf,
        })
    }

    /// The receive buffer the kernel granted, bytes.
    #[must_use]
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    /// Counts since the socket was opened.
    #[must_use]
    pub fn stats(&self) -> DestroyStats {
        self.stats
    }

    /// Reads at most `budget` datagrams, handing each TCP destroy message to `visit`. Never
    /// blocks. Errors other than ENOBUFS (counted) end the call.
    pub fn read(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(&Destroyed),
    ) -> io::Result<Drained> {
        for _ in 0..budget {
            let mut slice = &mut self.buf[..];
            match self.sock.recv_from(&mut slice, libc::MSG_TRUNC) {
                Ok((n, from)) => {
                    self.stats.datagrams += 1;
                    // Only the kernel (port 0) sends to these groups; anything else is not a
                    // destroy message, whatever it looks like.
                    if from.port_number() != 0 {
                        self.stats.foreign += 1;
                        continue;
                    }
                    if n > self.buf.len() {
                        self.stats.malformed += 1;
                        continue;
                    }
                    parse_datagram(&self.buf[..n], &mut self.stats, &mut visit);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.stats.overflows += 1;
                    if let Ok(now) = drops(self.sock.as_fd()) {
                        self.stats.lost += u64::from(now.wrapping_sub(self.drops));
                        self.drops = now;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Drained::Budget)
    }
}

impl AsFd for DestroySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Walks the messages of one datagram and hands each readable TCP destroy message to `visit`.
/// Never panics: a message header whose length does not fit ends the walk (counted), a message
/// that cannot be read is counted and skipped.
pub fn parse_datagram(buf: &[u8], stats: &mut DestroyStats, visit: &mut impl FnMut(&Destroyed)) {
    let mut off = 0;
    while off < buf.len() {
        let Ok(msg) = NetlinkBuffer::new_checked(&buf[off..]) else {
            stats.malformed += 1;
            return;
        };
        let len = msg.length() as usize;
        if msg.message_type() == SOCK_DIAG_BY_FAMILY {
            match parse_message(msg.payload()) {
                Some(d) if d.proto == Proto::Tcp => {
                    stats.events += 1;
                    visit(&d);
                }
                Some(_) => {}
                None => stats.malformed += 1,
            }
        }
        // NLMSG_ALIGN; `len` is at least the 16-byte header (checked above), so this advances.
        off = off.saturating_add((len + 3) & !3);
    }
}

/// One destroy message: an `inet_diag_msg` and its attributes (`INET_DIAG_PROTOCOL`,
/// `INET_DIAG_INFO`). `None` when the header cannot be read or the protocol is unknown.
#[must_use]
pub fn parse_message(payload: &[u8]) -> Option<Destroyed> {
    let head = InetResponseHeader::parse(payload.get(..INET_DIAG_MSG_LEN)?).ok()?;
    let id = &head.socket_id;
    let mut protocol = None;
    let mut info = None;
    for nla in NlasIterator::new(payload.get(INET_DIAG_MSG_LEN..)?) {
        let Ok(nla) = nla else { break };
        match nla.kind() & NLA_TYPE_MASK {
            INET_DIAG_PROTOCOL => protocol = nla.value().first().copied(),
            INET_DIAG_INFO => info = Some(parse_tcp_info(nla.value())),
            _ => {}
        }
    }
    let proto = match protocol {
        Some(IPPROTO_TCP) => Proto::Tcp,
        Some(IPPROTO_UDP) => Proto::Udp,
        // Kernels before INET_DIAG_PROTOCOL (4.18): only TCP sockets have a tcp_info.
        None if info.is_some() => Proto::Tcp,
        _ => return None,
    };
    let info = info.unwrap_or_default();
    Some(Destroyed {
        proto,
        state: head.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        cookie: u64::from_ne_bytes(id.cookie),
        acked: info.bytes_acked,
        received: info.bytes_received,
    })
}

#[cfg(test)]
mod tests;
