//! send and recv over a real `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use super::super::tests::{child_samples, supervisor_samples};
use super::super::{decode_child, decode_supervisor, ChildMsg, SupervisorMsg, MAX_PACKET};
use super::{recv, send, send_packet};

/// Two connected ends: (supervisor's, child's).
fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    pair(libc::SOCK_SEQPACKET)
}

#[test]
fn every_message_crosses_in_one_packet_each_way() {
    let (sup, child) = seqpacket_pair();
    let mut buf = vec![0u8; MAX_PACKET];
    for m in child_samples() {
        send(child.as_fd(), &m).expect("send");
        let n = recv(sup.as_fd(), &mut buf).expect("recv");
        assert_eq!(decode_child(&buf[..n]), Ok(m));
    }
    for m in supervisor_samples() {
        send(sup.as_fd(), &m).expect("send");
        let n = recv(child.as_fd(), &mut buf).expect("recv");
        assert_eq!(decode_supervisor(&buf[..n]), Ok(m));
    }
}

#[test]
fn packets_keep_their_boundaries() {
    let (sup, child) = seqpacket_pair();
    let sent = [
        ChildMsg::Ready,
        ChildMsg::Status { text: "one".into() },
        ChildMsg::Pong { seq: 7 },
    ];
    for m in &sent {
        send(child.as_fd(), m).expect("send");
    }
    let mut buf = [0u8; 64];
    for m in sent {
        let n = recv(sup.as_fd(), &mut buf).expect("recv");
        assert_eq!(decode_child(&buf[..n]), Ok(m));
    }
}

#[test]
fn a_packet_longer_than_the_buffer_is_an_error_not_a_cut() {
    let (sup, child) = seqpacket_pair();
    send_packet(child.as_fd(), &[0x02; 100]).expect("send");
    let mut small = [0u8; 10];
    let e = recv(sup.as_fd(), &mut small).expect_err("a 100-byte packet in 10 bytes");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("100 bytes"), "{e}");
    // The long packet is gone; the next one arrives whole.
    send(child.as_fd(), &ChildMsg::Ready).expect("send");
    let n = recv(sup.as_fd(), &mut small).expect("recv");
    assert_eq!(decode_child(&small[..n]), Ok(ChildMsg::Ready));

    // A packet past MAX_PACKET never reaches a MAX_PACKET buffer's decoder.
    send_packet(child.as_fd(), &vec![0u8; MAX_PACKET + 1]).expect("send");
    let mut buf = vec![0u8; MAX_PACKET];
    let e = recv(sup.as_fd(), &mut buf).expect_err("oversized");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn send_refuses_a_message_over_the_limits() {
    let (_sup, child) = seqpacket_pair();
    let long = ChildMsg::Status {
        text: "x".repeat(super::super::MAX_TEXT + 1),
    };
    let e = send(child.as_fd(), &long).expect_err("too long");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn recv_returns_zero_once_the_peer_is_gone() {
    let (sup, child) = seqpacket_pair();
    send(sup.as_fd(), &SupervisorMsg::Ping { seq: 1 }).expect("send");
    drop(sup);
    let mut buf = [0u8; 64];
    // What was sent before the close is still delivered, then end of stream.
    let n = recv(child.as_fd(), &mut buf).expect("recv");
    assert_eq!(
        decode_supervisor(&buf[..n]),
        Ok(SupervisorMsg::Ping { seq: 1 })
    );
    assert_eq!(recv(child.as_fd(), &mut buf).expect("recv"), 0);
}

/// Runs `f` with SIGPIPE blocked in this thread and says whether it raised one. The test
/// harness ignores SIGPIPE, but a blocked signal is queued even when ignored, so it shows up as
/// pending; it is then consumed before the mask is restored.
fn raises_sigpipe<R>(f: impl FnOnce() -> R) -> (R, bool) {
    // SAFETY: the sigsets are plain data initialised by sigemptyset/sigaddset before use; the
    // mask change is for this thread only and is undone below.
    unsafe {
        let mut pipe: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&raw mut pipe);
        libc::sigaddset(&raw mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = mem::zeroed();
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &raw const pipe, &raw mut old),
            0
        );
        let r = f();
        let mut pending: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&raw mut pending);
        assert_eq!(libc::sigpending(&raw mut pending), 0);
        let raised = libc::sigismember(&raw const pending, libc::SIGPIPE) == 1;
        if raised {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&raw const pipe, ptr::null_mut(), &raw const now);
        }
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, ptr::null_mut()),
            0
        );
        (r, raised)
    }
}

fn pair(kind: libc::c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors the kernel writes on success.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: on success both descriptors are new, open, and owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn send_to_a_closed_peer_is_epipe_without_sigpipe() {
    let (sup, child) = seqpacket_pair();
    drop(sup);
    let (r, raised) = raises_sigpipe(|| send(child.as_fd(), &ChildMsg::Goodbye));
    assert_eq!(r.expect_err("peer gone").raw_os_error(), Some(libc::EPIPE));
    assert!(!raised, "send raised SIGPIPE");

    // Linux raises no SIGPIPE for SOCK_SEQPACKET at all, so MSG_NOSIGNAL shows only on a
    // stream socket, where a plain send(2) does raise it (the control: the check works).
    let (a, b) = pair(libc::SOCK_STREAM);
    drop(a);
    let (r, raised) = raises_sigpipe(|| send_packet(b.as_fd(), &[0x01]));
    assert_eq!(r.expect_err("peer gone").raw_os_error(), Some(libc::EPIPE));
    assert!(!raised, "send_packet raised SIGPIPE: no MSG_NOSIGNAL");
    let (n, raised) = raises_sigpipe(|| {
        // SAFETY: sends one byte from a live array on a descriptor this test owns.
        unsafe { libc::send(b.as_raw_fd(), [0u8].as_ptr().cast(), 1, 0) }
    });
    assert_eq!(n, -1);
    assert!(raised, "the control send(2) raised no SIGPIPE");
}
