//! The supervisor's own footprint (DESIGN.md §8): its PSS and RSS, and its CPU use while idle,
//! supervising 20 and 100 `sleep` workers with memory limits enforced and 1 s sampling; and how
//! long `status` takes to answer over the control socket.
//!
//! Run: `cargo bench -p supervisor --bench footprint` (about a minute). Not a criterion bench:
//! memory is not a timing, and idle CPU is measured over a fixed window from the kernel's own
//! accounting (schedstat run time of every thread of the supervisor), so this prints figures
//! rather than criterion estimates. The status round trips are timed in-process, median of 200.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use supervisor::admin::{self, Request, Response};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");
const IDLE_WINDOW: Duration = Duration::from_secs(20);

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child (the supervisor), which then stops its workers.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kb_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// CPU time of every thread of a process, nanoseconds (schedstat: the scheduler's own account,
/// far finer than the 10 ms ticks of utime/stime).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The supervisor and its lifeline (`supervise __lifeline`, its one child that is not a worker):
/// the footprint counts every process of the supervisor's own.
fn own_pids(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            if cmdline.split(|&b| b == 0).any(|a| a == b"__lifeline") {
                pids.push(c);
            }
        }
    }
    pids
}

fn measure(workers: u32, socket: &Path) {
    let child = Command::new(SUPERVISE)
        .arg("--admin")
        .arg(socket)
        .args([
            "--replicas",
            &workers.to_string(),
            "--memory-max",
            "1GiB",
            "--name",
            "idle",
            "--",
            "sleep",
            "100000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn supervise");
    let pid = child.id();
    let _guard = Guard(child);
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
    std::thread::sleep(Duration::from_secs(3));

    let own = own_pids(pid);
    assert_eq!(own.len(), 2, "the supervisor and its lifeline");
    let cpu = || own.iter().map(|&p| cpu_ns(p)).sum::<u64>();
    let t0 = Instant::now();
    let c0 = cpu();
    std::thread::sleep(IDLE_WINDOW);
    let c1 = cpu();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_percent = (c1 - c0) as f64 / 1e9 / elapsed * 100.0;

    let (mut pss, mut rss) = (0, 0);
    for p in &own {
        let rollup =
            std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).expect("smaps_rollup");
        pss += kb_field(&rollup, "Pss:");
        rss += kb_field(&rollup, "Rss:");
    }

    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let r = admin::call(socket, &Request::Status).expect("status");
            assert!(matches!(r, Response::Status { .. }));
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "footprint, {workers} sleep workers, --memory-max enforced, 1 s sampling (supervisor + lifeline): PSS {:.2} MiB, RSS {:.2} MiB; idle CPU {:.3} % of a core over {:.0} s ({:.1} ms of CPU); status round trip median {:.2} ms, p99 {:.2} ms",
        pss as f64 / 1024.0,
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
    for workers in [20, 100] {
        measure(workers, &dir.path().join(format!("s{workers}.sock")));
    }
}
