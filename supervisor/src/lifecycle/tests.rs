use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;

const GRACE: Duration = Duration::from_secs(20);
const HUNG_GRACE: Duration = Duration::from_secs(3);

fn cfg(mode: StopMode) -> Config {
    Config {
        stop_signal: Sig::TERM,
        grace: GRACE,
        mode,
        hung_signal: Sig::ABRT,
        hung_grace: HUNG_GRACE,
        within: Duration::from_secs(60),
        drain: Duration::ZERO,
    }
}

/// How long the `draining` row drains.
const DRAIN: Duration = Duration::from_secs(5);

/// Every phase worth its own row, reached through inputs only, at `t0`.
const PHASES: [&str; 15] = [
    "starting",
    "running",
    "running/sdk",
    "stop-restart",
    "stop-restart/asked",
    "stop-restart/exited",
    "draining",
    "stop-hung",
    "stop-for-good",
    "killing",
    "sweep",
    "deciding",
    "backoff",
    "stopped",
    "fatal",
];

const INPUTS: [&str; 18] = [
    "begin",
    "spawned",
    "spawn-failed",
    "exited",
    "tree-gone",
    "restart",
    "manual",
    "hung",
    "kill-restart",
    "stop",
    "stop(INT)",
    "kill",
    "undelivered",
    "timer-early",
    "timer",
    "decided-restart",
    "decided-done",
    "decided-fatal",
];

fn input(label: &str, t0: Instant) -> (Input, Instant) {
    let late = t0 + Duration::from_secs(3600);
    let i = match label {
        "begin" => Input::Begin,
        "spawned" => Input::Spawned,
        "spawn-failed" => Input::SpawnFailed,
        "exited" => Input::Exited(Exit::Code(3)),
        "tree-gone" => Input::TreeGone,
        "restart" => Input::Restart(Reason::Memory),
        "manual" => Input::Restart(Reason::Manual),
        "hung" => Input::Restart(Reason::Hung),
        "kill-restart" => Input::KillRestart(Reason::Net),
        "stop" => Input::Stop { signal: None },
        "stop(INT)" => Input::Stop {
            signal: Some(Sig::INT),
        },
        "kill" => Input::Kill,
        "undelivered" => Input::ShutdownUndelivered,
        "timer-early" => return (Input::Timer, t0 + Duration::from_millis(1)),
        "timer" => return (Input::Timer, late),
        "decided-restart" => Input::Decided(AfterExit::Restart {
            reason: Reason::Exit,
            delay: Duration::from_secs(1),
        }),
        "decided-done" => Input::Decided(AfterExit::Done),
        "decided-fatal" => Input::Decided(AfterExit::Fatal { restarts: 5 }),
        other => panic!("no input {other}"),
    };
    (i, t0)
}

fn reach(label: &str, mode: StopMode, t0: Instant) -> Lifecycle {
    let drain = if label == "draining" {
        DRAIN
    } else {
        Duration::ZERO
    };
    let mut m = Lifecycle::new(Config { drain, ..cfg(mode) });
    let steps: &[Input] = match label {
        "starting" => &[],
        "running" => &[Input::Begin, Input::Spawned],
        "running/sdk" => &[Input::Begin, Input::Spawned, Input::Speaks(true)],
        "stop-restart" => &[Input::Begin, Input::Spawned, Input::Restart(Reason::Memory)],
        "stop-restart/asked" => &[
            Input::Begin,
            Input::Spawned,
            Input::Speaks(true),
            Input::Restart(Reason::Memory),
        ],
        "stop-restart/exited" => &[
            Input::Begin,
            Input::Spawned,
            Input::Restart(Reason::Memory),
            Input::Exited(Exit::Signal(15)),
        ],
        "draining" => &[Input::Begin, Input::Spawned, Input::Restart(Reason::Memory)],
        "stop-hung" => &[Input::Begin, Input::Spawned, Input::Restart(Reason::Hung)],
        "stop-for-good" => &[Input::Begin, Input::Spawned, Input::Stop { signal: None }],
        "killing" => &[Input::Begin, Input::Spawned, Input::Kill],
        "sweep" => &[Input::Begin, Input::Spawned, Input::Exited(Exit::Code(3))],
        "deciding" => &[
            Input::Begin,
            Input::Spawned,
            Input::Exited(Exit::Code(3)),
            Input::TreeGone,
        ],
        "backoff" => &[
            Input::Begin,
            Input::Spawned,
            Input::Exited(Exit::Code(3)),
            Input::TreeGone,
            Input::Decided(AfterExit::Restart {
                reason: Reason::Exit,
                delay: Duration::from_secs(1),
            }),
        ],
        "stopped" => &[Input::Stop { signal: None }],
        "fatal" => &[
            Input::Begin,
            Input::Spawned,
            Input::Exited(Exit::Code(3)),
            Input::TreeGone,
            Input::Decided(AfterExit::Fatal { restarts: 5 }),
        ],
        other => panic!("no phase {other}"),
    };
    for &i in steps {
        m.on(i, t0);
    }
    m
}

