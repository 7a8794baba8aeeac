//! Stopping: a worker that ignores TERM is SIGKILLed after the grace; SIGTERM to the supervisor
//! leaves no descendant alive; SIGKILL to the supervisor leaves no worker alive, nor any
//! descendant, even one forked since the last sample.

mod common;

use std::time::{Duration, Instant};

use common::{
    alive, example, forker_grandchild, lifeline_of, pid_of, pidfds_of, pids_of_program,
    run_example, unique, wait_until, ProgramGuard, Sup,
};

#[test]
fn stubborn_worker_is_killed_after_the_grace() {
    let (mut sup, _name, _guard) = run_example("stubborn", &["--grace", "1s"], "stubborn", &[]);
    let started = sup.wait_event("started", Duration::from_secs(10));
    // Wait until it has set its dispositions (it prints after doing so).
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(sup.path("stdout")).is_ok_and(|s| s.contains("ignoring TERM"))
    }));
    let t0 = Instant::now();
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(15));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(!alive(pid_of(&started)));
    let killed = sup.of("killed");
    assert_eq!(killed.len(), 1, "{}", sup.dump());
    assert_eq!(sup.of("exited")[0]["signal"], 9);
    assert_eq!(sup.of("stopped").len(), 1);
    // Single-command mode: the worker's status is ours.
    assert_eq!(status.code(), Some(137));
}

#[test]
fn sigterm_to_supervise_leaves_no_descendant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = unique("tree-a");
    let b = unique("tree-b");
    let c = unique("tree-c");
    let _guards = [
        ProgramGuard(a.clone()),
        ProgramGuard(b.clone()),
        ProgramGuard(c.clone()),
    ];
    let config = dir.path().join("supervise.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[sample]
every = "200ms"
[program.{a}]
command = ["{forker}", "--hold", "8"]
[program.{b}]
command = ["{forker}", "--hold", "8", "--setsid"]
[program.{c}]
command = ["{leaky}", "--rate", "1"]
replicas = 2
stop = {{ grace = "2s" }}
"#,
            forker = example("forker"),
            leaky = example("leaky"),
        ),
    )
    .expect("write config");
    let mut sup = Sup::start(&["-c", config.to_str().expect("utf-8")]);
    sup.wait_nth(4, Duration::from_secs(10), "four starts", |e| {
        e["event"] == "started"
    });
    // Both forkers have their grandchild (2 processes each) and both leaky replicas run.
    assert!(
        wait_until(Duration::from_secs(10), || pids_of_program(&a).len() == 2
            && pids_of_program(&b).len() == 2),
        "{}",
        sup.dump()
    );
    assert_eq!(pids_of_program(&c).len(), 2);
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "a requested stop of a config exits 0\n{}",
        sup.dump()
    );
    for name in [&a, &b, &c] {
        assert!(
            pids_of_program(name).is_empty(),
            "{name} left {:?}\n{}",
            pids_of_program(name),
            sup.dump()
        );
    }
    assert_eq!(sup.of("stopped").len(), 4);
}

#[test]
fn sigkill_to_supervise_leaves_no_worker() {
    let (sup, _name, _guard) =
        run_example("orphaned", &["--replicas", "3"], "leaky", &["--rate", "1"]);
    sup.wait_nth(3, Duration::from_secs(10), "three starts", |e| {
        e["event"] == "started"
    });
    let workers: Vec<i32> = sup.of("started").iter().map(pid_of).collect();
    assert!(workers.iter().all(|&p| alive(p)));
    sup.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || workers
            .iter()
            .all(|&p| !alive(p))),
        "workers outlived a SIGKILLed supervisor: {:?}",
        workers.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
}

#[test]
fn second_sigint_kills_at_once() {
    let (mut sup, _name, _guard) = run_example("stubborn2", &["--grace", "60s"], "stubborn", &[]);
    sup.wait_event("started", Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(sup.path("stdout")).is_ok_and(|s| s.contains("ignoring TERM"))
    }));
    sup.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    sup.signal(libc::SIGINT);
    // Far sooner than the 60 s grace.
    sup.wait_exit(Duration::from_secs(10));
    assert_eq!(sup.of("killed").len(), 1, "{}", sup.dump());
}

