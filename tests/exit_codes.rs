//! In single-command mode the worker's exit status becomes the supervisor's (128+N for signal N).

mod common;

use std::time::Duration;

use common::{example, supervise_bin, Sup};

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
