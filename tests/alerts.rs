//! Alerts through the real `supervise` binary: a crashing worker's `restarting` events handed to
//! an `exec` command (`alert_sink`) and POSTed to a webhook served by this test, filtered by
//! `on` and limited by `rate`; the alerts still running or queued when the supervisor ends (a
//! `fatal` that leaves it without a program) delivered; a webhook that never answers must not
//! slow supervision down; a real Alertmanager given a `fatal` that stays firing until the
//! program is started again; and bad `[alert]` values (an `https://` webhook) refused at start.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{example, unique, wait_until, ProgramGuard, Sup};

/// `[program.NAME]`: a crasher that exits with code 1 after 100 ms, restarted quickly, given
/// up on after more than `max_restarts` restarts within a minute.
fn crasher(name: &str, max_restarts: u32) -> String {
    format!(
        "[program.{name}]\ncommand = [{:?}, \"--after\", \"100\"]\n\
         backoff = {{ first = \"50ms\", max = \"100ms\" }}\n\
         intensity = {{ max = {max_restarts}, within = \"60s\" }}\n\n",
        example("crasher")
    )
}

/// The whole JSON lines of the sink file so far (none if it does not exist yet; a line still
/// being written is left for later).
fn sink_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rsplit_once('\n').map_or("", |(done, _)| done);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn exec_gets_the_chosen_events_as_json_within_the_rate() {
    let name = unique("alertexec");
    let _g = ProgramGuard(name.clone());
    let out = tempfile::tempdir().expect("tempdir");
    let sink = out.path().join("alerts.jsonl");
    // At most 3 alerts per kind per minute; `stopped` (sent by the operator's stop below) comes
    // after every `restarting` in the alert queue.
    let sup = Sup::with_config(&format!(
        "[alert]\nexec = [{:?}, {:?}]\non = [\"restart\", \"stopped\"]\nrate = \"3/1m\"\n\n{}",
        example("alert_sink"),
        sink.to_str().expect("utf-8"),
        crasher(&name, 1000)
    ));
    sup.wait_nth(5, Duration::from_secs(15), "5 restarts", |e| {
        e["event"] == "restarting"
    });
    let (ok, text) = common::ctl(&sup.socket(), &["stop", &name]);
    assert!(ok, "{text}\n{}", sup.dump());
    let ok = wait_until(Duration::from_secs(15), || {
        sink_lines(&sink).iter().any(|e| e["event"] == "stopped")
    });
    assert!(
        ok,
        "no stopped alert; sink: {:?}\n{}",
        std::fs::read_to_string(&sink),
        sup.dump()
    );
    let events = sup.of("restarting");
    let lines = sink_lines(&sink);
    // Only what `on` asks for (no `started`, no `exited`), one event per line.
    let kinds: Vec<&str> = lines.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(
        kinds
            .iter()
            .all(|k| ["restarting", "stopped", "alerts_suppressed"].contains(k)),
        "{kinds:?}"
    );
    // The rate: the first 3 restarts (the queue keeps their order), the rest held back.
    let alerted: Vec<&Value> = lines
        .iter()
        .filter(|e| e["event"] == "restarting")
        .collect();
    assert_eq!(
        alerted.len(),
        3,
        "{kinds:?} for {} restarts\n{}",
        events.len(),
        sup.dump()
    );
    for (a, e) in alerted.iter().zip(&events) {
        // Each alert is the event as the events file has it.
        assert_eq!(*a, e, "alert differs from the event");
        assert_eq!(
            (a["program"].as_str(), a["reason"].as_str()),
            (Some(name.as_str()), Some("exit"))
        );
    }
    let stopped = lines
        .iter()
        .find(|e| e["event"] == "stopped")
        .expect("stopped");
    assert_eq!(stopped["program"], name.as_str());
}

