//! `supervise logs`: a worker's last lines from the supervisor's buffer (the last words of an
//! incarnation that crashed included), following new lines live across restarts, a follower that
//! does not read, and a buffer that stays bounded whatever a worker writes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    ctl_output, example, pid_of, rss, run_example_ctl, status_json, supervise_bin, unique,
    wait_until, ProgramGuard, Sup, MIB,
};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(20);

/// `supervise --admin SOCKET FLAGS -- flood ARGS` with its output thrown away (a flood would fill
/// the disk), under a name unique to the test.
fn flood(prefix: &str, flags: &[&str], args: &[&str]) -> (Sup, String, ProgramGuard) {
    let name = unique(prefix);
    let guard = ProgramGuard(name.clone());
    let flood = example("flood");
    let sup = Sup::start_with(&[], |cmd, dir| {
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--name", &name])
            .args(flags)
            .arg("--")
            .arg(&flood)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    });
    (sup, name, guard)
}

/// `supervise logs ARGS`: (success, stdout lines, stderr).
fn logs(socket: &Path, args: &[&str]) -> (bool, Vec<String>, String) {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let (code, out, err) = ctl_output(socket, &all);
    (
        code == Some(0),
        out.lines().map(str::to_owned).collect(),
        err,
    )
}

/// The counter of a `flood` line (`NAME[0] flood <n> xxx…`).
fn flood_counter(line: &str) -> Option<u64> {
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn the_last_lines_of_a_worker_stay_after_it_crashed_and_was_restarted() {
    // Each incarnation prints its pid, 200 numbered lines and, 5 s later, its exit line: time to
    // look at the second before it goes the way of the first.
    let (sup, name, _guard) = run_example_ctl(
        "logs",
        &["--backoff-first", "50ms"],
        "crasher",
        &["--lines", "200", "--after", "5000", "--code", "3"],
    );
    let socket = sup.socket();
    let first = pid_of(&sup.wait_event("started", LONG));
    let second = pid_of(&sup.wait_nth(2, LONG, "restarted", |e| e["event"] == "started"));
    let prefix = format!("{name}[0] ");
    let want_last = format!("{prefix}line 200");
    // The second incarnation's lines, once all are in.
    let mut lines = Vec::new();
    assert!(
        wait_until(LONG, || {
            let (ok, out, _) = logs(&socket, &[&name, "-n", "1000"]);
            lines = out;
            ok && lines.last() == Some(&want_last)
                && lines.iter().any(|l| l.contains(&format!("pid={second}")))
        }),
        "{lines:?}\n{}",
        sup.dump()
    );
    let expected: Vec<String> = [format!("crasher pid={first} starting")]
        .into_iter()
        .chain((1..=200).map(|i| format!("line {i}")))
        .chain([
            "crasher exiting code=3".to_owned(),
            format!("crasher pid={second} starting"),
        ])
        .chain((1..=200).map(|i| format!("line {i}")))
        .map(|l| format!("{prefix}{l}"))
        .collect();
    assert_eq!(lines, expected);

    // The default is the last 50; -n counts lines.
    let (ok, out, _) = logs(&socket, &[&name]);
    assert!(ok);
    assert_eq!(out, expected[expected.len() - 50..]);
    let (ok, out, _) = logs(&socket, &[&format!("{name}/0"), "-n", "3"]);
    assert!(ok);
    assert_eq!(out, expected[expected.len() - 3..]);

    // What it cannot show is an error, and says why.
    let (ok, _, err) = logs(&socket, &["nosuchprogram"]);
    assert!(
        !ok && err.contains("no program named nosuchprogram"),
        "{err}"
    );
    let (ok, _, err) = logs(&socket, &[&format!("{name}/4")]);
    assert!(!ok && err.contains("has no instance 4"), "{err}");
    let (code, _, err) = ctl_output(&socket, &["logs", &format!("{name}/x")]);
    assert_eq!(code, Some(2), "{err}");
}

/// A `supervise logs -f` client whose stdout lines are collected as they come.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Follower {
    fn start(socket: &Path, target: &str) -> Self {
        let mut child = Command::new(supervise_bin())
            .arg("--admin")
            .arg(socket)
            .args(["logs", target, "-f", "-n", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("logs -f");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock().expect("lines").push((Instant::now(), line));
            }
        });
        Self { child, lines }
    }

    /// When the first line containing `needle` arrived.
    fn seen(&self, needle: &str) -> Option<Instant> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_follower_sees_new_lines_within_seconds_and_stays_through_restarts() {
    let logs_dir = tempfile::tempdir().expect("tempdir");
    let (mut sup, name, _guard) = run_example_ctl(
        "follow",
        &[
            "--log-dir",
            logs_dir.path().to_str().expect("utf-8"),
            "--backoff-first",
            "50ms",
            "--max-restarts",
            "100",
        ],
        "crasher",
        &["--after", "1500", "--code", "1"],
    );
    let socket = sup.socket();
    let first = pid_of(&sup.wait_event("started", LONG));
    sup.wait_socket(LONG);
    let mut follower = Follower::start(&socket, &name);
    // The first incarnation's exit line comes at 1.5 s (live, or among the last 10 lines if
    // the client was slow to connect), then the second starts: seen by the same client.
    let second = pid_of(&sup.wait_nth(2, LONG, "restarted", |e| e["event"] == "started"));
    assert_ne!(first, second);
    let started_line = format!("{name}[0] crasher pid={second} starting");
    assert!(
        wait_until(Duration::from_secs(10), || follower
            .seen(&started_line)
            .is_some()),
        "{:?}\n{}",
        follower.lines.lock().expect("lines"),
        sup.dump()
    );
    assert!(follower
        .seen(&format!("{name}[0] crasher exiting code=1"))
        .is_some());
    let third = pid_of(&sup.wait_nth(3, LONG, "restarted again", |e| e["event"] == "started"));
    let seen_at = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || follower
            .seen(&format!("crasher pid={third} starting"))
            .is_some()),
        "{:?}",
        follower.lines.lock().expect("lines")
    );
    assert!(seen_at.elapsed() < Duration::from_secs(5));
    assert!(
        follower.child.try_wait().expect("try_wait").is_none(),
        "the follower left"
    );
    // The log files are written as before.
    let file = logs_dir.path().join(format!("{name}.0.stdout.log"));
    assert!(std::fs::read_to_string(file)
        .expect("log file")
        .contains(&format!("crasher pid={third} starting")));

    // The supervisor exits: the follower is told, and ends cleanly.
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    let mut status = None;
    assert!(wait_until(Duration::from_secs(5), || {
        status = follower.child.try_wait().expect("try_wait");
        status.is_some()
    }));
    let mut err = String::new();
    if let Some(mut e) = follower.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(err.contains("the supervisor is exiting"), "{err}");
}

