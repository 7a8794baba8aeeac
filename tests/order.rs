//! Start order: `after = [...]` starts a program once what it starts after is up, and a stop of
//! everything stops it first.

mod common;

use std::time::Duration;

use common::{alive, example, status_json, unique, wait_until, ProgramGuard, Sup};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Position of the first event matching `pred`.
fn index(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    events.iter().position(pred)
}

#[test]
fn a_program_starts_after_its_slow_dependency_is_ready_and_stops_before_it() {
    let (db, api) = (unique("db"), unique("api"));
    let _guards = [ProgramGuard(db.clone()), ProgramGuard(api.clone())];
    let port = free_port();
    let mut sup = Sup::with_config(&format!(
        "[program.{db}]\ncommand = [\"{target}\", \"--port\", \"{port}\", \"--listen-after\", \"2000\"]\n\
         ready = {{ tcp = \"127.0.0.1:{port}\", every = \"100ms\" }}\n\
         [program.{api}]\ncommand = [\"{sleeper}\", \"--after\", \"1000000\"]\nreplicas = 2\n\
         after = [\"{db}\"]\n",
        target = example("probe_target"),
        sleeper = example("crasher"),
    ));
    sup.wait_socket(LONG);
    // While db is not ready, api waits, and says for what.
    let workers = status_json(&sup.socket());
    let waiting: Vec<&Value> = workers
        .iter()
        .filter(|w| w["program"] == api.as_str())
        .collect();
    assert_eq!(waiting.len(), 2, "{workers:?}");
    for w in &waiting {
        assert_eq!(w["state"], "waiting", "{w}");
        assert!(
            w["waiting_for"].as_str().is_some_and(|s| s.contains(&db)),
            "{w}"
        );
    }
    sup.wait_nth(2, LONG, "api starts", |e| {
        e["event"] == "started" && e["program"] == api.as_str()
    });
    let events = sup.events();
    let ready = index(&events, |e| {
        e["event"] == "ready" && e["program"] == db.as_str()
    })
    .expect("db ready");
    let first_api = index(&events, |e| {
        e["event"] == "started" && e["program"] == api.as_str()
    })
    .expect("api started");
    assert!(
        ready < first_api,
        "api started before db was ready\n{}",
        sup.dump()
    );

    // A stop of everything: api first, db once api is gone.
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
    let events = sup.events();
    let last_api = events
        .iter()
        .rposition(|e| e["event"] == "stopped" && e["program"] == api.as_str())
        .expect("api stopped");
    let db_stop = index(&events, |e| {
        e["event"] == "stopping" && e["program"] == db.as_str()
    })
    .expect("db stopping");
    assert!(
        last_api < db_stop,
        "db stopped while api ran\n{}",
        sup.dump()
    );
}

#[test]
fn a_fatal_dependency_leaves_its_dependents_waiting() {
    let (db, api) = (unique("dbfatal"), unique("apiwait"));
    let _guards = [ProgramGuard(db.clone()), ProgramGuard(api.clone())];
    let sup = Sup::with_config(&format!(
        "[program.{db}]\ncommand = [\"{crasher}\", \"--code\", \"1\", \"--after\", \"0\"]\n\
         intensity = {{ max = 1, within = \"60s\" }}\nbackoff = {{ first = \"0s\" }}\n\
         essential = false\n\
         [program.{api}]\ncommand = [\"{crasher}\", \"--after\", \"1000000\"]\nafter = [\"{db}\"]\n",
        crasher = example("crasher"),
    ));
    sup.wait_socket(LONG);
    sup.wait_event("fatal", LONG);
    assert!(
        wait_until(LONG, || status_json(&sup.socket()).iter().any(|w| {
            w["program"] == api.as_str()
                && w["state"] == "waiting"
                && w["waiting_for"]
                    .as_str()
                    .is_some_and(|s| s.contains("fatal"))
        })),
        "{:?}",
        status_json(&sup.socket())
    );
    // Still up, for an operator to `start` the dependency again.
    assert!(alive(sup.pid()));
    assert!(
        sup.of("started")
            .iter()
            .all(|e| e["program"] != api.as_str()),
        "{}",
        sup.dump()
    );
}
