//! A leak of 10 MiB/s past a 100 MiB limit (target <= 0.15 s over the limit and a peak tree RSS
//! <= 102 MiB, with the defaults — `--memory-for 3`, 1 s sampling — and with `--memory-for 1`).
//!
//! Run: `cargo bench -p supervisor --bench leak`
//!
//! Each iteration runs the real `supervise --memory-max 100MiB [--memory-for 1] --max-restarts 0`
//! over the `leaky` example started at 80 MiB (so the first 1 s sample still finds it under the limit) and growing 10 MiB/s, and reads its events file:
//! - time over the limit = overshoot at detection / leak rate (how long the tree had been over the
//!   limit when the sample caught it) + the time from that sample to the worker's exit;
//! - peak tree RSS = the detecting sample's bytes + rate x (sample to exit).
//!
//! The figure criterion reports is the time over the limit (`iter_custom` returns it instead of
//! the wall time); the peak RSS and both parts are printed on stderr. Event timestamps have
//! millisecond resolution, so the stop part is good to ~1 ms.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");
const MIB: f64 = 1024.0 * 1024.0;
const LIMIT_MIB: f64 = 100.0;
const RATE_MIB_S: f64 = 10.0;

/// The `leaky` example, built on demand.
fn leaky() -> PathBuf {
    common::example(SUPERVISE, "leaky")
}

struct Run {
    over_limit: Duration,
    detect_overshoot: Duration,
    stop: Duration,
    peak_mib: f64,
}

fn ts(e: &serde_json::Value) -> f64 {
    let t = humantime::parse_rfc3339(e["ts"].as_str().expect("ts")).expect("rfc3339");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs_f64()
}

fn one_run(leaky: &Path, events: &Path, memory_for: &[&str]) -> Run {
    let _ = std::fs::remove_file(events);
    let status = Command::new(SUPERVISE)
        .arg("--events")
        .arg(events)
        .args(["--quiet", "--memory-max", "100MiB"])
        .args(memory_for)
        .args(["--max-restarts", "0", "--"])
        .arg(leaky)
        .args(["--start", "80", "--rate", "10", "--step-ms", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run supervise");
    // The program goes fatal at its first memory restart; single-command mode passes on its
    // status: it died of the stop signal.
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "the program goes fatal at its first memory restart"
    );
    let text = std::fs::read_to_string(events).expect("events");
    let evs: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let over = evs
        .iter()
        .find(|e| e["event"] == "memory_over")
        .expect("memory_over");
    let exited = evs.iter().find(|e| e["event"] == "exited").expect("exited");
    let bytes = over["bytes"].as_f64().expect("bytes") / MIB;
    let detect = (bytes - LIMIT_MIB).max(0.0) / RATE_MIB_S;
    let stop = (ts(exited) - ts(over)).max(0.0);
    Run {
        over_limit: Duration::from_secs_f64(detect + stop),
        detect_overshoot: Duration::from_secs_f64(detect),
        stop: Duration::from_secs_f64(stop),
        peak_mib: bytes + RATE_MIB_S * stop,
    }
}

fn bench(c: &mut Criterion) {
    let leaky = leaky();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.jsonl");
    let mut g = c.benchmark_group("leak_10MiBps_past_100MiB");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(20));
    let mut reports = Vec::new();
    for (name, memory_for) in [
        ("defaults (--memory-for 3)", &[][..]),
        ("--memory-for 1", &["--memory-for", "1"][..]),
    ] {
        let mut runs = Vec::new();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let r = one_run(&leaky, &events, memory_for);
                        let t = r.over_limit;
                        runs.push(r);
                        t
                    })
                    .sum()
            });
        });
        reports.push((name, runs));
    }
    g.finish();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, runs) in reports {
        let worst = runs.iter().max_by_key(|r| r.over_limit).expect("runs");
        eprintln!(
            "leak report, {name}: over {} runs (medians): time over limit {:.1} ms = detection overshoot {:.1} ms + stop {:.1} ms; peak tree RSS {:.1} MiB (limit {LIMIT_MIB} MiB); worst {:.1} ms, peak {:.1} MiB",
            runs.len(),
            median(runs.iter().map(|r| r.over_limit.as_secs_f64() * 1e3).collect()),
            median(runs.iter().map(|r| r.detect_overshoot.as_secs_f64() * 1e3).collect()),
            median(runs.iter().map(|r| r.stop.as_secs_f64() * 1e3).collect()),
            median(runs.iter().map(|r| r.peak_mib).collect()),
            worst.over_limit.as_secs_f64() * 1e3,
            worst.peak_mib
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