/// The phase in a few words.
fn phase(m: &Lifecycle, t0: Instant) -> String {
    let secs = |d: Instant| d.saturating_duration_since(t0).as_secs();
    match m.phase {
        Phase::Starting => "starting".into(),
        Phase::Running => "running".into(),
        Phase::Stopping {
            cause,
            stage,
            root,
            deadline,
            manual,
        } => {
            let cause = match cause {
                Cause::Restart(r) => format!("restart:{}", r.as_str()),
                Cause::ForGood => "for-good".into(),
                Cause::Exited => "exited".into(),
            };
            let stage = match stage {
                Stage::Draining => "draining",
                Stage::Asked => "asked",
                Stage::Signalled => "signalled",
                Stage::Killing => "killing",
            };
            let root = if root.is_some() {
                "root-gone"
            } else {
                "root-up"
            };
            let manual = if manual { ",manual" } else { "" };
            format!(
                "stopping({cause},{stage},{root},{}s{manual})",
                secs(deadline)
            )
        }
        Phase::Deciding {
            manual, for_good, ..
        } => format!(
            "deciding{}{}",
            if manual { "(manual)" } else { "" },
            if for_good { "(for-good)" } else { "" }
        ),
        Phase::Backoff { until } => format!("backoff({}s)", secs(until)),
        Phase::Stopped => "stopped".into(),
        Phase::Fatal => "fatal".into(),
    }
}

/// The actions in a few words.
fn actions(actions: &[Action]) -> String {
    let mut s = String::new();
    for a in actions {
        if !s.is_empty() {
            s.push_str("; ");
        }
        match a {
            Action::Spawn => s.push_str("spawn"),
            Action::Shutdown { .. } => s.push_str("shutdown"),
            Action::Signal { sig, whom } => {
                let _ = write!(s, "{} to {whom:?}", sig.name());
            }
            Action::Kill => s.push_str("kill"),
            Action::Event(Kind::Stopping { reason, .. }) => {
                let _ = write!(s, "stopping({})", reason.map_or("for good", Reason::as_str));
            }
            Action::Event(Kind::Restarting { reason, delay_ms }) => {
                let _ = write!(s, "restarting({},{delay_ms}ms)", reason.as_str());
            }
            Action::Event(k) => s.push_str(k.name()),
            Action::Decide { exit, requested } => {
                let _ = write!(
                    s,
                    "decide({},{})",
                    exit.as_shell_code(),
                    requested.map_or("-", Reason::as_str)
                );
            }
            Action::Finish => s.push_str("finish"),
        }
    }
    s
}

fn row(phase_label: &str, input_label: &str, mode: StopMode) -> String {
    let t0 = Instant::now();
    let mut m = reach(phase_label, mode, t0);
    let (i, at) = input(input_label, t0);
    let out = m.on(i, at);
    let a = actions(&out);
    if a.is_empty() {
        phase(&m, t0)
    } else {
        format!("{} | {a}", phase(&m, t0))
    }
}

