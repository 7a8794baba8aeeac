//! A leak handled is no failure: memory restarts neither count toward the restart intensity nor
//! back off, unless the incarnation could not even start under its limit (`limit_too_low`); a
//! program's replicas are taken out one at a time (the capacity guard), except past the ceiling;
//! and a graceful restart can drain first.

mod common;

use std::time::{Duration, Instant};

use common::{alive, ctl, pid_of, run_example_ctl, status_json, wait_until};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn memory_restarts_never_make_a_program_fatal() {
    // 40 MiB/s past a 48 MiB limit: a memory restart about every 1.3 s, with an intensity of 1.
    let (sup, _name, _guard) = run_example_ctl(
        "handled",
        &[
            "--memory-max",
            "48MiB",
            "--memory-for",
            "1",
            "--memory-min-uptime",
            "300ms",
            "--max-restarts",
            "1",
            "--within",
            "60s",
        ],
        "leaky",
        &["--rate", "40"],
    );
    sup.wait_nth(4, LONG, "four memory restarts", |e| {
        e["event"] == "restarting" && e["reason"] == "memory"
    });
    assert!(sup.of("fatal").is_empty(), "{}", sup.dump());
    assert!(alive(sup.pid()), "{}", sup.dump());
    let restarting = sup.of("restarting");
    assert!(
        restarting.iter().all(|e| e["delay_ms"] == 0),
        "a handled leak does not back off\n{}",
        sup.dump()
    );
    assert!(
        !sup.dump().contains("limit_too_low"),
        "each incarnation ran past its min_uptime\n{}",
        sup.dump()
    );
}

#[test]
fn a_limit_below_the_baseline_is_limit_too_low_backs_off_and_ends_fatal() {
    // 64 MiB held from the start under a 32 MiB limit: it can never fit.
    let (mut sup, _name, _guard) = run_example_ctl(
        "toolow",
        &[
            "--memory-max",
            "32MiB",
            "--memory-for",
            "1",
            "--max-restarts",
            "2",
            "--within",
            "60s",
        ],
        "leaky",
        &["--start", "64", "--rate", "0"],
    );
    let f = sup.wait_nth(1, LONG, "limit_too_low", |e| {
        e["event"] == "finding" && e["kind"] == "limit_too_low"
    });
    assert_eq!(f["limit"], 32 << 20, "{f}");
    assert!(f["bytes"].as_u64().unwrap_or(0) > 32 << 20, "{f}");
    assert!(f["bytes_at_start"].as_u64().is_some(), "{f}");
    sup.wait_event("fatal", LONG);
    let delays: Vec<u64> = sup
        .of("restarting")
        .iter()
        .filter_map(|e| e["delay_ms"].as_u64())
        .collect();
    // The backoff grows (100 ms, then 200 ms, ±10 % jitter) as for any failure.
    assert_eq!(delays.len(), 2, "{}", sup.dump());
    assert!(delays[0] >= 90 && delays[1] >= 180, "{delays:?}");
    let status = sup.wait_exit(LONG);
    assert_ne!(status.code(), Some(0), "{}", sup.dump());
}

