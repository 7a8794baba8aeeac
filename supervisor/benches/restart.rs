//! Crash -> next instance running, zero backoff (DESIGN.md §8, target <= 1 ms), against the floor
//! measured in the same run: a plain loop that spawns `/bin/true` and waits for it.
//!
//! Run: `cargo bench -p supervisor --bench restart`
//!
//! The `supervise` binary: cargo builds a package's `[[bin]]` targets before its benchmarks and
//! sets `CARGO_BIN_EXE_supervise` for them (cargo's target docs: "Binary targets are automatically
//! built if there is an integration test or benchmark being selected"), so `cargo bench` always
//! runs the freshly built `target/release/supervise` (the bench profile inherits release). No
//! separate `cargo build` is needed, and the path does not depend on where cargo puts the bench
//! executable.
//!
//! Benchmarks (group `restart_zero_backoff`; each criterion iteration is one whole run, reported
//! per cycle, i.e. divided by the N+1 spawns of the run):
//! - `supervise`: `supervise --events FILE --restart always --backoff-first 0 --max-restarts N
//!   --within 1h -- /bin/true`, timed until it exits (code 1: fatal after N restarts). One cycle =
//!   spawn + exit + reap + the supervisor's bookkeeping; the supervisor's own start and shutdown
//!   are amortized over the N+1 cycles (and measured separately in the report below).
//! - `raw_spawn_wait`: `Command::new("/bin/true").status()` N+1 times.
//!
//! Then a report on stderr from a few interleaved runs: medians of both, the overhead the
//! supervisor adds per restart (supervise per cycle minus raw per cycle), the marginal cost per
//! restart with the supervisor's fixed start/stop cost removed (runs with N and with 0 restarts),
//! and a cross-check from the events file: the median gap between each `exited` event and the next
//! `started` one. Event timestamps have millisecond resolution, so that gap is only good to ~1 ms.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

/// Restarts per run: the run has N+1 spawns (the program goes fatal on the (N+1)th exit).
const N: u32 = 200;
const CYCLES: u32 = N + 1;

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");

/// One run of the supervisor with `restarts` restarts; returns its wall time.
fn run_supervise(events: &Path, restarts: u32) -> Duration {
    match std::fs::remove_file(events) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot remove {}: {e}", events.display()),
    }
    let mut cmd = Command::new(SUPERVISE);
    cmd.arg("--events")
        .arg(events)
        .args([
            "--restart",
            "always",
            "--backoff-first",
            "0",
            "--max-restarts",
        ])
        .arg(restarts.to_string())
        .args(["--within", "1h", "--", "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SUPERVISE}: {e}"));
    let took = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "supervise should go fatal (exit 1) after {restarts} restarts; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// `cycles` spawns of /bin/true, each waited for; returns the wall time.
fn run_raw(cycles: u32) -> Duration {
    let t0 = Instant::now();
    for _ in 0..cycles {
        let st = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn /bin/true");
        assert!(st.success());
    }
    t0.elapsed()
}

fn per_cycle(d: Duration, cycles: u32) -> Duration {
    d / cycles
}

fn median(v: &mut [Duration]) -> Duration {
    assert!(!v.is_empty());
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Gaps (ms) between each `exited` event and the next `started` one, and the counts of
/// `started`/`exited`/`fatal` events.
fn event_gaps(events: &Path) -> (Vec<i64>, [usize; 3]) {
    let text = std::fs::read_to_string(events).expect("read events file");
    let mut gaps = Vec::new();
    let mut counts = [0usize; 3];
    let mut last_exit: Option<std::time::SystemTime> = None;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("event is JSON");
        let ts = v["ts"].as_str().expect("event has ts");
        let ts = humantime::parse_rfc3339(ts).expect("ts is RFC 3339");
        match v["event"].as_str() {
            Some("started") => {
                counts[0] += 1;
                if let Some(e) = last_exit.take() {
                    let gap = ts
                        .duration_since(e)
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    gaps.push(gap);
                }
            }
            Some("exited") => {
                counts[1] += 1;
                last_exit = Some(ts);
            }
            Some("fatal") => counts[2] += 1,
            _ => {}
        }
    }
    (gaps, counts)
}

