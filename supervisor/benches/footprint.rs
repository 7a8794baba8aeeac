//! The supervisor's own footprint (DESIGN.md §8): its PSS and RSS, and its CPU use while idle,
//! supervising 20 and 100 `sleep` workers with memory limits enforced and 1 s sampling; and how
//! long `status` takes to answer over the control socket.
//!
//! Run: `cargo bench -p supervisor --bench footprint` (about a minute and a half; with
//! `SUPERVISE_BASELINE=/path/to/an/older/supervise`, that binary is measured too, in the same run,
//! and the whole takes twice as long). PSS is split with every process mapping the same file: run
//! it with no other supervise of the same build running (it prints how many share the binary);
//! USS is printed beside it. Not a criterion bench:
//! memory is not a timing, and idle CPU is measured over a fixed window from the kernel's own
//! accounting (schedstat run time of every thread of the supervisor), so this prints figures
//! rather than criterion estimates. The status round trips are timed in-process, median of 200.

#[path = "common/own.rs"]
mod own;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use supervisor::admin::{self, Request, Response};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");
const IDLE_WINDOW: Duration = Duration::from_secs(30);

fn measure(bin: &Path, label: &str, workers: u32, socket: &Path) {
    let guard = own::start_idle(bin, socket, workers, &[]);
    let pid = guard.0.id();
    // Wait until every worker runs, then let start-up settle.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = match admin::call(socket, &Request::Status) {
            Ok(Response::Status { workers: w, .. }) => w.iter().filter(|w| w.pid.is_some()).count(),
            _ => 0,
        };
        if running == workers as usize {
            break;
        }
        assert!(Instant::now() < deadline, "workers did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Start-up is not idle: the supervisor trims its resident memory at its third tick (see
    // `supervisor::trim`), so the window starts after that.
    std::thread::sleep(Duration::from_secs(5));

    let own = own::own_pids(pid);
    assert_eq!(own.len(), 2, "the supervisor and its lifeline");
    let cpu = || own.iter().map(|&p| own::cpu_ns(p)).sum::<u64>();
    let load = own::loadavg();
    let t0 = Instant::now();
    let c0 = cpu();
    std::thread::sleep(IDLE_WINDOW);
    let c1 = cpu();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_percent = (c1 - c0) as f64 / 1e9 / elapsed * 100.0;
    let (pss, uss, rss) = own::memory_kib(&own);
    let (pss_main, _, _) = own::memory_kib(&own[..1]);
    let sharers = own::outside_sharers(bin, &own);

    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let r = admin::call(socket, &Request::Status).expect("status");
            assert!(matches!(r, Response::Status { .. }));
            t.elapsed()
        })
        .collect();
    times.sort();
    drop(guard);
    let target = if workers == 20 {
        " (targets: PSS <= 2.5 MiB, idle CPU <= 0.02 %)"
    } else {
        ""
    };
    eprintln!(
        "footprint, {label}, {workers} sleep workers, --memory-max enforced, 1 s sampling (supervisor + lifeline): PSS {:.2} MiB (supervisor {:.2}), USS {:.2} MiB, RSS {:.2} MiB; idle CPU {:.3} % of a core over {:.0} s ({:.1} ms of CPU){target}; status round trip median {:.2} ms, p99 {:.2} ms; {sharers} outside sharers of the binary; load {load}",
        pss as f64 / 1024.0,
        pss_main as f64 / 1024.0,
        uss as f64 / 1024.0,
        rss as f64 / 1024.0,
        cpu_percent,
        elapsed,
        (c1 - c0) as f64 / 1e6,
        times[100].as_secs_f64() * 1e3,
        times[198].as_secs_f64() * 1e3,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bins = vec![("this build", PathBuf::from(SUPERVISE))];
    if let Some(b) = own::baseline() {
        bins.push(("baseline", b));
    }
    for workers in [20, 100] {
        for (i, (label, bin)) in bins.iter().enumerate() {
            measure(
                bin,
                label,
                workers,
                &dir.path().join(format!("s{workers}-{i}.sock")),
            );
        }
    }
}
