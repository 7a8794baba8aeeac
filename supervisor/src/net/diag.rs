//! The sock_diag dump: one `NETLINK_SOCK_DIAG` socket kept open, four dump requests per tick
//! (TCP and UDP, IPv4 and IPv6), and a parser that walks the replies in place.
//!
//! Requests are built once with `netlink-packet-sock-diag` and only their sequence number
//! changes between ticks. Replies are walked with `netlink-packet-core`'s checked buffers and the
//! crate's `InetResponseHeader`; the `INET_DIAG_INFO` attribute (a `struct tcp_info`) is read
//! here, field by field with bounds checks, because the crate either copies it into a `Vec` per
//! socket or (feature `rich_nlas`) refuses any `tcp_info` shorter than its own, newer layout.
//! A message whose socket inode the caller does not want is skipped after reading that one field.
//!
//! References: sock_diag(7) for the request and reply formats, `linux/inet_diag.h` for
//! `struct inet_diag_msg`, `linux/tcp.h` for `struct tcp_info`, netlink(7) for dump semantics.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator, Parseable, NLA_TYPE_MASK,
    NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, INET_DIAG_INFO, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, TCP_SYN_RECV,
    TCP_TIME_WAIT,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

use super::NetError;

/// `sizeof(struct inet_diag_msg)` (`linux/inet_diag.h`): family, state, timer, retrans (1 byte
/// each), `inet_diag_sockid` (48), expires, rqueue, wqueue, uid, inode (4 each).
pub const INET_DIAG_MSG_LEN: usize = 72;
/// Offset of `idiag_inode` in `struct inet_diag_msg`.
const INODE_AT: usize = 68;

/// Offsets in `struct tcp_info` (`linux/tcp.h`, stable since the fields were added: the struct
/// only ever grows at its end, and the kernel sends its own `sizeof`).
const TCPI_RTT_AT: usize = 68; // __u32 tcpi_rtt, µs (smoothed)
const TCPI_BYTES_ACKED_AT: usize = 120; // __u64 tcpi_bytes_acked (Linux 4.1)
const TCPI_BYTES_RECEIVED_AT: usize = 128; // __u64 tcpi_bytes_received (Linux 4.1)

/// `TCP_NEW_SYN_RECV` (`include/net/tcp_states.h`): request sockets, reported as SYN_RECV.
const TCP_NEW_SYN_RECV: u8 = 12;
/// `TCP_LISTEN` (`include/net/tcp_states.h`).
pub const TCP_LISTEN: u8 = 10;

/// Receive buffer: netlink caps a dump datagram at 32 KiB (`max_recvmsg_len` in
/// net/netlink/af_netlink.c), so one this size is never truncated.
const RECV_BUF: usize = 64 * 1024;
/// A truncated datagram grows the buffer, up to this.
const RECV_BUF_MAX: usize = 1 << 20;

