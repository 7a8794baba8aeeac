//! The network probe against a real worker: `netpeer` listens, connects to itself and to this
//! test's listener, and moves traffic; the probe must attribute its sockets to its pid and not to
//! this process, and judge them against an allow-list.
//!
//! Then through the real `supervise` binary, connections that open and close between two ticks:
//! those a pre-forked `netpeer` accepts count to their last byte (from the kernel's socket
//! destroy messages; skipped with a message where the kernel refuses them), those it opens land
//! in the supervisor's `unattributed` figure, and with the destroy messages turned off `status`
//! says that totals are sampled only.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{example, supervisor_json, unique, wait_until, ProgramGuard, Sup};
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

const LONG: Duration = Duration::from_secs(30);

/// `supervise -c` sampling every second, running `netpeer ARGS` as program `name`.
fn netpeer_under_supervise(name: &str, args: &[&str]) -> Sup {
    let mut argv = vec![format!("{:?}", example("netpeer"))];
    argv.extend(args.iter().map(|a| format!("{a:?}")));
    let sup = Sup::with_config(&format!(
        "[sample]\nevery = \"1s\"\n\n[program.{name}]\ncommand = [{}]\n",
        argv.join(", ")
    ));
    sup.wait_socket(LONG);
    sup
}

/// `closed_sockets` of the supervisor's status once it has one.
fn closed_sockets(sup: &Sup) -> Value {
    supervisor_json(&sup.socket())["closed_sockets"].clone()
}

/// Whether the supervisor counts closed sockets from destroy messages; `false` (with a message
/// saying the test is skipped) only where the kernel refused it the subscription.
fn counts_destroyed(sup: &Sup) -> bool {
    let c = closed_sockets(sup);
    if c["mode"] == "events" {
        return true;
    }
    // Refused by the kernel (a missing capability where joining needs one, no sock_diag):
    // only that skips the test, never an error of ours.
    let why = c["why"].as_str().unwrap_or_default().to_owned();
    assert!(
        why.contains("refused the subscription"),
        "no destroy messages, and not for the kernel's refusal: {c}\n{}",
        sup.dump()
    );
    eprintln!("skipped: the kernel refused sock_diag's destroy groups here ({why})");
    false
}

/// Instance 0 of `name` in `status --json`, once `pred` holds on it.
fn wait_worker(sup: &Sup, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(LONG, || {
        if let Some(w) = common::status_json(&sup.socket())
            .into_iter()
            .find(|w| w["program"] == name)
        {
            last = w;
        }
        pred(&last)
    });
    assert!(ok, "waiting for {what}; last: {last}\n{}", sup.dump());
    last
}

fn net_u64(w: &Value, key: &str) -> u64 {
    w["net"][key].as_u64().unwrap_or(0)
}

/// The address after `netpeer listening ` on the supervisor's stdout.
fn listening(sup: &Sup) -> SocketAddr {
    sup.wait_stdout("netpeer listening ", 1, LONG);
    let out = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    out.lines()
        .find_map(|l| l.split("netpeer listening ").nth(1))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {out}"))
}

/// One client connection: sends `n` bytes, half-closes, reads the echo until the server
/// closes. Returns the bytes this side counted, sent plus received.
fn echo_client(to: SocketAddr, n: usize) -> u64 {
    let mut s = TcpStream::connect(to).expect("connect");
    let mut r = s.try_clone().expect("clone");
    let data = vec![0x42u8; n];
    let got = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut buf = Vec::with_capacity(n);
            r.read_to_end(&mut buf).expect("read echo");
            buf.len()
        });
        s.write_all(&data).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        reader.join().expect("reader")
    });
    assert_eq!(got, n, "the whole echo");
    (n + got) as u64
}

