//! A worker that forks into the background and exits 0 at once — a daemon started without its
//! foreground flag (nginx without `daemon off;`) — is told as `daemonized`, with the processes
//! it left; those are stopped as after any exit, and nothing else changes.

mod common;

use std::time::Duration;

use common::{alive, run_example};

/// The grandchild pid `forker` reports on its worker line (`... grandchild=PID`).
fn grandchild(stdout: &str) -> i32 {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grandchild=")?.parse().ok())
        .unwrap_or_else(|| panic!("no grandchild in {stdout:?}"))
}

fn daemon(flags: &[&str]) {
    let mut args = vec!["--hold", "1", "--exit-after", "0", "--exit-code", "0"];
    args.extend_from_slice(flags);
    let (mut sup, _name, _guard) = run_example("daemon", &[], "forker", &args);
    let status = sup.wait_exit(Duration::from_secs(30));
    let out = std::fs::read_to_string(sup.path("stdout")).unwrap_or_default();
    let left = grandchild(&out);
    let told = sup.of("daemonized");
    assert_eq!(told.len(), 1, "{}", sup.dump());
    assert_eq!(told[0]["processes"], 1, "{}", sup.dump());
    assert_eq!(told[0]["pids"], serde_json::json!([left]), "{}", sup.dump());
    // Told after the exit it explains.
    let kinds: Vec<String> = sup
        .events()
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .collect();
    let exited = kinds.iter().position(|k| k == "exited");
    let daemonized = kinds.iter().position(|k| k == "daemonized");
    assert!(exited < daemonized, "{kinds:?}");
    let stderr = sup.stderr();
    assert!(
        stderr.contains("forked into the background and exited (daemonized), leaving 1 process")
            && stderr.contains("run it in the foreground (nginx: daemon off;"),
        "{stderr}"
    );
    // What it left was stopped; a 0 exit is not restarted, and is supervise's own.
    assert!(!alive(left), "pid {left} outlived the run");
    assert_eq!(sup.of("started").len(), 1, "{}", sup.dump());
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
}

#[test]
fn a_worker_that_forks_into_the_background_is_told() {
    daemon(&[]);
}

#[test]
fn also_when_what_it_left_started_a_session_of_its_own() {
    // nginx's and redis's daemons call setsid(): out of the worker's process group.
    daemon(&["--setsid"]);
}

#[test]
fn a_quick_clean_exit_that_leaves_nothing_is_no_daemon() {
    let (mut sup, _name, _guard) =
        run_example("quick", &[], "crasher", &["--code", "0", "--after", "0"]);
    let status = sup.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", sup.dump());
    assert_eq!(sup.of("exited").len(), 1, "{}", sup.dump());
    assert!(sup.of("daemonized").is_empty(), "{}", sup.dump());
    assert!(!sup.stderr().contains("daemonized"), "{}", sup.stderr());
}
