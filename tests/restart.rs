//! Restart policy: crash loops back off and go fatal at the intensity limit; restart modes.

mod common;

use std::time::Duration;

use common::{example, run_example, unique, Sup};

fn ts_ms(e: &serde_json::Value) -> f64 {
    let t = humantime::parse_rfc3339(e["ts"].as_str().expect("ts")).expect("rfc3339");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs_f64()
        * 1000.0
}

#[test]
fn crash_loop_backs_off_then_goes_fatal() {
    let (mut sup, _name, _guard) = run_example(
        "crasher",
        &[
            "--max-restarts",
            "3",
            "--within",
            "60s",
            "--backoff-first",
            "200ms",
            "--backoff-max",
            "5s",
        ],
        "crasher",
        &["--code", "3", "--after", "50"],
    );
    let status = sup.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(3),
        "single-command mode: fatal passes on the program's last status\n{}",
        sup.dump()
    );
    let started = sup.of("started");
    let exited = sup.of("exited");
    let restarting = sup.of("restarting");
    assert_eq!(started.len(), 4, "first run + 3 restarts\n{}", sup.dump());
    assert_eq!(exited.len(), 4);
    assert!(exited.iter().all(|e| e["code"] == 3));
    assert_eq!(restarting.len(), 3);
    assert!(restarting.iter().all(|e| e["reason"] == "exit"));
    // Exponential backoff with 10% jitter: ~200, ~400, ~800 ms.
    let delays: Vec<u64> = restarting
        .iter()
        .filter_map(|e| e["delay_ms"].as_u64())
        .collect();
    for (d, expect) in delays.iter().zip([200u64, 400, 800]) {
        assert!(
            (expect * 9 / 10..=expect * 11 / 10).contains(d),
            "delays {delays:?}"
        );
    }
    // And the supervisor really waited: each start comes at least the delay after the exit
    // (timestamps have millisecond resolution).
    for i in 0..3 {
        let gap = ts_ms(&started[i + 1]) - ts_ms(&exited[i]);
        assert!(
            gap + 2.0 >= delays[i] as f64,
            "restart {i} came {gap} ms after exit, delay {}",
            delays[i]
        );
    }
    let fatal = sup.of("fatal");
    assert_eq!(fatal.len(), 1);
    assert_eq!(fatal[0]["restarts"], 3);
}

#[test]
fn on_failure_does_not_restart_a_clean_exit() {
    let name = unique("clean");
    let crasher = example("crasher");
    let mut sup = Sup::start(&[
        "--name", &name, "--", &crasher, "--code", "0", "--after", "10",
    ]);
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
    assert_eq!(sup.of("started").len(), 1);
    assert_eq!(sup.of("stopped").len(), 1);
    assert!(sup.of("restarting").is_empty());
}

#[test]
fn always_restarts_a_clean_exit() {
    let (mut sup, _name, _guard) = run_example(
        "always",
        &[
            "--restart",
            "always",
            "--backoff-first",
            "0",
            "--max-restarts",
            "2",
        ],
        "crasher",
        &["--code", "0", "--after", "10"],
    );
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(sup.of("started").len(), 3, "{}", sup.dump());
    assert!(sup.of("restarting").iter().all(|e| e["delay_ms"] == 0));
    // The program exited 0 every time, yet supervise gave up on it: that is no success.
    assert_eq!(status.code(), Some(1), "{}", sup.dump());
}

#[test]
fn missing_command_is_reported_and_counts_as_a_failure() {
    let mut sup = Sup::start(&[
        "--max-restarts",
        "1",
        "--backoff-first",
        "10ms",
        "--",
        "/nonexistent/program",
    ]);
    let status = sup.wait_exit(Duration::from_secs(20));
    // What a shell answers for a command it cannot run.
    assert_eq!(status.code(), Some(127));
    let failed = sup.of("spawn_failed");
    assert_eq!(failed.len(), 2, "{}", sup.dump());
    assert!(failed[0]["error"]
        .as_str()
        .expect("error")
        .contains("/nonexistent/program"));
}

#[test]
fn replicas_run_side_by_side() {
    let (sup, _name, _guard) =
        run_example("replica", &["--replicas", "3"], "leaky", &["--rate", "0"]);
    sup.wait_nth(3, Duration::from_secs(10), "three starts", |e| {
        e["event"] == "started"
    });
    let mut instances: Vec<u64> = sup
        .of("started")
        .iter()
        .filter_map(|e| e["instance"].as_u64())
        .collect();
    instances.sort_unstable();
    assert_eq!(instances, [0, 1, 2]);
}
