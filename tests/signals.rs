//! Signals to the supervisor: HUP reloads the config, USR1/USR2 are forwarded to the workers.

mod common;

use std::time::Duration;

use common::{alive, example, pid_of, run_example, unique, wait_until, ProgramGuard, Sup};

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
