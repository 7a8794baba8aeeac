//! Workers that link child-sdk: handshake, readiness, counters read back by the supervisor,
//! graceful `Shutdown`, memory-pressure warnings, and `hung` restarts from a stale heartbeat.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{run_example, wait_until, Sup, MIB};

/// The port `sdk_worker --serve` printed (forwarded on the supervisor's stdout).
fn port(sup: &Sup) -> u16 {
    let mut port = None;
    let found = wait_until(Duration::from_secs(10), || {
        let out = std::fs::read_to_string(sup.path("stdout")).unwrap_or_default();
        port = out
            .lines()
            .find_map(|l| l.split("sdk_worker port=").nth(1)?.trim().parse().ok());
        port.is_some()
    });
    assert!(found, "no port line\n{}", sup.dump());
    port.expect("port")
}

#[test]
fn counters_are_read_back_and_shutdown_is_honoured() {
    let (mut sup, _name, _guard) =
        run_example("sdk", &["--grace", "5s"], "sdk_worker", &["--serve"]);
    sup.wait_event("ready", Duration::from_secs(10));
    let mut conn = TcpStream::connect(("127.0.0.1", port(&sup))).expect("connect");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    for i in 0..50 {
        writeln!(conn, "request {i:02}").expect("write");
        let mut line = String::new();
        reader.read_line(&mut line).expect("echo");
        assert_eq!(line, format!("request {i:02}\n"));
    }
    let t0 = Instant::now();
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(10));
    // `Shutdown` honoured: it left by itself, well before the grace, with code 0 and no SIGKILL.
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert!(sup.of("killed").is_empty());
    let exited = &sup.of("exited")[0];
    assert_eq!(exited["code"], 0);
    let report = &exited["report"];
    assert_eq!(report["requests"], 50, "{}", sup.dump());
    assert_eq!(report["metrics"]["bytes_in"], 50 * "request 00\n".len());
    assert!(report["heap_bytes"].as_u64().expect("heap") > 0);
    assert!(report["heartbeat_age_ms"].as_u64().expect("heartbeat") < 1000);
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(stdout.contains("sdk_worker shutdown"), "{stdout}");
}

#[test]
fn a_worker_that_says_a_lot_while_it_stops_is_heard_out() {
    // The channel holds only a few packets: a supervisor that stopped reading it during the stop
    // would leave the worker blocked in send(2) until the grace ran out and SIGKILL came.
    let (mut sup, _name, _guard) = run_example(
        "drain",
        &["--grace", "20s"],
        "sdk_worker",
        &["--events-on-shutdown", "200"],
    );
    sup.wait_event("ready", Duration::from_secs(10));
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
    let said = sup.of("worker_event");
    assert_eq!(said.len(), 200, "{}", sup.dump());
    assert_eq!(said[199]["text"], "draining 199");
}

#[test]
fn a_stale_heartbeat_is_hung_and_restarted() {
    let (sup, _name, _guard) = run_example(
        "hang",
        &["--heartbeat-timeout", "1s", "--sample-every", "200ms"],
        "sdk_worker",
        &["--hang-after", "500"],
    );
    let finding = sup.wait_nth(1, Duration::from_secs(15), "hung finding", |e| {
        e["event"] == "finding" && e["kind"] == "hung"
    });
    assert!(finding["heartbeat_age_ms"].as_u64().expect("age") > 1000);
    let r = sup.wait_event("restarting", Duration::from_secs(10));
    assert_eq!(r["reason"], "hung", "{}", sup.dump());
    sup.wait_nth(2, Duration::from_secs(10), "second start", |e| {
        e["event"] == "started"
    });
}

#[test]
fn ignoring_shutdown_ends_in_sigkill_after_the_grace() {
    let (mut sup, _name, _guard) = run_example(
        "deaf",
        &["--grace", "1s"],
        "sdk_worker",
        &["--ignore-shutdown"],
    );
    sup.wait_event("ready", Duration::from_secs(10));
    sup.signal(libc::SIGTERM);
    sup.wait_exit(Duration::from_secs(10));
    assert_eq!(sup.of("killed").len(), 1, "{}", sup.dump());
    assert_eq!(sup.of("exited")[0]["signal"], 9);
}

#[test]
fn memory_pressure_reaches_the_worker_before_the_limit() {
    let (sup, _name, _guard) = run_example(
        "pressure",
        &[
            "--memory-max",
            "96MiB",
            "--memory-warn-at",
            "0.5",
            "--sample-every",
            "100ms",
        ],
        "sdk_worker",
        &["--leak", "40"],
    );
    let warning = sup.wait_event("memory_pressure", Duration::from_secs(15));
    let bytes = warning["bytes"].as_u64().expect("bytes");
    assert!((48 * MIB..96 * MIB).contains(&bytes), "{}", sup.dump());
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(sup.path("stdout"))
            .is_ok_and(|s| s.contains("sdk_worker pressure bytes="))
    }));
    // Then the limit itself, with the heap report showing the leak.
    let r = sup.wait_event("restarting", Duration::from_secs(15));
    assert_eq!(r["reason"], "memory");
    let report = &sup.of("exited")[0]["report"];
    assert!(
        report["metrics"]["leak_step_bytes"]
            .as_u64()
            .expect("profiled")
            >= 256 * 1024
    );
    assert!(std::fs::read_to_string(sup.path("stdout"))
        .is_ok_and(|s| s.contains("sdk_worker pressure callback")));
    // It freed its heap on the way out after `Shutdown`; the peak shows the leak.
    assert!(
        report["heap_peak"].as_u64().expect("heap") > 40 * MIB,
        "{}",
        sup.dump()
    );
}

#[test]
fn plain_workers_are_unaffected() {
    // A worker that never speaks the protocol: no ready, no protocol errors, no report.
    let (mut sup, _name, _guard) = run_example(
        "plain",
        &["--restart", "never"],
        "crasher",
        &["--code", "0"],
    );
    sup.wait_exit(Duration::from_secs(10));
    assert!(sup.of("protocol_error").is_empty());
    assert!(sup.of("exited")[0].get("report").is_none());
}
