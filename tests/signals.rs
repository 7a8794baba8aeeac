//! Signals to the supervisor: HUP reloads the config (and is forwarded in single-command mode),
//! QUIT stops gracefully, every other catchable signal is forwarded to the workers and never
//! ends or suspends the supervisor; `supervise signal` sends one to chosen instances.

mod common;

use std::time::Duration;

use common::{
    alive, ctl_output, example, pid_of, pids_of_program, proc_state, run_example, run_example_ctl,
    sigcount_log, status_json, times_received, unique, wait_until, ProgramGuard, Sup,
};

fn config(programs: &[(&str, &str, u32)]) -> String {
    let leaky = example("leaky");
    programs
        .iter()
        .map(|(name, rate, replicas)| {
            format!("[program.{name}]\ncommand = [\"{leaky}\", \"--rate\", \"{rate}\"]\nreplicas = {replicas}\n")
        })
        .collect()
}

#[test]
fn hup_reloads_changed_added_and_removed_programs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (same, changed, removed, added) = (
        unique("same"),
        unique("changed"),
        unique("removed"),
        unique("added"),
    );
    let _guards = [&same, &changed, &removed, &added].map(|n| ProgramGuard(n.clone()));
    let path = dir.path().join("supervise.toml");
    std::fs::write(
        &path,
        config(&[(&same, "0", 1), (&changed, "0", 2), (&removed, "0", 1)]),
    )
    .expect("write");
    let sup = Sup::start(&["-c", path.to_str().expect("utf-8")]);
    sup.wait_nth(4, Duration::from_secs(10), "four starts", |e| {
        e["event"] == "started"
    });
    let first_same = pid_of(
        &sup.of("started")
            .into_iter()
            .find(|e| e["program"] == same.as_str())
            .expect("same"),
    );

    // A broken config changes nothing.
    std::fs::write(&path, "[program.x]\nreplicas = 0\n").expect("write");
    sup.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sup.of("started").len(), 4);
    assert!(sup.of("stopped").is_empty(), "{}", sup.dump());

    std::fs::write(
        &path,
        config(&[(&same, "0", 1), (&changed, "1", 2), (&added, "0", 1)]),
    )
    .expect("write");
    sup.signal(libc::SIGHUP);
    let is =
        |e: &serde_json::Value, kind: &str, name: &str| e["event"] == kind && e["program"] == name;
    sup.wait_nth(1, Duration::from_secs(10), "removed stops", |e| {
        is(e, "stopped", &removed)
    });
    sup.wait_nth(1, Duration::from_secs(10), "added starts", |e| {
        is(e, "started", &added)
    });
    // Both replicas of the changed program are replaced, one after the other.
    sup.wait_nth(4, Duration::from_secs(10), "changed restarts", |e| {
        is(e, "started", &changed)
    });
    let changed_events: Vec<_> = sup
        .events()
        .into_iter()
        .filter(|e| {
            e["program"] == changed.as_str() && (e["event"] == "started" || e["event"] == "stopped")
        })
        .map(|e| format!("{}{}", e["event"].as_str().unwrap_or("?"), e["instance"]))
        .collect();
    assert_eq!(
        changed_events,
        ["started0", "started1", "stopped0", "started0", "stopped1", "started1"]
    );
    let new = sup
        .events()
        .into_iter()
        .filter(|e| is(e, "started", &changed))
        .nth(2)
        .expect("new instance");
    assert_eq!(new["command"][2], "1", "the new command runs");
    // The unchanged program was left alone.
    assert_eq!(
        sup.events()
            .iter()
            .filter(|e| e["program"] == same.as_str())
            .count(),
        1
    );
    assert!(alive(first_same));
}

#[test]
fn usr1_is_forwarded_to_workers() {
    let (sup, _name, _guard) = run_example(
        "usr1",
        &["--replicas", "2", "--restart", "never"],
        "leaky",
        &["--rate", "0"],
    );
    sup.wait_nth(2, Duration::from_secs(10), "two starts", |e| {
        e["event"] == "started"
    });
    // leaky keeps USR1's default action: it dies of it.
    assert!(wait_until(Duration::from_secs(5), || {
        sup.signal(libc::SIGUSR1);
        sup.of("exited").len() == 2
    }));
    assert!(
        sup.of("exited")
            .iter()
            .all(|e| e["signal"] == libc::SIGUSR1),
        "{}",
        sup.dump()
    );
}