#[test]
fn short_connections_to_a_preforked_server_count_to_their_last_byte() {
    const CONNECTIONS: usize = 200;
    const BYTES: usize = 50_000;
    let name = unique("shortserve");
    let _g = ProgramGuard(name.clone());
    let sup = netpeer_under_supervise(&name, &["--listen", "0", "--prefork", "2"]);
    let addr = listening(&sup);
    if !counts_destroyed(&sup) {
        return;
    }
    // A dump must have seen the listener (its owner is known by it), held by the parent and
    // both children: one listener of one worker.
    wait_worker(&sup, &name, "the listener in a dump", |w| {
        net_u64(w, "listening") == 1 && w["processes"] == 3
    });
    let before = wait_worker(&sup, &name, "a net object", |w| w["net"].is_object());
    let base = net_u64(&before, "sent_bytes") + net_u64(&before, "received_bytes");
    let t0 = Instant::now();
    let mut counted = 0u64;
    let mut longest = Duration::ZERO;
    for _ in 0..CONNECTIONS {
        let t = Instant::now();
        counted += echo_client(addr, BYTES);
        longest = longest.max(t.elapsed());
    }
    eprintln!(
        "{CONNECTIONS} connections of {BYTES} bytes each way in {:?}, the longest {longest:?}",
        t0.elapsed()
    );
    // Each connection the server accepted counts the client's data and FIN received, and its
    // own data and FIN acknowledged: exactly once, so at most 2 bytes a connection over what
    // the clients counted.
    let floor = base + counted * 95 / 100;
    let w = wait_worker(&sup, &name, "the short connections' bytes", |w| {
        net_u64(w, "sent_bytes") + net_u64(w, "received_bytes") >= floor
    });
    // The last messages may still be on their way: let the next tick take them, then look.
    std::thread::sleep(Duration::from_millis(2500));
    let w2 = wait_worker(&sup, &name, "status", |w| w["net"].is_object());
    let total = net_u64(&w2, "sent_bytes") + net_u64(&w2, "received_bytes") - base;
    let c = closed_sockets(&sup);
    assert!(
        total >= counted && total <= counted + 2 * CONNECTIONS as u64,
        "server counted {total} bytes, clients {counted}\n{w}\n{w2}\n{c}"
    );
    let attributed = c["by_listener"].as_u64().unwrap_or(0) + c["by_cookie"].as_u64().unwrap_or(0);
    assert!(attributed >= CONNECTIONS as u64, "{c}");
    assert_eq!(c["lost"], 0, "{c}");
}

#[test]
fn an_outbound_connection_shorter_than_a_tick_is_counted_unattributed() {
    const CONNECTIONS: u64 = 20;
    const BYTES: u64 = 50_000;
    // A sink that reads everything and closes: its ends send nothing but their FIN.
    let sink = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let to = sink.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in sink.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
        }
    });
    let name = unique("shortclient");
    let _g = ProgramGuard(name.clone());
    let sup = netpeer_under_supervise(
        &name,
        &[
            "--to",
            &to.to_string(),
            "--burst",
            &CONNECTIONS.to_string(),
            "--burst-bytes",
            &BYTES.to_string(),
        ],
    );
    sup.wait_stdout("netpeer burst done", 1, LONG);
    if !counts_destroyed(&sup) {
        return;
    }
    let want = CONNECTIONS * BYTES;
    let mut last = Value::Null;
    let ok = wait_until(LONG, || {
        last = closed_sockets(&sup);
        last["unattributed_sent_bytes"].as_u64().unwrap_or(0) >= want * 9 / 10
    });
    assert!(
        ok,
        "the worker's outbound bytes never showed: {last}\n{}",
        sup.dump()
    );
    assert!(
        last["unattributed"].as_u64().unwrap_or(0) >= CONNECTIONS * 9 / 10,
        "{last}"
    );
    // Not credited to the worker by guess (a dump may have caught one or two mid-flight).
    let w = wait_worker(&sup, &name, "status", |w| w["net"].is_object());
    assert!(net_u64(&w, "sent_bytes") <= want / 10, "{w}");
}

#[test]
fn with_destroy_events_off_status_says_totals_are_sampled() {
    let name = unique("sampled");
    let _g = ProgramGuard(name.clone());
    let config = format!(
        "[sample]\nevery = \"1s\"\ndestroy_events = false\n\n[program.{name}]\ncommand = [{:?}, \"--listen\", \"0\"]\n",
        example("netpeer")
    );
    let sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(&path, &config).expect("config");
        cmd.env("SUPERVISE_LOG", "info")
            .arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    sup.wait_socket(LONG);
    let c = closed_sockets(&sup);
    assert_eq!(c["mode"], "sampling", "{c}");
    assert!(
        c["why"]
            .as_str()
            .is_some_and(|w| w.contains("destroy_events = false")),
        "{c}"
    );
    let (ok, table) = common::ctl(&sup.socket(), &["status"]);
    assert!(
        ok && table.contains("closed sockets: sampled only"),
        "{table}"
    );
    // Said once, at start.
    let said = || sup.stderr().matches("counted from samples only").count();
    assert!(wait_until(LONG, || said() == 1), "{}", sup.dump());
}