/// Sends a raw `logs` request that follows `program`, and returns the connection unread.
fn follow_raw(socket: &Path, program: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    let request = serde_json::json!({
        "cmd": "logs", "program": program, "instance": null, "lines": 0, "follow": true
    });
    s.write_all(format!("{request}\n").as_bytes())
        .expect("request");
    s
}

/// The newest flood counter `logs -n 1` shows (on stdout or stderr, as the line was).
fn newest(socket: &Path, name: &str) -> Option<u64> {
    let (code, out, err) = ctl_output(socket, &["logs", name, "-n", "1"]);
    if code != Some(0) {
        return None;
    }
    out.lines().chain(err.lines()).find_map(flood_counter)
}

#[test]
fn a_follower_that_reads_nothing_slows_nobody_and_is_told_what_it_missed() {
    let (sup, name, _guard) = flood("slowfollow", &["--log-buffer", "256KiB"], &[]);
    let socket = sup.socket();
    sup.wait_event("started", LONG);
    sup.wait_socket(LONG);
    let stalled = follow_raw(&socket, &name);
    // It reads nothing for five seconds: the worker goes on writing, and the supervisor on
    // sampling it and answering (CPU time is read every 4th sample: the window spans one).
    assert!(wait_until(LONG, || newest(&socket, &name).is_some()));
    let before = newest(&socket, &name).expect("a line");
    let cpu = |w: &Value| w["cpu_seconds"].as_f64();
    let first = status_json(&socket)[0].clone();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let t = Instant::now();
        let w = &status_json(&socket)[0];
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "status took {:?}",
            t.elapsed()
        );
        assert_eq!(w["state"], "running");
        std::thread::sleep(Duration::from_millis(300));
    }
    let last = status_json(&socket)[0].clone();
    assert!(
        cpu(&last) > cpu(&first),
        "no new sample: {first} then {last}"
    );
    let after = newest(&socket, &name).expect("a line");
    assert!(
        after > before + 10_000,
        "the worker was held back: {before} then {after}"
    );
    // Now it reads: the lines it could take, then where the others were dropped, a count.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stalled);
    let mut line = String::new();
    let mut lines = 0;
    let mut skipped = None;
    while skipped.is_none() && lines < 1_000_000 {
        line.clear();
        let n = reader.read_line(&mut line).expect("read");
        assert!(n > 0, "the stream ended");
        let answer: Value = serde_json::from_str(&line).expect("json");
        match answer["result"].as_str() {
            Some("line") => {
                assert_eq!(answer["program"], name.as_str());
                lines += 1;
            }
            Some("skipped") => skipped = answer["lines"].as_u64(),
            other => panic!("unexpected {other:?}: {line}"),
        }
    }
    assert!(lines > 0, "no line before the marker");
    assert!(skipped.is_some_and(|n| n > 1000), "{skipped:?}");
    // The client's own rendering of it.
    let mut client = Command::new(supervise_bin())
        .arg("--admin")
        .arg(&socket)
        .args(["logs", &name, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("logs -f");
    // Stalled until its pipe fills and its queue with it, then read.
    std::thread::sleep(Duration::from_secs(2));
    let out = client.stdout.take().expect("stdout");
    let mut marker = None;
    for l in BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .take(2_000_000)
    {
        if l.contains("lines skipped") {
            marker = Some(l);
            break;
        }
    }
    let _ = client.kill();
    let _ = client.wait();
    let marker = marker.expect("a skipped marker");
    assert!(marker.starts_with('…'), "{marker}");
}

#[test]
fn a_flooding_worker_does_not_grow_the_buffer_past_its_size() {
    // The flood starts only once `gate` is ready, so the supervisor's memory is measured before
    // any line has come.
    let gate = unique("gate");
    let name = unique("logbound");
    let _guards = [ProgramGuard(gate.clone()), ProgramGuard(name.clone())];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = format!(
        "log_buffer = \"1MiB\"\n\
         [program.{gate}]\ncommand = [\"{}\", \"--port\", \"{port}\", \"--listen-after\", \"1500\"]\n\
         ready = {{ tcp = \"127.0.0.1:{port}\" }}\n\
         [program.{name}]\ncommand = [\"{}\", \"--stderr\"]\nafter = [\"{gate}\"]\n",
        example("probe_target"),
        example("flood"),
    );
    let sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(&path, config).expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    });
    let socket = sup.socket();
    sup.wait_socket(LONG);
    let waiting = |w: &Value| w["program"] == name.as_str() && w["state"] == "waiting";
    assert!(status_json(&socket).iter().any(waiting), "{}", sup.dump());
    // Settled: the gate started, nothing flows yet.
    std::thread::sleep(Duration::from_millis(500));
    let base = rss(sup.pid()).expect("supervisor");
    assert!(status_json(&socket).iter().any(waiting), "{}", sup.dump());
    // Far more than the buffer goes through it: 40 MiB of 120-byte lines.
    let mut counter = 0;
    assert!(
        wait_until(Duration::from_secs(60), || {
            counter = newest(&socket, &name).unwrap_or(0);
            counter > 40 * MIB / 120
        }),
        "only {counter} lines in a minute"
    );
    let grown = rss(sup.pid()).expect("supervisor").saturating_sub(base);
    assert!(
        grown < MIB + 8 * MIB,
        "supervisor RSS grew by {} KiB",
        grown / 1024
    );
    eprintln!(
        "supervisor RSS {} KiB before the flood, +{} KiB after {counter} lines",
        base / 1024,
        grown / 1024
    );
    // And it holds the newest lines of both streams, each on its own.
    let (ok, out, err) = ctl_output_lines(&socket, &["logs", &name, "-n", "20"]);
    assert!(ok, "{err:?}");
    assert_eq!(out.len() + err.len(), 20, "{out:?} {err:?}");
    let prefix = format!("{name}[0] flood ");
    assert!(out
        .iter()
        .all(|l| l.starts_with(&prefix) && flood_counter(l).is_some_and(|c| c % 2 == 1)));
    assert!(err
        .iter()
        .all(|l| l.starts_with(&prefix) && flood_counter(l).is_some_and(|c| c % 2 == 0)));
    assert!(out
        .iter()
        .chain(&err)
        .all(|l| flood_counter(l) > Some(counter)));
}

