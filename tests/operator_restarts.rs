//! Operator actions are not failures: manual restarts do not count toward the restart intensity
//! and start at once; restart counters never go backwards, even across `stop` and `start`; and a
//! restart is refused while the program is being stopped for good.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{
    alive, ctl, ctl_output, example, run_example_ctl, status_json, unique, wait_until,
    ProgramGuard, Sup,
};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn manual_restarts_do_not_count_toward_the_intensity() {
    let (sup, name, _guard) = run_example_ctl(
        "manual",
        &["--max-restarts", "2", "--within", "60s"],
        "leaky",
        &["--rate", "0"],
    );
    sup.wait_event("started", LONG);
    // Twice the intensity, each once the previous replacement is up.
    for i in 1..=6 {
        let (ok, text) = ctl(&sup.socket(), &["restart", &name]);
        assert!(ok, "restart {i} refused: {text}\n{}", sup.dump());
        sup.wait_nth(i + 1, LONG, "the replacement", |e| e["event"] == "started");
    }
    assert!(alive(sup.pid()), "{}", sup.dump());
    assert!(sup.of("fatal").is_empty(), "{}", sup.dump());
    let restarting = sup.of("restarting");
    assert_eq!(restarting.len(), 6, "{}", sup.dump());
    assert!(
        restarting
            .iter()
            .all(|e| e["reason"] == "manual" && e["delay_ms"] == 0),
        "{}",
        sup.dump()
    );
    let workers = status_json(&sup.socket());
    assert_eq!(workers[0]["state"], "running", "{workers:?}");
}

/// One HTTP/1.0 GET of `path`: the body, if the answer is a 200.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// `supervise_worker_restarts_total` of `program`, summed over instances and reasons, if the
/// exposition has any sample of it.
fn restarts_total(addr: &str, program: &str) -> Option<f64> {
    let body = get(addr, "/metrics")?;
    let label = format!("program=\"{program}\"");
    let samples: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("supervise_worker_restarts_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// `restarts` of `program` in `status --json`, summed over instances.
fn restarts_status(sup: &Sup, program: &str) -> u64 {
    status_json(&sup.socket())
        .iter()
        .filter(|w| w["program"] == program)
        .map(|w| w["restarts"].as_u64().expect("restarts"))
        .sum()
}

#[test]
fn restart_counters_never_go_backwards() {
    let name = unique("counters");
    let _guard = ProgramGuard(name.clone());
    let config = format!(
        "[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\"]\n",
        example("leaky")
    );
    let sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(&path, &config).expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--metrics", "127.0.0.1:0", "-c"])
            .arg(path);
    });
    let addr = sup.wait_event("listening", LONG)["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    sup.wait_event("started", LONG);
    for i in 1..=2 {
        let (ok, text) = ctl(&sup.socket(), &["restart", &name]);
        assert!(ok, "{text}");
        sup.wait_nth(i + 1, LONG, "the replacement", |e| e["event"] == "started");
    }
    let mut total = None;
    assert!(
        wait_until(LONG, || {
            total = restarts_total(&addr, &name);
            total == Some(2.0) && restarts_status(&sup, &name) == 2
        }),
        "metrics {total:?}, status {}\n{}",
        restarts_status(&sup, &name),
        sup.dump()
    );

    let (ok, text) = ctl(&sup.socket(), &["stop", &name]);
    assert!(ok, "{text}");
    sup.wait_event("stopped", LONG);
    let status = restarts_status(&sup, &name);
    assert!(status >= 2, "`restarts` went from 2 to {status} on stop");
    let total = restarts_total(&addr, &name);
    assert!(
        total.is_none_or(|t| t >= 2.0),
        "restarts_total went from 2 to {total:?} on stop"
    );

    let (ok, text) = ctl(&sup.socket(), &["start", &name]);
    assert!(ok, "{text}");
    sup.wait_nth(4, LONG, "started again", |e| e["event"] == "started");
    assert!(
        wait_until(Duration::from_secs(5), || status_json(&sup.socket())
            .iter()
            .all(|w| w["state"] == "running")),
        "{}",
        sup.dump()
    );
    let status = restarts_status(&sup, &name);
    assert!(
        status >= 2,
        "`restarts` went from 2 to {status} across stop and start\n{}",
        sup.dump()
    );
    let total = restarts_total(&addr, &name);
    assert!(
        total.is_some_and(|t| t >= 2.0),
        "restarts_total went from 2 to {total:?} across stop and start\n{}",
        sup.dump()
    );
}

#[test]
fn restart_is_refused_while_stopping_for_good() {
    let name = unique("refused");
    let _guard = ProgramGuard(name.clone());
    // stubborn ignores TERM: the stop lasts its whole 30 s grace.
    let mut sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\"]\nstop = {{ grace = \"30s\" }}\n",
        example("stubborn")
    ));
    sup.wait_event("started", LONG);
    sup.wait_stdout("ignoring TERM", 1, LONG);
    let (ok, text) = ctl(&sup.socket(), &["stop", &name]);
    assert!(ok, "{text}");
    assert!(
        wait_until(LONG, || status_json(&sup.socket())
            .iter()
            .any(|w| w["state"] == "stopping")),
        "{}",
        sup.dump()
    );
    for target in [name.clone(), format!("{name}/0")] {
        let (code, _, stderr) = ctl_output(&sup.socket(), &["restart", &target]);
        assert!(
            code == Some(1) && stderr.contains("stopping"),
            "restart {target} during a stop for good: exit {code:?}, stderr {stderr:?}\n{}",
            sup.dump()
        );
    }
    // Still stopping, nothing new started.
    assert_eq!(sup.of("started").len(), 1, "{}", sup.dump());
    assert!(status_json(&sup.socket())
        .iter()
        .all(|w| w["state"] == "stopping"));
    // The second TERM ends it at once.
    sup.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
}
