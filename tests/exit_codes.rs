//! In single-command mode the worker's exit status becomes the supervisor's (128+N for signal N),
//! whether the run ends by itself, by a signal to the supervisor or by going fatal (that of its
//! last incarnation, after an operator's stop and start); config mode exits 1 on fatal, and when
//! it ends by itself with an instance whose last exit was a failure.

mod common;

use std::time::Duration;

use common::{example, run_example, supervise_bin, unique, ProgramGuard, Sup};

fn run(args: &[&str]) -> (Option<i32>, Sup) {
    let crasher = example("crasher");
    let mut all = vec!["--restart", "never", "--", crasher.as_str()];
    all.extend_from_slice(args);
    let mut sup = Sup::start(&all);
    let code = sup.wait_exit(Duration::from_secs(20)).code();
    (code, sup)
}

#[test]
fn exit_code_propagates() {
    for code in ["0", "7", "42"] {
        let (got, sup) = run(&["--code", code, "--after", "10"]);
        assert_eq!(got, code.parse().ok(), "{}", sup.dump());
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let (got, sup) = run(&["--signal", "9", "--after", "10"]);
    assert_eq!(got, Some(137), "{}", sup.dump());
    let exited = sup.of("exited");
    assert_eq!(exited[0]["signal"], 9);
    assert!(exited[0]["code"].is_null());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--replicas", "0", "--", "true"][..],
        &["--memory-max", "lots", "--", "true"],
        &[],
        &["--bogus"],
    ] {
        let out = std::process::Command::new(supervise_bin())
            .args(args)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn sigint_reaches_the_program_and_its_status_is_ours() {
    // crasher does not handle INT: it dies of the INT the supervisor passes on, as under a shell.
    let (mut sup, _name, _guard) = run_example("int", &[], "crasher", &["--after", "100000"]);
    sup.wait_stdout("crasher pid=", 1, Duration::from_secs(10));
    sup.signal(libc::SIGINT);
    let status = sup.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{}", sup.dump());
    assert_eq!(sup.of("exited")[0]["signal"], libc::SIGINT);
}

#[test]
fn a_fatal_program_passes_on_its_last_status() {
    // Single-command mode, as tini: the crash loop goes fatal and its exit code is ours.
    let (mut sup, _name, _guard) = run_example(
        "fatal",
        &["--backoff-first", "0s"],
        "crasher",
        &["--code", "3", "--after", "0"],
    );
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(sup.of("fatal").len(), 1, "{}", sup.dump());
    assert_eq!(status.code(), Some(3), "{}", sup.dump());
}

#[test]
fn a_fatal_program_in_config_mode_exits_1() {
    let name = unique("cfgfatal");
    let _guard = ProgramGuard(name.clone());
    let mut sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--code\", \"3\", \"--after\", \"0\"]\n\
         backoff = {{ first = \"0s\" }}\nintensity = {{ max = 2, within = \"60s\" }}\n",
        example("crasher")
    ));
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(sup.of("fatal").len(), 1, "{}", sup.dump());
    assert_eq!(status.code(), Some(1), "{}", sup.dump());
}

#[test]
fn after_an_operator_stop_and_start_a_term_still_exits_143() {
    // Single-command mode: the status is the program's last one, not 1 for the incarnation the
    // operator's stop ended earlier.
    let (mut sup, name, _guard) =
        common::run_example_ctl("stopstart", &[], "crasher", &["--after", "100000"]);
    sup.wait_stdout("crasher pid=", 1, Duration::from_secs(10));
    let socket = sup.socket();
    for action in ["stop", "start"] {
        let (ok, text) = common::ctl(&socket, &[action, &name, "--wait"]);
        assert!(ok, "{action}: {text}");
    }
    sup.wait_stdout("crasher pid=", 2, Duration::from_secs(10));
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(143), "{}", sup.dump());
}

/// Config mode, every program run once (`restart = "never"`): the run ends by itself, and its
/// code says whether every instance's last exit was a success.
fn config_run(codes: &[&str]) -> (Option<i32>, Sup) {
    let names: Vec<String> = codes.iter().map(|_| unique("cfgonce")).collect();
    let _guards: Vec<_> = names.iter().map(|n| ProgramGuard(n.clone())).collect();
    let crasher = example("crasher");
    let config: String = names
        .iter()
        .zip(codes)
        .map(|(name, code)| {
            format!(
                "[program.{name}]\ncommand = [\"{crasher}\", \"--code\", \"{code}\", \"--after\", \"50\"]\n\
                 restart = \"never\"\n"
            )
        })
        .collect();
    let mut sup = Sup::with_config(&config);
    let code = sup.wait_exit(Duration::from_secs(20)).code();
    (code, sup)
}

#[test]
fn config_mode_exits_1_when_a_program_ended_in_failure() {
    for (codes, want) in [
        (&["3", "4"][..], 1),
        (&["0", "5"], 1),
        (&["0", "0"], 0),
        (&["9"], 1),
    ] {
        let (got, sup) = config_run(codes);
        assert_eq!(got, Some(want), "{codes:?}\n{}", sup.dump());
        assert!(sup.of("fatal").is_empty(), "{}", sup.dump());
    }
}