#[test]
fn alerts_in_flight_when_the_supervisor_ends_are_delivered() {
    let name = unique("alertfatal");
    let _g = ProgramGuard(name.clone());
    let out = tempfile::tempdir().expect("tempdir");
    let sink = out.path().join("alerts.jsonl");
    // An alert command that takes a moment, as one calling out to a pager would: the alert for
    // the one restart is still running when the second crash makes the program `fatal`, which
    // ends the supervisor (its only program).
    let command = format!(
        "sleep 1.5; exec {:?} {:?}",
        example("alert_sink"),
        sink.to_str().expect("utf-8")
    );
    let mut sup = Sup::with_config(&format!(
        "[alert]\nexec = [\"/bin/sh\", \"-c\", {command:?}]\non = [\"restart\", \"fatal\"]\n\n{}",
        crasher(&name, 1)
    ));
    sup.wait_event("fatal", Duration::from_secs(15));
    let status = sup.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "{}", sup.dump());
    // Both delivered: the one running at the end and the one queued behind it.
    let lines = sink_lines(&sink);
    let kinds: Vec<&str> = lines.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds,
        ["restarting", "fatal"],
        "alerts lost at exit; sink: {lines:?}\n{}",
        sup.dump()
    );
}

#[test]
fn the_fatal_alert_that_ends_the_supervisor_is_delivered() {
    // The `fatal` alert is handed to its command just as the supervisor, left without a program,
    // winds down: a race, so several supervisors run it side by side.
    const RUNS: usize = 8;
    let out = tempfile::tempdir().expect("tempdir");
    let runs: Vec<_> = (0..RUNS)
        .map(|i| {
            let name = unique("alertend");
            let sink = out.path().join(format!("alerts-{i}.jsonl"));
            let sup = Sup::with_config(&format!(
                "[alert]\nexec = [{:?}, {:?}]\non = [\"fatal\"]\n\n{}",
                example("alert_sink"),
                sink.to_str().expect("utf-8"),
                crasher(&name, 1)
            ));
            (ProgramGuard(name.clone()), name, sink, sup)
        })
        .collect();
    let mut lost = Vec::new();
    for (_guard, name, sink, mut sup) in runs {
        let status = sup.wait_exit(Duration::from_secs(20));
        assert!(!status.success(), "{}", sup.dump());
        assert_eq!(sup.of("fatal").len(), 1, "{}", sup.dump());
        let lines = sink_lines(&sink);
        if !lines
            .iter()
            .any(|e| e["event"] == "fatal" && e["program"] == name.as_str())
        {
            lost.push(format!("{name}: sink {lines:?}\n{}", sup.dump()));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {RUNS} fatal alerts lost:\n{}",
        lost.len(),
        lost.join("\n")
    );
}

/// Reads one HTTP request (head and a Content-Length body) from `s`.
fn read_request(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, buf[head_end..head_end + len].to_vec()))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[test]
fn webhook_gets_a_json_post() {
    let name = unique("alerthook");
    let _g = ProgramGuard(name.clone());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    // Answers every request 200 and passes it on; ends when the test no longer listens.
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let Ok(req) = read_request(&mut s) else {
                continue;
            };
            let _ = s.write_all(OK);
            if tx.send(req).is_err() {
                return;
            }
        }
    });
    let sup = Sup::with_config(&format!(
        "[alert]\nwebhook = \"http://127.0.0.1:{port}/hook\"\non = [\"restart\"]\n\n{}",
        crasher(&name, 5)
    ));
    let (head, body) = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("no POST\n{}", sup.dump()));
    assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n")
            && lower.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    let event: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(
        (
            event["event"].as_str(),
            event["program"].as_str(),
            event["reason"].as_str()
        ),
        (Some("restarting"), Some(name.as_str()), Some("exit")),
        "{event}"
    );
    // The event as the events file has it (written by a thread of its own: maybe a bit later).
    assert_eq!(event, sup.wait_event("restarting", Duration::from_secs(5)));
    // The next restart is posted too.
    let (_, body) = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no second POST\n{}", sup.dump()));
    let second: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(second["event"], "restarting");
    assert_ne!(second["pid"], event["pid"]);
}

