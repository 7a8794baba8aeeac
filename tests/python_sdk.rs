//! The Python SDK (`sdk/python`): its own unittest suite, and Python workers under the real
//! `supervise`: counters, heap and sections in `status --json` and `/metrics`, `Shutdown`, a
//! hung worker restarted, forked workers whose counts survive their exit, gunicorn under
//! `max_requests` churn, and a hostile Python worker. Each test skips, saying so, where
//! `python3` (3.9 or later) is missing; the gunicorn test where gunicorn cannot be installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::peers::{free_port, gunicorn, http, python};
use common::{status_json, unique, wait_until, ProgramGuard, Sup};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn sdk_path() -> String {
    repo().join("sdk/python").display().to_string()
}

fn script(name: &str) -> String {
    repo()
        .join("examples/python")
        .join(name)
        .display()
        .to_string()
}

/// `supervise --admin SOCK --name NAME FLAGS -- COMMAND`, with the SDK on `PYTHONPATH`.
fn supervise(prefix: &str, flags: &[&str], command: &[String]) -> (Sup, String, ProgramGuard) {
    let name = unique(prefix);
    let guard = ProgramGuard(name.clone());
    let sup = Sup::start_with(&[], |cmd, dir| {
        cmd.env("PYTHONPATH", sdk_path())
            .arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--name", &name])
            .args(flags)
            .arg("--")
            .args(command);
    });
    (sup, name, guard)
}

/// The first instance's status, once `pred` holds for it (polled for up to `timeout`).
fn status_when(
    sup: &Sup,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        if !sup.socket().exists() {
            return false;
        }
        last = status_json(&sup.socket())
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        pred(&last)
    });
    assert!(ok, "waiting for {what}: {last}\n{}", sup.dump());
    last
}

fn counter(w: &Value, name: &str) -> u64 {
    w["counters"][name].as_u64().unwrap_or(0)
}

