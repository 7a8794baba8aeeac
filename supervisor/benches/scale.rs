//! A thousand workers on one box (issue targets: all running within 1 s of start, PSS <= 20 MiB,
//! idle CPU <= 0.5 % of a core, `status` <= 20 ms, 500 workers killed at once all running again
//! within 2 s; open files per worker as `plan::FDS_PER_INSTANCE` says).
//!
//! Run: `cargo bench -p supervisor --bench scale` (about a minute per binary). With
//! `SUPERVISE_BASELINE=/path/to/an/older/supervise` the same figures are taken for that binary
//! too, in the same run, and printed beside. `SCALE_WORKERS` (default 1000) and
//! `SCALE_IDLE_SECS` (default 20) change the size and the idle window.
//!
//! Not a criterion bench: each figure is one whole-system measurement of the real `supervise`
//! over `sleep` workers with `--memory-max 1GiB` (memory enforced, 1 s sampling):
//! - start: from spawning supervise until all N workers have exec'd (`/proc/PID/task/*/children`,
//!   polled every 10 ms: no load on the supervisor's control socket);
//! - idle CPU: schedstat run time of the supervisor and its lifeline over the window (the
//!   kernel's account, robust to other load on the machine);
//! - PSS/USS/RSS of the supervisor and its lifeline (`smaps_rollup`);
//! - `status` over the control socket: median and worst of 50 round trips, the answer decoded;
//! - storm: SIGKILL to 500 workers at once, until N workers run again and none of the killed
//!   (with `--max-restarts 100000 --within 60s`: under the default intensity, 500 failures at
//!   once make the program fatal, as they should);
//! - open files of the supervisor, per worker.

#[path = "common/own.rs"]
mod own;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use supervisor::admin::{self, Request, Response};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");

struct Figures {
    start: Option<Duration>,
    pss_mib: f64,
    uss_mib: f64,
    rss_mib: f64,
    idle_cpu: f64,
    status_median_ms: f64,
    status_worst_ms: f64,
    storm: Option<Duration>,
    fds: usize,
    sharers: usize,
    load: String,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn measure(bin: &Path, n: u32, idle: Duration, socket: &Path) -> Figures {
    let t0 = Instant::now();
    // The storm is 500 failures at once: under the default intensity (5 restarts within 60 s,
    // per program, as OTP counts them per supervisor) the program would rightly go fatal. The
    // storm measures the restart path, so the intensity is raised out of its way.
    let guard = own::start_idle(
        bin,
        socket,
        n,
        &["--max-restarts", "100000", "--within", "60s"],
    );
    let pid = guard.0.id();
    let start = own::wait_until(Duration::from_secs(60), Duration::from_millis(10), || {
        own::workers(pid, bin).len() == n as usize
    })
    .map(|_| t0.elapsed());
    // Start-up is not idle: the supervisor trims its resident memory at its third tick (see
    // `supervisor::trim`), so the window starts after that.
    std::thread::sleep(Duration::from_secs(5));

    let pids = own::own_pids(pid);
    let load0 = own::loadavg();
    let cpu = || pids.iter().map(|&p| own::cpu_ns(p)).sum::<u64>();
    let (c0, w0) = (cpu(), Instant::now());
    std::thread::sleep(idle);
    let (c1, el) = (cpu(), w0.elapsed());
    let idle_cpu = (c1 - c0) as f64 / 1e9 / el.as_secs_f64() * 100.0;
    let (pss, uss, rss) = own::memory_kib(&pids);
    let fds = own::fd_count(pid);
    let sharers = own::outside_sharers(bin, &pids);

    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let r = admin::call(socket, &Request::Status).expect("status");
            let Response::Status { workers, .. } = r else {
                panic!("not a status answer")
            };
            assert_eq!(workers.len(), n as usize);
            t.elapsed()
        })
        .collect();
    times.sort();

    // The storm: half the workers SIGKILLed at once.
    let victims: Vec<u32> = own::workers(pid, bin)
        .into_iter()
        .take(n as usize / 2)
        .collect();
    let t = Instant::now();
    for &v in &victims {
        // SAFETY: kill(2) on a worker of our own supervisor.
        unsafe { libc::kill(v as i32, libc::SIGKILL) };
    }
    let storm = own::wait_until(Duration::from_secs(30), Duration::from_millis(10), || {
        let now = own::workers(pid, bin);
        now.len() == n as usize && !now.iter().any(|p| victims.contains(p))
    })
    .map(|_| t.elapsed());
    let load = format!("{load0} -> {}", own::loadavg());
    drop(guard);
    Figures {
        start,
        pss_mib: pss as f64 / 1024.0,
        uss_mib: uss as f64 / 1024.0,
        rss_mib: rss as f64 / 1024.0,
        idle_cpu,
        status_median_ms: times[times.len() / 2].as_secs_f64() * 1e3,
        status_worst_ms: times[times.len() - 1].as_secs_f64() * 1e3,
        storm,
        fds,
        sharers,
        load,
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "not within the timeout".into(),
        |d| format!("{:.2} s", d.as_secs_f64()),
    )
}

fn main() {
    let n = u32::try_from(env_u64("SCALE_WORKERS", 1000)).unwrap_or(1000);
    let idle = Duration::from_secs(env_u64("SCALE_IDLE_SECS", 20));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bins: Vec<(&str, PathBuf)> = vec![("this build", PathBuf::from(SUPERVISE))];
    if let Some(b) = own::baseline() {
        bins.push(("baseline", b));
    }
    let mut rows = Vec::new();
    for (i, (label, bin)) in bins.iter().enumerate() {
        let f = measure(bin, n, idle, &dir.path().join(format!("s{i}.sock")));
        rows.push((label, f));
    }
    eprintln!(
        "scale, {n} sleep workers, --memory-max enforced, 1 s sampling (supervisor + lifeline), idle window {} s; FDS_PER_INSTANCE = {}",
        idle.as_secs(),
        supervisor::plan::FDS_PER_INSTANCE
    );
    for (label, f) in &rows {
        eprintln!(
            "  {label}: all running after {} (target <= 1 s); PSS {:.1} MiB (target <= 20), USS {:.1}, RSS {:.1}; idle CPU {:.3} % of a core (target <= 0.5); status median {:.1} ms, worst of 50 {:.1} ms (target <= 20); 500 killed -> all running again after {} (target <= 2 s); {} open files = {:.2} per worker; {} outside sharers of the binary; load {}",
            secs(f.start),
            f.pss_mib,
            f.uss_mib,
            f.rss_mib,
            f.idle_cpu,
            f.status_median_ms,
            f.status_worst_ms,
            secs(f.storm),
            f.fds,
            f.fds as f64 / f64::from(n),
            f.sharers,
            f.load,
        );
    }
}