/// Every (phase, input) pair of `group` mode and what it leads to: the phase after, and the
/// actions. Deadlines are in seconds after the phase was reached (3600 + n after a late timer).
const TABLE: &[(&str, &str, &str)] = &[
    ("starting", "begin", "starting | spawn"),
    ("starting", "spawned", "running"),
    ("starting", "spawn-failed", "deciding | decide(127,-)"),
    ("starting", "exited", "starting"),
    ("starting", "tree-gone", "starting"),
    ("starting", "restart", "starting"),
    ("starting", "manual", "starting"),
    ("starting", "hung", "starting"),
    ("starting", "kill-restart", "starting"),
    ("starting", "stop", "stopped | stopped; finish"),
    ("starting", "stop(INT)", "stopped | stopped; finish"),
    ("starting", "kill", "stopped | stopped; finish"),
    ("starting", "undelivered", "starting"),
    ("starting", "timer-early", "starting"),
    ("starting", "timer", "starting"),
    ("starting", "decided-restart", "starting"),
    ("starting", "decided-done", "starting"),
    ("starting", "decided-fatal", "starting"),
    ("running", "begin", "running"),
    ("running", "spawned", "running"),
    ("running", "spawn-failed", "running"),
    (
        "running",
        "exited",
        "stopping(exited,signalled,root-gone,20s) | TERM to Leftovers",
    ),
    ("running", "tree-gone", "running"),
    (
        "running",
        "restart",
        "stopping(restart:memory,signalled,root-up,20s) | stopping(memory); TERM to Tree",
    ),
    (
        "running",
        "manual",
        "stopping(restart:manual,signalled,root-up,20s) | stopping(manual); TERM to Tree",
    ),
    (
        "running",
        "hung",
        "stopping(restart:hung,signalled,root-up,3s) | stopping(hung); ABRT to Root",
    ),
    (
        "running",
        "kill-restart",
        "stopping(restart:net,killing,root-up,10s) | stopping(net); kill",
    ),
    (
        "running",
        "stop",
        "stopping(for-good,signalled,root-up,20s) | stopping(for good); TERM to Tree",
    ),
    (
        "running",
        "stop(INT)",
        "stopping(for-good,signalled,root-up,20s) | stopping(for good); INT to Tree",
    ),
    (
        "running",
        "kill",
        "stopping(for-good,killing,root-up,10s) | stopping(for good); kill",
    ),
    ("running", "undelivered", "running"),
    ("running", "timer-early", "running"),
    ("running", "timer", "running"),
    ("running", "decided-restart", "running"),
    ("running", "decided-done", "running"),
    ("running", "decided-fatal", "running"),
    ("running/sdk", "begin", "running"),
    ("running/sdk", "spawned", "running"),
    ("running/sdk", "spawn-failed", "running"),
    (
        "running/sdk",
        "exited",
        "stopping(exited,signalled,root-gone,20s) | TERM to Leftovers",
    ),
    ("running/sdk", "tree-gone", "running"),
    (
        "running/sdk",
        "restart",
        "stopping(restart:memory,asked,root-up,20s) | stopping(memory); shutdown",
    ),
    (
        "running/sdk",
        "manual",
        "stopping(restart:manual,asked,root-up,20s) | stopping(manual); shutdown",
    ),
    (
        "running/sdk",
        "hung",
        "stopping(restart:hung,signalled,root-up,3s) | stopping(hung); ABRT to Root",
    ),
    (
        "running/sdk",
        "kill-restart",
        "stopping(restart:net,killing,root-up,10s) | stopping(net); kill",
    ),
    (
        "running/sdk",
        "stop",
        "stopping(for-good,asked,root-up,20s) | stopping(for good); shutdown",
    ),
    (
        "running/sdk",
        "stop(INT)",
        "stopping(for-good,asked,root-up,20s) | stopping(for good); shutdown",
    ),
    (
        "running/sdk",
        "kill",
        "stopping(for-good,killing,root-up,10s) | stopping(for good); kill",
    ),
    ("running/sdk", "undelivered", "running"),
    ("running/sdk", "timer-early", "running"),
    ("running/sdk", "timer", "running"),
    ("running/sdk", "decided-restart", "running"),
    ("running/sdk", "decided-done", "running"),
    ("running/sdk", "decided-fatal", "running"),
    (
        "stop-restart",
        "begin",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "spawned",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "spawn-failed",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "exited",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart",
        "tree-gone",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "restart",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "manual",
        "stopping(restart:memory,signalled,root-up,20s,manual)",
    ),
    (
        "stop-restart",
        "hung",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "kill-restart",
        "stopping(restart:memory,killing,root-up,10s) | kill",
    ),
    (
        "stop-restart",
        "stop",
        "stopping(for-good,signalled,root-up,20s) | stopping(for good)",
    ),
    (
        "stop-restart",
        "stop(INT)",
        "stopping(for-good,signalled,root-up,20s) | stopping(for good)",
    ),
    (
        "stop-restart",
        "kill",
        "stopping(for-good,killing,root-up,10s) | stopping(for good); kill",
    ),
    (
        "stop-restart",
        "undelivered",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "timer-early",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "timer",
        "stopping(restart:memory,killing,root-up,3610s) | kill",
    ),
    (
        "stop-restart",
        "decided-restart",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "decided-done",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart",
        "decided-fatal",
        "stopping(restart:memory,signalled,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "begin",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "spawned",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "spawn-failed",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "exited",
        "stopping(restart:memory,signalled,root-gone,20s) | TERM to Leftovers",
    ),
    (
        "stop-restart/asked",
        "tree-gone",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "restart",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "manual",
        "stopping(restart:memory,asked,root-up,20s,manual)",
    ),
    (
        "stop-restart/asked",
        "hung",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "kill-restart",
        "stopping(restart:memory,killing,root-up,10s) | kill",
    ),
    (
        "stop-restart/asked",
        "stop",
        "stopping(for-good,asked,root-up,20s) | stopping(for good)",
    ),
    (
        "stop-restart/asked",
        "stop(INT)",
        "stopping(for-good,asked,root-up,20s) | stopping(for good)",
    ),
    (
        "stop-restart/asked",
        "kill",
        "stopping(for-good,killing,root-up,10s) | stopping(for good); kill",
    ),
    (
        "stop-restart/asked",
        "undelivered",
        "stopping(restart:memory,signalled,root-up,20s) | TERM to Tree",
    ),
    (
        "stop-restart/asked",
        "timer-early",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "timer",
        "stopping(restart:memory,killing,root-up,3610s) | kill",
    ),
    (
        "stop-restart/asked",
        "decided-restart",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "decided-done",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/asked",
        "decided-fatal",
        "stopping(restart:memory,asked,root-up,20s)",
    ),
    (
        "stop-restart/exited",
        "begin",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "spawned",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "spawn-failed",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "exited",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "tree-gone",
        "deciding | decide(143,memory)",
    ),
    (
        "stop-restart/exited",
        "restart",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "manual",
        "stopping(restart:memory,signalled,root-gone,20s,manual)",
    ),
    (
        "stop-restart/exited",
        "hung",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "kill-restart",
        "stopping(restart:memory,killing,root-gone,10s) | kill",
    ),
    (
        "stop-restart/exited",
        "stop",
        "stopping(for-good,signalled,root-gone,20s) | stopping(for good)",
    ),
    (
        "stop-restart/exited",
        "stop(INT)",
        "stopping(for-good,signalled,root-gone,20s) | stopping(for good)",
    ),
    (
        "stop-restart/exited",
        "kill",
        "stopping(for-good,killing,root-gone,10s) | stopping(for good); kill",
    ),
    (
        "stop-restart/exited",
        "undelivered",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "timer-early",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "timer",
        "stopping(restart:memory,killing,root-gone,3610s) | kill",
    ),
    (
        "stop-restart/exited",
        "decided-restart",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "decided-done",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "stop-restart/exited",
        "decided-fatal",
        "stopping(restart:memory,signalled,root-gone,20s)",
    ),
    (
        "draining",
        "begin",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "spawned",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "spawn-failed",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "exited",
        "stopping(restart:memory,signalled,root-gone,20s) | TERM to Leftovers",
    ),
    (
        "draining",
        "tree-gone",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "restart",
        "stopping(restart:memory,signalled,root-up,20s) | TERM to Tree",
    ),
    (
        "draining",
        "manual",
        "stopping(restart:memory,draining,root-up,5s,manual)",
    ),
    (
        "draining",
        "hung",
        "stopping(restart:memory,signalled,root-up,20s) | TERM to Tree",
    ),
    (
        "draining",
        "kill-restart",
        "stopping(restart:memory,killing,root-up,10s) | kill",
    ),
    (
        "draining",
        "stop",
        "stopping(for-good,signalled,root-up,20s) | stopping(for good); TERM to Tree",
    ),
    (
        "draining",
        "stop(INT)",
        "stopping(for-good,signalled,root-up,20s) | stopping(for good); INT to Tree",
    ),
    (
        "draining",
        "kill",
        "stopping(for-good,killing,root-up,10s) | stopping(for good); kill",
    ),
    (
        "draining",
        "undelivered",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "timer-early",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "timer",
        "stopping(restart:memory,signalled,root-up,3620s) | TERM to Tree",
    ),
    (
        "draining",
        "decided-restart",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "decided-done",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "draining",
        "decided-fatal",
        "stopping(restart:memory,draining,root-up,5s)",
    ),
    (
        "stop-hung",
        "begin",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "spawned",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "spawn-failed",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "exited",
        "stopping(restart:hung,signalled,root-gone,3s) | TERM to Leftovers",
    ),
    (
        "stop-hung",
        "tree-gone",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "restart",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "manual",
        "stopping(restart:hung,signalled,root-up,3s,manual)",
    ),
    (
        "stop-hung",
        "hung",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "kill-restart",
        "stopping(restart:hung,killing,root-up,10s) | kill",
    ),
    (
        "stop-hung",
        "stop",
        "stopping(for-good,signalled,root-up,3s) | stopping(for good)",
    ),
    (
        "stop-hung",
        "stop(INT)",
        "stopping(for-good,signalled,root-up,3s) | stopping(for good)",
    ),
    (
        "stop-hung",
        "kill",
        "stopping(for-good,killing,root-up,10s) | stopping(for good); kill",
    ),
    (
        "stop-hung",
        "undelivered",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "timer-early",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "timer",
        "stopping(restart:hung,killing,root-up,3610s) | kill",
    ),
    (
        "stop-hung",
        "decided-restart",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "decided-done",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-hung",
        "decided-fatal",
        "stopping(restart:hung,signalled,root-up,3s)",
    ),
    (
        "stop-for-good",
        "begin",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "spawned",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "spawn-failed",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "exited",
        "stopping(for-good,signalled,root-gone,20s)",
    ),
    (
        "stop-for-good",
        "tree-gone",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "restart",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "manual",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "hung",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "kill-restart",
        "stopping(for-good,killing,root-up,10s) | kill",
    ),
    (
        "stop-for-good",
        "stop",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "stop(INT)",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "kill",
        "stopping(for-good,killing,root-up,10s) | kill",
    ),
    (
        "stop-for-good",
        "undelivered",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "timer-early",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "timer",
        "stopping(for-good,killing,root-up,3610s) | kill",
    ),
    (
        "stop-for-good",
        "decided-restart",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "decided-done",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    (
        "stop-for-good",
        "decided-fatal",
        "stopping(for-good,signalled,root-up,20s)",
    ),
    ("killing", "begin", "stopping(for-good,killing,root-up,10s)"),
    (
        "killing",
        "spawned",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "spawn-failed",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "exited",
        "stopping(for-good,killing,root-gone,10s)",
    ),
    (
        "killing",
        "tree-gone",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "restart",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "manual",
        "stopping(for-good,killing,root-up,10s)",
    ),
    ("killing", "hung", "stopping(for-good,killing,root-up,10s)"),
    (
        "killing",
        "kill-restart",
        "stopping(for-good,killing,root-up,10s)",
    ),
    ("killing", "stop", "stopping(for-good,killing,root-up,10s)"),
    (
        "killing",
        "stop(INT)",
        "stopping(for-good,killing,root-up,10s)",
    ),
    ("killing", "kill", "stopping(for-good,killing,root-up,10s)"),
    (
        "killing",
        "undelivered",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "timer-early",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "timer",
        "stopping(for-good,killing,root-up,3610s)",
    ),
    (
        "killing",
        "decided-restart",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "decided-done",
        "stopping(for-good,killing,root-up,10s)",
    ),
    (
        "killing",
        "decided-fatal",
        "stopping(for-good,killing,root-up,10s)",
    ),
    ("sweep", "begin", "stopping(exited,signalled,root-gone,20s)"),
    (
        "sweep",
        "spawned",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "spawn-failed",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "exited",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    ("sweep", "tree-gone", "deciding | decide(3,-)"),
    (
        "sweep",
        "restart",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "manual",
        "stopping(exited,signalled,root-gone,20s,manual)",
    ),
    ("sweep", "hung", "stopping(exited,signalled,root-gone,20s)"),
    (
        "sweep",
        "kill-restart",
        "stopping(exited,killing,root-gone,10s) | kill",
    ),
    (
        "sweep",
        "stop",
        "stopping(for-good,signalled,root-gone,20s) | stopping(for good)",
    ),
    (
        "sweep",
        "stop(INT)",
        "stopping(for-good,signalled,root-gone,20s) | stopping(for good)",
    ),
    (
        "sweep",
        "kill",
        "stopping(for-good,killing,root-gone,10s) | stopping(for good); kill",
    ),
    (
        "sweep",
        "undelivered",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "timer-early",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "timer",
        "stopping(exited,killing,root-gone,3610s) | kill",
    ),
    (
        "sweep",
        "decided-restart",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "decided-done",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    (
        "sweep",
        "decided-fatal",
        "stopping(exited,signalled,root-gone,20s)",
    ),
    ("deciding", "begin", "deciding"),
    ("deciding", "spawned", "deciding"),
    ("deciding", "spawn-failed", "deciding"),
    ("deciding", "exited", "deciding"),
    ("deciding", "tree-gone", "deciding"),
    ("deciding", "restart", "deciding"),
    ("deciding", "manual", "deciding(manual)"),
    ("deciding", "hung", "deciding"),
    ("deciding", "kill-restart", "deciding"),
    ("deciding", "stop", "deciding(for-good)"),
    ("deciding", "stop(INT)", "deciding(for-good)"),
    ("deciding", "kill", "deciding(for-good)"),
    ("deciding", "undelivered", "deciding"),
    ("deciding", "timer-early", "deciding"),
    ("deciding", "timer", "deciding"),
    (
        "deciding",
        "decided-restart",
        "backoff(1s) | restarting(exit,1000ms)",
    ),
    ("deciding", "decided-done", "stopped | stopped; finish"),
    ("deciding", "decided-fatal", "fatal | fatal; finish"),
    ("backoff", "begin", "backoff(1s)"),
    ("backoff", "spawned", "backoff(1s)"),
    ("backoff", "spawn-failed", "backoff(1s)"),
    ("backoff", "exited", "backoff(1s)"),
    ("backoff", "tree-gone", "backoff(1s)"),
    ("backoff", "restart", "backoff(1s)"),
    ("backoff", "manual", "starting | spawn"),
    ("backoff", "hung", "backoff(1s)"),
    ("backoff", "kill-restart", "backoff(1s)"),
    ("backoff", "stop", "stopped | stopped; finish"),
    ("backoff", "stop(INT)", "stopped | stopped; finish"),
    ("backoff", "kill", "stopped | stopped; finish"),
    ("backoff", "undelivered", "backoff(1s)"),
    ("backoff", "timer-early", "backoff(1s)"),
    ("backoff", "timer", "starting | spawn"),
    ("backoff", "decided-restart", "backoff(1s)"),
    ("backoff", "decided-done", "backoff(1s)"),
    ("backoff", "decided-fatal", "backoff(1s)"),
    ("stopped", "begin", "stopped"),
    ("stopped", "spawned", "stopped"),
    ("stopped", "spawn-failed", "stopped"),
    ("stopped", "exited", "stopped"),
    ("stopped", "tree-gone", "stopped"),
    ("stopped", "restart", "stopped"),
    ("stopped", "manual", "stopped"),
    ("stopped", "hung", "stopped"),
    ("stopped", "kill-restart", "stopped"),
    ("stopped", "stop", "stopped"),
    ("stopped", "stop(INT)", "stopped"),
    ("stopped", "kill", "stopped"),
    ("stopped", "undelivered", "stopped"),
    ("stopped", "timer-early", "stopped"),
    ("stopped", "timer", "stopped"),
    ("stopped", "decided-restart", "stopped"),
    ("stopped", "decided-done", "stopped"),
    ("stopped", "decided-fatal", "stopped"),
    ("fatal", "begin", "fatal"),
    ("fatal", "spawned", "fatal"),
    ("fatal", "spawn-failed", "fatal"),
    ("fatal", "exited", "fatal"),
    ("fatal", "tree-gone", "fatal"),
    ("fatal", "restart", "fatal"),
    ("fatal", "manual", "fatal"),
    ("fatal", "hung", "fatal"),
    ("fatal", "kill-restart", "fatal"),
    ("fatal", "stop", "fatal"),
    ("fatal", "stop(INT)", "fatal"),
    ("fatal", "kill", "fatal"),
    ("fatal", "undelivered", "fatal"),
    ("fatal", "timer-early", "fatal"),
    ("fatal", "timer", "fatal"),
    ("fatal", "decided-restart", "fatal"),
    ("fatal", "decided-done", "fatal"),
    ("fatal", "decided-fatal", "fatal"),
];

#[test]
fn every_phase_and_input_has_a_written_expectation() {
    let mut missing = String::new();
    let mut wrong = String::new();
    for p in PHASES {
        for i in INPUTS {
            let got = row(p, i, StopMode::Group);
            match TABLE.iter().find(|(tp, ti, _)| *tp == p && *ti == i) {
                None => {
                    let _ = writeln!(missing, "    (\"{p}\", \"{i}\", \"{got}\"),");
                }
                Some((_, _, want)) if *want != got => {
                    let _ = writeln!(wrong, "{p} + {i}:\n  want {want}\n  got  {got}");
                }
                Some(_) => {}
            }
        }
    }
    assert!(missing.is_empty(), "rows missing from TABLE:\n{missing}");
    assert!(wrong.is_empty(), "{wrong}");
    assert_eq!(TABLE.len(), PHASES.len() * INPUTS.len());
}

/// Where `main` mode differs: the stop signal goes to the root alone, and what the root leaves
/// behind is SIGKILLed.
#[test]
fn main_mode_signals_the_root_and_kills_the_rest() {
    for (p, i, want) in [
        (
            "running",
            "stop",
            "stopping(for-good,signalled,root-up,20s) | stopping(for good); TERM to Root",
        ),
        (
            "running",
            "restart",
            "stopping(restart:memory,signalled,root-up,20s) | stopping(memory); TERM to Root",
        ),
        (
            "running",
            "exited",
            "stopping(exited,killing,root-gone,10s) | kill",
        ),
        (
            "stop-restart",
            "exited",
            "stopping(restart:memory,killing,root-gone,10s) | kill",
        ),
        (
            "stop-restart/asked",
            "exited",
            "stopping(restart:memory,killing,root-gone,10s) | kill",
        ),
        (
            "stop-restart/asked",
            "undelivered",
            "stopping(restart:memory,signalled,root-up,20s) | TERM to Root",
        ),
        (
            "stop-hung",
            "exited",
            "stopping(restart:hung,killing,root-gone,10s) | kill",
        ),
        (
            "stop-for-good",
            "exited",
            "stopping(for-good,killing,root-gone,10s) | kill",
        ),
    ] {
        assert_eq!(row(p, i, StopMode::Main), want, "{p} + {i}");
    }
}

/// Feeds `inputs` at `t0` and returns every action, rendered.
fn run(mode: StopMode, inputs: &[Input]) -> (Lifecycle, String) {
    let t0 = Instant::now();
    let mut m = Lifecycle::new(cfg(mode));
    let mut all = Vec::new();
    for &i in inputs {
        all.extend(m.on(i, t0));
    }
    let a = actions(&all);
    (m, a)
}

#[test]
fn an_operator_restart_during_a_failure_restart_makes_the_next_start_immediate() {
    let (m, a) = run(
        StopMode::Group,
        &[
            Input::Begin,
            Input::Spawned,
            Input::Restart(Reason::Memory),
            Input::Restart(Reason::Manual),
            Input::Exited(Exit::Signal(15)),
            Input::TreeGone,
            Input::Decided(AfterExit::Restart {
                reason: Reason::Memory,
                delay: Duration::from_secs(4),
            }),
        ],
    );
    assert_eq!(
        a,
        "spawn; stopping(memory); TERM to Tree; decide(143,memory); restarting(memory,0ms); spawn"
    );
    assert_eq!(m.status(), status::Phase::Starting);
}

#[test]
fn an_operator_restart_overrides_a_done_exit() {
    let (_, a) = run(
        StopMode::Group,
        &[
            Input::Begin,
            Input::Spawned,
            Input::Exited(Exit::Code(0)),
            Input::Restart(Reason::Manual),
            Input::TreeGone,
            Input::Decided(AfterExit::Done),
        ],
    );
    assert_eq!(
        a,
        "spawn; TERM to Leftovers; decide(0,-); restarting(manual,0ms); spawn"
    );
}

#[test]
fn a_stop_while_deciding_wins_over_the_decision() {
    for decided in [
        AfterExit::Done,
        AfterExit::Restart {
            reason: Reason::Exit,
            delay: Duration::ZERO,
        },
        AfterExit::Fatal { restarts: 3 },
    ] {
        let (m, a) = run(
            StopMode::Group,
            &[
                Input::Begin,
                Input::SpawnFailed,
                Input::Stop { signal: None },
                Input::Decided(decided),
            ],
        );
        assert_eq!(a, "spawn; decide(127,-); stopped; finish", "{decided:?}");
        assert_eq!(m.status(), status::Phase::Stopped);
        assert_eq!(m.last_exit(), Some(Exit::Code(127)));
    }
}

#[test]
fn a_kill_cuts_a_stop_short_and_the_stop_ends_without_a_process_stuck_in_the_kernel() {
    let t0 = Instant::now();
    let mut m = Lifecycle::new(cfg(StopMode::Group));
    m.on(Input::Begin, t0);
    m.on(Input::Spawned, t0);
    m.on(Input::Stop { signal: None }, t0);
    assert_eq!(m.deadline(), Some(t0 + GRACE));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(actions(&m.on(Input::Kill, t1)), "kill");
    assert_eq!(m.deadline(), Some(t1 + KILL_WAIT));
    assert_eq!(actions(&m.on(Input::Exited(Exit::Signal(9)), t1)), "");
    // A member that does not die of SIGKILL in time is left behind, and said so by the task.
    assert_eq!(
        actions(&m.on(Input::Timer, t1 + KILL_WAIT)),
        "stopped; finish"
    );
    assert!(m.finished());
}

#[test]
fn a_hung_worker_gets_the_heartbeat_signal_and_the_short_grace() {
    let t0 = Instant::now();
    let mut m = Lifecycle::new(cfg(StopMode::Group));
    m.on(Input::Begin, t0);
    m.on(Input::Spawned, t0);
    m.on(Input::Speaks(true), t0);
    // No `Shutdown`: a program whose work loop is stuck cannot honour it.
    assert_eq!(
        actions(&m.on(Input::Restart(Reason::Hung), t0)),
        "stopping(hung); ABRT to Root"
    );
    assert_eq!(m.deadline(), Some(t0 + HUNG_GRACE));
    assert_eq!(actions(&m.on(Input::Timer, t0 + HUNG_GRACE)), "kill");
}

#[test]
fn a_reloaded_stop_policy_applies_from_the_next_stage_of_a_drain_under_way() {
    let t0 = Instant::now();
    let mut m = Lifecycle::new(Config {
        drain: DRAIN,
        ..cfg(StopMode::Group)
    });
    m.on(Input::Begin, t0);
    m.on(Input::Spawned, t0);
    assert_eq!(
        actions(&m.on(Input::Restart(Reason::Manual), t0)),
        "stopping(manual)"
    );
    assert_eq!(m.deadline(), Some(t0 + DRAIN));
    // A reload during the drain: a shorter drain, another signal and grace.
    let t1 = t0 + Duration::from_secs(1);
    m.configure(Config {
        stop_signal: Sig::INT,
        grace: Duration::from_secs(2),
        drain: Duration::from_secs(1),
        ..cfg(StopMode::Group)
    });
    // The drain under way ends when it was due...
    assert_eq!(m.deadline(), Some(t0 + DRAIN));
    assert!(t1 < t0 + DRAIN);
    // ...and the stop that follows is the new one.
    let t2 = t0 + DRAIN;
    assert_eq!(actions(&m.on(Input::Timer, t2)), "INT to Tree");
    assert_eq!(m.deadline(), Some(t2 + Duration::from_secs(2)));
}

/// What the worker task answers to an action, as the executor would.
fn respond(a: &Action, pick: u8) -> Option<Input> {
    match a {
        Action::Spawn => Some(if pick.is_multiple_of(4) {
            Input::SpawnFailed
        } else {
            Input::Spawned
        }),
        Action::Decide { requested, .. } => Some(Input::Decided(match (pick % 3, requested) {
            (_, Some(Reason::Manual)) => AfterExit::Restart {
                reason: Reason::Manual,
                delay: Duration::ZERO,
            },
            (0, _) => AfterExit::Done,
            (1, _) => AfterExit::Fatal { restarts: 5 },
            _ => AfterExit::Restart {
                reason: Reason::Exit,
                delay: Duration::from_millis(u64::from(pick) * 10),
            },
        })),
        _ => None,
    }
}

fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Begin),
        any::<bool>().prop_map(Input::Speaks),
        (0..4i32).prop_map(|c| Input::Exited(Exit::Code(c))),
        Just(Input::Exited(Exit::Signal(9))),
        Just(Input::TreeGone),
        prop::sample::select(Reason::ALL.to_vec()).prop_map(Input::Restart),
        prop::sample::select(Reason::ALL.to_vec()).prop_map(Input::KillRestart),
        Just(Input::Stop { signal: None }),
        Just(Input::Stop {
            signal: Some(Sig::INT)
        }),
        Just(Input::Kill),
        Just(Input::ShutdownUndelivered),
        Just(Input::Timer),
        Just(Input::Spawned),
        Just(Input::SpawnFailed),
        Just(Input::Decided(AfterExit::Done)),
    ]
}