#[test]
fn sigkill_to_supervise_leaves_no_grandchild_either() {
    // The grandchild double-forks away and leaves the process group: no death signal reaches it.
    // The lifeline, told of every tree member, kills it once the supervisor is gone.
    let (sup, name, _guard) = run_example(
        "lifeline",
        &["--sample-every", "100ms"],
        "forker",
        &["--hold", "8", "--setsid"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || pids_of_program(&name).len()
            == 2),
        "{}",
        sup.dump()
    );
    // Let a few samples and orphan scans attribute the grandchild to the worker.
    std::thread::sleep(Duration::from_millis(1500));
    sup.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || pids_of_program(&name).is_empty()),
        "left behind: {:?}",
        pids_of_program(&name)
    );
}

#[test]
fn a_grandchild_forked_since_the_last_sample_dies_with_a_sigkilled_supervisor() {
    // Sampling every 20 s: after the sample at spawn, the next is at least 10 s away. The
    // grandchild, forked 1 s in, stays in the worker's process group; nothing has looked at the
    // tree since it appeared when the supervisor is SIGKILLed.
    let (sup, name, _guard) = run_example(
        "late",
        &["--sample-every", "20s"],
        "forker",
        &["--hold", "1", "--fork-after", "1000"],
    );
    let grandchild = forker_grandchild(&sup, &name);
    sup.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(grandchild)),
        "the grandchild {grandchild}, forked since the last sample, outlived a SIGKILLed supervisor"
    );
    assert!(
        wait_until(Duration::from_secs(5), || pids_of_program(&name).is_empty()),
        "left behind: {:?}",
        pids_of_program(&name)
    );
}

#[test]
fn an_orphan_that_leaves_the_session_is_known_as_soon_as_its_parent_exits() {
    // The relay, reparented to the supervisor, forks the grandchild (which calls setsid, leaving
    // the worker's group and session) and exits: the supervisor reaps a process it never
    // spawned, so it looks for orphans at once rather than at the next tick, at least 10 s away.
    let (sup, name, _guard) = run_example(
        "relay",
        &["--sample-every", "20s"],
        "forker",
        &["--hold", "1", "--relay", "--setsid", "--fork-after", "1000"],
    );
    let grandchild = forker_grandchild(&sup, &name);
    let lifeline = lifeline_of(sup.pid()).expect("the lifeline");
    assert!(
        wait_until(Duration::from_secs(3), || pidfds_of(lifeline)
            .contains(&grandchild)),
        "the lifeline was not told of the grandchild {grandchild} (it holds pidfds of {:?})\n{}",
        pidfds_of(lifeline),
        sup.dump()
    );
    sup.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(grandchild)),
        "the grandchild {grandchild} outlived a SIGKILLed supervisor"
    );
}

#[test]
fn what_an_orphan_forks_in_its_new_session_dies_too() {
    // As above, and the grandchild forks at once after setsid: its child, in the grandchild's
    // new session, was never seen by anyone, but the session was (with the grandchild, by the
    // look its parent's exit set off).
    let (sup, name, _guard) = run_example(
        "session",
        &["--sample-every", "20s"],
        "forker",
        &[
            "--hold",
            "1",
            "--relay",
            "--setsid",
            "--grandchild-forks",
            "--fork-after",
            "1000",
        ],
    );
    let grandchild = forker_grandchild(&sup, &name);
    let lifeline = lifeline_of(sup.pid()).expect("the lifeline");
    assert!(
        wait_until(Duration::from_secs(3), || pidfds_of(lifeline)
            .contains(&grandchild)),
        "the lifeline was not told of the grandchild {grandchild}\n{}",
        sup.dump()
    );
    // The worker, the grandchild, and the child the grandchild forks at once after setsid.
    assert!(
        wait_until(Duration::from_secs(5), || pids_of_program(&name).len() == 3),
        "{:?}\n{}",
        pids_of_program(&name),
        sup.dump()
    );
    sup.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || pids_of_program(&name).is_empty()),
        "left behind: {:?}",
        pids_of_program(&name)
    );
}
