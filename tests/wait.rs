//! `start`, `stop` and `restart` with `--wait`: the client returns once the action has completed
//! (every instance up, ready by its rule; no process left; every replacement up), and exits
//! non-zero with what it still waits for when `--timeout` runs out, the action going on.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    ctl_output, example, pids_of_program, status_json, unique, wait_until, ProgramGuard, Sup,
};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(20);

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `supervise ARGS`, timed: (exit code, stdout, stderr, how long it took).
fn timed(socket: &Path, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let t = Instant::now();
    let (code, out, err) = ctl_output(socket, args);
    (code, out, err, t.elapsed())
}

fn of<'a>(workers: &'a [Value], program: &str) -> Vec<&'a Value> {
    workers.iter().filter(|w| w["program"] == program).collect()
}

#[test]
fn stop_and_start_wait_until_no_process_is_left_and_every_instance_is_ready() {
    // Ready by a TCP check that passes 1.5 s after each start.
    let name = unique("waitstart");
    let _guard = ProgramGuard(name.clone());
    let port = free_port();
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--port\", \"{port}\", \"--listen-after\", \"1500\"]\n\
         stop = {{ grace = \"5s\" }}\n[program.{name}.ready]\ntcp = \"127.0.0.1:{port}\"\nevery = \"100ms\"\n",
        example("probe_target")
    ));
    let socket = sup.socket();
    sup.wait_event("ready", LONG);

    let (code, out, err, _) = timed(&socket, &["stop", &name, "--wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("no process left"), "{out}");
    // Already so when it returned, not merely soon after.
    assert!(pids_of_program(&name).is_empty());
    assert!(of(&status_json(&socket), &name)
        .iter()
        .all(|w| w["pid"].is_null() && w["state"] == "stopped"));

    let (code, out, err, took) = timed(&socket, &["start", &name, "--wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 instance(s) up"), "{out}");
    assert!(
        took >= Duration::from_millis(1400),
        "returned after {took:?}"
    );
    let workers = status_json(&socket);
    let w = of(&workers, &name);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (&w[0]["state"], &w[0]["ready"]),
        (&"running".into(), &true.into())
    );
    // The check passed, the listener is there.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn restart_waits_for_every_replacement_to_be_up() {
    // SDK workers that say Ready 600 ms after they start; a roll takes one after the other.
    let name = unique("waitroll");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--ready-after\", \"600\"]\nreplicas = 2\n",
        example("sdk_worker")
    ));
    let socket = sup.socket();
    sup.wait_nth(2, LONG, "two ready", |e| e["event"] == "ready");
    let pids = |socket: &Path| -> Vec<Value> {
        of(&status_json(socket), &name)
            .iter()
            .map(|w| w["pid"].clone())
            .collect()
    };
    let before = pids(&socket);

    let (code, out, err, took) = timed(&socket, &["restart", &name, "--wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 instance(s) restarted and up"), "{out}");
    assert!(
        took >= Duration::from_millis(1100),
        "returned after {took:?}"
    );
    let workers = status_json(&socket);
    let after: Vec<&Value> = of(&workers, &name);
    assert!(after.iter().all(|w| w["ready"] == true), "{after:?}");
    assert!(before
        .iter()
        .zip(&after)
        .all(|(b, a)| *b != a["pid"] && a["pid"].is_i64()));

    // One instance: only it is replaced, and it is ready when the client returns.
    let (code, out, err, _) = timed(&socket, &["restart", &format!("{name}/1"), "--wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("restarted and up"), "{out}");
    let workers = status_json(&socket);
    let again = of(&workers, &name);
    assert_eq!(again[0]["pid"], after[0]["pid"]);
    assert_ne!(again[1]["pid"], after[1]["pid"]);
    assert_eq!(again[1]["ready"], true);
}

#[test]
fn a_wait_that_runs_out_exits_non_zero_and_the_action_goes_on() {
    // Ready by a TCP check on a port nothing will listen on.
    let never = unique("waitnever");
    let stubborn = unique("waitstubborn");
    let _guards = [ProgramGuard(never.clone()), ProgramGuard(stubborn.clone())];
    let port = free_port();
    let sup = Sup::with_config(&format!(
        "[program.{never}]\ncommand = [\"{}\", \"--port\", \"{}\"]\n\
         [program.{never}.ready]\ntcp = \"127.0.0.1:{port}\"\n\
         [program.{stubborn}]\ncommand = [\"{}\"]\nstop = {{ grace = \"3s\" }}\n",
        example("probe_target"),
        free_port(),
        example("stubborn"),
    ));
    let socket = sup.socket();
    sup.wait_nth(2, LONG, "two starts", |e| e["event"] == "started");
    let pid_of = |program: &str| {
        of(&status_json(&socket), program)
            .first()
            .map(|w| w["pid"].clone())
    };
    let first = pid_of(&never);

    let (code, _, err, took) = timed(&socket, &["restart", &never, "--wait", "--timeout", "2s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("not done within 2s") && err.contains("not ready yet"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(12),
        "{took:?}"
    );
    // It was restarted all the same, and is still waited for.
    let second = pid_of(&never);
    assert!(second.as_ref().is_some_and(Value::is_i64) && second != first);

    // A stop that takes longer than the wait: it goes on, and ends within the grace.
    sup.wait_stdout("ignoring TERM", 1, LONG);
    let (code, _, err, _) = timed(&socket, &["stop", &stubborn, "--wait", "--timeout", "1s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("not done within 1s") && err.contains("still stopping"),
        "{err}"
    );
    assert!(!pids_of_program(&stubborn).is_empty(), "gone already");
    assert!(
        wait_until(LONG, || pids_of_program(&stubborn).is_empty()),
        "{}",
        sup.dump()
    );

    // `--timeout` means nothing without `--wait`.
    let (code, _, err, _) = timed(&socket, &["start", &never, "--timeout", "1s"]);
    assert_eq!(code, Some(2), "{err}");
}

/// Forty clients at once, each waiting for its action: more than the control socket serves at
/// once (32). Every one gets its answer. Waiting clients were once closed to make room for
/// newcomers, and read a broken pipe instead; now they never are, at most 24 wait at once, and
/// one more is told so before anything is done, and its client asks again within its wait.
#[test]
fn forty_clients_waiting_at_once_each_get_their_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let restarted = unique("manyr");
    let stopped = unique("manys");
    let started = [unique("manyt"), unique("manyt")];
    let mut _guards: Vec<_> = started.iter().map(|n| ProgramGuard(n.clone())).collect();
    _guards.extend([&restarted, &stopped].map(|n| ProgramGuard(n.clone())));
    // Every action takes more than a second: SDK workers say Ready 1.5 s after they start, and
    // sigcount dies 1.5 s after its TERM. So the forty waits overlap.
    let sdk = example("sdk_worker");
    let slow = format!("command = [\"{sdk}\", \"--ready-after\", \"1500\"]\n");
    let sup = Sup::with_config(&format!(
        "[program.{restarted}]\n{slow}replicas = 6\n\
         [program.{stopped}]\ncommand = [\"{}\", \"--log\", \"{}\", \"--linger\", \"1500\"]\n\
         replicas = 2\n[program.{}]\n{slow}[program.{}]\n{slow}",
        example("sigcount"),
        dir.path().join("sig.log").display(),
        started[0],
        started[1],
    ));
    let socket = sup.socket();
    sup.wait_nth(8, LONG, "eight ready", |e| e["event"] == "ready");
    for program in &started {
        let (code, _, err) = ctl_output(&socket, &["stop", program, "--wait"]);
        assert_eq!(code, Some(0), "{err}");
    }

    // 28 restarts, 8 stops, 4 starts (two of each program).
    let clients: Vec<Vec<String>> = (0..40)
        .map(|i| match i {
            0..28 => vec![
                "restart".into(),
                format!("{restarted}/{}", i % 6),
                "--wait".into(),
            ],
            28..36 => vec!["stop".into(), stopped.clone(), "--wait".into()],
            _ => vec!["start".into(), started[i % 2].clone(), "--wait".into()],
        })
        .collect();
    let answers: Vec<_> = std::thread::scope(|s| {
        let running: Vec<_> = clients
            .iter()
            .map(|args| {
                let socket = &socket;
                s.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    (args.join(" "), ctl_output(socket, &args))
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("client thread"))
            .collect()
    });
    // Each got the answer of its own action: done, or, for a start that came once another had
    // started the program, that it is running already.
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(args, (code, out, err))| {
            let done = match args.split(' ').next() {
                Some("stop") => "no process left",
                Some("start") => "1 instance(s) up",
                _ => "restarted",
            };
            let refused = args.starts_with("start ") && err.contains("is running");
            !(*code == Some(0) && out.contains(done) || *code == Some(1) && refused)
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", sup.dump());
    let workers = status_json(&socket);
    assert!(of(&workers, &stopped).iter().all(|w| w["pid"].is_null()));
    for program in &started {
        let w = of(&workers, program);
        assert!(w.iter().all(|w| w["ready"] == true), "{w:?}");
    }
}
