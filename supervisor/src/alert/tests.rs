//! The alert thread against real commands (the `alert_sink` example) and a real local HTTP
//! listener.

use super::*;
use crate::disk::testbin::{example, exists, wait_until};
use crate::events::{Event, Kind, Reason};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

const DEADLINE: Duration = Duration::from_secs(20);

fn restarting() -> String {
    Event::now(
        "api",
        1,
        Some(42),
        Kind::Restarting {
            reason: Reason::Memory,
            delay_ms: 100,
        },
    )
    .to_line()
}

fn finding(n: u64) -> String {
    let mut numbers = std::collections::BTreeMap::new();
    numbers.insert("n", n);
    Event::now(
        "api",
        0,
        Some(7),
        Kind::Finding {
            kind: "hung",
            detail: "stale heartbeat".into(),
            numbers,
        },
    )
    .to_line()
}

fn sink_spec(file: &Path, extra: &[&str], on: &[&str], rate: &str) -> AlertSpec {
    let mut argv = vec![
        example("alert_sink").to_string_lossy().into_owned(),
        file.to_string_lossy().into_owned(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let on: Vec<String> = on.iter().map(|s| (*s).to_owned()).collect();
    AlertSpec::new(Some(argv), None, Some(&on), Some(rate)).expect("spec")
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

#[test]
fn exec_gets_the_event_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alerts");
    let alerter = Alerter::start(sink_spec(&file, &[], &["restart"], "10/1m"));
    let line = restarting();
    alerter.offer(
        &Event::now("api", 1, None, Kind::Stopped).to_line(),
        "stopped",
    );
    alerter.offer(&line, "restarting");
    assert!(wait_until(DEADLINE, || alerter.stats().sent == 1));
    assert_eq!(
        read(&file),
        line,
        "exactly the event, one line, and not the unchosen kind"
    );
    assert_eq!(
        alerter.stats(),
        AlertStats {
            sent: 1,
            ..AlertStats::default()
        }
    );
    assert!(alerter.shutdown(DEADLINE));
}

#[test]
fn failing_command_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alerts");
    let alerter = Alerter::start(sink_spec(&file, &["--exit", "3"], &["fatal"], "10/1m"));
    alerter.offer("{\"event\":\"fatal\"}\n", "fatal");
    assert!(wait_until(DEADLINE, || alerter.stats().failed == 1));
    assert_eq!(read(&file), "{\"event\":\"fatal\"}\n");
    let mut missing = sink_spec(&file, &[], &["fatal"], "10/1m");
    missing.exec = Some(vec![dir.path().join("nope").to_string_lossy().into_owned()]);
    let alerter = Alerter::start(missing);
    alerter.offer("{}", "fatal");
    assert!(wait_until(DEADLINE, || alerter.stats().failed == 1));
}

fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn hanging_command_is_killed_and_reaped_and_offer_never_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alerts");
    // One alert an hour: the events queued behind the stuck one are suppressed, not run.
    let mut spec = sink_spec(&file, &["--hang"], &["finding"], "1/1h");
    spec.exec_timeout = Duration::from_secs(3);
    spec.queue = 4;
    let alerter = Alerter::start(spec);
    alerter.offer(&finding(0), "finding");
    let mut pid = None;
    assert!(wait_until(DEADLINE, || {
        pid = alerter.child_pid();
        pid.is_some() && read(&file).contains("grandchild ")
    }));
    let pid = pid.expect("running");
    let grandchild: i32 = read(&file)
        .lines()
        .find_map(|l| l.strip_prefix("grandchild "))
        .and_then(|p| p.trim().parse().ok())
        .expect("grandchild pid");
    // The thread is stuck in the command for up to 3 s: offers still return at once, the
    // queue (4) fills, and the rest is dropped and counted.
    let start = Instant::now();
    for n in 1..=100 {
        alerter.offer(&finding(n), "finding");
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(alerter.stats().dropped, 96);
    assert!(wait_until(DEADLINE, || alerter.stats().failed == 1));
    assert_eq!(alerter.child_pid(), None);
    assert!(!exists(pid), "the command was killed and reaped: no zombie");
    // Its child was in its process group: killed too (reaped by whoever inherited it).
    assert!(wait_until(DEADLINE, || matches!(
        state_of(grandchild),
        None | Some('Z')
    )));
    assert!(wait_until(DEADLINE, || alerter.stats().suppressed == 4));
    assert!(alerter.shutdown(DEADLINE));
}

/// How the test webhook answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    Never,
}

