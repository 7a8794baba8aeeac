//! The supervisor's end of a worker's duplex channel: a `SOCK_SEQPACKET` socketpair, one message
//! per packet (the format is child-sdk's `proto`).
//!
//! Nothing here ever blocks on the child: receiving is driven by readiness, sending is
//! non-blocking and a full socket is reported, not waited on. Each packet arrives with the
//! kernel-attested credentials of the process that sent it (`SO_PASSCRED`, unix(7)): a
//! `socketpair`'s `SO_PEERCRED` would only name the supervisor, which created both ends.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    recvmsg, send, setsockopt, socketpair, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixCredentials,
};
use tokio::io::unix::AsyncFd;

/// Largest packet the wire format allows.
pub const MAX_PACKET: usize = child_sdk::proto::MAX_PACKET;

/// Receive buffer: room for the longest valid message of this protocol version (a few KiB), not
/// for the 64 KiB wire limit. A longer packet cannot decode anyway; the kernel reports it cut
/// (`MSG_TRUNC`) and it is counted as oversized. Small buffers keep the supervisor small: one
/// per worker.
const RECV_BUF: usize = child_sdk::proto::MAX_MESSAGE_LEN.next_power_of_two();

/// Creates the pair: (the supervisor's end, the worker's end). Both are close-on-exec; the
/// worker's end is moved to fd 3 in the child just before exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    setsockopt(&ours, sockopt::PassCred, &true)?;
    // The child's end starts blocking (the SDK is synchronous); only ours is non-blocking.
    let flags = nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((ours, theirs))
}

/// One received packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A whole packet and the pid the kernel says sent it (`None` if no credentials came along).
    Data {
        bytes: &'a [u8],
        sender: Option<i32>,
    },
    /// A packet longer than any valid message: dropped.
    Oversized,
    /// The worker's end is closed (every process holding it has exited or closed it).
    Closed,
}

/// Our end of a worker's channel.
#[derive(Debug)]
pub struct Channel {
    fd: AsyncFd<OwnedFd>,
    /// Allocated at the first packet: most workers never speak the protocol, and an unused
    /// buffer per worker was 8 KiB of heap each.
    buf: Vec<u8>,
}

impl Channel {
    /// Wraps our end (from [`pair`]). Needs a tokio runtime.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: an `OwnedFd` is open for as long as it is owned and `as_raw_fd` always returns
        // the same number, which is what `register` requires of its inner value.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            fd,
            buf: Vec::new(),
        })
    }

    /// Waits for the next packet.
    pub async fn recv(&mut self) -> io::Result<Packet<'_>> {
        loop {
            let mut guard = self.fd.readable().await?;
            if self.buf.is_empty() {
                self.buf = vec![0; RECV_BUF];
            }
            let buf = &mut self.buf;
            let res = guard.try_io(|inner| {
                let mut iov = [IoSliceMut::new(buf)];
                let mut cmsg = nix::cmsg_space!(UnixCredentials);
                let msg = recvmsg::<()>(
                    inner.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let sender = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                        _ => None,
                    })
                });
                Ok((msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), sender))
            });
            match res {
                Ok(Ok((_, true, _))) => return Ok(Packet::Oversized),
                // A zero-length read on SEQPACKET is end of file (an empty packet cannot be told
                // apart, and postcard never encodes a message as zero bytes).
                Ok(Ok((0, false, _))) => return Ok(Packet::Closed),
                Ok(Ok((n, false, sender))) => {
                    return Ok(Packet::Data {
                        bytes: &self.buf[..n],
                        sender,
                    })
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    /// Sends one packet without waiting: a worker that does not read its channel gets
    /// `WouldBlock`, never a stalled supervisor.
    pub fn try_send(&self, bytes: &[u8]) -> io::Result<()> {
        match send(
            self.fd.get_ref().as_raw_fd(),
            bytes,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short send on a seqpacket socket",
            )),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn packets_carry_the_senders_pid() {
        rt().block_on(async {
            let (ours, theirs) = pair().expect("pair");
            let mut ch = Channel::new(ours).expect("channel");
            nix::sys::socket::send(theirs.as_raw_fd(), b"hello", MsgFlags::empty()).expect("send");
            let me = i32::try_from(std::process::id()).expect("pid");
            assert_eq!(
                ch.recv().await.expect("recv"),
                Packet::Data {
                    bytes: b"hello",
                    sender: Some(me)
                }
            );
            ch.try_send(b"back").expect("send back");
            let mut buf = [0u8; 16];
            let n = nix::sys::socket::recv(theirs.as_raw_fd(), &mut buf, MsgFlags::empty())
                .expect("recv back");
            assert_eq!(&buf[..n], b"back");
            drop(theirs);
            assert_eq!(ch.recv().await.expect("eof"), Packet::Closed);
            // Sending to a closed peer is an error, not a SIGPIPE.
            assert!(ch.try_send(b"x").is_err());
        });
    }

    #[test]
    fn oversized_packets_are_reported_not_cut() {
        rt().block_on(async {
            let (ours, theirs) = pair().expect("pair");
            let mut ch = Channel::new(ours).expect("channel");
            let big = vec![7u8; MAX_PACKET + 1];
            nix::sys::socket::send(theirs.as_raw_fd(), &big, MsgFlags::empty()).expect("send big");
            nix::sys::socket::send(theirs.as_raw_fd(), b"next", MsgFlags::empty()).expect("send");
            assert_eq!(ch.recv().await.expect("recv"), Packet::Oversized);
            assert!(matches!(
                ch.recv().await.expect("recv"),
                Packet::Data { bytes: b"next", .. }
            ));
        });
    }

    #[test]
    fn a_child_that_never_reads_cannot_block_us() {
        rt().block_on(async {
            let (ours, _theirs) = pair().expect("pair");
            let ch = Channel::new(ours).expect("channel");
            let packet = vec![1u8; 1024];
            let mut sent = 0;
            let err = loop {
                match ch.try_send(&packet) {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
                assert!(sent < 1_000_000, "the socket buffer never filled");
            };
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        });
    }
}