/// `sigcount` under supervise with a control socket: (supervisor, program name, guard, root).
fn recorder(prefix: &str, flags: &[&str], args: &[&str]) -> (Sup, String, ProgramGuard, i32) {
    let mut all = vec!["--log", "@/sig.log"];
    all.extend_from_slice(args);
    let (sup, name, guard) = run_example_ctl(prefix, flags, "sigcount", &all);
    let root = pid_of(&sup.wait_event("started", LONG));
    sup.wait_stdout("sigcount ready", 1, LONG);
    (sup, name, guard, root)
}

/// Waits until `pid` has logged `signal` `n` times; on timeout, says what became of the
/// supervisor.
fn wait_received(sup: &Sup, pid: i32, signal: &str, n: usize) {
    let ok = wait_until(Duration::from_secs(5), || {
        times_received(&sup.path("sig.log"), pid, signal) >= n
    });
    assert!(
        ok,
        "{pid} never got {signal} (#{n}); supervise alive: {}, state {:?}\n{:?}\n{}",
        alive(sup.pid()),
        proc_state(sup.pid()),
        sigcount_log(&sup.path("sig.log")),
        sup.dump()
    );
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn other_signals_are_forwarded_and_never_end_the_supervisor() {
    let (sup, _name, _guard, root) = recorder("fwd", &[], &[]);
    let rt = libc::SIGRTMIN() + 5;
    for (signal, name) in [
        (libc::SIGALRM, "ALRM"),
        (libc::SIGVTALRM, "VTALRM"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGPWR, "PWR"),
        (libc::SIGSYS, "SYS"),
        (libc::SIGXCPU, "XCPU"),
        (libc::SIGXFSZ, "XFSZ"),
        (libc::SIGURG, "URG"),
        (libc::SIGPROF, "PROF"),
        (rt, "RTMIN+5"),
    ] {
        sup.signal(signal);
        wait_received(&sup, root, name, 1);
        assert!(alive(sup.pid()), "supervise died of {name}\n{}", sup.dump());
    }
    let workers = status_json(&sup.socket());
    assert_eq!(workers[0]["state"], "running", "{workers:?}");
    assert_eq!(sup.of("started").len(), 1, "{}", sup.dump());
}

/// A `SigBlk:`/`SigIgn:`-style line of `/proc/PID[/task/TID]/status` as a mask (bit N-1 for
/// signal N).
fn status_mask(status_file: &std::path::Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status_file).ok()?;
    let hex = text.lines().find_map(|l| l.strip_prefix(key))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Signals 32 and 33, which glibc keeps for itself (SIGCANCEL, SIGSETXID): its sigaction and
/// sigprocmask refuse them, so they once kept their default action in supervise, which kills
/// (exit 160). They are forwarded like every other signal, supervise stays up, and every one of
/// its threads blocks them (a thread that did not could be picked to take one).
#[test]
fn glibc_reserved_signals_32_and_33_are_forwarded_and_never_end_the_supervisor() {
    let extra = tempfile::tempdir().expect("tempdir");
    let history = extra.path().join("history");
    let logs = extra.path().join("logs");
    // A history file and log files: their writers are threads of their own.
    let (sup, _name, _guard, root) = recorder(
        "rsv",
        &[
            "--history",
            history.to_str().expect("utf-8"),
            "--log-dir",
            logs.to_str().expect("utf-8"),
        ],
        &[],
    );
    let reserved = (1u64 << 31) | (1u64 << 32);
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", sup.pid()))
        .expect("tasks")
        .filter_map(Result::ok)
        .map(|t| t.path().join("status"))
        .collect();
    assert!(tasks.len() > 1, "{tasks:?}");
    for task in &tasks {
        // A thread that ended since the listing has no status left to read.
        let Some(blocked) = status_mask(task, "SigBlk:") else {
            continue;
        };
        assert_eq!(
            blocked & reserved,
            reserved,
            "{}: SigBlk {blocked:x}",
            task.display()
        );
    }
    // The worker is born with them at their default action (supervise's own are ignored).
    let ignored = status_mask(
        std::path::Path::new(&format!("/proc/{root}/status")),
        "SigIgn:",
    );
    assert_eq!(ignored.map(|m| m & reserved), Some(0), "{ignored:x?}");
    for round in 1..=3 {
        for (signal, name) in [(32, "32"), (33, "33")] {
            sup.signal(signal);
            wait_received(&sup, root, name, round);
            assert!(alive(sup.pid()), "supervise died of {name}\n{}", sup.dump());
        }
    }
    let workers = status_json(&sup.socket());
    assert_eq!(workers[0]["state"], "running", "{workers:?}");
    assert_eq!(sup.of("started").len(), 1, "{}", sup.dump());
}

/// A worker that keeps the default action of 32 (and of the realtime signals), which kills, dies
/// of the one forwarded to it, and its end is seen: the reaper once lost every status whose
/// signal nix's `Signal` does not name, and supervise then waited for that worker forever.
#[test]
fn a_worker_killed_by_signal_32_or_a_realtime_one_is_seen_to_end() {
    let rt = libc::SIGRTMIN() + 2;
    for signal in [32, rt] {
        let (mut sup, _name, _guard) =
            run_example("rtkill", &["--restart", "never"], "leaky", &["--rate", "0"]);
        sup.wait_event("started", LONG);
        sup.signal(signal);
        let status = sup.wait_exit(LONG);
        assert_eq!(
            status.code(),
            Some(128 + signal),
            "{status:?}\n{}",
            sup.dump()
        );
        let exited = sup.of("exited");
        assert!(
            exited.len() == 1 && exited[0]["signal"] == signal,
            "{}",
            sup.dump()
        );
    }
}

#[test]
fn terminal_stop_signals_do_not_suspend_the_supervisor() {
    let (sup, _name, _guard, root) = recorder("tstp", &[], &[]);
    for (signal, name) in [
        (libc::SIGTSTP, "TSTP"),
        (libc::SIGTTIN, "TTIN"),
        (libc::SIGTTOU, "TTOU"),
    ] {
        sup.signal(signal);
        // The worker getting it shows the supervisor handled it (a stopped one forwards nothing).
        wait_received(&sup, root, name, 1);
        assert_ne!(
            proc_state(sup.pid()),
            Some('T'),
            "supervise was stopped by {name}\n{}",
            sup.dump()
        );
        // Only asked once it is known not to be stopped: a stopped supervisor would never answer.
        assert!(!status_json(&sup.socket()).is_empty());
    }
    sup.signal(libc::SIGCONT);
    wait_received(&sup, root, "CONT", 1);
    assert!(alive(sup.pid()));
}

#[test]
fn quit_stops_gracefully() {
    let (mut sup, name, _guard, root) = recorder("quit", &["--grace", "4s"], &["--linger", "300"]);
    sup.signal(libc::SIGQUIT);
    let status = sup.wait_exit(LONG);
    // Single-command mode: the program got the very signal, once, and died of it by itself;
    // its status is the supervisor's.
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGQUIT),
        "{status:?}\n{}",
        sup.dump()
    );
    let log = sup.path("sig.log");
    assert_eq!(
        (
            times_received(&log, root, "QUIT"),
            times_received(&log, root, "TERM")
        ),
        (1, 0),
        "{:?}\n{}",
        sigcount_log(&log),
        sup.dump()
    );
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
    assert_eq!(sup.of("stopped").len(), 1, "{}", sup.dump());
    assert!(pids_of_program(&name).is_empty());
}

