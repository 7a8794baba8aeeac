//! Memory supervision: a leaking worker is restarted with reason `memory` before its tree gets far
//! past the limit, and memory held by a double-forked grandchild counts.

mod common;

use std::time::Duration;

use common::{
    alive, example, pid_of, pids_of_program, run_example, unique, wait_until, ProgramGuard, Sup,
    MIB,
};

#[test]
fn leaky_worker_is_restarted_for_memory_close_to_the_limit() {
    let name = unique("leaky");
    let _guard = ProgramGuard(name.clone());
    let leaky = example("leaky");
    let limit = 48 * MIB;
    let sup = Sup::start(&[
        "--name",
        &name,
        "--memory-max",
        "48MiB",
        "--memory-for",
        "1",
        "--",
        &leaky,
        "--rate",
        "40",
    ]);
    let first = sup.wait_event("started", Duration::from_secs(10));
    let restarting = sup.wait_event("restarting", Duration::from_secs(20));
    assert_eq!(restarting["reason"], "memory", "{}", sup.dump());
    assert_eq!(pid_of(&restarting), pid_of(&first));
    let over = sup.of("memory_over");
    assert_eq!(
        over.len(),
        1,
        "--memory-for 1 acts on the first sample over\n{}",
        sup.dump()
    );
    let bytes = over[0]["bytes"].as_u64().expect("bytes");
    assert_eq!(over[0]["limit"].as_u64(), Some(limit));
    assert_eq!(over[0]["measure"], "rss");
    assert!(bytes > limit);
    // Adaptive sampling catches a 40 MiB/s leak within a few tens of ms of crossing the limit;
    // allow generous slack for a loaded CI machine (a fixed 1 s period would overshoot by 40 MiB).
    assert!(
        bytes < limit + 16 * MIB,
        "tree got to {} MiB past a 48 MiB limit",
        bytes / MIB
    );
    // The old instance is gone and a new one runs.
    let second = sup.wait_nth(2, Duration::from_secs(10), "second start", |e| {
        e["event"] == "started"
    });
    assert_ne!(pid_of(&second), pid_of(&first));
    assert!(wait_until(Duration::from_secs(5), || !alive(pid_of(
        &first
    ))));
    let exited = sup.wait_event("exited", Duration::from_secs(5));
    assert_eq!(
        exited["signal"],
        15,
        "stopped with the stop signal: {}",
        sup.dump()
    );
}

#[test]
fn memory_for_needs_consecutive_samples() {
    let (sup, _name, _guard) = run_example(
        "leaky3",
        &[
            "--memory-max",
            "32MiB",
            "--memory-for",
            "3",
            "--sample-every",
            "200ms",
        ],
        "leaky",
        &["--rate", "20"],
    );
    let restarting = sup.wait_event("restarting", Duration::from_secs(20));
    assert_eq!(restarting["reason"], "memory");
    let counts: Vec<u64> = sup
        .of("memory_over")
        .iter()
        .filter_map(|e| e["count"].as_u64())
        .collect();
    assert_eq!(&counts[..3], [1, 2, 3], "{}", sup.dump());
}

fn grandchild_memory_counts(setsid: bool) {
    let name = unique("forker");
    let _guard = ProgramGuard(name.clone());
    let forker = example("forker");
    let mut args = vec![
        "--name",
        &name,
        "--memory-max",
        "40MiB",
        "--memory-for",
        "2",
        "--sample-every",
        "200ms",
        "--max-restarts",
        "0",
        "--",
        &forker,
        "--hold",
        "64",
    ];
    if setsid {
        args.push("--setsid");
    }
    let mut sup = Sup::start(&args);
    let started = sup.wait_event("started", Duration::from_secs(10));
    // The worker itself holds a few MiB; only its grandchild, reparented to the supervisor, holds
    // 64 MiB. The limit is hit only if the grandchild is counted. (Not how far past the limit
    // the tree was: the first sample over it may come while the grandchild is still touching
    // its 64 MiB.)
    let own = common::rss(pid_of(&started)).unwrap_or(0);
    assert!(own < 20 * MIB, "the worker alone holds {own} bytes");
    let over = sup.wait_event("memory_over", Duration::from_secs(20));
    assert!(
        over["bytes"].as_u64().expect("bytes") > 40 * MIB,
        "{}",
        sup.dump()
    );
    // Alive still, or already stopped with its tree (past the 60 MiB ceiling it goes at once).
    let seen = wait_until(Duration::from_secs(10), || {
        pids_of_program(&name)
            .into_iter()
            .any(|p| p != pid_of(&started))
            || !sup.of("exited").is_empty()
    });
    assert!(seen, "no grandchild seen\n{}", sup.dump());
    // --max-restarts 0: the memory restart is over the intensity, so the program goes fatal and
    // the supervisor exits, with the worker's last status (single-command mode); nothing of the
    // tree may remain.
    sup.wait_event("fatal", Duration::from_secs(20));
    let status = sup.wait_exit(Duration::from_secs(20));
    let last = sup.of("exited").last().and_then(common::shell_status);
    assert!(last.is_some(), "{}", sup.dump());
    assert_eq!(status.code(), last, "{}", sup.dump());
    assert!(
        wait_until(Duration::from_secs(5), || pids_of_program(&name).is_empty()),
        "left behind: {:?}\n{}",
        pids_of_program(&name),
        sup.dump()
    );
}

#[test]
fn double_forked_grandchild_is_counted_and_killed() {
    grandchild_memory_counts(false);
}

#[test]
fn grandchild_that_left_the_process_group_is_counted_and_killed() {
    grandchild_memory_counts(true);
}

#[test]
fn pss_measure_is_reported() {
    let (sup, _name, _guard) = run_example(
        "leakypss",
        &[
            "--memory-max",
            "24MiB",
            "--memory-measure",
            "pss",
            "--memory-for",
            "1",
        ],
        "leaky",
        &["--rate", "30"],
    );
    let over = sup.wait_event("memory_over", Duration::from_secs(20));
    assert_eq!(over["measure"], "pss");
    assert!(over["bytes"].as_u64().expect("bytes") > 24 * MIB);
    assert_eq!(
        sup.wait_event("restarting", Duration::from_secs(10))["reason"],
        "memory"
    );
}
