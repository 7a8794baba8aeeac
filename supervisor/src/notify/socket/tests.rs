use super::*;

use std::os::fd::AsFd;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends `text` with `fds` attached.
fn send_fds(client: &std::os::unix::net::UnixDatagram, path: &Path, text: &[u8], fds: &[RawFd]) {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let addr = UnixAddr::new(path).expect("addr");
    sendmsg(
        client.as_raw_fd(),
        &[io::IoSlice::new(text)],
        &cmsg,
        MsgFlags::empty(),
        Some(&addr),
    )
    .expect("sendmsg");
}

/// A pipe whose read end tells, without waiting, whether every write end is closed.
fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    nix::fcntl::fcntl(
        &r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("nonblocking");
    (r, w)
}

fn all_closed(r: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    nix::unistd::read(r.as_fd(), &mut b) == Ok(0)
}

#[test]
fn datagrams_carry_the_sender_and_passed_fds_are_closed() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut socks = Sockets::new(dir.path());
        let path = socks.path_for(euid(), 0).expect("bound");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(format!("supervise-notify.{}.sock", std::process::id()).as_str())
        );
        // The same socket for the same user.
        assert_eq!(socks.path_for(euid(), 0).as_deref(), Some(&*path));
        let mode = std::fs::metadata(&path).expect("meta");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
        client.send_to(b"READY=1", &path).expect("send");
        let me = i32::try_from(std::process::id()).expect("pid");
        assert_eq!(
            socks.recv().await,
            vec![Datagram::Message {
                pid: me,
                uid: euid(),
                bytes: b"READY=1".to_vec(),
                fds_cut: false,
            }]
        );
        // A barrier: a pipe's write end passed along; once we close it the reader sees EOF.
        let (r, w) = pipe();
        send_fds(&client, &path, b"BARRIER=1", &[w.as_raw_fd()]);
        drop(w);
        let got = socks.recv().await;
        assert!(
            matches!(got.as_slice(), [Datagram::Message { fds_cut: false, .. }]),
            "{got:?}"
        );
        assert!(all_closed(&r), "the barrier's write end was closed");
        // As many fds as the kernel lets one datagram carry: at most MAX_FDS arrive, the kernel
        // closes the rest, and every copy that arrived is closed too.
        let (r, w) = pipe();
        send_fds(&client, &path, b"FDSTORE=1", &[w.as_raw_fd(); 253]);
        drop(w);
        let got = socks.recv().await;
        assert!(
            matches!(got.as_slice(), [Datagram::Message { fds_cut: true, .. }]),
            "{got:?}"
        );
        assert!(all_closed(&r), "no copy left open");
        // Too long: dropped, and the next one still arrives.
        client
            .send_to(&vec![b'x'; MAX_DATAGRAM + 10], &path)
            .expect("send");
        client.send_to(b"STATUS=after", &path).expect("send");
        let got = socks.recv().await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Datagram::Dropped(Dropped::TooLong));
        assert!(matches!(&got[1], Datagram::Message { bytes, .. } if bytes == b"STATUS=after"));
    });
}

#[test]
fn a_flood_is_read_in_batches_and_no_socket_starves_another() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut socks = Sockets::new(dir.path());
        let a = socks.path_for(euid(), 0).expect("bound");
        // A second socket, as for another user (we may not be root: keep our own uid, and bind
        // it by hand under another name).
        let b_path = dir.path().join("b.sock");
        let b = NotifySocket::bind(&b_path, euid(), 0).expect("bind b");
        socks.list.push(b);
        let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
        client.set_nonblocking(true).expect("nonblocking");
        // Fill `a` as far as the kernel queues, then one datagram on `b`.
        let mut queued = 0;
        while client.send_to(b"WATCHDOG=1", &a).is_ok() {
            queued += 1;
            assert!(queued < 100_000, "the queue never filled");
        }
        client.send_to(b"READY=1", &b_path).expect("send b");
        let first = socks.recv().await;
        assert!(!first.is_empty() && first.len() <= BATCH);
        // The next turn looks at `b` first, whatever `a` still holds.
        let second = socks.recv().await;
        assert!(
            matches!(second.as_slice(), [Datagram::Message { bytes, .. }] if bytes == b"READY=1"),
            "{second:?}"
        );
    });
}

#[test]
fn control_data_is_walked_even_when_cut() {
    // A control buffer with room for the credentials and one fd: the kernel installs one of
    // the three, cuts the rest, and that one is closed.
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().expect("pair");
    setsockopt(&ours, sockopt::PassCred, &true).expect("passcred");
    let (r, w) = pipe();
    let fds = [w.as_raw_fd(); 3];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        theirs.as_raw_fd(),
        &[io::IoSlice::new(b"FDSTORE=1")],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    drop(w);
    let mut buf = vec![0; MAX_DATAGRAM];
    // SAFETY: size computations.
    let room = unsafe {
        libc::CMSG_SPACE(u32::try_from(std::mem::size_of::<libc::ucred>()).expect("small")) as usize
            + libc::CMSG_SPACE(4) as usize
    };
    let mut cmsg = vec![0; room];
    let got = receive(ours.as_raw_fd(), &mut buf, &mut cmsg).expect("receive");
    assert!(
        matches!(got, Some(Datagram::Message { fds_cut: true, .. })),
        "{got:?}"
    );
    assert!(all_closed(&r), "the one fd that arrived was closed");
    assert_eq!(
        receive(ours.as_raw_fd(), &mut buf, &mut cmsg).expect("receive"),
        None
    );
}

#[test]
fn file_names() {
    assert_eq!(file_name(7, 0, 0), "supervise-notify.7.sock");
    assert_eq!(file_name(7, 1000, 0), "supervise-notify.7.u1000.sock");
    assert_eq!(file_name(7, 1000, 1000), "supervise-notify.7.sock");
}
