//! Reloads that restart nothing they need not: a change to keys the supervisor reads as the
//! instances run (a memory limit, the restart mode) applies to the running instances, with no
//! restart; a change to the command replaces them one at a time; a live change that arrives
//! during a roll neither stops it nor starts it over; `reload --dry-run` says which is which.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use common::{ctl_output, example, status_json, unique, wait_until, ProgramGuard, Sup};

/// A config of one program `name`: `replicas` leaky workers, each holding `{start}` MiB (a
/// template), with `extra` lines in its table.
fn config(name: &str, replicas: u32, start: &str, extra: &str) -> String {
    format!(
        "[sample]\nevery = \"200ms\"\n[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\", \
         \"--start\", \"{start}\"]\nreplicas = {replicas}\n{extra}",
        example("leaky")
    )
}

/// Each instance's pid, from `status --json`.
fn pids(sup: &Sup) -> BTreeMap<u64, Option<i64>> {
    status_json(&sup.socket())
        .iter()
        .map(|w| (w["instance"].as_u64().unwrap_or(99), w["pid"].as_i64()))
        .collect()
}

fn reload(sup: &Sup, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["reload"];
    all.extend_from_slice(args);
    ctl_output(&sup.socket(), &all)
}

fn up(sup: &Sup, n: usize) -> bool {
    let workers = status_json(&sup.socket());
    workers.len() == n && workers.iter().all(|w| w["pid"].as_i64().is_some())
}

#[test]
fn a_new_memory_limit_and_restart_mode_restart_nothing_and_the_new_limit_holds() {
    let name = unique("rllive");
    let _guard = ProgramGuard(name.clone());
    // Instances hold 5, 25, 45 and 65 MiB.
    let start = "{5 + instance * 20}";
    let before = "restart = \"on-failure\"\nmemory = { max = \"500MiB\" }\n";
    let sup = Sup::with_config(&config(&name, 4, start, before));
    sup.wait_socket(Duration::from_secs(5));
    sup.wait_nth(4, Duration::from_secs(20), "four started", |e| {
        e["event"] == "started"
    });
    assert!(wait_until(Duration::from_secs(10), || up(&sup, 4)));
    let first = pids(&sup);
    // Each instance was started with its own argv.
    for w in status_json(&sup.socket()) {
        let i = w["instance"].as_u64().expect("instance");
        let argv: Vec<&str> = w["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(
            argv.last().copied(),
            Some((5 + i * 20).to_string().as_str()),
            "{w}"
        );
    }

    let path = sup.path("supervise.toml");
    let after = "restart = \"always\"\nmemory = { max = \"55MiB\" }\n";
    fs::write(&path, config(&name, 4, start, after)).expect("config");
    let (code, out, err) = reload(&sup, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("{name}: live: no instance restarted"))
            && out.contains("memory.max: 500.0 MiB → 55.0 MiB (live)")
            && out.contains("restart: on-failure → always (live)"),
        "{out}"
    );
    // A dry run changes nothing.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(pids(&sup), first);
    assert!(status_json(&sup.socket())
        .iter()
        .all(|w| w["memory_max_bytes"] == 500 << 20));

    let (code, _, err) = reload(&sup, &[]);
    assert_eq!(code, Some(0), "{err}");
    // Instance 3 (65 MiB) is over the new limit: restarted for memory, at the limit's count of
    // samples; the others run on, not restarted.
    let restarting = sup.wait_nth(1, Duration::from_secs(20), "a restart", |e| {
        e["event"] == "restarting"
    });
    assert_eq!(restarting["reason"], "memory", "{}", sup.dump());
    assert_eq!(restarting["instance"], 3, "{}", sup.dump());
    let now = pids(&sup);
    for i in 0..3 {
        assert_eq!(
            now[&i],
            first[&i],
            "instance {i} was restarted\n{}",
            sup.dump()
        );
    }
    let workers = status_json(&sup.socket());
    assert!(
        workers.iter().all(|w| w["memory_max_bytes"] == 55 << 20),
        "{workers:?}"
    );
    assert!(
        sup.of("restarting").iter().all(|e| e["instance"] == 3),
        "{}",
        sup.dump()
    );
    // Started: the first four, and instance 3's restarts only.
    assert!(sup.of("started").iter().skip(4).all(|e| e["instance"] == 3));
}

#[test]
fn a_changed_command_rolls_the_replicas_one_at_a_time() {
    let name = unique("rlroll");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&config(&name, 4, "0", ""));
    sup.wait_socket(Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(20), || up(&sup, 4)));
    let first = pids(&sup);
    let path = sup.path("supervise.toml");
    fs::write(&path, config(&name, 4, "1", "")).expect("config");
    let (code, out, err) = reload(&sup, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("{name}: rolling: "))
            && out.contains("command: ")
            && out.contains("(restart)"),
        "{out}"
    );
    let (code, _, err) = reload(&sup, &[]);
    assert_eq!(code, Some(0), "{err}");
    // Watched until every instance has a new pid: never more than one out at a time.
    let mut fewest = 4;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = pids(&sup);
        fewest = fewest.min(now.values().filter(|p| p.is_some()).count());
        if now.len() == 4 && now.iter().all(|(i, p)| p.is_some() && *p != first[i]) {
            break;
        }
        assert!(Instant::now() < deadline, "not rolled\n{}", sup.dump());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        fewest >= 3,
        "only {fewest} of 4 running at once\n{}",
        sup.dump()
    );
    // One at a time: each replacement started after the one before it (the events file may be
    // a moment behind the status).
    sup.wait_nth(8, Duration::from_secs(10), "four replacements", |e| {
        e["event"] == "started"
    });
    let started: Vec<u64> = sup
        .of("started")
        .iter()
        .skip(4)
        .filter_map(|e| e["instance"].as_u64())
        .collect();
    assert_eq!(started, [0, 1, 2, 3], "{}", sup.dump());
    for w in status_json(&sup.socket()) {
        assert_eq!(
            w["argv"].as_array().and_then(|a| a.last()),
            Some(&"1".into())
        );
    }
}

