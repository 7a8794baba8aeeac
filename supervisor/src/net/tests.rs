//! The probe against real sockets of this test process and its children, and the parser
//! against cut and garbage netlink buffers.
//!
//! Tests of this binary run in parallel and some open sockets of their own, so process-wide
//! counts are asserted as lower bounds; exact figures are asserted on sockets picked out by
//! inode, or held only by a child no other test knows about.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::diag::{self, parse_datagram, parse_tcp_info, DumpStats, Dumper, Step};
use super::inodes::parse_socket_link;
use super::*;

pub(super) const DEADLINE: Duration = Duration::from_secs(10);

pub(super) fn me() -> i32 {
    i32::try_from(std::process::id()).expect("pid fits")
}

/// The socket inode of a socket fd (its st_ino, the number in `socket:[N]`).
pub(super) fn inode_of(fd: &impl AsRawFd) -> u32 {
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("stat fd");
    u32::try_from(meta.ino()).expect("socket inode fits u32")
}

/// A connected loopback pair and its listener.
pub(super) fn pair() -> (TcpListener, TcpStream, TcpStream) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (l, c, s)
}

/// Sends `n` bytes from `a` and reads them all at `b`.
pub(super) fn transfer(a: &mut TcpStream, b: &mut TcpStream, n: usize) {
    let data = vec![7u8; n];
    let mut got = vec![0u8; n];
    std::thread::scope(|s| {
        s.spawn(|| a.write_all(&data).expect("write"));
        b.read_exact(&mut got).expect("read");
    });
}

/// Dumps and returns the records of the given inodes.
fn records(d: &mut Dumper, inodes: &[u32]) -> Vec<SockRecord> {
    let mut v = Vec::new();
    d.dump(|i| inodes.contains(&i), |r| v.push(*r))
        .expect("dump");
    v
}

/// Polls `f` until it returns true or the deadline passes.
pub(super) fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn dump_reports_exact_bytes_and_addresses_of_a_pair() {
    let (l, mut c, mut s) = pair();
    transfer(&mut c, &mut s, 100_000);
    transfer(&mut s, &mut c, 30_000);
    let (ic, is, il) = (inode_of(&c), inode_of(&s), inode_of(&l));
    let mut d = Dumper::new();
    // bytes_acked lags the reads by an ACK's flight: poll.
    let mut last = Vec::new();
    let ok = eventually(|| {
        last = records(&mut d, &[ic, is, il]);
        let by = |ino| last.iter().find(|r| r.inode == ino).and_then(|r| r.info);
        // The active opener's SYN counts as one acknowledged byte (tcp_snd_una_update).
        matches!((by(ic), by(is)), (Some(a), Some(b))
            if matches!(a.bytes_acked, Some(100_000 | 100_001)) && a.bytes_received == Some(30_000)
            && b.bytes_acked == Some(30_000) && b.bytes_received == Some(100_000))
    });
    assert!(ok, "counters never settled: {last:#?}");
    let client = last.iter().find(|r| r.inode == ic).expect("client dumped");
    assert_eq!(client.proto, Proto::Tcp);
    assert_eq!(client.state, ESTABLISHED);
    assert_eq!(client.local, c.local_addr().expect("local"));
    assert_eq!(client.remote, l.local_addr().expect("listener"));
    assert!(client.info.and_then(|i| i.rtt_us).is_some_and(|r| r > 0));
    let listener = last
        .iter()
        .find(|r| r.inode == il)
        .expect("listener dumped");
    assert_eq!(listener.state, LISTEN);
    assert!(diag::is_unspecified(&listener.remote));
    assert_ne!(client.cookie, listener.cookie);
}

#[test]
fn dump_sees_udp_sockets() {
    let a = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let b = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    b.connect(a.local_addr().expect("addr")).expect("connect");
    let mut d = Dumper::new();
    let got = records(&mut d, &[inode_of(&a), inode_of(&b)]);
    let Some(con) = got.iter().find(|r| r.inode == inode_of(&b)) else {
        // Without the udp_diag module the kernel has no UDP dump: nothing to check.
        assert!(got.is_empty());
        return;
    };
    assert_eq!(con.proto, Proto::Udp);
    assert_eq!(con.remote, a.local_addr().expect("addr"));
    assert!(got.iter().any(|r| r.inode == inode_of(&a)));
}

