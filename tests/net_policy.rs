//! Per-worker network figures and policy through the real `supervise` binary: `netpeer` workers
//! listen, connect and move traffic; `status --json` must show each worker's own sockets, and
//! `[program.NAME.net]` must turn connections outside `allow`, listeners outside `listen_allow`
//! and too many connections into `finding` events, and restart or kill as `on_violation` says.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{example, unique, ProgramGuard, Sup};

/// A supervisor running a config, with its control socket.
struct Run {
    sup: Sup,
    socket: PathBuf,
}

/// Starts `supervise -c` on `config` (sampled every 200 ms); returns once its control socket
/// answers.
fn start(config: &str) -> Run {
    let sup = Sup::with_config(&format!("[sample]\nevery = \"200ms\"\n\n{config}"));
    sup.wait_socket(Duration::from_secs(10));
    let socket = sup.socket();
    Run { sup, socket }
}

/// `[program.NAME]` running netpeer with `args`, and its `net` table (`net` is TOML lines, or
/// empty for none).
fn program(name: &str, args: &[&str], net: &str) -> String {
    let mut argv = vec![format!("{:?}", example("netpeer"))];
    argv.extend(args.iter().map(|a| format!("{a:?}")));
    let mut s = format!(
        "[program.{name}]\ncommand = [{}]\nbackoff = {{ first = \"100ms\", max = \"200ms\" }}\n",
        argv.join(", ")
    );
    if !net.is_empty() {
        s.push_str(&format!("[program.{name}.net]\n{net}\n"));
    }
    s.push('\n');
    s
}

