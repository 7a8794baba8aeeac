//! Leak-trend detection on real workers: a steady leak is restarted with reason `leak` long
//! before any limit; a warm-up that plateaus and an allocate/free sawtooth are left alone.

mod common;

use std::time::Duration;

use common::{run_example, Sup};

/// Runs leaky ARGS under `--leak 6MiB/10s` sampled every 200 ms.
fn leaky(prefix: &str, extra: &[&str], args: &[&str]) -> (Sup, common::ProgramGuard) {
    let mut flags = vec!["--leak", "6MiB/10s", "--sample-every", "200ms"];
    flags.extend_from_slice(extra);
    let (sup, _name, guard) = run_example(prefix, &flags, "leaky", args);
    (sup, guard)
}

#[test]
fn a_steady_leak_is_restarted_before_any_limit() {
    // 1.5 MiB/s is 15 MiB per 10 s window: well above 6 MiB/10 s, far below anything else.
    let (sup, _guard) = leaky("trend", &[], &["--rate", "1.5", "--step-ms", "100"]);
    let finding = sup.wait_nth(1, Duration::from_secs(30), "leak finding", |e| {
        e["event"] == "finding" && e["kind"] == "leak"
    });
    let slope = finding["slope_bytes_per_s"].as_u64().expect("slope");
    assert!(
        (1_000_000..2_500_000).contains(&slope),
        "slope {slope} B/s for a 1.5 MiB/s leak\n{}",
        sup.dump()
    );
    let r = sup.wait_event("restarting", Duration::from_secs(5));
    assert_eq!(r["reason"], "leak", "{}", sup.dump());
    // Caught after about one window, long before the worker held much.
    let uptime = sup.of("exited")[0]["uptime_s"].as_f64().expect("uptime");
    assert!(uptime < 20.0, "detected after {uptime} s");
}

#[test]
fn warn_only_reports() {
    let (sup, _guard) = leaky(
        "trendwarn",
        &["--on-leak", "warn"],
        &["--rate", "1.5", "--step-ms", "100"],
    );
    sup.wait_nth(1, Duration::from_secs(30), "leak finding", |e| {
        e["event"] == "finding" && e["kind"] == "leak"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(sup.of("restarting").is_empty(), "{}", sup.dump());
}

#[test]
fn a_warm_up_that_plateaus_is_not_a_leak() {
    // Grows 20 MiB in the first second, then holds: far more than 6 MiB, but not sustained.
    let (sup, _guard) = leaky("plateau", &[], &["--rate", "20", "--max", "20"]);
    std::thread::sleep(Duration::from_secs(25));
    assert!(
        sup.of("finding").is_empty() && sup.of("restarting").is_empty(),
        "{}",
        sup.dump()
    );
    assert_eq!(sup.of("started").len(), 1);
}

#[test]
fn a_sawtooth_is_not_a_leak() {
    // 4 MiB/s for 3 s, all freed, again: peaks of 12 MiB, no trend.
    let (sup, _guard) = leaky("sawtooth", &[], &["--rate", "4", "--free-every", "3"]);
    std::thread::sleep(Duration::from_secs(25));
    assert!(
        sup.of("finding").is_empty() && sup.of("restarting").is_empty(),
        "{}",
        sup.dump()
    );
}
