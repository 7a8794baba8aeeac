//! A stop that was requested is never lost. TERM or INT to the supervisor while a worker's tree is
//! already being stopped in order to restart it (for memory, a stale heartbeat, a leak, an
//! operator's restart or roll, or the clean-up of what an exited worker left behind) turns that
//! stop into a stop for good: the supervisor exits within that stop's grace and a second, with
//! nothing of the program left and nothing started after the signal.
//!
//! Every worker here outlives the stop signal (it ignores TERM, or its tree holds a process that
//! does), so each restart-stop lasts its whole grace and the signal lands inside it.

mod common;

use std::time::{Duration, Instant};

use common::{alive, ctl, pid_of, pids_of_program, run_example_ctl, wait_until, Sup};
use serde_json::Value;

/// The grace of every stop here (`--grace`; the hung case's heartbeat grace is the default 3 s).
const GRACE: Duration = Duration::from_secs(4);
const GRACE_FLAG: &str = "4s";

/// The restart-stop the signal interrupts.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Memory,
    Hung,
    Leak,
    Manual,
    Roll,
    Leftover,
}

impl Phase {
    /// The `reason` of the `stopping` event that begins the restart-stop, if there is one.
    fn reason(self) -> Option<&'static str> {
        match self {
            Phase::Memory => Some("memory"),
            Phase::Hung => Some("hung"),
            Phase::Leak => Some("leak"),
            Phase::Manual | Phase::Roll => Some("manual"),
            Phase::Leftover => None,
        }
    }
}

fn is_stopping(e: &Value, reason: &str) -> bool {
    e["event"] == "stopping" && e["reason"] == reason && e["for_good"] == false
}

/// Starts the worker for `phase` and returns once its restart-stop is under way, with the
/// instances that were running when it began.
fn enter(phase: Phase) -> (Sup, String, common::ProgramGuard, Vec<u64>) {
    let grace = ["--grace", GRACE_FLAG];
    let (sup, name, guard) = match phase {
        Phase::Memory => run_example_ctl(
            "sds-mem",
            &[&grace[..], &["--memory-max", "64MiB", "--memory-for", "1"]].concat(),
            "stubborn",
            &["--hold", "100"],
        ),
        Phase::Hung => run_example_ctl(
            "sds-hung",
            &[
                &grace[..],
                &["--heartbeat-timeout", "1s", "--sample-every", "200ms"],
            ]
            .concat(),
            "sdk_worker",
            &[
                "--hang-after",
                "500",
                "--ignore-signals",
                "--ignore-shutdown",
            ],
        ),
        Phase::Leak => run_example_ctl(
            "sds-leak",
            &[
                &grace[..],
                &["--leak", "6MiB/10s", "--sample-every", "200ms"],
            ]
            .concat(),
            "leaky",
            &["--rate", "1.5", "--step-ms", "100", "--ignore-term"],
        ),
        Phase::Manual => run_example_ctl("sds-manual", &grace, "stubborn", &[]),
        Phase::Roll => run_example_ctl(
            "sds-roll",
            &[&grace[..], &["--replicas", "3"]].concat(),
            "stubborn",
            &[],
        ),
        Phase::Leftover => run_example_ctl(
            "sds-left",
            &grace,
            "forker",
            &[
                "--hold",
                "0",
                "--grandchild-ignores-term",
                "--exit-after",
                "300",
            ],
        ),
    };
    let long = Duration::from_secs(30);
    let running: Vec<u64> = match phase {
        Phase::Roll => vec![0, 1, 2],
        Phase::Leftover => vec![],
        _ => vec![0],
    };
    match phase {
        // The trigger the supervisor acts on is accepted as the start of the phase as well as the
        // `stopping` event, so that a supervisor without that event still shows what happens
        // to the signal; the event itself is checked at the end.
        Phase::Memory => {
            sup.wait_stdout("ignoring TERM", 1, long);
            sup.wait_nth(1, long, "the memory restart-stop", |e| {
                is_stopping(e, "memory") || e["event"] == "memory_over"
            });
        }
        Phase::Hung => {
            sup.wait_nth(1, long, "the hung restart-stop", |e| {
                is_stopping(e, "hung") || (e["event"] == "finding" && e["kind"] == "hung")
            });
        }
        Phase::Leak => {
            sup.wait_nth(1, long, "the leak restart-stop", |e| {
                is_stopping(e, "leak") || (e["event"] == "finding" && e["kind"] == "leak")
            });
        }
        Phase::Manual | Phase::Roll => {
            sup.wait_stdout("ignoring TERM", running.len(), long);
            let (ok, text) = ctl(&sup.socket(), &["restart", &name]);
            assert!(ok, "restart refused: {text}\n{}", sup.dump());
            // Not asserted here (see above): waited for so that the signal comes after it.
            wait_until(Duration::from_secs(3), || {
                sup.events().iter().any(|e| is_stopping(e, "manual"))
            });
        }
        Phase::Leftover => {
            // The root's own death, seen in /proc rather than waited for as an event, for the
            // same reason; the `exited` event is checked at the end.
            let root = pid_of(&sup.wait_event("started", long));
            assert!(
                wait_until(long, || !alive(root)),
                "the worker did not exit\n{}",
                sup.dump()
            );
            assert!(
                !pids_of_program(&name).is_empty(),
                "the TERM-ignoring grandchild is already gone\n{}",
                sup.dump()
            );
        }
    }
    (sup, name, guard, running)
}