/// `supervise ARGS`: success, stdout lines, stderr lines.
fn ctl_output_lines(socket: &Path, args: &[&str]) -> (bool, Vec<String>, Vec<String>) {
    let (code, out, err) = ctl_output(socket, args);
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    (code == Some(0), lines(&out), lines(&err))
}

/// Followers that never read cost nothing once their queues are full: they are left out of the
/// worker's lines until they read again, and are then told how many they missed (33 of them once
/// halved a flooding worker's rate, every line still offered to each; that each push leaves an
/// overflowing follower alone is `logs::buffers`' unit test). Here, end to end, with real
/// sockets: the flood goes on far past what their queues hold, and a follower that reads at last
/// gets what was queued, then one `skipped` count. (A rate or CPU figure is no test: the load of
/// the machine moves it more than 33 followers did.)
#[test]
fn followers_that_never_read_do_not_slow_a_flooding_worker() {
    use std::io::{BufRead, BufReader};
    let (sup, name, _guard) = flood("stuckfollow", &["--log-buffer", "256KiB"], &[]);
    let socket = sup.socket();
    sup.wait_event("started", LONG);
    sup.wait_socket(LONG);
    assert!(wait_until(LONG, || newest(&socket, &name).is_some()));
    // One more than the control socket serves at once: the oldest of them gives way.
    let stalled: Vec<UnixStream> = (0..33).map(|_| follow_raw(&socket, &name)).collect();
    let start = newest(&socket, &name).expect("a line");
    // Far more lines than a follower's queue (and its socket's buffers) hold.
    let mut now = start;
    assert!(
        wait_until(Duration::from_secs(60), || {
            now = newest(&socket, &name).unwrap_or(now);
            now > start + 200_000
        }),
        "the flood slowed to {} lines in a minute with 33 followers that never read",
        now - start
    );
    // The newest follower reads at last: lines, then what it missed, counted once, then lines.
    let last = stalled.last().expect("followers");
    last.set_read_timeout(Some(LONG)).expect("timeout");
    let mut reader = BufReader::new(last.try_clone().expect("clone"));
    let mut skipped = None;
    let mut lines_before = 0;
    for _ in 0..1_000_000 {
        let mut text = String::new();
        if reader.read_line(&mut text).unwrap_or(0) == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON line");
        if v["result"] == "skipped" {
            skipped = v["lines"].as_u64();
            break;
        }
        lines_before += 1;
    }
    let skipped = skipped.unwrap_or_else(|| panic!("no skipped count after {lines_before} lines"));
    assert!(lines_before > 0, "its queue held nothing");
    assert!(
        skipped > 100_000,
        "it missed only {skipped} lines of {}",
        now - start
    );
    drop(stalled);
    // And the flood goes on.
    let after = newest(&socket, &name).expect("a line");
    assert!(wait_until(LONG, || newest(&socket, &name).unwrap_or(0) > after));
}