/// Two replicas leaking at one rate cross their limit within milliseconds of each other: the
/// second waits until the first is up again, so one always serves.
#[test]
fn replicas_leaking_together_are_restarted_one_at_a_time() {
    let (sup, _name, _guard) = run_example_ctl(
        "guard",
        &[
            "--replicas",
            "2",
            "--memory-max",
            "40MiB",
            "--memory-for",
            "1",
            "--memory-min-uptime",
            "100ms",
            "--memory-ceiling",
            "4GiB",
        ],
        "leaky",
        &["--rate", "20"],
    );
    sup.wait_socket(LONG);
    // Watch readiness closely over three restarts of each: never both out.
    let end = Instant::now() + Duration::from_secs(60);
    let mut most_out = 0;
    let mut polls = 0;
    while Instant::now() < end {
        let workers = status_json(&sup.socket());
        let out = workers.iter().filter(|w| w["ready"] != true).count();
        // Both start together: judge from the first moment one was up.
        if polls > 0 || out < 2 {
            polls += 1;
            most_out = most_out.max(out);
        }
        let memory = sup
            .of("restarting")
            .iter()
            .filter(|e| e["reason"] == "memory")
            .count();
        if memory >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let memory = sup
        .of("restarting")
        .iter()
        .filter(|e| e["reason"] == "memory")
        .count();
    assert!(memory >= 6, "only {memory} memory restarts\n{}", sup.dump());
    assert!(
        most_out <= 1,
        "{most_out} instances out at once\n{}",
        sup.dump()
    );
    assert!(
        sup.dump().contains("restart_waits"),
        "the second waited\n{}",
        sup.dump()
    );
}

/// A tree that keeps growing while its restart waits is restarted at once past its ceiling.
#[test]
fn a_tree_past_its_ceiling_does_not_wait() {
    // The sibling restarted first is not up for a second (it says nothing of readiness); at
    // 100 MiB/s the waiting one passes 60 MiB well within that.
    let (sup, _name, _guard) = run_example_ctl(
        "ceiling",
        &[
            "--replicas",
            "2",
            "--memory-max",
            "40MiB",
            "--memory-for",
            "1",
            "--memory-min-uptime",
            "100ms",
            "--memory-ceiling",
            "60MiB",
        ],
        "leaky",
        &["--rate", "100"],
    );
    let f = sup.wait_nth(1, LONG, "over_ceiling", |e| {
        e["event"] == "finding" && e["kind"] == "over_ceiling"
    });
    assert!(f["bytes"].as_u64().unwrap_or(0) > 60 << 20, "{f}");
}

#[test]
fn a_graceful_restart_drains_first_and_a_stop_cuts_the_drain_short() {
    let (mut sup, name, _guard) = run_example_ctl(
        "drain",
        &["--drain", "3s"],
        "crasher",
        &["--after", "1000000"],
    );
    let first = pid_of(&sup.wait_event("started", LONG));
    let (ok, text) = ctl(&sup.socket(), &["restart", &name]);
    assert!(ok, "{text}");
    // Draining: not ready, still running, for the drain.
    assert!(
        wait_until(LONG, || status_json(&sup.socket())
            .iter()
            .any(|w| w["state"] == "draining" && w["ready"] == false)),
        "{}",
        sup.dump()
    );
    let drained = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(first), "stopped before its drain was over");
    sup.wait_nth(2, LONG, "the replacement", |e| e["event"] == "started");
    assert!(
        drained.elapsed() >= Duration::from_millis(2500),
        "replaced {:?} after the drain began",
        drained.elapsed()
    );
    // A stop for good during a drain does not wait for it.
    let (ok, text) = ctl(&sup.socket(), &["restart", &name]);
    assert!(ok, "{text}");
    assert!(wait_until(LONG, || status_json(&sup.socket())
        .iter()
        .any(|w| w["state"] == "draining")));
    let asked = Instant::now();
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the stop waited {:?} for the drain",
        asked.elapsed()
    );
}

/// Requests sent one connection at a time to 127.0.0.1:`port` until `stop`: (answered, failed).
fn client_load(port: u16, stop: &std::sync::atomic::AtomicBool) -> (u64, u64) {
    use std::io::{Read, Write};
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let answered = (|| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            text.starts_with("HTTP/1.0 200").then_some(())
        })();
        if answered.is_some() {
            ok += 1;
        } else {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (ok, failed)
}