#[test]
fn a_webhook_that_never_answers_does_not_hold_up_supervision() {
    let name = unique("alerthang");
    let _g = ProgramGuard(name.clone());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let answer = Arc::new(AtomicBool::new(false));
    {
        let (accepted, held, answer) = (accepted.clone(), held.clone(), answer.clone());
        // Accepts and holds every connection without a word, until told to answer.
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                if answer.load(Ordering::SeqCst) {
                    if read_request(&mut s).is_ok() {
                        let _ = s.write_all(OK);
                    }
                } else {
                    held.lock().expect("lock").push(s);
                }
            }
        });
    }
    let sup = Sup::with_config(&format!(
        "[alert]\nwebhook = \"http://127.0.0.1:{port}/hook\"\non = [\"restart\"]\n\n{}",
        crasher(&name, 1000)
    ));
    let starts = || sup.of("started").len();
    assert!(
        wait_until(Duration::from_secs(15), || accepted.load(Ordering::SeqCst)
            > 0),
        "the webhook was never called\n{}",
        sup.dump()
    );
    let (n0, t0) = (starts(), Instant::now());
    // Each POST now waits out its 5 s deadline (and a retry 1 s later); meanwhile the crasher
    // (about 200 ms per round) keeps being restarted.
    sup.wait_nth(n0 + 8, Duration::from_secs(8), "8 more starts", |e| {
        e["event"] == "started"
    });
    let waited = t0.elapsed();
    let calls = accepted.load(Ordering::SeqCst);
    assert!(
        calls <= 1 + waited.as_secs() as usize / 5,
        "{calls} webhook connections in {waited:?}: the webhook was not held"
    );
    // Let the queued alerts go so that the supervisor stops promptly.
    answer.store(true, Ordering::SeqCst);
    for mut s in held.lock().expect("lock").drain(..) {
        let _ = s.write_all(OK);
    }
}

#[test]
fn bad_alert_values_are_refused_naming_the_key() {
    let program = "[program.a]\ncommand = [\"touch\", \"MARKER\"]\n\n";
    let cases = [
        (
            "webhook = \"https://alerts.example.com/hook\"",
            "alert.webhook: ",
            "https is not supported",
        ),
        ("webhook = \"ftp://x/\"", "alert.webhook: ", "invalid URL"),
        (
            "exec = [\"/bin/true\"]\non = [\"explosion\"]",
            "alert.on: ",
            "unknown event kind \"explosion\"",
        ),
        (
            "exec = [\"/bin/true\"]\nrate = \"0/1m\"",
            "alert.rate: ",
            "invalid rate",
        ),
        ("exec = []", "alert.exec: ", "empty command"),
        (
            "on = [\"fatal\"]",
            "alert",
            "needs `exec`, `webhook` or `alertmanager`",
        ),
        (
            "alertmanager = \"https://am.example.com:9093\"",
            "alert.alertmanager: ",
            "https is not supported",
        ),
    ];
    for (body, key, message) in cases {
        let (path, stderr) = common::refused(&format!("{program}[alert]\n{body}\n"));
        // `[alert]` is on line 4.
        let want = format!("{path}:4: {key}");
        assert!(stderr.contains(&want), "expected {want:?} in {stderr:?}");
        assert!(
            stderr.contains(message),
            "expected {message:?} in {stderr:?}"
        );
    }
}

/// The alerts a real Alertmanager at `web` holds active (`GET /api/v2/alerts` leaves out the
/// resolved ones) for `program`, and their `alertname`s.
fn alertmanager_alerts(web: &str, program: &str) -> Vec<Value> {
    let Some((200, body)) = common::peers::http(web, "GET", "/api/v2/alerts", None) else {
        return Vec::new();
    };
    let all: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    all.into_iter()
        .filter(|a| a["labels"]["program"] == program)
        .collect()
}