/// A local HTTP listener that records each request (head and body) and answers as told.
struct Hook {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Hook {
    fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/hooks/supervise?team=ops",
            listener.local_addr().expect("addr")
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let req = read_request(&mut conn);
                        r.lock().expect("lock").push(req);
                        match answer {
                            Answer::Status(code) => {
                                let _ =
                                    write!(conn, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                            }
                            Answer::Never => held.push(conn),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            url,
            requests,
            stop,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The head and the Content-Length body of one request.
fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn hook_spec(url: &str, on: &[&str], rate: &str) -> AlertSpec {
    let on: Vec<String> = on.iter().map(|s| (*s).to_owned()).collect();
    AlertSpec::new(None, Some(url), Some(&on), Some(rate)).expect("spec")
}

#[test]
fn webhook_gets_a_json_post() {
    let hook = Hook::start(Answer::Status(204));
    let alerter = Alerter::start(hook_spec(&hook.url, &["restart"], "10/1m"));
    let line = restarting();
    alerter.offer(&line, "restarting");
    assert!(wait_until(DEADLINE, || alerter.stats().sent == 1));
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    let (head, body) = reqs[0].split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    assert_eq!(
        lines.next(),
        Some("POST /hooks/supervise?team=ops HTTP/1.1")
    );
    let headers: Vec<&str> = lines.collect();
    let port = hook
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .expect("port");
    for want in [
        format!("Host: 127.0.0.1:{port}"),
        "Content-Type: application/json".to_owned(),
        format!("Content-Length: {}", line.trim_end().len()),
        "Connection: close".to_owned(),
    ] {
        assert!(headers.contains(&want.as_str()), "{want} in {headers:?}");
    }
    assert_eq!(body, line.trim_end());
    let v: serde_json::Value = serde_json::from_str(body).expect("json body");
    assert_eq!(v["event"], "restarting");
    assert!(alerter.shutdown(DEADLINE));
}

#[test]
fn webhook_that_never_answers_times_out_and_is_retried_once() {
    let hook = Hook::start(Answer::Never);
    // One an hour: the offers made while it is stuck are held back, not sent.
    let mut spec = hook_spec(&hook.url, &["fatal"], "1/1h");
    spec.http_timeout = Duration::from_millis(500);
    let alerter = Alerter::start(spec);
    let first = "{\"event\":\"fatal\",\"n\":1}";
    alerter.offer(first, "fatal");
    assert!(wait_until(DEADLINE, || hook.requests().len() == 1));
    // The thread waits on a silent server: offering still returns at once.
    let start = Instant::now();
    for _ in 0..10 {
        alerter.offer("{\"event\":\"fatal\"}", "fatal");
    }
    // Well under the webhook's 5 s timeout, which a waiting offer would take.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(wait_until(DEADLINE, || alerter.stats().failed == 1));
    let reqs = hook.requests();
    assert_eq!(
        reqs.len(),
        2,
        "the request and one retry, no more: {reqs:?}"
    );
    assert!(reqs.iter().all(|r| r.ends_with(first)), "{reqs:?}");
    assert!(wait_until(DEADLINE, || alerter.stats().suppressed == 10));
    assert!(alerter.shutdown(DEADLINE));
}

#[test]
fn client_error_is_not_retried() {
    let hook = Hook::start(Answer::Status(404));
    let alerter = Alerter::start(hook_spec(&hook.url, &["fatal"], "10/1m"));
    alerter.offer("{}", "fatal");
    assert!(wait_until(DEADLINE, || alerter.stats().failed == 1));
    alerter.offer("{\"second\":1}", "fatal");
    assert!(wait_until(DEADLINE, || alerter.stats().failed == 2));
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "one request per alert: {reqs:?}");
    assert!(reqs[1].ends_with("{\"second\":1}"));
}

#[test]
fn rate_limit_holds_back_and_summarizes() {
    let hook = Hook::start(Answer::Status(200));
    // Two at once, then one every 2 s.
    let alerter = Alerter::start(hook_spec(&hook.url, &["finding"], "2/4s"));
    for n in 0..5 {
        alerter.offer(&finding(n), "finding");
    }
    assert!(wait_until(DEADLINE, || hook.requests().len() == 3));
    let bodies: Vec<serde_json::Value> = hook
        .requests()
        .iter()
        .map(|r| serde_json::from_str(r.split_once("\r\n\r\n").expect("body").1).expect("json"))
        .collect();
    assert_eq!(
        (bodies[0]["n"].as_u64(), bodies[1]["n"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(bodies[2]["event"], SUPPRESSED);
    assert_eq!(bodies[2]["kind"], "finding");
    assert_eq!(bodies[2]["suppressed"], 3);
    assert_eq!(bodies[2]["program"], "supervise");
    let stats = alerter.stats();
    assert_eq!((stats.sent, stats.suppressed, stats.dropped), (3, 3, 0));
    assert!(alerter.shutdown(DEADLINE));
}

/// The bodies of the requests `hook` got, as JSON.
fn bodies(hook: &Hook) -> Vec<serde_json::Value> {
    hook.requests()
        .iter()
        .map(|r| serde_json::from_str(r.split_once("\r\n\r\n").expect("body").1).expect("json"))
        .collect()
}

/// `http://HOST:PORT` of the hook, as an Alertmanager address.
fn base(hook: &Hook) -> String {
    let authority = hook.url.split('/').nth(2).expect("authority");
    format!("http://{authority}")
}

fn event(instance: u32, kind: Kind) -> Event<'static> {
    Event::now("api", instance, Some(7), kind)
}

fn fatal() -> Kind {
    Kind::Fatal {
        restarts: 2,
        within_s: 60.0,
    }
}

/// Seconds from now to an RFC 3339 stamp (negative: in the past).
fn from_now(stamp: &serde_json::Value) -> f64 {
    let t = humantime::parse_rfc3339(stamp.as_str().expect("stamp")).expect("rfc3339");
    match t.duration_since(SystemTime::now()) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[test]
fn alertmanager_holds_a_fatal_until_the_instance_starts_again() {
    let hook = Hook::start(Answer::Status(200));
    let on: Vec<String> = vec!["fatal".into(), "restart".into()];
    let spec =
        AlertSpec::with_alertmanager(None, None, Some(&base(&hook)), Some(&on), Some("10/1m"))
            .expect("spec");
    let alerter = Alerter::start(spec);
    let e = event(0, fatal());
    alerter.offer_event(&e, &e.to_line());
    assert!(wait_until(DEADLINE, || hook.requests().len() == 1));
    let reqs = hook.requests();
    assert!(
        reqs[0].starts_with("POST /api/v2/alerts HTTP/1.1\r\n"),
        "{}",
        reqs[0]
    );
    let sent = &bodies(&hook)[0][0];
    assert_eq!(sent["labels"]["alertname"], "fatal");
    assert_eq!(sent["labels"]["program"], "api");
    assert_eq!(sent["labels"]["replica"], "0");
    assert_eq!(sent["labels"]["severity"], "critical");
    assert_eq!(
        sent["labels"]["host"].as_str(),
        Some(alertmanager::hostname().as_str())
    );
    assert_eq!(sent["startsAt"].as_str(), Some(e.ts.as_str()));
    assert!(from_now(&sent["endsAt"]) > 120.0, "held: {sent}");
    // Another instance's start, a stop of this one, an event not in `on`: nothing to send.
    for e in [
        event(1, Kind::Started { command: vec![] }),
        event(0, Kind::Stopped),
        event(0, Kind::Ready { by: "sdk" }),
    ] {
        alerter.offer_event(&e, &e.to_line());
    }
    // Its start: the fatal is sent again, ending now.
    let e = event(0, Kind::Started { command: vec![] });
    alerter.offer_event(&e, &e.to_line());
    assert!(wait_until(DEADLINE, || hook.requests().len() == 2));
    let resolved = &bodies(&hook)[1][0];
    assert_eq!(resolved["labels"], sent["labels"]);
    assert_eq!(resolved["startsAt"], sent["startsAt"]);
    assert!(from_now(&resolved["endsAt"]).abs() < 10.0, "{resolved}");
    // A restart is a moment: sent once, ending a little later by itself.
    let e = event(
        0,
        Kind::Restarting {
            reason: Reason::Exit,
            delay_ms: 0,
        },
    );
    alerter.offer_event(&e, &e.to_line());
    assert!(wait_until(DEADLINE, || hook.requests().len() == 3));
    let moment = &bodies(&hook)[2][0];
    assert_eq!(moment["labels"]["reason"], "exit");
    let ends = from_now(&moment["endsAt"]);
    assert!(ends > 60.0 && ends < 180.0, "{moment}");
    assert_eq!(alerter.stats().sent, 2);
    assert!(alerter.shutdown(DEADLINE));
    assert_eq!(hook.requests().len(), 3, "nothing else was sent");
}

#[test]
fn an_end_is_not_lost_to_a_full_queue() {
    let hook = Hook::start(Answer::Status(200));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alerts");
    // Every alert also runs a command that hangs for its 2 s deadline, with a queue of one.
    let mut spec = sink_spec(&file, &["--hang"], &["fatal", "restart"], "100/1m");
    spec.alertmanager = Some(crate::plan::alert::parse_alertmanager(&base(&hook)).expect("url"));
    spec.exec_timeout = Duration::from_secs(2);
    spec.queue = 1;
    let alerter = Alerter::start(spec);
    let e = event(0, fatal());
    alerter.offer_event(&e, &e.to_line());
    assert!(wait_until(DEADLINE, || alerter.child_pid().is_some()));
    // The thread is stuck in the fatal's command: one restart fills the queue, the rest are
    // dropped, and so would the start be, were it queued.
    for _ in 0..5 {
        let e = event(
            0,
            Kind::Restarting {
                reason: Reason::Manual,
                delay_ms: 0,
            },
        );
        alerter.offer_event(&e, &e.to_line());
    }
    let start = event(0, Kind::Started { command: vec![] });
    alerter.offer_event(&start, &start.to_line());
    assert_eq!(alerter.stats().dropped, 4);
    // The fatal goes out once its command is killed, and then its resolution.
    let resolved = || {
        bodies(&hook).iter().any(|b| {
            b[0]["labels"]["alertname"] == "fatal" && from_now(&b[0]["endsAt"]).abs() < 10.0
        })
    };
    assert!(wait_until(DEADLINE, resolved), "{:?}", hook.requests());
    let fatal_first = bodies(&hook)
        .iter()
        .position(|b| b[0]["labels"]["alertname"] == "fatal")
        .expect("the fatal was sent");
    assert!(from_now(&bodies(&hook)[fatal_first][0]["endsAt"]) > 120.0);
    assert!(alerter.shutdown(DEADLINE));
}