/// Polls `status --json` every 100 ms until `name`'s instance 0 satisfies `pred`; returns it.
/// Panics with the last status and the supervisor's log after `timeout`.
fn wait_worker(
    run: &Run,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        if let Some(w) = common::status_json(&run.socket)
            .into_iter()
            .find(|w| w["program"] == name && w["instance"] == 0)
        {
            if pred(&w) {
                return w;
            }
            last = w;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; last status of {name}: {last}\n{}",
            run.sup.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn net_u64(w: &Value, key: &str) -> u64 {
    w["net"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("net.{key} missing in {w}"))
}

/// A listener of this test on 127.0.0.1 (its sockets are ours, never a worker's).
fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// A netpeer with one connection `allow` holds and one to a port it does not, under
/// `on_violation`: the run, the listeners (kept open), the offending port, and the finding.
fn breaching(name: &str, on_violation: &str) -> (Run, [TcpListener; 2], u16, serde_json::Value) {
    let (allowed, a) = listener();
    let (other, b) = listener();
    let run = start(&program(
        name,
        &[
            "--connections",
            "1",
            "--to",
            &format!("127.0.0.1:{a}"),
            "--connect",
            &format!("127.0.0.1:{b}"),
        ],
        &format!("allow = [\"127.0.0.1/32:{a}\"]\non_violation = \"{on_violation}\""),
    ));
    let f = run
        .sup
        .wait_nth(1, Duration::from_secs(10), "finding", |e| {
            e["event"] == "finding" && e["kind"] == "unexpected_connection"
        });
    (run, [allowed, other], b, f)
}

/// Findings of `kind` for `name`.
fn findings(sup: &Sup, name: &str, kind: &str) -> Vec<Value> {
    sup.of("finding")
        .into_iter()
        .filter(|e| e["program"] == name && e["kind"] == kind)
        .collect()
}

#[test]
fn status_shows_each_workers_own_sockets_and_traffic() {
    let busy = unique("netbusy");
    let idle = unique("netidle");
    let _g = (ProgramGuard(busy.clone()), ProgramGuard(idle.clone()));
    // Three connections to its own listener, 50 kB/s sent on each and echoed back: 300 kB/s
    // sent by the tree (3 x 50 kB/s from the clients, the same again from the echoes) and as
    // much received.
    const RATE: f64 = 300_000.0;
    let run = start(&format!(
        "{}{}",
        program(
            &busy,
            &[
                "--listen",
                "0",
                "--connections",
                "3",
                "--bytes-per-sec",
                "50000"
            ],
            ""
        ),
        program(&idle, &["--listen", "0"], "")
    ));

    // Both ends of each connection are in the tree: 2 x 3 established, exactly, once every
    // connection is accepted (polled), and its one listener.
    let w = wait_worker(&run, &busy, Duration::from_secs(10), "6 connections", |w| {
        w["net"]["established"] == 6 && w["net"]["sent_bytes"].as_u64() > Some(0)
    });
    assert_eq!(net_u64(&w, "listening"), 1, "{w}");
    assert_eq!(net_u64(&w, "other"), 0, "{w}");
    // Outbound peers: only its own listener (the accepted ends are inbound).
    assert_eq!(net_u64(&w, "remotes"), 1, "{w}");

    // Traffic: both totals grow, at about the rate it moves (loosely: ticks are 200 ms apart
    // and the measured window is at least 3 s).
    let t0 = Instant::now();
    let (s0, r0) = (net_u64(&w, "sent_bytes"), net_u64(&w, "received_bytes"));
    let w = wait_worker(
        &run,
        &busy,
        Duration::from_secs(10),
        "3 s of traffic",
        |w| {
            t0.elapsed() >= Duration::from_secs(3)
                && w["net"]["sent_bytes"].as_u64() > Some(s0)
                && w["net"]["received_bytes"].as_u64() > Some(r0)
        },
    );
    let secs = t0.elapsed().as_secs_f64();
    for (key, before) in [("sent_bytes", s0), ("received_bytes", r0)] {
        let rate = (net_u64(&w, key) - before) as f64 / secs;
        assert!(
            (0.5 * RATE..1.6 * RATE).contains(&rate),
            "{key} grew at {rate:.0} B/s, expected about {RATE} B/s\n{w}"
        );
    }
    assert_eq!(net_u64(&w, "established"), 6, "{w}");

    // The idle worker: its own listener and nothing else; none of the busy one's traffic.
    let i = wait_worker(&run, &idle, Duration::from_secs(5), "idle figures", |w| {
        w["net"].is_object()
    });
    assert_eq!(
        (
            net_u64(&i, "listening"),
            net_u64(&i, "established"),
            net_u64(&i, "sent_bytes"),
            net_u64(&i, "received_bytes"),
            net_u64(&i, "remotes"),
        ),
        (1, 0, 0, 0, 0),
        "{i}"
    );
    assert!(run.sup.of("finding").is_empty(), "{}", run.sup.dump());
}

#[test]
fn warn_reports_connections_and_listeners_outside_the_policy_without_restarting() {
    let name = unique("netwarn");
    let _g = ProgramGuard(name.clone());
    let (_allowed, a) = listener();
    let (_other, b) = listener();
    let run = start(&program(
        &name,
        &[
            "--listen",
            "0",
            "--connections",
            "2",
            "--to",
            &format!("127.0.0.1:{a}"),
            "--connect",
            &format!("127.0.0.1:{b}"),
        ],
        &format!(
            "allow = [\"127.0.0.1/32:{a}\"]\nlisten_allow = [\"9000-9100\"]\non_violation = \"warn\""
        ),
    ));
    let conn = run
        .sup
        .wait_nth(1, Duration::from_secs(10), "connection finding", |e| {
            e["event"] == "finding"
                && e["kind"] == "unexpected_connection"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("outside net.allow"))
        });
    assert_eq!(conn["program"], name.as_str());
    let detail = conn["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&format!("tcp connection to 127.0.0.1:{b} ")),
        "{detail}"
    );
    // Two allowed connections and the one outside the list.
    assert_eq!(conn["connections"], 3, "{conn}");
    let listen = run
        .sup
        .wait_nth(1, Duration::from_secs(10), "listener finding", |e| {
            e["event"] == "finding"
                && e["kind"] == "unexpected_connection"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("outside net.listen_allow"))
        });
    assert!(
        listen["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("listening on 127.0.0.1:")),
        "{listen}"
    );
    let pid = common::pid_of(&conn);

    // Let the policy be judged on a couple more seconds of samples: still the same process,
    // each breach reported once, the allowed peer never.
    let t0 = Instant::now();
    let w = wait_worker(&run, &name, Duration::from_secs(10), "2 s more", |_| {
        t0.elapsed() >= Duration::from_secs(2)
    });
    assert_eq!(w["pid"], pid, "{w}");
    assert_eq!(w["restarts"], 0, "{w}");
    assert!(
        w["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|k| k == "unexpected_connection")),
        "{w}"
    );
    assert!(
        run.sup.of("restarting").is_empty() && run.sup.of("exited").is_empty(),
        "{}",
        run.sup.dump()
    );
    let all = findings(&run.sup, &name, "unexpected_connection");
    assert_eq!(all.len(), 2, "{}", run.sup.dump());
    assert!(
        all.iter().all(|f| !f["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&format!(":{a} "))),
        "{}",
        run.sup.dump()
    );
}

#[test]
fn restart_on_a_connection_outside_allow() {
    let name = unique("netrestart");
    let _g = ProgramGuard(name.clone());
    let (run, _listeners, b, f) = breaching(&name, "restart");
    assert!(
        f["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("127.0.0.1:{b}"))),
        "{f}"
    );
    let r = run.sup.wait_event("restarting", Duration::from_secs(10));
    assert_eq!(
        (r["program"].as_str(), r["reason"].as_str()),
        (Some(name.as_str()), Some("net")),
        "{}",
        run.sup.dump()
    );
    // A graceful stop: netpeer exits 0 on SIGTERM.
    let exited = run.sup.wait_event("exited", Duration::from_secs(10));
    assert_eq!(
        (exited["code"].as_i64(), exited["signal"].as_i64()),
        (Some(0), None),
        "{}",
        run.sup.dump()
    );
    assert_eq!(exited["pid"], f["pid"]);
    // And it is started again.
    run.sup
        .wait_nth(2, Duration::from_secs(10), "second start", |e| {
            e["event"] == "started"
        });
}

#[test]
fn too_many_connections_is_a_finding_for_that_worker_only() {
    let many = unique("netmany");
    let few = unique("netfew");
    let _g = (ProgramGuard(many.clone()), ProgramGuard(few.clone()));
    // 6 connections to its own listener: 12 TCP connections in its tree, over 10.
    // The other: 2 (4 in its tree), its listener on an allowed port, its peer allowed.
    let run = start(&format!(
        "{}{}",
        program(
            &many,
            &["--listen", "0", "--connections", "6"],
            "max_connections = 10"
        ),
        program(
            &few,
            &["--listen", "0", "--connections", "2"],
            "allow = [\"127.0.0.0/8\"]\nlisten_allow = [\"22\", \"1024-65535\"]\nmax_connections = 10"
        ),
    ));
    let f = run
        .sup
        .wait_nth(1, Duration::from_secs(10), "finding", |e| {
            e["event"] == "finding" && e["kind"] == "too_many_connections"
        });
    assert_eq!(f["program"], many.as_str(), "{}", run.sup.dump());
    let n = f["connections"].as_u64().expect("connections");
    assert!((11..=12).contains(&n), "{f}");
    assert!(
        f["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than net.max_connections = 10")),
        "{f}"
    );
    // Once the other worker's 4 connections show in status, its policy has been judged on
    // them: nothing to report, nothing restarted (the default is warn).
    let w = wait_worker(&run, &few, Duration::from_secs(10), "4 connections", |w| {
        w["net"]["established"] == 4 && w["net"]["listening"] == 1
    });
    assert_eq!(w["findings"], serde_json::json!([]), "{w}");
    let m = wait_worker(
        &run,
        &many,
        Duration::from_secs(10),
        "12 connections",
        |w| w["net"]["established"] == 12,
    );
    assert!(
        m["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|k| k == "too_many_connections")),
        "{m}"
    );
    assert!(
        run.sup
            .of("finding")
            .iter()
            .all(|e| e["program"] == many.as_str()),
        "{}",
        run.sup.dump()
    );
    assert!(run.sup.of("restarting").is_empty(), "{}", run.sup.dump());
}

#[test]
fn kill_sigkills_the_tree_and_restarts_with_reason_net() {
    let name = unique("netkill");
    let _g = ProgramGuard(name.clone());
    let (run, _listeners, _, f) = breaching(&name, "kill");
    let r = run.sup.wait_event("restarting", Duration::from_secs(10));
    assert_eq!(r["reason"], "net", "{}", run.sup.dump());
    // No stop signal, no grace: SIGKILL.
    let exited = run.sup.wait_event("exited", Duration::from_secs(10));
    assert_eq!(
        (exited["code"].as_i64(), exited["signal"].as_i64()),
        (None, Some(9)),
        "{}",
        run.sup.dump()
    );
    assert_eq!(exited["pid"], f["pid"]);
    assert!(!common::alive(common::pid_of(&f)));
    run.sup
        .wait_nth(2, Duration::from_secs(10), "second start", |e| {
            e["event"] == "started"
        });
}

#[test]
fn inbound_connections_are_judged_by_listen_allow_not_allow() {
    let name = unique("netinbound");
    let _g = ProgramGuard(name.clone());
    let (_allowed, a) = listener();
    let run = start(&program(
        &name,
        &["--listen", "0"],
        &format!(
            "allow = [\"127.0.0.1/32:{a}\"]\nlisten_allow = [\"1024-65535\"]\n\
             max_connections = 10\non_violation = \"restart\""
        ),
    ));
    // Its listener's address, from its output as the supervisor forwards it.
    let prefix = format!("{name}[0] netpeer listening ");
    let mut addr = None;
    let ok = common::wait_until(Duration::from_secs(10), || {
        let out = std::fs::read_to_string(run.sup.path("stdout")).unwrap_or_default();
        addr = out
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok());
        addr.is_some()
    });
    assert!(ok, "no listening line\n{}", run.sup.dump());
    let addr = addr.expect("addr");
    // Two clients of this test (peers on ephemeral ports no `allow` rule names).
    let _clients: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    let w = wait_worker(&run, &name, Duration::from_secs(10), "2 accepted", |w| {
        w["net"]["established"] == 2 && w["net"]["listening"] == 1
    });
    // Judged on them already (status is updated after the policy): inbound, allowed.
    assert_eq!(net_u64(&w, "remotes"), 0, "{w}");
    assert_eq!(w["findings"], serde_json::json!([]), "{w}");
    assert!(
        run.sup.of("finding").is_empty() && run.sup.of("restarting").is_empty(),
        "{}",
        run.sup.dump()
    );
}