#[test]
fn alertmanager_holds_a_fatal_until_the_program_is_started_again() {
    let Some(bin) = common::peers::tool(
        "alertmanager_holds_a_fatal_until_the_program_is_started_again",
        &["alertmanager", "prometheus-alertmanager"],
    ) else {
        return;
    };
    let web = format!("127.0.0.1:{}", common::peers::free_port());
    let mut am = common::peers::Daemon::start(&bin, |dir| {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
        )
        .expect("config");
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address={web}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ]
    });
    am.wait_ready(&web, "/-/ready", Duration::from_secs(30));

    let name = unique("amfatal");
    let idle = unique("amidle");
    let _g = (ProgramGuard(name.clone()), ProgramGuard(idle.clone()));
    let out = tempfile::tempdir().expect("tempdir");
    // Fails at once while this file exists: given up on after its second exit.
    let fail = out.path().join("fail");
    std::fs::write(&fail, "").expect("fail file");
    let script = format!(
        "if [ -e {:?} ]; then exit 3; fi; exec sleep 600",
        fail.to_str().expect("utf-8")
    );
    let sup = Sup::with_config(&format!(
        "[alert]\nalertmanager = \"http://{web}\"\n\n\
         [program.{name}]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n\
         backoff = {{ first = \"50ms\", max = \"100ms\" }}\n\
         intensity = {{ max = 1, within = \"60s\" }}\nessential = false\n\n\
         [program.{idle}]\ncommand = [\"sleep\", \"600\"]\n"
    ));
    sup.wait_event("fatal", Duration::from_secs(15));

    // Firing: the fatal with its labels, held minutes ahead; the restart before it too.
    let mut alerts = Vec::new();
    let fatal = |alerts: &[Value]| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "fatal")
            .cloned()
    };
    assert!(
        wait_until(Duration::from_secs(15), || {
            alerts = alertmanager_alerts(&web, &name);
            fatal(&alerts).is_some()
        }),
        "no fatal in Alertmanager: {alerts:?}\n{}\n{}",
        sup.dump(),
        am.output()
    );
    let f = fatal(&alerts).expect("fatal");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let labels = &f["labels"];
    assert_eq!(labels["replica"], "0", "{f}");
    assert_eq!(labels["severity"], "critical", "{f}");
    assert_eq!(labels["host"].as_str(), Some(host.trim()), "{f}");
    assert!(labels.get("reason").is_none(), "{f}");
    assert_eq!(f["status"]["state"], "active", "{f}");
    let summary = f["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("{name}[0] gave up after 1 restart")),
        "{f}"
    );
    let ends = humantime::parse_rfc3339(f["endsAt"].as_str().expect("endsAt")).expect("time");
    assert!(
        ends > std::time::SystemTime::now() + Duration::from_secs(120),
        "held minutes ahead: {f}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "restarting"
                && a["labels"]["reason"] == "exit"
                && a["labels"]["severity"] == "warning"),
        "{alerts:?}"
    );

    // Fixed and started again: the fatal is resolved (gone from the active alerts).
    std::fs::remove_file(&fail).expect("rm");
    let (ok, text) = common::ctl(&sup.socket(), &["start", &name]);
    assert!(ok, "{text}\n{}", sup.dump());
    assert!(
        wait_until(Duration::from_secs(15), || {
            alerts = alertmanager_alerts(&web, &name);
            fatal(&alerts).is_none()
        }),
        "the fatal still fires: {alerts:?}\n{}\n{}",
        sup.dump(),
        am.output()
    );
    // The program runs: resolved because it was started, not for want of re-sending.
    assert!(common::pids_of_program(&name).len() == 1, "{}", sup.dump());
    assert!(common::alive(sup.pid()));
}
