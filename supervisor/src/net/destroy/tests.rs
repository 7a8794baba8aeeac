//! Destroy messages: the parser against well-formed, cut and garbage buffers, and the probe
//! against real sockets closed between ticks (skipped, with a message, where the kernel refuses
//! the subscription).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;
use crate::net::tests::{eventually, holder, pair, transfer, Reap};
use crate::net::{NetProbe, NetSample};

/// One netlink message: header (length, type, flags, seq, port) and payload, padded to 4.
fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut v = Vec::new();
    v.extend_from_slice(&u32::try_from(len).expect("len").to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(&0u16.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(payload);
    v.resize((v.len() + 3) & !3, 0);
    v
}

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&u16::try_from(4 + value.len()).expect("len").to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize((v.len() + 3) & !3, 0);
    v
}

/// A destroy message as the kernel builds it: 10.0.0.1:8080 -> 10.0.0.2:40000, CLOSE, cookie
/// 77, no inode, an `INET_DIAG_PROTOCOL` and a `tcp_info` of `info_len` bytes.
fn destroy_msg(protocol: Option<u8>, info_len: Option<usize>) -> Vec<u8> {
    let mut p = vec![0u8; 72];
    p[0] = 2; // AF_INET
    p[1] = 7; // TCP_CLOSE
    p[4..6].copy_from_slice(&8080u16.to_be_bytes());
    p[6..8].copy_from_slice(&40000u16.to_be_bytes());
    p[8..12].copy_from_slice(&[10, 0, 0, 1]);
    p[24..28].copy_from_slice(&[10, 0, 0, 2]);
    p[44..52].copy_from_slice(&77u64.to_ne_bytes());
    if let Some(proto) = protocol {
        p.extend(attr(10, &[proto]));
    }
    if let Some(len) = info_len {
        let mut info = vec![0u8; len];
        if len >= 136 {
            info[120..128].copy_from_slice(&50_002u64.to_ne_bytes());
            info[128..136].copy_from_slice(&50_001u64.to_ne_bytes());
        }
        p.extend(attr(2, &info));
    }
    nlmsg(20, &p)
}

fn parse_all(buf: &[u8]) -> (DestroyStats, Vec<Destroyed>) {
    let mut stats = DestroyStats::default();
    let mut got = Vec::new();
    parse_datagram(buf, &mut stats, &mut |d| got.push(*d));
    (stats, got)
}

#[test]
fn a_destroy_message_gives_its_final_counters_addresses_and_cookie() {
    let (stats, got) = parse_all(&destroy_msg(Some(6), Some(232)));
    assert_eq!((stats.events, stats.malformed), (1, 0));
    let d = got[0];
    assert_eq!(d.proto, Proto::Tcp);
    assert_eq!(d.state, 7);
    assert_eq!(
        d.local,
        "10.0.0.1:8080".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        d.remote,
        "10.0.0.2:40000".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        (d.cookie, d.acked, d.received),
        (77, Some(50_002), Some(50_001))
    );
    // Before INET_DIAG_PROTOCOL (Linux 4.18) a tcp_info says TCP.
    let (_, old) = parse_all(&destroy_msg(None, Some(232)));
    assert_eq!(old[0].proto, Proto::Tcp);
    // A UDP message is read but not handed on: it has no counters.
    let (stats, udp) = parse_all(&destroy_msg(Some(17), None));
    assert_eq!((stats.events, udp.len(), stats.malformed), (0, 0, 0));
    // Neither a protocol nor a tcp_info: unknown, skipped as malformed.
    let (stats, none) = parse_all(&destroy_msg(None, None));
    assert_eq!((stats.malformed, none.len()), (1, 0));
    // A short tcp_info: the socket without its counters.
    let (_, short) = parse_all(&destroy_msg(Some(6), Some(100)));
    assert_eq!((short[0].acked, short[0].received), (None, None));
    // Other message types are not destroy messages.
    let (stats, got) = parse_all(&nlmsg(3, &0i32.to_ne_bytes()));
    assert_eq!((stats.events, stats.malformed, got.len()), (0, 0, 0));
}