#[test]
fn hup_reaches_the_program_in_single_command_mode() {
    let (sup, _name, _guard, root) = recorder("hup", &[], &[]);
    sup.signal(libc::SIGHUP);
    wait_received(&sup, root, "HUP", 1);
    sup.signal(libc::SIGHUP);
    wait_received(&sup, root, "HUP", 2);
    assert!(alive(sup.pid()));
    assert!(sup.of("exited").is_empty(), "{}", sup.dump());
}

#[test]
fn the_signal_command_reaches_the_chosen_instances() {
    let (sup, name, _guard) = run_example_ctl(
        "sigcmd",
        &["--replicas", "2", "--sample-every", "200ms"],
        "sigcount",
        &["--log", "@/sig.log", "--children", "1"],
    );
    sup.wait_nth(2, LONG, "two starts", |e| e["event"] == "started");
    sup.wait_stdout("sigcount ready", 2, LONG);
    let root = |instance: u64| {
        pid_of(
            &sup.of("started")
                .into_iter()
                .find(|e| e["instance"] == instance)
                .expect("started"),
        )
    };
    let (r0, r1) = (root(0), root(1));
    // Each root's child: the members of the program that are no root.
    assert!(wait_until(LONG, || pids_of_program(&name).len() == 4));
    let children: Vec<i32> = pids_of_program(&name)
        .into_iter()
        .filter(|p| *p != r0 && *p != r1)
        .collect();

    // The whole program with --group: every process of both instances (their process groups).
    let (code, stdout, stderr) = ctl_output(&sup.socket(), &["signal", &name, "USR1", "--group"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", sup.dump());
    assert!(!stdout.trim().is_empty(), "no message");
    for &pid in [r0, r1].iter().chain(&children) {
        wait_received(&sup, pid, "USR1", 1);
    }

    // One instance: only its processes.
    let (code, stdout, stderr) =
        ctl_output(&sup.socket(), &["signal", &format!("{name}/1"), "USR2"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", sup.dump());
    wait_received(&sup, r1, "USR2", 1);
    // WINCH sent to instance 0 after USR2 was (or was not) shows up after it: once instance 0
    // logged WINCH, a USR2 sent to it earlier would be in the log too.
    let (code, _, stderr) = ctl_output(&sup.socket(), &["signal", &format!("{name}/0"), "WINCH"]);
    assert_eq!(code, Some(0), "{stderr}");
    wait_received(&sup, r0, "WINCH", 1);
    assert_eq!(
        times_received(&sup.path("sig.log"), r0, "USR2"),
        0,
        "instance 0 got the USR2 meant for instance 1\n{:?}",
        sigcount_log(&sup.path("sig.log"))
    );
    assert_eq!(times_received(&sup.path("sig.log"), r1, "WINCH"), 0);

    // An unknown program is an error, not a silent success.
    let (code, _, stderr) = ctl_output(&sup.socket(), &["signal", "nosuchprogram", "USR1"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.trim().is_empty());
}

#[test]
fn the_signal_command_reaches_the_main_process_only_by_default() {
    // Whatever the stop mode (group here, the default), the signal goes to the worker's root
    // only, as `kill -SIG $MAINPID` does.
    let (sup, name, _guard, root) = recorder("sigmain", &[], &["--children", "1"]);
    assert!(wait_until(LONG, || pids_of_program(&name).len() == 2));
    let child = pids_of_program(&name)
        .into_iter()
        .find(|&p| p != root)
        .expect("child");
    let (code, stdout, stderr) = ctl_output(&sup.socket(), &["signal", &name, "USR1"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", sup.dump());
    wait_received(&sup, root, "USR1", 1);
    // WINCH straight to the child, after: once it is logged, a USR1 sent before would be too.
    // SAFETY: kill(2) on a live process of this test's program.
    unsafe { libc::kill(child, libc::SIGWINCH) };
    wait_received(&sup, child, "WINCH", 1);
    assert_eq!(
        times_received(&sup.path("sig.log"), child, "USR1"),
        0,
        "{:?}",
        sigcount_log(&sup.path("sig.log"))
    );
}

/// A shell starts a background job with INT and QUIT ignored (`supervise … &` in a script).
/// supervise still stops on them, so its workers must not inherit the ignore: the forwarded
/// signal has to stop the program, not run out the grace into SIGKILL.
#[test]
fn stop_signals_the_supervisors_parent_ignored_still_stop_the_program() {
    let name = unique("ignint");
    let _guard = ProgramGuard(name.clone());
    let leaky = example("leaky");
    let mut sup = Sup::start_with(
        &[
            "--grace", "60s", "--name", &name, "--", &leaky, "--rate", "0",
        ],
        |cmd, _| {
            use std::os::unix::process::CommandExt;
            // SAFETY: signal(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                    Ok(())
                });
            }
        },
    );
    sup.wait_event("started", LONG);
    sup.signal(libc::SIGINT);
    // Within the test's wait, far inside the 60 s grace: the program died of the INT itself.
    let status = sup.wait_exit(LONG);
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGINT),
        "{status:?}\n{}",
        sup.dump()
    );
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
    assert!(pids_of_program(&name).is_empty());
}