fn bench_restart(c: &mut Criterion) {
    assert!(
        Path::new(SUPERVISE).exists(),
        "{SUPERVISE} is missing: run `cargo bench`, which builds it"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let events: PathBuf = dir.path().join("events.jsonl");

    let mut g = c.benchmark_group("restart_zero_backoff");
    // One iteration is a whole run (~0.15 s raw, ~0.5 s supervised): flat sampling, the minimum
    // of 10 samples of one run each, a short warm-up, so the group stays well under a minute.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("supervise", |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters).map(|_| run_supervise(&events, N)).sum();
            per_cycle(total, CYCLES)
        });
    });
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("raw_spawn_wait", |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters).map(|_| run_raw(CYCLES)).sum();
            per_cycle(total, CYCLES)
        });
    });
    g.finish();

    // Interleaved runs, so drift hits both sides alike. Fewer when criterion runs in test mode
    // (`cargo test --benches`), where only a smoke test is wanted.
    let runs = if std::env::args().any(|a| a == "--bench") {
        5
    } else {
        1
    };
    let (mut sup, mut raw, mut fixed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        sup.push(run_supervise(&events, N));
        raw.push(run_raw(CYCLES));
        fixed.push(run_supervise(&events, 0));
    }
    report(&events, &mut sup, &mut raw, &mut fixed);
}

fn report(events: &Path, sup: &mut [Duration], raw: &mut [Duration], fixed: &mut [Duration]) {
    let runs = sup.len();
    let sup_run = median(sup);
    let raw_run = median(raw);
    // A run with 0 restarts: start, one spawn, exit, fatal, shutdown.
    let fixed_run = median(fixed);
    let sup_cycle = micros(per_cycle(sup_run, CYCLES));
    let raw_cycle = micros(per_cycle(raw_run, CYCLES));
    let marginal = (micros(sup_run) - micros(fixed_run)) / f64::from(N);
    eprintln!("restart_zero_backoff report (medians of {runs} interleaved runs, N = {N} restarts, {CYCLES} spawns per run):");
    eprintln!(
        "  supervise run:        {:>9.1} ms  -> {sup_cycle:>7.1} µs per cycle",
        micros(sup_run) / 1e3
    );
    eprintln!(
        "  raw spawn+wait run:   {:>9.1} ms  -> {raw_cycle:>7.1} µs per cycle",
        micros(raw_run) / 1e3
    );
    eprintln!(
        "  supervise overhead per restart (per cycle, minus raw): {:>7.1} µs",
        sup_cycle - raw_cycle
    );
    eprintln!(
        "  supervise with 0 restarts (start + 1 spawn + shutdown): {:.1} ms; marginal cost per restart: {marginal:.1} µs \
         (overhead over raw: {:.1} µs)",
        micros(fixed_run) / 1e3,
        marginal - raw_cycle
    );

    // Cross-check from the events file of one more N-restart run. `exited` is written once the
    // worker is reaped and its pipes drained, `started` once the next spawn returned: the gap
    // leaves out the SIGCHLD-to-reap latency, and both ends are truncated to the millisecond.
    let last = run_supervise(events, N);
    let (mut gaps, counts) = event_gaps(events);
    assert_eq!(
        counts,
        [CYCLES as usize, CYCLES as usize, 1],
        "started/exited/fatal events of one run"
    );
    gaps.sort_unstable();
    let med = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let max = gaps.last().copied().unwrap_or(0);
    let zero = gaps.iter().filter(|&&g| g == 0).count();
    eprintln!(
        "  events cross-check (one run, {:.1} ms): exited -> next started gap median {med} ms, max {max} ms, \
         {zero}/{} gaps within the same ms (timestamps have 1 ms resolution: each gap is ±1 ms)",
        micros(last) / 1e3,
        gaps.len()
    );
}

criterion_group!(benches, bench_restart);
criterion_main!(benches);
