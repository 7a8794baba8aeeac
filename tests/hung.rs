//! A worker found hung (stale heartbeat) is sent the heartbeat signal on its root, not a
//! `Shutdown` it cannot answer, and its tree is SIGKILLed after the heartbeat grace rather than
//! the stop grace; the restart reason is `hung`.

mod common;

use std::time::Duration;

use common::{example, no_core_dumps, unique, ProgramGuard, Sup};

const LONG: Duration = Duration::from_secs(20);

/// `supervise --name NAME FLAGS -- sdk_worker --hang-after 500 ARGS`, with a 30 s stop grace
/// that none of these stops may wait for, and core dumps off (ABRT dumps core).
fn hung(prefix: &str, flags: &[&str], args: &[&str]) -> (Sup, ProgramGuard) {
    let name = unique(prefix);
    let guard = ProgramGuard(name.clone());
    let worker = example("sdk_worker");
    let sup = Sup::start_with(&[], |cmd, _| {
        no_core_dumps(cmd);
        cmd.args(["--name", &name, "--grace", "30s", "--sample-every", "200ms"])
            .args(["--heartbeat-timeout", "1s"])
            .args(flags)
            .args(["--", &worker, "--hang-after", "500"])
            .args(args);
    });
    (sup, guard)
}

fn ms_between(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let t = |e: &serde_json::Value| {
        humantime::parse_rfc3339(e["ts"].as_str().expect("ts"))
            .expect("rfc3339")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs_f64()
            * 1000.0
    };
    t(b) - t(a)
}

/// Waits for the hung finding and the first worker's `exited` and `restarting`.
fn hang_and_restart(sup: &Sup) -> (serde_json::Value, serde_json::Value) {
    let finding = sup.wait_nth(1, LONG, "hung finding", |e| {
        e["event"] == "finding" && e["kind"] == "hung"
    });
    let exited = sup.wait_event("exited", LONG);
    let r = sup.wait_event("restarting", LONG);
    assert_eq!(r["reason"], "hung", "{}", sup.dump());
    (finding, exited)
}

#[test]
fn a_hung_worker_dies_of_the_default_heartbeat_signal() {
    let (sup, _guard) = hung("hungabrt", &[], &[]);
    let (finding, exited) = hang_and_restart(&sup);
    // ABRT, whose default action ends sdk_worker at once: not `Shutdown` (it would leave with code
    // 0, saying so), not the stop signal, not SIGKILL after the grace.
    assert_eq!(exited["signal"], libc::SIGABRT, "{}", sup.dump());
    let stdout = std::fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(!stdout.contains("sdk_worker shutdown"), "{stdout}");
    assert!(ms_between(&finding, &exited) < 5000.0, "{}", sup.dump());
}

#[test]
fn the_heartbeat_signal_is_configurable() {
    let name = unique("hungcfg");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        r#"
[sample]
every = "200ms"
[program.{name}]
command = ["{}", "--hang-after", "500"]
stop = {{ grace = "30s" }}
[program.{name}.heartbeat]
timeout = "1s"
signal = "USR1"
grace = "2s"
"#,
        example("sdk_worker")
    ));
    let (_, exited) = hang_and_restart(&sup);
    assert_eq!(exited["signal"], libc::SIGUSR1, "{}", sup.dump());
}

#[test]
fn a_worker_that_survives_the_heartbeat_signal_is_killed_after_the_heartbeat_grace() {
    let (sup, _guard) = hung(
        "hungdeaf",
        &["--heartbeat-grace", "2s"],
        &["--ignore-signals", "--ignore-shutdown"],
    );
    let (finding, exited) = hang_and_restart(&sup);
    assert_eq!(exited["signal"], libc::SIGKILL, "{}", sup.dump());
    assert_eq!(sup.of("killed").len(), 1, "{}", sup.dump());
    // The heartbeat grace (2 s), not the stop grace (30 s).
    let waited = ms_between(&finding, &exited);
    assert!(
        (1500.0..8000.0).contains(&waited),
        "killed {waited} ms after the finding\n{}",
        sup.dump()
    );
}