/// gunicorn's shape: a master and three workers, one of which leaks. Only that worker is
/// recycled, never the master (its pid never changes), and every request is answered meanwhile.
#[test]
fn only_the_leaking_member_of_a_preforked_tree_is_recycled_and_no_request_fails() {
    let (sup, _name, _guard) = run_example_ctl(
        "prefork",
        &[
            "--memory-max",
            "100MiB",
            "--memory-for",
            "1",
            "--memory-recycle",
            "member",
        ],
        "prefork",
        &[
            "--workers",
            "3",
            "--leak-worker",
            "1",
            "--leak-rate",
            "40",
            "--port-file",
            "@/port",
        ],
    );
    let master = pid_of(&sup.wait_event("started", LONG));
    let mut port = 0;
    assert!(wait_until(LONG, || {
        port = std::fs::read_to_string(sup.path("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        port != 0
    }));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|scope| {
        let load = scope.spawn(|| client_load(port, &stop));
        sup.wait_nth(3, Duration::from_secs(60), "three recycles", |e| {
            e["event"] == "recycled"
        });
        // The tree's members, with the master among them.
        let w = status_json(&sup.socket());
        let members = w[0]["members"].as_array().cloned().unwrap_or_default();
        assert!(
            members.iter().any(|m| m["pid"] == master),
            "members: {members:?}"
        );
        assert!(
            members
                .iter()
                .all(|m| m["command"].as_str().is_some_and(|c| c.contains("prefork"))),
            "{members:?}"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().expect("client")
    });
    let recycled = sup.of("recycled");
    assert!(
        recycled
            .iter()
            .all(|e| e["member"] != master && pid_of(e) == master),
        "{}",
        sup.dump()
    );
    assert!(
        recycled
            .iter()
            .all(|e| e["tree_after"].as_u64() < e["tree_before"].as_u64()),
        "{}",
        sup.dump()
    );
    assert!(sup.of("restarting").is_empty(), "{}", sup.dump());
    assert_eq!(sup.of("started").len(), 1, "{}", sup.dump());
    assert!(w_recycles(&sup) >= 3, "{}", sup.dump());
    assert!(ok > 100, "only {ok} requests answered");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}

/// `restarts_by_reason.recycle` of the first instance.
fn w_recycles(sup: &common::Sup) -> u64 {
    status_json(&sup.socket())[0]["restarts_by_reason"]["recycle"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn scheduled_recycles_are_no_failures() {
    // Every 2 s, with no restart allowed by the intensity: recycled all the same, never fatal.
    let (sup, _name, _guard) = run_example_ctl(
        "every",
        &[
            "--recycle-every",
            "2s",
            "--recycle-jitter",
            "500ms",
            "--max-restarts",
            "0",
        ],
        "crasher",
        &["--after", "1000000"],
    );
    sup.wait_nth(3, LONG, "three recycles", |e| {
        e["event"] == "restarting" && e["reason"] == "recycle"
    });
    assert!(sup.of("fatal").is_empty(), "{}", sup.dump());
    let due = sup
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "recycle_due")
        .count();
    assert!(due >= 3, "{}", sup.dump());
}

#[test]
fn a_worker_is_recycled_after_its_requests() {
    use std::io::{BufRead, BufReader, Write};
    let (sup, _name, _guard) = run_example_ctl(
        "requests",
        &["--recycle-requests", "20", "--memory-min-uptime", "1s"],
        "sdk_worker",
        &["--serve"],
    );
    sup.wait_stdout("sdk_worker port=", 1, LONG);
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    let port: u16 = stdout
        .lines()
        .find_map(|l| l.split("port=").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .expect("port");
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    for i in 0..19 {
        writeln!(conn, "request {i}").expect("send");
        let mut line = String::new();
        reader.read_line(&mut line).expect("echo");
    }
    // 19 requests: not yet (give it a few samples to be sure).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        sup.of("restarting").is_empty(),
        "recycled before its 20th request\n{}",
        sup.dump()
    );
    writeln!(conn, "request 19").expect("send");
    let r = sup.wait_nth(1, LONG, "the recycle", |e| e["event"] == "restarting");
    assert_eq!(r["reason"], "recycle", "{}", sup.dump());
    assert_eq!(r["delay_ms"], 0, "{}", sup.dump());
}

#[test]
fn a_tree_is_recycled_before_its_trend_reaches_the_limit() {
    // 2 MiB/s towards a 100 MiB limit, the trend read over 10 s (a leak rate it never reaches,
    // so `leak` itself never fires): due once the trend says 60 s or less, long before the limit.
    let (sup, _name, _guard) = run_example_ctl(
        "before",
        &[
            "--memory-max",
            "100MiB",
            "--recycle-before",
            "60s",
            "--leak",
            "1GiB/10s",
            "--on-leak",
            "warn",
        ],
        "leaky",
        &["--rate", "2", "--start", "10"],
    );
    let r = sup.wait_nth(1, Duration::from_secs(60), "the recycle", |e| {
        e["event"] == "restarting"
    });
    assert_eq!(r["reason"], "recycle", "{}", sup.dump());
    let due = sup
        .events()
        .into_iter()
        .find(|e| e["kind"] == "recycle_due")
        .expect("recycle_due");
    assert!(
        due["eta_ms"].as_u64().is_some_and(|ms| ms <= 60_000),
        "{due}"
    );
    assert!(sup.of("memory_over").is_empty(), "{}", sup.dump());
}

#[test]
fn a_draining_tree_is_held_to_its_ceiling() {
    // Over its limit at 100 MiB/s with a 10 s drain: past the ceiling within a second of the
    // drain's start, which ends it.
    let (sup, _name, _guard) = run_example_ctl(
        "drainceil",
        &[
            "--memory-max",
            "40MiB",
            "--memory-for",
            "1",
            "--memory-ceiling",
            "80MiB",
            "--memory-min-uptime",
            "100ms",
            "--drain",
            "10s",
        ],
        "leaky",
        &["--rate", "100"],
    );
    let stopping = sup.wait_nth(1, LONG, "stopping", |e| e["event"] == "stopping");
    let f = sup.wait_nth(1, LONG, "over_ceiling", |e| e["kind"] == "over_ceiling");
    sup.wait_nth(2, LONG, "the replacement", |e| e["event"] == "started");
    let ts = |e: &serde_json::Value| e["ts"].as_str().unwrap_or_default().to_owned();
    let started = sup.of("started");
    // Within a few seconds of the drain's start, not after its 10 s.
    let t0 = chrono_ms(&ts(&stopping));
    let t1 = chrono_ms(&ts(&started[1]));
    assert!(
        t1 - t0 < 5_000,
        "replaced {} ms after its drain began\n{}",
        t1 - t0,
        sup.dump()
    );
    assert!(f["bytes"].as_u64().unwrap_or(0) > 80 << 20, "{f}");
}

/// Milliseconds since midnight of an event's `ts` (`2026-12-07T22:51:03.942Z`).
fn chrono_ms(ts: &str) -> i64 {
    let time = ts
        .split('T')
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: i64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let m: i64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let s: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    (h * 3600 + m * 60) * 1000 + (s * 1000.0) as i64
}

/// A tree that ignores its stop signal and keeps leaking is SIGKILLed past its ceiling, not
/// after the whole grace.
#[test]
fn a_tree_leaking_through_its_grace_is_killed_at_its_ceiling() {
    let (sup, _name, _guard) = run_example_ctl(
        "graceceil",
        &[
            "--memory-max",
            "40MiB",
            "--memory-for",
            "1",
            "--memory-ceiling",
            "80MiB",
            "--memory-min-uptime",
            "100ms",
            "--grace",
            "30s",
        ],
        "leaky",
        &["--rate", "100", "--ignore-term"],
    );
    let stopping = sup.wait_nth(1, LONG, "stopping", |e| e["event"] == "stopping");
    sup.wait_nth(1, LONG, "killed", |e| e["event"] == "killed");
    sup.wait_nth(2, LONG, "the replacement", |e| e["event"] == "started");
    let t0 = chrono_ms(stopping["ts"].as_str().unwrap_or_default());
    let t1 = chrono_ms(sup.of("started")[1]["ts"].as_str().unwrap_or_default());
    assert!(
        t1 - t0 < 10_000,
        "replaced {} ms after its stop began\n{}",
        t1 - t0,
        sup.dump()
    );
    assert!(
        sup.events().iter().any(|e| e["kind"] == "over_ceiling"),
        "{}",
        sup.dump()
    );
}