/// A `sleep` holding a dup of `fd` at fd 3 (so only it and this process hold the socket).
pub(super) fn holder(fd: &impl AsRawFd) -> Child {
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new("sleep");
    cmd.arg("30").stdin(Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe; they only copy an fd this process owns to
    // fd 3 of the child and clear close-on-exec on the copy (dup2 onto itself would not).
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn sleep");
    // Until it has exec'd and its loader is done, the child holds other fds than stdio and fd 3
    // (copies of this test process's, the loader's own): a probe that looked then would see a
    // different fd table a moment later.
    let (comm, fds) = (
        format!("/proc/{}/comm", child.id()),
        format!("/proc/{}/fd", child.id()),
    );
    let table = || {
        let mut v: Vec<_> = std::fs::read_dir(&fds)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    assert!(
        eventually(|| {
            let before = table();
            std::thread::sleep(Duration::from_millis(100));
            std::fs::read_to_string(&comm).is_ok_and(|c| c == "sleep\n") && table() == before
        }),
        "sleep never settled"
    );
    child
}

pub(super) struct Reap(pub(super) Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_socket_shared_by_a_tree_counts_once_and_for_each_worker_holding_it() {
    let (_l, c, _s) = pair();
    let kids = Reap(vec![holder(&c), holder(&c)]);
    let pids: Vec<i32> = kids
        .0
        .iter()
        .map(|k| i32::try_from(k.id()).expect("pid"))
        .collect();
    let mut probe = NetProbe::new();
    let mut out = Vec::new();
    let peer = c.peer_addr().expect("peer");
    // The children hold the socket once they have exec'd: poll.
    let ok = eventually(|| {
        let workers = [
            ("tree", &pids[..]),
            ("first", &pids[..1]),
            ("second", &pids[1..]),
        ];
        probe.tick(&workers, &mut out).expect("tick");
        out.iter().all(|s| s.established == 1)
    });
    assert!(ok, "{out:#?}");
    for s in &out {
        assert_eq!((s.listening, s.other, s.udp), (0, 0, 0), "{s:#?}");
        assert_eq!(
            s.remotes,
            [Remote {
                proto: Proto::Tcp,
                addr: peer
            }]
        );
    }
}

#[test]
fn probe_attributes_this_process_and_rates_never_go_negative() {
    let (l, mut c, mut s) = pair();
    let idle = Reap(vec![Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn")]);
    let idle_pid = i32::try_from(idle.0[0].id()).expect("pid");
    let pids = [me()];
    let others = [idle_pid];
    let workers = [("me", &pids[..]), ("idle", &others[..])];
    let mut probe = NetProbe::new();
    let mut out = Vec::new();
    let first = probe.tick(&workers, &mut out).expect("tick");
    assert!(first.attributed >= 3 && first.rescans >= 2, "{first:?}");
    let (mine, idle_s) = (&out[0], &out[1]);
    assert!(
        mine.listen.contains(&l.local_addr().expect("addr")),
        "{mine:#?}"
    );
    assert!(mine.listening >= 1 && mine.established >= 2);
    assert!(mine.acked_per_sec.is_none(), "no rate on a first tick");
    // The client's connection to our own listener is outbound; the accepted end is inbound.
    let to_listener = Remote {
        proto: Proto::Tcp,
        addr: l.local_addr().expect("addr"),
    };
    assert!(mine.remotes.contains(&to_listener));
    let client_side = Remote {
        proto: Proto::Tcp,
        addr: c.local_addr().expect("addr"),
    };
    assert!(
        !mine.remotes.contains(&client_side),
        "inbound listed as outbound"
    );
    assert_eq!(*idle_s, NetSample::default());

    const N: u64 = 200_000;
    let (acked, received) = (out[0].acked_total, out[0].received_total);
    transfer(&mut c, &mut s, N as usize);
    // Both ends are ours: each total grows by N once the ACKs are in (other tests may add more).
    let mut fastest = 0.0f64;
    let ok = eventually(|| {
        probe.tick(&workers, &mut out).expect("tick");
        fastest = fastest.max(out[0].acked_per_sec.unwrap_or(0.0));
        out[0].acked_total >= acked + N && out[0].received_total >= received + N
    });
    assert!(ok, "{:#?}", out[0]);
    assert!(fastest > 0.0, "the transfer showed in a rate");
    let total = out[0].acked_total;
    drop((c, s));
    probe.tick(&workers, &mut out).expect("tick");
    assert!(out[0].acked_total >= total, "totals never shrink");
    assert!(out[0].acked_per_sec.is_some_and(|r| r >= 0.0));
    assert!(out[0].received_per_sec.is_some_and(|r| r >= 0.0));
    assert_eq!(out[1].established, 0);
}

/// Closes `s` with a reset (SO_LINGER with a zero timeout), so its peer goes to CLOSE at once.
pub(super) fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a pointer to a live `linger` and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            u32::try_from(std::mem::size_of::<libc::linger>()).expect("size"),
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

#[test]
fn a_socket_leaving_the_dump_makes_its_holder_rescan() {
    let (_l, c, s) = pair();
    let kid = Reap(vec![holder(&c)]);
    drop(c);
    let pids = [i32::try_from(kid.0[0].id()).expect("pid")];
    let workers = [("kid", &pids[..])];
    let mut probe = NetProbe::new();
    probe.set_rescan_every(1000);
    let mut out = Vec::new();
    assert!(eventually(|| {
        probe.tick(&workers, &mut out).expect("tick");
        out[0].established == 1
    }));
    // Same fds, same sockets: the cache answers.
    let quiet = probe.tick(&workers, &mut out).expect("tick");
    assert_eq!(quiet.rescans, 0);
    // Reset by its peer, the child's socket goes to CLOSE, which is not dumped, while the child
    // still holds the fd: the count is unchanged, yet the child is re-read on the next tick.
    reset(s);
    assert!(eventually(|| {
        probe.tick(&workers, &mut out).expect("tick");
        out[0].established == 0
    }));
    assert_eq!(probe.tick(&workers, &mut out).expect("tick").rescans, 1);
    assert_eq!(probe.tick(&workers, &mut out).expect("tick").rescans, 0);
}

#[test]
fn gone_processes_are_skipped() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let gone = i32::try_from(child.id()).expect("pid");
    child.wait().expect("wait");
    let mut probe = NetProbe::new();
    let mut out = vec![NetSample {
        established: 9,
        ..NetSample::default()
    }];
    let pids = [gone, i32::MAX];
    let stats = probe.tick(&[("gone", &pids[..])], &mut out).expect("tick");
    assert_eq!(out, [NetSample::default()]);
    assert_eq!((stats.attributed, stats.rescans), (0, 0));
}

#[test]
fn socket_links_parse_strictly() {
    assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
    assert_eq!(parse_socket_link(b"socket:[4294967295]"), Some(u32::MAX));
    for bad in [
        &b"socket:[4294967296]"[..],
        b"socket:[]",
        b"socket:[12a]",
        b"socket:[-1]",
        b"socket:[12",
        b"pipe:[123]",
        b"/tmp/socket:[1]",
        b"anon_inode:[eventfd]",
        b"",
    ] {
        assert_eq!(
            parse_socket_link(bad),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn tcp_info_fields_need_their_bytes() {
    let mut full = vec![0u8; 280];
    full[68..72].copy_from_slice(&1234u32.to_ne_bytes());
    full[120..128].copy_from_slice(&5u64.to_ne_bytes());
    full[128..136].copy_from_slice(&6u64.to_ne_bytes());
    for len in 0..=full.len() {
        let i = parse_tcp_info(&full[..len]);
        assert_eq!(i.rtt_us, (len >= 72).then_some(1234), "len {len}");
        assert_eq!(i.bytes_acked, (len >= 128).then_some(5), "len {len}");
        assert_eq!(i.bytes_received, (len >= 136).then_some(6), "len {len}");
    }
}

/// One netlink message: header (length, type, flags, seq, port) and payload, padded to 4.
fn nlmsg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut v = Vec::new();
    v.extend_from_slice(&u32::try_from(len).expect("len").to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(&2u16.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(payload);
    v.resize((v.len() + 3) & !3, 0);
    v
}

/// An `inet_diag_msg` for 10.0.0.1:8080 -> 10.0.0.2:443 with an INET_DIAG_INFO attribute.
fn inet_msg(inode: u32, info_len: usize) -> Vec<u8> {
    let mut p = vec![0u8; 72];
    p[0] = 2; // AF_INET
    p[1] = ESTABLISHED;
    p[4..6].copy_from_slice(&8080u16.to_be_bytes());
    p[6..8].copy_from_slice(&443u16.to_be_bytes());
    p[8..12].copy_from_slice(&[10, 0, 0, 1]);
    p[24..28].copy_from_slice(&[10, 0, 0, 2]);
    p[44..52].copy_from_slice(&77u64.to_ne_bytes());
    p[68..72].copy_from_slice(&inode.to_ne_bytes());
    let mut info = vec![0u8; info_len];
    if info_len >= 136 {
        info[120..128].copy_from_slice(&9u64.to_ne_bytes());
    }
    p.extend_from_slice(&u16::try_from(4 + info_len).expect("len").to_ne_bytes());
    p.extend_from_slice(&2u16.to_ne_bytes()); // INET_DIAG_INFO
    p.extend_from_slice(&info);
    p.resize((p.len() + 3) & !3, 0);
    p
}

fn parse_all(buf: &[u8], seq: u32) -> (Result<Step, NetError>, Vec<SockRecord>) {
    let mut got = Vec::new();
    let r = parse_datagram(buf, seq, Proto::Tcp, &mut DumpStats::default(), &mut |s| {
        got.extend(s.record());
    });
    (r, got)
}

#[test]
fn parser_reads_a_well_formed_datagram() {
    let mut buf = nlmsg(20, 5, &inet_msg(42, 232));
    buf.extend(nlmsg(20, 4, &inet_msg(43, 232))); // a stale sequence number: skipped
    buf.extend(nlmsg(3, 5, &0i32.to_ne_bytes())); // NLMSG_DONE
    let (r, got) = parse_all(&buf, 5);
    assert_eq!(r.expect("parses"), Step::Done);
    assert_eq!(got.len(), 1);
    let g = got[0];
    assert_eq!(g.inode, 42);
    assert_eq!(
        g.local,
        "10.0.0.1:8080".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        g.remote,
        "10.0.0.2:443".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(g.cookie, 77);
    assert_eq!(g.info.and_then(|i| i.bytes_acked), Some(9));

    let err = nlmsg(2, 5, &(-2i32).to_ne_bytes()); // NLMSG_ERROR, ENOENT
    assert!(matches!(parse_all(&err, 5).0, Err(NetError::Kernel(2))));
    let done_err = nlmsg(3, 5, &(-4i32).to_ne_bytes());
    assert!(matches!(
        parse_all(&done_err, 5).0,
        Err(NetError::Kernel(4))
    ));
}

#[test]
fn parser_survives_every_cut_and_bad_length() {
    let mut buf = nlmsg(20, 1, &inet_msg(1, 232));
    buf.extend(nlmsg(20, 1, &inet_msg(2, 40))); // a short tcp_info: fields absent
    buf.extend(nlmsg(3, 1, &0i32.to_ne_bytes()));
    for cut in 0..=buf.len() {
        let (r, got) = parse_all(&buf[..cut], 1);
        assert!(got.len() <= 2);
        if cut == buf.len() {
            assert_eq!(r.expect("whole"), Step::Done);
            assert_eq!(got[1].info.map(|i| i.bytes_acked), Some(None));
        }
    }
    // Length fields lying in every direction.
    for len in [0u32, 1, 15, 16, 17, 87, 88, u32::MAX, u32::MAX - 2] {
        let mut b = buf.clone();
        b[..4].copy_from_slice(&len.to_ne_bytes());
        let _ = parse_all(&b, 1);
    }
    // An attribute whose length overruns its message: the socket is kept, without info.
    let mut m = inet_msg(3, 232);
    m[72..74].copy_from_slice(&2000u16.to_ne_bytes());
    let (r, got) = parse_all(&nlmsg(20, 1, &m), 1);
    assert_eq!(r.expect("parses"), Step::More);
    assert_eq!(got[0].info, None);
    // A payload too short for an inet_diag_msg.
    assert!(matches!(
        parse_all(&nlmsg(20, 1, &[0u8; 40]), 1).0,
        Err(NetError::Malformed(_))
    ));
}

#[test]
fn parser_survives_garbage() {
    // xorshift: deterministic noise, plus noise behind a valid header.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2000 {
        let len = usize::try_from(next() % 600).expect("small");
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && len >= 16 {
            let l = u32::try_from(len).expect("len");
            b[..4].copy_from_slice(&l.to_ne_bytes());
            b[4..6].copy_from_slice(&20u16.to_ne_bytes());
            b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        }
        let _ = parse_all(&b, 1);
    }
}

#[test]
fn only_unix_sockets_held_skips_the_dump_until_an_inet_socket_appears() {
    let (unix, _peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let kids = Reap(vec![holder(&unix)]);
    let a = [i32::try_from(kids.0[0].id()).expect("pid")];
    let mut probe = NetProbe::new();
    let mut out = Vec::new();
    // A Unix socket can be in no TCP or UDP dump, and its protocol says so: no tick dumps, not
    // the first, nor the one a full dump would be due at.
    for _ in 1..=FULL_DUMP_EVERY + 1 {
        let t = probe.tick(&[("a", &a[..])], &mut out).expect("tick");
        assert_eq!(t.dump.datagrams, 0, "{t:?}");
        assert_eq!(out[0].connections() + out[0].listening + out[0].udp, 0);
    }
    // A worker holding a TCP socket joins: its inode is new, so this tick dumps and sees it.
    let (_l, c, _s) = pair();
    let kids2 = Reap(vec![holder(&c)]);
    let b = [i32::try_from(kids2.0[0].id()).expect("pid")];
    let t = probe
        .tick(&[("a", &a[..]), ("b", &b[..])], &mut out)
        .expect("tick");
    assert!(t.dump.datagrams > 0, "{t:?}");
    assert_eq!((out[0].established, out[1].established), (0, 1));
    // And its socket keeps every later tick dumping.
    let t = probe
        .tick(&[("a", &a[..]), ("b", &b[..])], &mut out)
        .expect("tick");
    assert!(t.dump.datagrams > 0 && out[1].established == 1, "{t:?}");
}