#[test]
fn a_live_change_during_a_roll_reaches_every_instance_and_the_roll_goes_on() {
    let name = unique("rlmid");
    let _guard = ProgramGuard(name.clone());
    // Each stop takes its 1.5 s grace (TERM ignored): a roll of three takes seconds.
    let cfg = |arg: &str, max: &str| {
        format!(
            "[sample]\nevery = \"200ms\"\n[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\", \
             \"--ignore-term\", \"--say\", \"{arg}\"]\nreplicas = 3\nstop = {{ grace = \
             \"1500ms\" }}\nmemory = {{ max = \"{max}\" }}\n",
            example("leaky")
        )
    };
    let sup = Sup::with_config(&cfg("one", "500MiB"));
    sup.wait_socket(Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(20), || up(&sup, 3)));
    let path = sup.path("supervise.toml");
    fs::write(&path, cfg("two", "500MiB")).expect("config");
    let (code, _, err) = reload(&sup, &[]);
    assert_eq!(code, Some(0), "{err}");
    // The roll under way: instance 0 replaced, the others not yet.
    sup.wait_nth(4, Duration::from_secs(20), "the first replacement", |e| {
        e["event"] == "started"
    });
    fs::write(&path, cfg("two", "300MiB")).expect("config");
    let (code, out, err) = reload(&sup, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("{name}: live: no instance restarted")),
        "{out}"
    );
    let (code, _, err) = reload(&sup, &[]);
    assert_eq!(code, Some(0), "{err}");
    // Every instance, replaced or not yet, has the new limit at once.
    let workers = status_json(&sup.socket());
    assert!(
        workers.iter().all(|w| w["memory_max_bytes"] == 300 << 20),
        "{workers:?}\n{}",
        sup.dump()
    );
    // The roll goes on to the end, each instance replaced once (not started over), all with the
    // new command and the new limit.
    let done = wait_until(Duration::from_secs(30), || {
        let w = status_json(&sup.socket());
        w.len() == 3
            && w.iter().all(|w| {
                w["pid"].as_i64().is_some()
                    && w["argv"].as_array().and_then(|a| a.last()) == Some(&"two".into())
            })
    });
    assert!(done, "{}", sup.dump());
    sup.wait_nth(6, Duration::from_secs(10), "three replacements", |e| {
        e["event"] == "started"
    });
    let started: Vec<u64> = sup
        .of("started")
        .iter()
        .filter_map(|e| e["instance"].as_u64())
        .collect();
    assert_eq!(started, [0, 1, 2, 0, 1, 2], "{}", sup.dump());
    let workers = status_json(&sup.socket());
    assert!(
        workers.iter().all(|w| w["memory_max_bytes"] == 300 << 20),
        "{workers:?}"
    );
}

#[test]
fn a_new_health_check_timing_reaches_the_running_instance() {
    let name = unique("rlhealth");
    let _guard = ProgramGuard(name.clone());
    // Nothing listens on port 1: the check fails at each try, but the first is an hour away.
    let health = |every: &str| {
        format!("health = {{ tcp = \"127.0.0.1:1\", every = \"{every}\", failures = 2 }}\n")
    };
    let sup = Sup::with_config(&config(&name, 1, "0", &health("1h")));
    sup.wait_socket(Duration::from_secs(5));
    let started = sup.wait_event("started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    assert!(sup.of("restarting").is_empty(), "{}", sup.dump());
    fs::write(
        sup.path("supervise.toml"),
        config(&name, 1, "0", &health("200ms")),
    )
    .expect("config");
    let (code, out, err) = reload(&sup, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("health: ") && out.contains("(live)"), "{out}");
    let (code, _, err) = reload(&sup, &[]);
    assert_eq!(code, Some(0), "{err}");
    // The same process, now checked every 200 ms: restarted as unhealthy after two failures.
    let restarting = sup.wait_event("restarting", Duration::from_secs(10));
    assert_eq!(restarting["reason"], "unhealthy", "{}", sup.dump());
    assert_eq!(restarting["pid"], started["pid"], "{}", sup.dump());
}

#[test]
fn a_worker_that_speaks_the_protocol_is_told_its_new_limit() {
    let name = unique("rlsdk");
    let _guard = ProgramGuard(name.clone());
    let cfg = |max: &str| {
        format!(
            "[program.{name}]\ncommand = [\"{}\"]\nmemory = {{ max = \"{max}\" }}\n",
            example("sdk_worker")
        )
    };
    let sup = Sup::with_config(&cfg("400MiB"));
    sup.wait_socket(Duration::from_secs(5));
    let started = sup.wait_event("started", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(10), || status_json(
        &sup.socket()
    )
    .first()
    .is_some_and(|w| w["speaks"] == true)));
    fs::write(sup.path("supervise.toml"), cfg("300MiB")).expect("config");
    let (code, _, err) = reload(&sup, &[]);
    assert_eq!(code, Some(0), "{err}");
    sup.wait_stdout(
        &format!("sdk_worker limits memory_max={}", 300u64 << 20),
        1,
        Duration::from_secs(10),
    );
    assert_eq!(pids(&sup)[&0], started["pid"].as_i64(), "{}", sup.dump());
}
