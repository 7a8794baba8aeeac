//! Readiness and health rules for unmodified programs: a TCP or HTTP check, a command, s6's
//! notification fd, a start timeout, and a liveness check that restarts a worker gone ill.

mod common;

use std::time::{Duration, Instant};

use common::{example, run_example_ctl, status_json, unique, wait_until, ProgramGuard, Sup};

const LONG: Duration = Duration::from_secs(15);

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `ready` of the only instance, from `status --json`.
fn ready(sup: &Sup) -> bool {
    status_json(&sup.socket())
        .first()
        .is_some_and(|w| w["ready"] == true)
}

#[test]
fn a_tcp_check_is_not_ready_before_the_server_listens() {
    let port = free_port();
    let spec = format!("tcp://127.0.0.1:{port}");
    let (sup, _name, _guard) = run_example_ctl(
        "tcpready",
        &["--ready", &spec],
        "probe_target",
        &["--port", &port.to_string(), "--listen-after", "2500"],
    );
    let started = Instant::now();
    sup.wait_event("started", LONG);
    sup.wait_socket(LONG);
    // Past the second in which a program without a rule counts as ready, and before it listens.
    while started.elapsed() < Duration::from_millis(1800) {
        assert!(!ready(&sup), "ready before it listens\n{}", sup.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
    let e = sup.wait_event("ready", LONG);
    assert_eq!(e["by"], "tcp", "{}", sup.dump());
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(stdout.contains("probe_target listening"), "{stdout}");
    assert!(wait_until(LONG, || ready(&sup)), "{}", sup.dump());
}

#[test]
fn an_s6_notification_fd_makes_it_ready() {
    let port = free_port();
    let (sup, _name, _guard) = run_example_ctl(
        "fdready",
        &["--ready", "fd:5"],
        "probe_target",
        &[
            "--port",
            &port.to_string(),
            "--notify-fd",
            "5",
            "--notify-after",
            "1500",
        ],
    );
    sup.wait_event("started", LONG);
    sup.wait_socket(LONG);
    assert!(!ready(&sup), "{}", sup.dump());
    let e = sup.wait_event("ready", LONG);
    assert_eq!(e["by"], "fd", "{}", sup.dump());
    sup.wait_stdout("probe_target notified", 1, LONG);
    assert!(ready(&sup), "{}", sup.dump());
}

#[test]
fn a_notification_fd_that_closes_without_a_newline_never_makes_it_ready() {
    // The worker holds fd 5 open and never writes to it.
    let port = free_port();
    let (mut sup, _name, _guard) = run_example_ctl(
        "fdnever",
        &[
            "--ready",
            "fd:5",
            "--start-timeout",
            "2s",
            "--max-restarts",
            "0",
        ],
        "probe_target",
        &["--port", &port.to_string()],
    );
    let finding = sup.wait_nth(1, LONG, "not_ready finding", |e| {
        e["event"] == "finding" && e["kind"] == "not_ready"
    });
    assert_eq!(finding["start_timeout_ms"], 2000);
    assert!(sup.of("ready").is_empty(), "{}", sup.dump());
    sup.wait_exit(LONG);
}

#[test]
fn not_ready_within_the_start_timeout_is_restarted() {
    let port = free_port();
    let spec = format!("http://127.0.0.1:{port}/ready");
    let (sup, _name, _guard) = run_example_ctl(
        "startto",
        &["--ready", &spec, "--start-timeout", "1500ms"],
        "probe_target",
        &["--port", &port.to_string(), "--listen-after", "100000"],
    );
    let r = sup.wait_nth(1, LONG, "restart", |e| e["event"] == "restarting");
    assert_eq!(r["reason"], "not_ready", "{}", sup.dump());
    // A failure like any other: it backs off, then starts again.
    assert!(r["delay_ms"].as_u64().expect("delay") > 0, "{}", sup.dump());
    sup.wait_nth(2, LONG, "second start", |e| e["event"] == "started");
}

#[test]
fn an_exec_check_runs_a_command() {
    let port = free_port();
    let check = format!("exec:{} --code 0 --after 0", example("crasher"));
    let (sup, _name, _guard) = run_example_ctl(
        "execready",
        &["--ready", &check],
        "probe_target",
        &["--port", &port.to_string()],
    );
    let e = sup.wait_event("ready", LONG);
    assert_eq!(e["by"], "exec", "{}", sup.dump());
    // The check's own process is neither a worker nor an orphan.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(sup.of("orphan").is_empty(), "{}", sup.dump());
}

#[test]
fn a_failing_health_check_restarts_with_reason_unhealthy() {
    let name = unique("ill");
    let _guard = ProgramGuard(name.clone());
    let port = free_port();
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--port\", \"{port}\", \"--fail-after\", \"1500\"]\n\
         [program.{name}.ready]\ntcp = \"127.0.0.1:{port}\"\nevery = \"100ms\"\n\
         [program.{name}.health]\nhttp = \"http://127.0.0.1:{port}/healthz\"\nevery = \"200ms\"\nfailures = 3\n",
        example("probe_target")
    ));
    sup.wait_event("ready", LONG);
    let finding = sup.wait_nth(1, LONG, "unhealthy finding", |e| {
        e["event"] == "finding" && e["kind"] == "unhealthy"
    });
    assert_eq!(finding["failures"], 3, "{}", sup.dump());
    assert!(
        finding["detail"]
            .as_str()
            .is_some_and(|d| d.contains("500")),
        "{finding}"
    );
    let r = sup.wait_nth(1, LONG, "restart", |e| e["event"] == "restarting");
    assert_eq!(r["reason"], "unhealthy", "{}", sup.dump());
    // Health was judged only once it was ready, and the 500s came after.
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(stdout.contains("probe_target ill"), "{stdout}");
}

