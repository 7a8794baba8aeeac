//! The network probe against a real worker: `netpeer` listens, connects to itself and to this
//! test's listener, and moves traffic; the probe must attribute its sockets to its pid and not to
//! this process, and judge them against an allow-list.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use supervisor::net::{
    violations, AllowList, NetProbe, NetSample, PortList, Proto, Remote, Violation,
};

/// The netpeer child, SIGKILLed and reaped on drop if it is still there.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pid_of(c: &Child) -> i32 {
    i32::try_from(c.id()).expect("pid fits")
}

/// Ticks until `f` holds (every 100 ms, up to 10 s); returns the last samples.
fn tick_until(
    probe: &mut NetProbe<&'static str>,
    workers: &[(&'static str, &[i32])],
    mut f: impl FnMut(&[NetSample]) -> bool,
) -> Vec<NetSample> {
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        probe.tick(workers, &mut out).expect("tick");
        if f(&out) {
            return out;
        }
        assert!(Instant::now() < end, "condition never held: {out:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn netpeer_sockets_are_attributed_to_its_pid_and_judged() {
    let ours = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let ours_addr = ours.local_addr().expect("addr");
    let mut child = Command::new(common::example("netpeer"))
        .args([
            "--listen",
            "0",
            "--connections",
            "3",
            "--bytes-per-sec",
            "200000",
        ])
        .args(["--connect", &ours_addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn netpeer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let peer = Peer(child);
    let (_accepted, _) = ours.accept().expect("netpeer's extra connection");
    let first = lines.next().expect("a line").expect("read");
    let listen: SocketAddr = first
        .strip_prefix("netpeer listening ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let ready = lines.next().expect("a line").expect("read");
    assert!(ready.contains("connections=4"), "{ready}");

    let pid = pid_of(&peer.0);
    let me = [i32::try_from(std::process::id()).expect("pid")];
    let them = [pid];
    let workers = [("netpeer", &them[..]), ("test", &me[..])];
    let mut probe = NetProbe::new();
    // 3 connections to itself (both ends its own) and one to us: 7 established, 1 listener.
    let out = tick_until(&mut probe, &workers, |s| {
        s[0].established == 7 && s[0].received_per_sec.is_some_and(|r| r > 0.0)
    });
    let (np, test) = (&out[0], &out[1]);
    assert_eq!(
        (np.listening, np.other, np.udp, np.unreadable),
        (1, 0, 0, 0)
    );
    assert_eq!(np.listen, [listen]);
    let tcp = |addr| Remote {
        proto: Proto::Tcp,
        addr,
    };
    // The accepted ends of its own connections are inbound: only the two peers it dialled.
    let mut want = vec![tcp(listen), tcp(ours_addr)];
    want.sort();
    assert_eq!(np.remotes, want);
    assert!(np.rtt_max_us.is_some() && np.rtt_mean_us <= np.rtt_max_us);
    assert!(np.acked_total > 0 && np.received_total > 0);

    // This process holds our listener and the accepted end, never netpeer's sockets.
    assert!(test.listen.contains(&ours_addr));
    assert!(!test.listen.contains(&listen));
    assert!(!test.remotes.iter().any(|r| r.addr == listen));

    let allow = AllowList::parse(&[format!("127.0.0.1:{}", listen.port())]).expect("allow");
    let listen_ok = PortList::parse(&[listen.port().to_string()]).expect("ports");
    assert_eq!(
        violations(np, Some(&allow), Some(&listen_ok), Some(7)),
        [Violation::UnexpectedConnection {
            proto: Proto::Tcp,
            remote: ours_addr,
        }]
    );
    let v = violations(
        np,
        None,
        Some(&PortList::parse(&["1-2"]).expect("ports")),
        Some(5),
    );
    assert_eq!(
        v,
        [
            Violation::UnexpectedListener { local: listen },
            Violation::TooManyConnections { count: 7, max: 5 },
        ]
    );

    // SIGTERM: a clean exit, and its sockets leave the sample.
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut child = peer;
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut rest = String::new();
    for l in lines.map_while(Result::ok) {
        rest.push_str(&l);
    }
    assert!(rest.contains("netpeer exiting"), "{rest:?}");
    let out = tick_until(&mut probe, &workers, |s| {
        s[0].connections() + s[0].listening == 0 && s[0].remotes.is_empty()
    });
    // What it moved stays counted.
    assert!(out[0].acked_total >= np.acked_total);
    assert!(out[1].listen.contains(&ours_addr));
}