#[test]
fn destroy_parser_survives_every_cut_and_bad_length() {
    let mut buf = destroy_msg(Some(6), Some(232));
    buf.extend(destroy_msg(Some(6), Some(40)));
    for cut in 0..=buf.len() {
        let (stats, got) = parse_all(&buf[..cut]);
        assert!(got.len() <= 2 && stats.events <= 2, "cut {cut}");
    }
    let (_, whole) = parse_all(&buf);
    assert_eq!(whole.len(), 2);
    for len in [0u32, 1, 15, 16, 17, 87, 88, u32::MAX, u32::MAX - 2] {
        let mut b = buf.clone();
        b[..4].copy_from_slice(&len.to_ne_bytes());
        let _ = parse_all(&b);
    }
    // An attribute overrunning its message: the header still reads, the counters do not.
    let mut m = destroy_msg(Some(6), Some(232));
    let at = 16 + 72 + 8; // the INFO attribute, after the header and the protocol attribute
    m[at..at + 2].copy_from_slice(&4000u16.to_ne_bytes());
    let (_, got) = parse_all(&m);
    assert_eq!(got[0].acked, None);
    // A payload too short for an inet_diag_msg, and an unknown address family.
    let (stats, got) = parse_all(&nlmsg(20, &[0u8; 40]));
    assert_eq!((stats.malformed, got.len()), (1, 0));
    let mut fam = destroy_msg(Some(6), Some(232));
    fam[16] = 99;
    let (stats, got) = parse_all(&fam);
    assert_eq!((stats.malformed, got.len()), (1, 0));
}

#[test]
fn destroy_parser_survives_garbage() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = destroy_msg(Some(6), Some(232));
    for round in 0..3000 {
        let len = usize::try_from(next() % 700).expect("small");
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match round % 3 {
            // Noise behind a header that claims the whole buffer as a sock_diag message.
            0 if len >= 16 => {
                let l = u32::try_from(len).expect("len");
                b[..4].copy_from_slice(&l.to_ne_bytes());
                b[4..6].copy_from_slice(&20u16.to_ne_bytes());
            }
            // A valid message with noise written over part of it.
            1 => {
                let mut v = valid.clone();
                for (i, byte) in b.iter().enumerate().take(v.len()) {
                    if i % 5 == round % 5 {
                        v[i] = *byte;
                    }
                }
                b = v;
            }
            _ => {}
        }
        let (stats, got) = parse_all(&b);
        assert!(stats.events as usize == got.len());
    }
}

/// Subscribes a probe, or says why not and returns `None` (the test is then skipped).
fn subscribed(probe: &mut NetProbe<&'static str>) -> bool {
    match probe.subscribe_destroyed() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: the kernel refused the sock_diag destroy groups here: {e}");
            false
        }
    }
}

