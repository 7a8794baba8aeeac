//! A program given up on (`fatal`: its restart intensity exceeded) stays in view: in `status`
//! and `status --json` with its last exit, in the metrics with every count it had and in the
//! history (not essential here, it is left out of `/readyz`), while the other programs run on,
//! until `supervise start`, a reload that changes or removes it, or `supervise stop` (which
//! makes it stopped).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::peers::http;
use common::{ctl, example, status_json, unique, wait_until, ProgramGuard, Sup};
use serde_json::Value;
use supervisor::status::Phase;

const LONG: Duration = Duration::from_secs(30);

/// Restarts allowed before the program is given up on.
const MAX: u64 = 3;

/// A supervisor running `crash` (two replicas of `crasher`, exit 3 after 100 ms, `restart =
/// "always"`, three restarts allowed) beside a healthy `ok`, with metrics and a history. The
/// crasher stops crashing once the file [`Run::healed`] exists when it starts.
struct Run {
    sup: Sup,
    crash: String,
    ok: String,
    addr: String,
    _guards: [ProgramGuard; 2],
}

impl Run {
    fn start() -> Self {
        let (crash, ok) = (unique("acrash"), unique("bok"));
        let guards = [ProgramGuard(crash.clone()), ProgramGuard(ok.clone())];
        let config = |dir: &Path| config(dir, &crash, &ok, 2);
        let sup = Sup::start_with(&[], |cmd, dir| {
            let path = dir.join("supervise.toml");
            std::fs::write(&path, config(dir)).expect("config");
            cmd.arg("--admin")
                .arg(dir.join("ctl.sock"))
                .args(["--metrics", "127.0.0.1:0", "--sample-every", "200ms"])
                .arg("--history")
                .arg(dir.join("history.bin"))
                .arg("-c")
                .arg(path);
        });
        let listening = sup.wait_event("listening", LONG);
        let addr = listening["addr"].as_str().expect("addr").to_owned();
        Self {
            sup,
            crash,
            ok,
            addr,
            _guards: guards,
        }
    }

    fn socket(&self) -> PathBuf {
        self.sup.socket()
    }

    fn healed(&self) -> PathBuf {
        self.sup.path("healed")
    }

    /// Rewrites the config (`replicas` of `crash`, or none of it) and reloads it.
    fn reload(&self, crash_replicas: Option<u32>) {
        let text = match crash_replicas {
            Some(n) => config(self.sup.dir.path(), &self.crash, &self.ok, n),
            None => config(self.sup.dir.path(), &self.crash, &self.ok, 0)
                .split_once(&format!("[program.{}]", self.ok))
                .map(|(_, ok)| format!("[program.{}]{ok}", self.ok))
                .expect("ok's table"),
        };
        std::fs::write(self.sup.path("supervise.toml"), text).expect("config");
        let (ok, text) = ctl(&self.socket(), &["reload"]);
        assert!(ok, "{text}");
    }

    /// `crash`'s rows of `status --json`.
    fn rows(&self) -> Vec<Value> {
        status_json(&self.socket())
            .into_iter()
            .filter(|w| w["program"] == self.crash.as_str())
            .collect()
    }

    /// Waits until `crash` has `n` rows, all in `state`; returns them.
    fn wait_rows(&self, n: usize, state: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        let ok = wait_until(LONG, || {
            rows = self.rows();
            rows.len() == n && rows.iter().all(|w| w["state"] == state)
        });
        assert!(ok, "not {n} {state}: {rows:#?}\n{}", self.sup.dump());
        rows
    }