fn total(w: &Value, name: &str) -> u64 {
    w["totals"]["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn the_python_unit_tests_pass() {
    let Some(py) = python("the_python_unit_tests_pass") else {
        return;
    };
    let out = Command::new(py)
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(repo().join("sdk/python"))
        .env_remove("SUPERVISE_CONTROL_FD")
        .env_remove("SUPERVISE_SEGMENT_FD")
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\nOK"), "{stderr}");
    eprintln!("{}", stderr.lines().rev().nth(2).unwrap_or_default());
}

#[test]
fn a_python_worker_shows_its_counters_heap_and_sections_and_honours_shutdown() {
    let Some(py) = python("a_python_worker_shows_...") else {
        return;
    };
    let command = [py.display().to_string(), script("job_loop.py")];
    let (mut sup, name, _guard) = supervise(
        "pyjobs",
        &["--metrics", "127.0.0.1:0", "--grace", "10s"],
        &command,
    );
    sup.wait_event("ready", Duration::from_secs(20));
    let w = status_when(
        &sup,
        Duration::from_secs(20),
        "jobs, heap and a section",
        |w| {
            counter(w, "jobs") >= 20
                && w["heap_bytes"].as_u64().unwrap_or(0) > 0
                && counter(w, "job.step.peak") > 100_000
                && counter(w, "job.step.calls") >= 20
        },
    );
    assert_eq!(w["program"], name.as_str());
    assert!(w["speaks"].as_bool().unwrap_or(false), "{w}");
    assert!(w["gauges"]
        .as_array()
        .is_some_and(|g| g.iter().any(|n| n == "job.step.peak")));
    assert!(w["heartbeat_age_ms"].as_u64().expect("a heartbeat") < 5000);
    let listening = sup.wait_event("listening", Duration::from_secs(10));
    let addr = listening["addr"].as_str().expect("addr");
    let (code, body) = http(addr, "GET", "/metrics", None).expect("metrics");
    assert_eq!(code, 200);
    let has = |family: &str, label: &str| {
        body.lines()
            .any(|l| l.starts_with(family) && l.contains(&format!("name=\"{label}\"")))
    };
    assert!(has("supervise_worker_sdk_total", "jobs"), "{body}");
    assert!(has("supervise_worker_sdk_value", "job.step.peak"), "{body}");
    assert!(has("supervise_worker_sdk_value", "job.step"), "{body}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("supervise_worker_heap_bytes{")),
        "{body}"
    );
    // Shutdown reaches it: it leaves by itself, code 0, no SIGKILL.
    let t0 = Instant::now();
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
    assert!(t0.elapsed() < Duration::from_secs(8));
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
    let exited = &sup.of("exited")[0];
    assert_eq!(exited["code"], 0);
    assert!(exited["report"]["metrics"]["jobs"].as_u64().expect("jobs") >= 20);
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(stdout.contains("job_loop shutdown"), "{stdout}");
}

#[test]
fn a_hung_python_worker_is_restarted() {
    let Some(py) = python("a_hung_python_worker_is_restarted") else {
        return;
    };
    let command = [
        py.display().to_string(),
        script("job_loop.py"),
        "--hang-after".into(),
        "10".into(),
    ];
    let (sup, _name, _guard) = supervise(
        "pyhang",
        &["--heartbeat-timeout", "1s", "--sample-every", "200ms"],
        &command,
    );
    let finding = sup.wait_nth(1, Duration::from_secs(30), "hung finding", |e| {
        e["event"] == "finding" && e["kind"] == "hung"
    });
    assert!(finding["heartbeat_age_ms"].as_u64().expect("age") >= 1000);
    let r = sup.wait_event("restarting", Duration::from_secs(20));
    assert_eq!(r["reason"], "hung", "{}", sup.dump());
    sup.wait_nth(2, Duration::from_secs(20), "second start", |e| {
        e["event"] == "started"
    });
}

#[test]
fn forked_python_workers_keep_their_counts_when_they_exit() {
    let Some(py) = python("forked_python_workers_keep_their_counts_when_they_exit") else {
        return;
    };
    // 3 workers at a time, each exits after 10 jobs, 30 in all: 300 jobs, whatever the churn.
    let command = [
        py.display().to_string(),
        script("job_loop.py"),
        "--fork".into(),
        "3".into(),
        "--max-jobs".into(),
        "10".into(),
        "--workers".into(),
        "30".into(),
        "--pause".into(),
        "0.002".into(),
    ];
    let (mut sup, _name, _guard) = supervise(
        "pyfork",
        &["--sample-every", "100ms", "--grace", "10s"],
        &command,
    );
    sup.wait_event("ready", Duration::from_secs(20));
    let mut seen = 0;
    let w = status_when(&sup, Duration::from_secs(60), "300 jobs", |w| {
        let now = total(w, "jobs");
        assert!(now >= seen, "the total went back from {seen} to {now}: {w}");
        seen = seen.max(now);
        now >= 300
    });
    assert_eq!(total(&w, "jobs"), 300, "{w}");
    assert_eq!(counter(&w, "jobs"), 300, "{w}");
    // Every worker has exited, so supervise has freed every process page: the directory (the
    // segment's second page, read through the pool's own fd 4) is empty again.
    let root = w["pid"].as_i64().expect("pid");
    let segment = std::fs::File::open(format!("/proc/{root}/fd/4")).expect("the segment");
    let claimed = || {
        let mut dir = vec![0u8; 4096];
        std::os::unix::fs::FileExt::read_exact_at(&segment, &mut dir, 4096).expect("pread");
        dir.chunks(4).filter(|c| c != &[0, 0, 0, 0]).count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || claimed() == 0),
        "{} pages still claimed",
        claimed()
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert_eq!(sup.of("exited")[0]["report"]["metrics"]["jobs"], 300);
}

#[test]
fn a_hostile_python_worker_harms_no_one_else() {
    let Some(py) = python("a_hostile_python_worker_harms_no_one_else") else {
        return;
    };
    let (bad, good) = (unique("pyhostile"), unique("pyneighbour"));
    let _guards = [ProgramGuard(bad.clone()), ProgramGuard(good.clone())];
    let py = py.display();
    let sdk = sdk_path();
    let mut sup = Sup::with_config(&format!(
        "[sample]\nevery = \"100ms\"\n\
         [program.{bad}]\ncommand = [\"{py}\", \"{}\"]\n\
         [program.{good}]\ncommand = [\"{py}\", \"{}\"]\nenv = {{ PYTHONPATH = \"{sdk}\" }}\n\
         heartbeat = {{ timeout = \"5s\" }}\n",
        script("hostile.py"),
        script("job_loop.py"),
    ));
    sup.wait_socket(Duration::from_secs(10));
    let is = |e: &Value, kind: &str, name: &str| e["event"] == kind && e["program"] == name;
    sup.wait_nth(
        1,
        Duration::from_secs(20),
        "hostile's protocol errors",
        |e| is(e, "protocol_error", &bad),
    );
    sup.wait_stdout("pyhostile scribbling", 1, Duration::from_secs(20));
    // The neighbour goes on counting, its figures its own, while the hostile one scribbles.
    let first = status_json(&sup.socket());
    let jobs_of = |ws: &[Value]| {
        ws.iter()
            .find(|w| w["program"] == good.as_str())
            .map_or(0, |w| counter(w, "jobs"))
    };
    let before = jobs_of(&first);
    assert!(
        wait_until(Duration::from_secs(20), || jobs_of(&status_json(
            &sup.socket()
        )) >= before + 50),
        "{}",
        sup.dump()
    );
    let events = sup.events();
    assert!(!events.iter().any(|e| is(e, "protocol_error", &good)));
    assert!(
        !events.iter().any(|e| is(e, "restarting", &good)),
        "{}",
        sup.dump()
    );
    // Its status still reads: the hostile one's figures are whatever it wrote, bounded.
    let ws = status_json(&sup.socket());
    let hostile = ws
        .iter()
        .find(|w| w["program"] == bad.as_str())
        .expect("hostile");
    assert!(
        hostile["counters"]
            .as_object()
            .map_or(0, serde_json::Map::len)
            <= 256
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        sup.dump()
    );
}

#[test]
fn gunicorn_workers_under_max_requests_count_every_request() {
    let test = "gunicorn_workers_under_max_requests_count_every_request";
    let Some(py) = python(test) else { return };
    let Some(gunicorn) = gunicorn(&py, test) else {
        return;
    };
    let port = free_port();
    let dir = repo().join("examples/python/gunicorn");
    let name = unique("pygunicorn");
    let guard = ProgramGuard(name.clone());
    let mut sup = Sup::start_with(&[], |cmd, tmp| {
        cmd.env("PYTHONPATH", sdk_path())
            .env("APP_BIND", format!("127.0.0.1:{port}"))
            .env("APP_WORKERS", "4")
            .env("APP_MAX_REQUESTS", "25")
            .arg("--admin")
            .arg(tmp.join("ctl.sock"))
            .args(["--name", &name, "--grace", "20s", "--"])
            .arg(&gunicorn)
            .arg("-c")
            .arg(dir.join("gunicorn.conf.py"))
            .arg("--chdir")
            .arg(&dir)
            .arg("app:app");
    });
    sup.wait_event("ready", Duration::from_secs(30));
    let addr = format!("127.0.0.1:{port}");
    let sent = 400;
    for i in 0..sent {
        let mut answer = None;
        // A worker leaving after its 25th request may close a connection it accepted: retried.
        wait_until(Duration::from_secs(10), || {
            answer = http(&addr, "GET", "/", None);
            answer.is_some()
        });
        let (code, _) = answer.unwrap_or_else(|| panic!("request {i} failed\n{}", sup.dump()));
        assert_eq!(code, 200);
    }
    let w = status_when(
        &sup,
        Duration::from_secs(30),
        "every request counted",
        |w| total(w, "requests") >= sent,
    );
    assert_eq!(total(&w, "requests"), sent, "{w}");
    assert!(counter(&w, "render.calls") > 0, "{w}");
    assert!(w["heap_bytes"].as_u64().unwrap_or(0) > 0, "{w}");
    // 400 requests, 25 per worker: at least 12 workers were replaced, their counts kept.
    sup.signal(libc::SIGTERM);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        sup.dump()
    );
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
    drop(guard);
}