/// Starts `prefork --reuse-port` on `port` outside any supervisor (a sibling holding the port).
fn sibling(port: u16) -> std::process::Child {
    let child = std::process::Command::new(example("prefork"))
        .args([
            "--workers",
            "1",
            "--reuse-port",
            "--port",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the sibling");
    let listening = wait_until(LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "the sibling never listened");
    child
}

/// With SO_REUSEPORT another process listens on the port already: a tcp check passes at once
/// (the sibling answers), while `listen` waits until the instance's own tree listens.
#[test]
fn listen_readiness_belongs_to_the_instance_not_to_a_sibling_on_its_port() {
    let port = free_port();
    let mut other = sibling(port);
    for (rule, by, lies) in [
        (format!("listen:{port}"), "listen", false),
        (format!("tcp://127.0.0.1:{port}"), "tcp", true),
    ] {
        let (sup, _name, _guard) = run_example_ctl(
            "listenready",
            &["--ready", &rule],
            "prefork",
            &[
                "--workers",
                "1",
                "--reuse-port",
                "--port",
                &port.to_string(),
                "--listen-after",
                "2000",
            ],
        );
        let started = Instant::now();
        let e = sup.wait_event("ready", LONG);
        assert_eq!(e["by"], by, "{}", sup.dump());
        let at = started.elapsed();
        if lies {
            assert!(
                at < Duration::from_millis(1500),
                "the sibling answered the tcp check, but it was ready only after {at:?}"
            );
        } else {
            let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
            assert!(
                stdout.contains("prefork master"),
                "ready before its own tree listened\n{}",
                sup.dump()
            );
        }
    }
    // TERM: the master stops its worker too.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(i32::try_from(other.id()).unwrap_or(0), libc::SIGTERM) };
    let _ = other.wait();
}

/// Answered, refused and otherwise failed requests to 127.0.0.1:`port`, a new connection each,
/// until `stop`.
fn load(port: u16, stop: &std::sync::atomic::AtomicBool) -> (u64, u64, u64) {
    use std::io::{Read, Write};
    let (mut ok, mut refused, mut other) = (0, 0, 0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Err(_) => other += 1,
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut text = String::new();
                let answered = s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
                    && s.read_to_string(&mut text).is_ok()
                    && text.starts_with("HTTP/1.0 200");
                if answered {
                    ok += 1;
                } else {
                    other += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (ok, refused, other)
}

/// Two replicas sharing a port (SO_REUSEPORT), each slow to listen: a rolling restart that
/// waits for each replacement by `listen` never leaves the port without a listener.
#[test]
fn a_rolling_restart_by_listen_readiness_refuses_no_connection() {
    let port = free_port();
    let rule = format!("listen:{port}");
    let (sup, name, _guard) = run_example_ctl(
        "listenroll",
        &["--replicas", "2", "--ready", &rule],
        "prefork",
        &[
            "--workers",
            "2",
            "--reuse-port",
            "--port",
            &port.to_string(),
            "--listen-after",
            "700",
        ],
    );
    sup.wait_socket(LONG);
    assert!(wait_until(LONG, || status_json(&sup.socket())
        .iter()
        .filter(|w| w["ready"] == true)
        .count()
        == 2));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, refused, other) = std::thread::scope(|scope| {
        let l = scope.spawn(|| load(port, &stop));
        for _ in 0..2 {
            let (ok, text) = common::ctl(&sup.socket(), &["restart", &name, "--wait"]);
            assert!(ok, "{text}\n{}", sup.dump());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        l.join().expect("load")
    });
    assert!(ok > 50, "only {ok} answered");
    assert_eq!(
        refused,
        0,
        "{refused} refused ({other} otherwise failed) of {}",
        ok + refused + other
    );
}