/// Puts `signal` inside `phase`'s restart-stop and checks that it ends the run as a stop for
/// good would.
fn signal_during(phase: Phase, signal: i32) {
    let (mut sup, name, _guard, running) = enter(phase);
    // Well inside the stop, which lasts the whole grace.
    std::thread::sleep(Duration::from_millis(500));
    let seen = sup.events().len();
    let started = sup.of("started").len();
    let t0 = Instant::now();
    sup.signal(signal);
    let status = sup.wait_exit(GRACE + Duration::from_secs(1));
    let took = t0.elapsed();
    assert!(
        status.code().is_some(),
        "supervise died of a signal ({status:?}) instead of stopping\n{}",
        sup.dump()
    );
    assert!(
        wait_until(Duration::from_secs(1), || pids_of_program(&name).is_empty()),
        "left behind: {:?}\n{}",
        pids_of_program(&name),
        sup.dump()
    );
    assert_eq!(
        sup.of("started").len(),
        started,
        "a worker was started after the signal\n{}",
        sup.dump()
    );

    // The events tell the same story: the restart-stop began before the signal, and each
    // instance running then was stopped for good after it.
    let events = sup.events();
    if let Some(reason) = phase.reason() {
        assert!(
            events[..seen].iter().any(|e| is_stopping(e, reason)),
            "no `stopping` (reason {reason}, for_good false) before the signal \
             ({took:?} to exit)\n{}",
            sup.dump()
        );
    }
    if matches!(phase, Phase::Leftover) {
        assert!(
            events[..seen]
                .iter()
                .any(|e| e["event"] == "exited" && e["code"] == 3),
            "the root's `exited` (code 3) was not written when it exited, before the signal\n{}",
            sup.dump()
        );
    }
    for instance in running {
        assert!(
            events[seen..].iter().any(|e| e["event"] == "stopping"
                && e["for_good"] == true
                && e["instance"] == instance),
            "instance {instance}: no `stopping` for good after the signal\n{}",
            sup.dump()
        );
    }
}

#[test]
fn term_during_a_memory_restart() {
    signal_during(Phase::Memory, libc::SIGTERM);
}

#[test]
fn int_during_a_memory_restart() {
    signal_during(Phase::Memory, libc::SIGINT);
}

#[test]
fn term_during_a_hung_restart() {
    signal_during(Phase::Hung, libc::SIGTERM);
}

#[test]
fn int_during_a_hung_restart() {
    signal_during(Phase::Hung, libc::SIGINT);
}

#[test]
fn term_during_a_leak_restart() {
    signal_during(Phase::Leak, libc::SIGTERM);
}

#[test]
fn int_during_a_leak_restart() {
    signal_during(Phase::Leak, libc::SIGINT);
}

#[test]
fn term_during_a_manual_restart() {
    signal_during(Phase::Manual, libc::SIGTERM);
}

#[test]
fn int_during_a_manual_restart() {
    signal_during(Phase::Manual, libc::SIGINT);
}

#[test]
fn term_during_a_rolling_restart() {
    signal_during(Phase::Roll, libc::SIGTERM);
}

#[test]
fn int_during_a_rolling_restart() {
    signal_during(Phase::Roll, libc::SIGINT);
}

#[test]
fn term_while_an_exited_worker_is_cleaned_up() {
    signal_during(Phase::Leftover, libc::SIGTERM);
}

#[test]
fn int_while_an_exited_worker_is_cleaned_up() {
    signal_during(Phase::Leftover, libc::SIGINT);
}