/// Transport of a dumped socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The fields of `struct tcp_info` the probe uses; `None` when the kernel's struct is too short.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_rtt`: smoothed round-trip time, µs.
    pub rtt_us: Option<u32>,
    /// `tcpi_bytes_acked`: bytes sent and acknowledged by the peer (RFC 4898
    /// tcpEStatsAppHCThruOctetsAcked).
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`: bytes received (tcpEStatsAppHCThruOctetsReceived).
    pub bytes_received: Option<u64>,
}

/// One socket of the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockRecord {
    pub proto: Proto,
    /// `TCP_*` state number (`TCP_LISTEN` = 10, `TCP_ESTABLISHED` = 1, ...). UDP uses
    /// `TCP_ESTABLISHED` for connected sockets and `TCP_CLOSE` for the rest.
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub inode: u32,
    /// `idiag_cookie`: unique for the socket's lifetime, unlike inode numbers.
    pub cookie: u64,
    /// TCP only, from `INET_DIAG_INFO`.
    pub info: Option<TcpInfo>,
}

/// What the dump received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub datagrams: u32,
    pub bytes: usize,
    /// `SOCK_DIAG_BY_FAMILY` messages (sockets) seen, wanted or not.
    pub sockets: u32,
    /// Whether the UDP dumps answered (the `udp_diag` module may be missing).
    pub udp: bool,
}

/// Whether a datagram ended the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    More,
    Done,
}

struct Request {
    bytes: Vec<u8>,
    proto: Proto,
}

/// The kept-open `NETLINK_SOCK_DIAG` socket and its buffers.
pub struct Dumper {
    sock: Option<Socket>,
    buf: Vec<u8>,
    requests: Vec<Request>,
    seq: u32,
    deadline: Duration,
    /// Cleared once a UDP dump fails with a kernel error: not asked again.
    udp: bool,
}

impl std::fmt::Debug for Dumper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dumper")
            .field("open", &self.sock.is_some())
            .field("seq", &self.seq)
            .field("udp", &self.udp)
            .finish_non_exhaustive()
    }
}

/// A dump request of every socket of one family and protocol (sock_diag(7), `inet_diag_req_v2`).
fn request(family: u8, protocol: u8) -> Vec<u8> {
    let (extensions, states) = if protocol == IPPROTO_TCP {
        // TIME_WAIT and request sockets have no inode (no process holds them): leaving them out
        // of the dump saves the kernel and us the work.
        let skip = (1u32 << TCP_TIME_WAIT) | (1 << TCP_SYN_RECV) | (1 << TCP_NEW_SYN_RECV);
        (ExtensionFlags::INFO, !skip)
    } else {
        (ExtensionFlags::empty(), u32::MAX)
    };
    request_of(family, protocol, extensions, states)
}

/// A dump request of the sockets of one family and protocol in `states` (a bit per `TCP_*`).
fn request_of(family: u8, protocol: u8, extensions: ExtensionFlags, states: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions,
            states: StateFlags::from_bits_retain(states),
            socket_id,
        })
        .into(),
    );
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    bytes
}

impl Dumper {
    /// Builds the requests; the socket is opened by the first dump.
    #[must_use]
    pub fn new() -> Self {
        let requests = [
            (AF_INET, IPPROTO_TCP, Proto::Tcp),
            (AF_INET6, IPPROTO_TCP, Proto::Tcp),
            (AF_INET, IPPROTO_UDP, Proto::Udp),
            (AF_INET6, IPPROTO_UDP, Proto::Udp),
        ]
        .into_iter()
        .map(|(family, protocol, proto)| Request {
            bytes: request(family, protocol),
            proto,
        })
        .collect();
        Self {
            sock: None,
            buf: vec![0; RECV_BUF],
            requests,
            seq: 0,
            deadline: Duration::from_millis(500),
            udp: true,
        }
    }

    /// A dumper of listening TCP sockets only (IPv4 and IPv6, no `tcp_info`): the kernel walks
    /// its listener tables alone, whatever else the host has open.
    #[must_use]
    pub fn listeners() -> Self {
        let requests = [AF_INET, AF_INET6]
            .into_iter()
            .map(|family| Request {
                bytes: request_of(
                    family,
                    IPPROTO_TCP,
                    ExtensionFlags::empty(),
                    1 << TCP_LISTEN,
                ),
                proto: Proto::Tcp,
            })
            .collect();
        Self {
            requests,
            ..Self::new()
        }
    }

    /// Longest a whole dump (all four requests) may take before it is abandoned.
    pub fn set_deadline(&mut self, d: Duration) {
        self.deadline = d;
    }

    fn socket(&mut self) -> Result<&Socket, NetError> {
        if self.sock.is_none() {
            let s = Socket::new(NETLINK_SOCK_DIAG).map_err(NetError::Io)?;
            // Connecting to the kernel (port 0) also binds a port (netlink(7)).
            s.connect(&netlink_sys::SocketAddr::new(0, 0))
                .map_err(NetError::Io)?;
            // Never block: a recv with nothing queued waits in poll(2) under the dump's deadline.
            s.set_non_blocking(true).map_err(NetError::Io)?;
            self.sock = Some(s);
        }
        self.sock
            .as_ref()
            .ok_or_else(|| NetError::Io(io::Error::other("no socket")))
    }

    /// Runs the dumps, calling `visit` for every socket whose inode `want`s.
    pub fn dump(
        &mut self,
        mut want: impl FnMut(u32) -> bool,
        mut visit: impl FnMut(&SockRecord),
    ) -> Result<DumpStats, NetError> {
        self.dump_socks(|raw| {
            if want(raw.inode()) {
                if let Some(rec) = raw.record() {
                    visit(&rec);
                }
            }
        })
    }

    /// Runs the dumps, handing every socket to `visit` unparsed but for its inode.
    pub fn dump_socks(
        &mut self,
        mut visit: impl FnMut(RawSock<'_>),
    ) -> Result<DumpStats, NetError> {
        self.run(|buf, seq, proto, stats| parse_datagram(buf, seq, proto, stats, &mut visit))
    }

    /// The floor: the same requests and receives, walking only the netlink headers to find the
    /// end of each dump; nothing is parsed or attributed.
    pub fn dump_raw(&mut self) -> Result<DumpStats, NetError> {
        self.dump_datagrams(|_| {})
    }

    /// The floor's walk, handing each datagram to `f` as received (to compare parsers).
    pub fn dump_datagrams(&mut self, mut f: impl FnMut(&[u8])) -> Result<DumpStats, NetError> {
        self.run(|buf, seq, _, stats| {
            f(buf);
            walk_headers(buf, seq, stats)
        })
    }

    fn run(
        &mut self,
        mut each: impl FnMut(&[u8], u32, Proto, &mut DumpStats) -> Result<Step, NetError>,
    ) -> Result<DumpStats, NetError> {
        let end = Instant::now() + self.deadline;
        let mut stats = DumpStats {
            udp: self.udp,
            ..DumpStats::default()
        };
        for i in 0..self.requests.len() {
            let proto = self.requests[i].proto;
            if proto == Proto::Udp && !self.udp {
                continue;
            }
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            match self.one(i, seq, end, &mut stats, &mut each) {
                Ok(()) => {}
                // The dump ended with an error message: the socket is idle and reusable. Without
                // the udp_diag module the kernel answers ENOENT; TCP alone is still worth having.
                Err(NetError::Kernel(libc::ENOENT)) if proto == Proto::Udp => {
                    self.udp = false;
                    stats.udp = false;
                }
                Err(e) => {
                    if !matches!(e, NetError::Kernel(_)) {
                        // A dump may still be running in the kernel: a fresh socket next time,
                        // rather than draining or misreading this one's leftovers.
                        self.sock = None;
                    }
                    return Err(e);
                }
            }
        }
        Ok(stats)
    }

    fn one(
        &mut self,
        i: usize,
        seq: u32,
        end: Instant,
        stats: &mut DumpStats,
        each: &mut impl FnMut(&[u8], u32, Proto, &mut DumpStats) -> Result<Step, NetError>,
    ) -> Result<(), NetError> {
        let proto = self.requests[i].proto;
        self.requests[i].bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.socket()?;
        let (Some(sock), req) = (&self.sock, &self.requests[i].bytes) else {
            return Err(NetError::Io(io::Error::other("no socket")));
        };
        sock.send(req, 0).map_err(NetError::Io)?;
        loop {
            let mut slice = &mut self.buf[..];
            match sock.recv(&mut slice, libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    let grown = (self.buf.len() * 2).min(RECV_BUF_MAX);
                    self.buf.resize(grown, 0);
                    return Err(NetError::Truncated(n));
                }
                Ok(0) => return Err(NetError::Malformed("empty datagram")),
                Ok(n) => {
                    stats.datagrams += 1;
                    stats.bytes += n;
                    if each(&self.buf[..n], seq, proto, stats)? == Step::Done {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(sock, end)?,
                Err(e) => return Err(NetError::Io(e)),
            }
        }
    }
}

impl Default for Dumper {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits in poll(2) until the socket is readable or `end` passes.
fn wait_readable(sock: &Socket, end: Instant) -> Result<(), NetError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let left = end.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(NetError::Timeout);
    }
    let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) => Err(NetError::Timeout),
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(NetError::Io(e.into())),
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

/// The error number of an `NLMSG_ERROR` or `NLMSG_DONE` payload (a negative errno, or 0).
fn errno_of(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i32::from_ne_bytes)
}

/// Walks the netlink messages of one datagram: each `SOCK_DIAG_BY_FAMILY` message of our
/// sequence number is given to `visit`. Messages of another
/// sequence number (leftovers) are skipped. Never panics: a message whose length does not fit
/// the datagram ends the walk with [`NetError::Malformed`].
pub fn parse_datagram(
    buf: &[u8],
    seq: u32,
    proto: Proto,
    stats: &mut DumpStats,
    visit: &mut impl FnMut(RawSock<'_>),
) -> Result<Step, NetError> {
    let mut off = 0;
    while off < buf.len() {
        let msg = NetlinkBuffer::new_checked(&buf[off..])
            .map_err(|_| NetError::Malformed("netlink message header"))?;
        let len = msg.length() as usize;
        if msg.sequence_number() == seq {
            match msg.message_type() {
                SOCK_DIAG_BY_FAMILY => {
                    stats.sockets += 1;
                    visit(RawSock::new(msg.payload(), proto)?);
                }
                NLMSG_DONE => {
                    return match errno_of(msg.payload()) {
                        0 => Ok(Step::Done),
                        e => Err(NetError::Kernel(-e)),
                    };
                }
                NLMSG_ERROR => match errno_of(msg.payload()) {
                    0 => {}
                    e => return Err(NetError::Kernel(-e)),
                },
                _ => {}
            }
        }
        // NLMSG_ALIGN; `len` is at least the 16-byte header (checked above), so this advances.
        off = off.saturating_add((len + 3) & !3);
    }
    Ok(Step::More)
}

/// The floor's walk: message headers only, to find `NLMSG_DONE` or an error.
fn walk_headers(buf: &[u8], seq: u32, stats: &mut DumpStats) -> Result<Step, NetError> {
    let mut off = 0;
    while off < buf.len() {
        let msg = NetlinkBuffer::new_checked(&buf[off..])
            .map_err(|_| NetError::Malformed("netlink message header"))?;
        if msg.sequence_number() == seq {
            match msg.message_type() {
                SOCK_DIAG_BY_FAMILY => stats.sockets += 1,
                NLMSG_DONE => return Ok(Step::Done),
                NLMSG_ERROR if errno_of(msg.payload()) != 0 => {
                    return Err(NetError::Kernel(-errno_of(msg.payload())))
                }
                _ => {}
            }
        }
        off = off.saturating_add((msg.length() as usize + 3) & !3);
    }
    Ok(Step::More)
}

/// One `struct inet_diag_msg` and its attributes, parsed on demand: a socket nobody holds
/// costs only the read of its inode.
#[derive(Debug, Clone, Copy)]
pub struct RawSock<'a> {
    /// At least [`INET_DIAG_MSG_LEN`] bytes.
    payload: &'a [u8],
    proto: Proto,
    inode: u32,
}

impl<'a> RawSock<'a> {
    /// Checks that `payload` holds a whole `inet_diag_msg`.
    pub fn new(payload: &'a [u8], proto: Proto) -> Result<Self, NetError> {
        let inode =
            u32_at(payload, INODE_AT).ok_or(NetError::Malformed("inet_diag_msg too short"))?;
        Ok(Self {
            payload,
            proto,
            inode,
        })
    }

    #[must_use]
    pub fn inode(&self) -> u32 {
        self.inode
    }

    /// The socket's addresses, state, cookie and (TCP) `tcp_info` fields; `None` for an address
    /// family other than IPv4 and IPv6. A malformed attribute ends the attributes read, so the
    /// socket is kept without its `tcp_info`.
    #[must_use]
    pub fn record(&self) -> Option<SockRecord> {
        let head = InetResponseHeader::parse(self.payload.get(..INET_DIAG_MSG_LEN)?).ok()?;
        let id = &head.socket_id;
        let mut info = None;
        if self.proto == Proto::Tcp {
            for nla in NlasIterator::new(&self.payload[INET_DIAG_MSG_LEN..]) {
                let Ok(nla) = nla else { break };
                if nla.kind() & NLA_TYPE_MASK == INET_DIAG_INFO {
                    info = Some(parse_tcp_info(nla.value()));
                }
            }
        }
        Some(SockRecord {
            proto: self.proto,
            state: head.state,
            local: SocketAddr::new(id.source_address, id.source_port),
            remote: SocketAddr::new(id.destination_address, id.destination_port),
            inode: self.inode,
            cookie: u64::from_ne_bytes(id.cookie),
            info,
        })
    }
}

/// Reads the fields the probe uses out of a `struct tcp_info` of any length.
#[must_use]
pub fn parse_tcp_info(b: &[u8]) -> TcpInfo {
    TcpInfo {
        rtt_us: u32_at(b, TCPI_RTT_AT),
        bytes_acked: u64_at(b, TCPI_BYTES_ACKED_AT),
        bytes_received: u64_at(b, TCPI_BYTES_RECEIVED_AT),
    }
}

/// True for the unspecified address (`0.0.0.0`, `::`), which a dump reports as the remote of a
/// socket that has none.
#[must_use]
pub fn is_unspecified(a: &SocketAddr) -> bool {
    a.port() == 0
        && match a.ip() {
            IpAddr::V4(v) => v.is_unspecified(),
            IpAddr::V6(v) => v.is_unspecified(),
        }
}