    /// `/metrics` in the Prometheus text format.
    fn metrics(&self) -> String {
        let (code, body) = http(&self.addr, "GET", "/metrics", None).expect("GET /metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// The value of `crash`'s sample `family{labels}` in `body`, if there is one.
    fn sample(
        &self,
        body: &str,
        family: &str,
        replica: u32,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        let program = format!("program=\"{}\"", self.crash);
        let replica = format!("replica=\"{replica}\"");
        body.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .filter(|l| l.contains(&program) && l.contains(&replica))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The states the history holds for `crash`'s instance `i`, in time order.
    fn history(&self, i: u32) -> Vec<Phase> {
        let Ok(series) = supervisor::history::read(&self.sup.path("history.bin")) else {
            return Vec::new();
        };
        series
            .workers
            .iter()
            .find(|w| w.program == self.crash && w.instance == i)
            .map(|w| w.points.iter().filter_map(|p| p.state).collect())
            .unwrap_or_default()
    }

    fn readyz(&self) -> (u16, String) {
        let (code, body) = http(&self.addr, "GET", "/readyz", None).expect("GET /readyz");
        (code, body.trim().to_owned())
    }
}

fn config(dir: &Path, crash: &str, ok: &str, replicas: u32) -> String {
    format!(
        "[program.{crash}]\n\
         command = [\"{crasher}\", \"--after\", \"100\", \"--code\", \"3\", \"--healed\", \"{healed}\"]\n\
         replicas = {replicas}\n\
         restart = \"always\"\n\
         essential = false\n\
         intensity = {{ max = {MAX}, within = \"60s\" }}\n\
         backoff = {{ first = \"10ms\", max = \"10ms\" }}\n\
         [program.{ok}]\n\
         command = [\"{leaky}\", \"--rate\", \"0\"]\n",
        crasher = example("crasher"),
        healed = dir.join("healed").display(),
        leaky = example("leaky"),
    )
}

#[test]
fn a_fatal_program_stays_in_view_until_it_is_started_again() {
    let mut run = Run::start();
    let socket = run.socket();
    let fatal = run.sup.wait_event("fatal", LONG);
    assert_eq!(fatal["program"], run.crash.as_str(), "{fatal}");

    // Both instances: the one that went fatal, and its sibling, stopped because of it.
    let rows = run.wait_rows(2, "fatal");
    let events = run.sup.events();
    for w in &rows {
        let i = w["instance"].as_u64().expect("instance");
        assert!(w["pid"].is_null(), "{w}");
        let exit = &w["last_exit"];
        let of_it = |kind: &str| {
            events
                .iter()
                .rfind(|e| {
                    e["event"] == kind && e["program"] == run.crash.as_str() && e["instance"] == i
                })
                .cloned()
                .unwrap_or_else(|| panic!("no {kind} of {i}\n{}", run.sup.dump()))
        };
        // Its last exit is its last `exited` event's, seen after its last start.
        let exited = of_it("exited");
        assert_eq!(
            (&exit["code"], &exit["signal"]),
            (&exited["code"], &exited["signal"]),
            "{w}\n{exited}"
        );
        let at = exit["at"].as_str().expect("at");
        let (started, exited) = (of_it("started"), exited);
        assert!(
            started["ts"].as_str() <= Some(at) && Some(at) <= exited["ts"].as_str(),
            "{at} not between {started} and {exited}"
        );
        if fatal["instance"] == i {
            assert_eq!(exit["code"], 3, "{w}");
        }
    }
    let restarts: u64 = rows
        .iter()
        .map(|w| w["restarts"].as_u64().expect("n"))
        .sum();
    assert_eq!(restarts, MAX, "{rows:#?}");

    // The table says so too.
    let (ok, table) = ctl(&socket, &["status"]);
    assert!(ok, "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with(&run.crash) && l.contains("exit 3, "))
        .unwrap_or_else(|| panic!("no fatal row with its exit:\n{table}"));
    assert!(line.contains(" fatal ") && line.contains(" ago"), "{line}");

    // The metrics: the state, and the counts, for each instance.
    let body = run.metrics();
    let mut counted = 0.0;
    for i in 0..2 {
        let state = |s: &str| run.sample(&body, "supervise_worker_state", i, &[("state", s)]);
        assert_eq!(state("fatal"), Some(1.0), "{i}\n{body}");
        assert_eq!(state("running"), Some(0.0), "{i}\n{body}");
        assert_eq!(run.sample(&body, "supervise_worker_up", i, &[]), Some(0.0));
        counted += run
            .sample(
                &body,
                "supervise_worker_restarts_total",
                i,
                &[("reason", "exit")],
            )
            .unwrap_or_else(|| panic!("no restarts of {i}\n{body}"));
        assert!(
            run.sample(&body, "supervise_worker_cpu_seconds_total", i, &[])
                .is_some(),
            "{body}"
        );
    }
    assert_eq!(counted, MAX as f64, "{body}");

    // Not essential: `/readyz` leaves it out, and is ready once the other program is.
    let mut ready = (0, String::new());
    assert!(
        wait_until(LONG, || {
            ready = run.readyz();
            ready.0 == 200
        }),
        "{ready:?}"
    );

    // A restart is no way back: it says what is.
    for target in [run.crash.clone(), format!("{}/1", run.crash)] {
        let (ok, text) = ctl(&socket, &["restart", &target]);
        assert!(
            !ok && text.contains("is fatal") && text.contains("supervise start"),
            "{text}"
        );
    }
    let (ok, text) = ctl(&socket, &["restart", &run.crash, "--wait"]);
    assert!(!ok && text.contains("is fatal"), "{text}");

    // The other program ran on all along.
    assert!(common::alive(run.sup.pid()));
    let others = status_json(&socket);
    assert!(
        others
            .iter()
            .any(|w| w["program"] == run.ok.as_str() && w["state"] == "running"),
        "{others:#?}"
    );

    // The history records it fatal (a sampling tick at least).
    assert!(
        wait_until(LONG, || (0..2)
            .all(|i| run.history(i).contains(&Phase::Fatal))),
        "{:?}",
        run.history(0)
    );

    // Fixed and started again: the fatal rows go, the counts stay.
    std::fs::write(run.healed(), "").expect("healed");
    let (ok, text) = ctl(&socket, &["start", &run.crash]);
    assert!(ok && text.contains("was fatal"), "{text}");
    for w in run.wait_rows(2, "running") {
        assert!(w["pid"].as_i64().is_some(), "{w}");
    }
    let body = run.metrics();
    let mut after = 0.0;
    for i in 0..2 {
        let state = |s: &str| run.sample(&body, "supervise_worker_state", i, &[("state", s)]);
        assert_eq!(
            (state("fatal"), state("running")),
            (Some(0.0), Some(1.0)),
            "{body}"
        );
        after += run
            .sample(
                &body,
                "supervise_worker_restarts_total",
                i,
                &[("reason", "exit")],
            )
            .unwrap_or_default();
    }
    assert_eq!(after, counted, "{body}");
    let mut ready = (0, String::new());
    assert!(
        wait_until(LONG, || {
            ready = run.readyz();
            ready.0 == 200
        }),
        "{ready:?}"
    );

    // The history has each instance fatal, then running again.
    let mut states = Vec::new();
    let ok = wait_until(LONG, || {
        states = (0..2).map(|i| run.history(i)).collect();
        states.iter().all(|s| {
            s.iter()
                .position(|s| *s == Phase::Fatal)
                .is_some_and(|at| s[at..].contains(&Phase::Running))
        })
    });
    assert!(ok, "{states:?}");
    run.sup.signal(libc::SIGTERM);
    run.sup.wait_exit(LONG);
}

#[test]
fn stop_reload_and_wait_on_a_fatal_program() {
    let run = Run::start();
    let socket = run.socket();
    run.sup.wait_event("fatal", LONG);
    run.wait_rows(2, "fatal");

    // A reload that leaves it as it was leaves it fatal.
    run.reload(Some(2));
    run.wait_rows(2, "fatal");

    // `stop` makes it stopped: out of readiness, its last exits kept.
    let (ok, text) = ctl(&socket, &["stop", &run.crash]);
    assert!(ok && text.contains("was fatal"), "{text}");
    for w in run.wait_rows(2, "stopped") {
        assert!(w["last_exit"]["at"].is_string(), "{w}");
    }
    let mut ready = (0, String::new());
    assert!(
        wait_until(LONG, || {
            ready = run.readyz();
            ready.0 == 200
        }),
        "{ready:?}\n{}",
        run.sup.dump()
    );
    let body = run.metrics();
    for i in 0..2 {
        let state = |s: &str| run.sample(&body, "supervise_worker_state", i, &[("state", s)]);
        assert_eq!(
            (state("fatal"), state("stopped")),
            (Some(0.0), Some(1.0)),
            "{body}"
        );
    }
    let (ok, text) = ctl(&socket, &["restart", &run.crash]);
    assert!(!ok && text.contains("start it instead"), "{text}");

    // Started while still broken: `--wait` fails as soon as it goes fatal again.
    let (ok, text) = ctl(&socket, &["start", &run.crash, "--wait"]);
    assert!(!ok && text.contains("went fatal"), "{text}");
    run.wait_rows(2, "fatal");

    // A reload that changes it (here only its replica count) starts it afresh, every instance.
    std::fs::write(run.healed(), "").expect("healed");
    run.reload(Some(3));
    run.wait_rows(3, "running");
    let (code, body) = run.readyz();
    assert!(code == 200 || !body.ends_with(": fatal"), "{body}");

    // Given up on again and then taken out of the config: out of view.
    std::fs::remove_file(run.healed()).expect("unhealed");
    let (ok, text) = ctl(&socket, &["restart", &run.crash]);
    assert!(ok, "{text}");
    run.sup.wait_nth(3, LONG, "a third fatal", |e| {
        e["event"] == "fatal" && e["program"] == run.crash.as_str()
    });
    run.wait_rows(3, "fatal");
    run.reload(None);
    assert!(
        wait_until(LONG, || run.rows().is_empty()),
        "{:#?}",
        run.rows()
    );
    assert!(
        !run.metrics()
            .contains(&format!("program=\"{}\"", run.crash)),
        "{}",
        run.metrics()
    );
    assert_eq!(run.readyz().0, 200);

    // Put back, it starts afresh: nothing of the old verdict is left.
    std::fs::write(run.healed(), "").expect("healed");
    run.reload(Some(1));
    run.wait_rows(1, "running");
    let (ok, text) = ctl(&socket, &["restart", &run.crash]);
    assert!(ok, "{text}");
}

#[test]
fn prometheus_sees_the_fatal_program() {
    let Some(prometheus) =
        common::peers::tool("prometheus_sees_the_fatal_program", &["prometheus"])
    else {
        return;
    };
    let run = Run::start();
    run.sup.wait_event("fatal", LONG);
    run.wait_rows(2, "fatal");
    let web = format!("127.0.0.1:{}", common::peers::free_port());
    let target = run.addr.clone();
    let mut prom = common::peers::Daemon::start(&prometheus, |dir| {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: supervise\n    static_configs:\n\
                 \x20     - targets: [\"{target}\"]\n"
            ),
        )
        .expect("config");
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={web}"),
            "--log.level=warn".into(),
        ]
    });
    prom.wait_ready(&web, "/-/ready", LONG);
    // What an alert on a fatal program asks: each instance of it, at 1, with its restarts.
    let query = |q: &str| -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", encode(q));
        let Some((200, body)) = http(&web, "GET", &path, None) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let fatal = format!(
        "supervise_worker_state{{program=\"{}\",state=\"fatal\"}} == 1",
        run.crash
    );
    let mut series = Vec::new();
    let ok = wait_until(LONG, || {
        series = query(&fatal);
        series.len() == 2
    });
    assert!(
        ok,
        "{series:?}\n{:?}\n{}",
        http(&web, "GET", "/api/v1/targets", None),
        prom.output()
    );
    let restarts = query(&format!(
        "sum(supervise_worker_restarts_total{{program=\"{}\",reason=\"exit\"}})",
        run.crash
    ));
    assert_eq!(
        restarts.first().map(|s| s["value"][1].clone()),
        Some(Value::from(MAX.to_string())),
        "{restarts:?}"
    );
}

/// `text` as a URL query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
