//! Blocking send and receive of one packet over a raw `SOCK_SEQPACKET` fd.
//!
//! For the SDK's client (a plain thread) and for tests. The supervisor uses its own async
//! wrapper over the same [`encode`](super::encode) and [`decode_child`](super::decode_child).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{encode, Message, MAX_MESSAGE_LEN};

/// Encodes `msg` and sends it as one packet. No allocation: the encoding goes through a
/// [`MAX_MESSAGE_LEN`] buffer on the stack.
///
/// # Errors
/// `InvalidData` (wrapping a [`ProtoError`](super::ProtoError)) if `msg` breaks a limit;
/// otherwise as [`send_packet`].
pub fn send(fd: BorrowedFd<'_>, msg: &impl Message) -> io::Result<()> {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let packet = encode(msg, &mut buf)?;
    send_packet(fd, packet)
}

/// Sends `packet` as it is, in one `send(2)` with `MSG_NOSIGNAL`: a peer that closed its end
/// yields `EPIPE`, never `SIGPIPE`. Retries on `EINTR`. For [`send`], and for tests and hostile
/// workers that need to put arbitrary bytes on the wire.
///
/// # Errors
/// What `send(2)` reports: `EPIPE` when the peer is gone, `EAGAIN` on a full non-blocking
/// socket, `EMSGSIZE` when the packet exceeds the socket's send buffer.
pub fn send_packet(fd: BorrowedFd<'_>, packet: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `packet` is a live slice for the whole call and the kernel only reads
        // `packet.len()` bytes from it; `fd` is borrowed, so it stays open during the call.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(n) {
            // A SOCK_SEQPACKET send is atomic: all of it or an error.
            Ok(sent) if sent == packet.len() => return Ok(()),
            Ok(sent) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {sent} of a {}-byte packet", packet.len()),
                ))
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Receives one packet into `buf` and returns its length; 0 means the peer closed its end.
///
/// A packet longer than `buf` is an error, never silently cut: the kernel reports it with
/// `MSG_TRUNC` and has already discarded it, so the channel stays usable. Retries on `EINTR`.
/// Ancillary data is not read; file descriptors a peer might attach are closed by the kernel.
///
/// # Errors
/// `InvalidData` for a packet longer than `buf`; otherwise what `recvmsg(2)` reports (`EAGAIN`
/// on an empty non-blocking socket or after `SO_RCVTIMEO`).
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid `msghdr` (null name and control, zero lengths); zeroing
        // also covers the private padding fields some targets have, which a literal cannot.
        let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
        hdr.msg_iov = &raw mut iov;
        hdr.msg_iovlen = 1;
        // MSG_TRUNC makes the call return the packet's real length even when it did not fit
        // (unix(7), since Linux 3.4); `msg_flags` carries MSG_TRUNC in any case.
        // SAFETY: `hdr` points at one iovec that describes `buf`, both live for the call; the
        // kernel writes at most `buf.len()` bytes there and nothing else, as there is no name or
        // control buffer. `fd` is borrowed, so it stays open during the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut hdr, libc::MSG_TRUNC) };
        let Ok(len) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        };
        if len > buf.len() || hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "packet of {len} bytes does not fit a buffer of {} bytes",
                    buf.len()
                ),
            ));
        }
        return Ok(len);
    }
}

#[cfg(test)]
mod tests;