proptest! {
    /// Over any sequence of inputs (the ones that answer an action included, in and out of
    /// turn), with time moving on: a stop or kill, once received, is never followed by a start;
    /// a kill leads to at most one SIGKILL round; nothing happens after the instance is done;
    /// an instance that received a stop is done once its tree is gone.
    #[test]
    fn stops_are_never_lost(
        steps in prop::collection::vec((any_input(), 0u64..30_000, any::<u8>()), 1..60),
        main in any::<bool>(),
        drains in any::<bool>(),
    ) {
        let mode = if main { StopMode::Main } else { StopMode::Group };
        let t0 = Instant::now();
        let drain = if drains { DRAIN } else { Duration::ZERO };
        let mut m = Lifecycle::new(Config { drain, ..cfg(mode) });
        let mut now = t0;
        let (mut stopped, mut killed, mut kills_after, mut finished) = (false, false, 0, false);
        let mut queue = std::collections::VecDeque::new();
        for (input, advance_ms, pick) in steps {
            now += Duration::from_millis(advance_ms);
            queue.push_back(input);
            while let Some(i) = queue.pop_front() {
                if matches!(i, Input::Stop { .. } | Input::Kill) {
                    stopped = true;
                }
                if i == Input::Kill {
                    killed = true;
                }
                for a in m.on(i, now) {
                    prop_assert!(!finished, "{a:?} after the instance finished");
                    match &a {
                        Action::Spawn => prop_assert!(!stopped, "a start after a stop"),
                        Action::Kill if killed => kills_after += 1,
                        Action::Finish => finished = true,
                        _ => {}
                    }
                    if let Some(answer) = respond(&a, pick) {
                        queue.push_back(answer);
                    }
                }
                prop_assert!(kills_after <= 1, "more than one SIGKILL round after a kill");
                prop_assert_eq!(m.finished(), finished);
                if stopped {
                    prop_assert!(m.for_good(), "a received stop was forgotten: {:?}", m.phase);
                }
            }
        }
        if stopped && !finished {
            // Whatever stop is under way ends the instance once the tree is gone.
            for i in [Input::Exited(Exit::Signal(15)), Input::TreeGone] {
                for a in m.on(i, now) {
                    if let Some(answer) = respond(&a, 0) {
                        m.on(answer, now);
                    }
                }
            }
            prop_assert!(m.finished(), "{:?}", m.phase);
        }
    }
}
