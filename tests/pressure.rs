//! Host memory pressure (`[pressure]`), replayed from a recorded trace so the machine need not
//! be starved: workers are told first, then the tree that explains the pressure is restarted,
//! gracefully and alone; and every worker gets systemd's memory-pressure watch.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    example, pid_of, status_json, supervisor_json, unique, wait_until, ProgramGuard, Sup,
};

const LONG: Duration = Duration::from_secs(30);

fn trace(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/traces")
        .join(name)
}

/// `KEY=` of a process's environment.
fn env_of(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        kv.strip_prefix(key)?.strip_prefix('=').map(str::to_owned)
    })
}

#[test]
fn a_replayed_stall_restarts_the_leaking_replica_and_tells_workers_first() {
    let names: Vec<String> = ["db", "cache", "api", "watch"]
        .iter()
        .map(|n| unique(&format!("p{n}")))
        .collect();
    let _guards: Vec<ProgramGuard> = names.iter().cloned().map(ProgramGuard).collect();
    let (db, cache, api, watch) = (&names[0], &names[1], &names[2], &names[3]);
    let leaky = example("leaky");
    let watcher = example("pressure_watch");
    let sup = Sup::with_config(&format!(
        r#"
[pressure]
replay = "{trace}"
for = "3s"
[program.{db}]
command = ["{leaky}", "--rate", "0", "--start", "30"]
[program.{cache}]
command = ["{leaky}", "--rate", "0", "--start", "60"]
[program.{api}]
command = ["{leaky}", "--rate", "5"]
replicas = 2
[program.{watch}]
command = ["{watcher}"]
"#,
        trace = trace("small_host_stall.trace").display(),
    ));
    sup.wait_socket(LONG);
    let act = sup.wait_event("pressure", LONG);
    assert_eq!(act["program"], api.as_str(), "{}", sup.dump());
    assert_eq!(act["action"], "restart");
    assert!(
        act["growth_bytes_per_s"].as_u64().unwrap_or(0) > 2 << 20,
        "{act}"
    );
    assert_eq!(act["mem_total"], 2_000_000u64 * 1024);
    let r = sup.wait_nth(1, LONG, "the pressure restart", |e| {
        e["event"] == "restarting" && e["reason"] == "pressure"
    });
    assert_eq!(r["program"], api.as_str());
    // Told first: the finding came before the action, and the watching worker was woken.
    let events = sup.events();
    let told = events
        .iter()
        .position(|e| e["kind"] == "memory_pressure")
        .expect("workers told");
    let acted = events
        .iter()
        .position(|e| e["event"] == "pressure")
        .expect("acted");
    assert!(told < acted, "{}", sup.dump());
    sup.wait_stdout("pressure_watch memory pressure", 1, Duration::from_secs(5));
    // Only the leaking replica was ever chosen; the flat and the idle ones were not.
    std::thread::sleep(Duration::from_secs(2));
    for e in sup.of("pressure") {
        assert_eq!(e["program"], api.as_str(), "{}", sup.dump());
    }
    for w in status_json(&sup.socket()) {
        if w["program"] == db.as_str() || w["program"] == cache.as_str() {
            assert_eq!(w["restarts"], 0, "{w}");
        }
    }
    let host = &supervisor_json(&sup.socket())["host"];
    assert_eq!(host["pressure_policy"]["on"], "restart", "{host}");
    assert_eq!(host["pressure_policy"]["hold_s"], 3.0, "{host}");
}

#[test]
fn high_pressure_with_plenty_available_stops_nobody() {
    let name = unique("pcalm");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[pressure]\nreplay = \"{}\"\nfor = \"2s\"\n[program.{name}]\ncommand = [\"{}\", \"--rate\", \"5\"]\n",
        trace("high_some_plenty_available.trace").display(),
        example("leaky"),
    ));
    sup.wait_socket(LONG);
    std::thread::sleep(Duration::from_secs(8));
    assert!(sup.of("pressure").is_empty(), "{}", sup.dump());
    assert!(sup.of("restarting").is_empty(), "{}", sup.dump());
}

#[test]
fn every_worker_is_given_the_kernels_memory_pressure_watch() {
    if !Path::new("/proc/pressure/memory").exists() {
        eprintln!("skipped: this kernel keeps no memory PSI (/proc/pressure/memory)");
        return;
    }
    let name = unique("pwatch");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\"]\n",
        example("pressure_watch")
    ));
    let pid = pid_of(&sup.wait_event("started", LONG));
    assert!(wait_until(LONG, || env_of(pid, "MEMORY_PRESSURE_WATCH").is_some()));
    assert_eq!(
        env_of(pid, "MEMORY_PRESSURE_WATCH").as_deref(),
        Some("/proc/pressure/memory")
    );
    assert_eq!(
        env_of(pid, "MEMORY_PRESSURE_WRITE").as_deref(),
        Some("c29tZSAyMDAwMDAgMjAwMDAwMAA=")
    );
    // The kernel took its trigger (a program built on sd-event would now be woken by stalls).
    sup.wait_stdout("pressure_watch watching /proc/pressure/memory", 1, LONG);
}