/// Ticks `workers` until `f` holds on the samples (10 s at most).
fn tick_until(
    probe: &mut NetProbe<&'static str>,
    workers: &[(&'static str, &[i32])],
    out: &mut Vec<NetSample>,
    mut f: impl FnMut(&[NetSample]) -> bool,
) -> bool {
    eventually(|| {
        probe.tick(workers, out).expect("tick");
        f(out)
    })
}

#[test]
fn connections_accepted_on_a_workers_listener_between_ticks_are_counted_whole() {
    let mut probe = NetProbe::new();
    if !subscribed(&mut probe) {
        return;
    }
    // The worker is a process holding the listener; this test accepts on it (as a pre-forked
    // server's children would): to the kernel, the connections are that listener's.
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = l.local_addr().expect("addr");
    let kid = Reap(vec![holder(&l)]);
    let pids = [i32::try_from(kid.0[0].id()).expect("pid")];
    let workers = [("server", &pids[..])];
    let mut out = Vec::new();
    assert!(tick_until(&mut probe, &workers, &mut out, |s| s[0]
        .listening
        == 1));
    const N: usize = 20;
    const BYTES: usize = 50_000;
    for _ in 0..N {
        let mut c = TcpStream::connect(addr).expect("connect");
        let (mut s, _) = l.accept().expect("accept");
        transfer(&mut c, &mut s, BYTES);
        transfer(&mut s, &mut c, BYTES);
        drop(s);
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("EOF");
    }
    // Every connection closed before the next tick, so no dump saw one. Each counts its data
    // and the peer's FIN received, its data and its own FIN acknowledged.
    let (lo, hi) = ((N * BYTES) as u64, (N * (BYTES + 1)) as u64);
    let ok = tick_until(&mut probe, &workers, &mut out, |s| {
        s[0].received_total >= hi && s[0].acked_total >= lo
    });
    let st = probe.destroy_status();
    assert!(ok, "{:#?}\n{st:#?}", out[0]);
    assert!(
        out[0].received_total == hi && out[0].acked_total <= hi,
        "{:#?}",
        out[0]
    );
    assert!(st.closed.by_listener >= N as u64, "{st:#?}");
    // The client ends are nobody's: this process is not a worker.
    assert!(st.closed.unattributed >= N as u64, "{st:#?}");
    assert!(
        st.closed.unattributed_acked >= (N * BYTES) as u64,
        "{st:#?}"
    );
    assert_eq!((st.socket.overflows, st.socket.lost), (0, 0));
}

#[test]
fn what_a_seen_socket_moved_after_its_last_dump_is_counted_at_its_close() {
    let mut probe = NetProbe::new();
    if !subscribed(&mut probe) {
        return;
    }
    let (_l, c, mut s) = pair();
    let kid = Reap(vec![holder(&c)]);
    drop(c);
    let pids = [i32::try_from(kid.0[0].id()).expect("pid")];
    let workers = [("kid", &pids[..])];
    let mut out = Vec::new();
    s.write_all(&[1u8; 30_000]).expect("write");
    assert!(tick_until(&mut probe, &workers, &mut out, |s| {
        s[0].received_total == 30_000
    }));
    // More arrives (never read: `sleep` holds the socket), and the holder dies before a tick:
    // the kernel resets the connection and frees the socket.
    s.write_all(&[2u8; 20_000]).expect("write");
    std::thread::sleep(Duration::from_millis(50));
    let mut kid = kid;
    for k in &mut kid.0 {
        k.kill().expect("kill");
        k.wait().expect("wait");
    }
    let idle = Reap(vec![Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep")]);
    // The worker goes on (another process of its tree), so the credit has somewhere to go.
    let pids = [pids[0], i32::try_from(idle.0[0].id()).expect("pid")];
    let workers = [("kid", &pids[..])];
    let ok = tick_until(&mut probe, &workers, &mut out, |s| {
        s[0].received_total >= 50_000
    });
    assert!(ok, "{:#?}\n{:#?}", out[0], probe.destroy_status());
    // Exactly once: the dump's 30,000 and the message's remaining 20,000.
    assert_eq!(out[0].received_total, 50_000, "{:#?}", out[0]);
    assert!(probe.destroy_status().closed.by_cookie >= 1);
}

#[test]
fn a_socket_its_worker_let_go_of_is_counted_when_the_last_holder_closes_it() {
    let mut probe = NetProbe::new();
    if !subscribed(&mut probe) {
        return;
    }
    let (_l, c, mut s) = pair();
    // The worker: a process holding `c`, and an idle one that outlives it. This test holds
    // `c` too, so the socket outlives the worker's hold on it.
    let mut kids = Reap(vec![
        holder(&c),
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep"),
    ]);
    let pids: Vec<i32> = kids
        .0
        .iter()
        .map(|k| i32::try_from(k.id()).expect("pid"))
        .collect();
    let workers = [("w", &pids[..])];
    let mut out = Vec::new();
    s.write_all(&[1u8; 10_000]).expect("write");
    assert!(tick_until(&mut probe, &workers, &mut out, |s| {
        s[0].received_total == 10_000
    }));
    s.write_all(&[2u8; 5_000]).expect("write");
    std::thread::sleep(Duration::from_millis(50));
    kids.0[0].kill().expect("kill");
    kids.0[0].wait().expect("wait");
    // The next ticks find the holder gone: the socket leaves the table, its counters kept.
    for _ in 0..2 {
        probe.tick(&workers, &mut out).expect("tick");
    }
    assert_eq!(out[0].received_total, 10_000, "nothing dumped since");
    assert_eq!(probe.destroy_status().closed.by_cookie, 0);
    // This process closes the last fd (unread data: a reset), and the socket is freed.
    drop(c);
    let ok = tick_until(&mut probe, &workers, &mut out, |s| {
        s[0].received_total >= 15_000
    });
    assert!(ok, "{:#?}\n{:#?}", out[0], probe.destroy_status());
    assert_eq!(out[0].received_total, 15_000);
}

#[test]
fn a_probe_refused_the_subscription_says_why_and_counts_from_samples() {
    let mut probe: NetProbe<&'static str> = NetProbe::new();
    assert_eq!(probe.destroy_status().mode, crate::net::DestroyMode::Off);
    probe.refuse_destroyed("turned off".into());
    let st = probe.destroy_status();
    assert_eq!(
        st.mode,
        crate::net::DestroyMode::Unavailable("turned off".into())
    );
    assert!(probe.destroy_fd().is_none() && !probe.destroy_paused());
    assert_eq!(probe.drain_destroyed(10), Drained::Empty);
    // Sampling goes on: this process's sockets are still seen.
    let (_l, _c, _s) = pair();
    let me = [crate::net::tests::me()];
    let workers = [("me", &me[..])];
    let mut out = Vec::new();
    assert!(tick_until(&mut probe, &workers, &mut out, |s| s[0]
        .established
        >= 2));
    // A subscription given up keeps the counts it had.
    let mut probe: NetProbe<&'static str> = NetProbe::new();
    if !subscribed(&mut probe) {
        return;
    }
    probe.refuse_destroyed("reading failed".into());
    assert!(probe.destroy_fd().is_none());
}
