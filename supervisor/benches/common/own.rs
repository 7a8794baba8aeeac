//! A running supervisor's own processes (itself and its lifeline) and what they cost, read from
//! /proc: PSS/USS, CPU (schedstat), open files, and its running workers. Shared by the footprint
//! and scale benches.

// Included by several benches, each using part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A supervisor started by a bench: TERM on drop (it stops its workers), KILL if it lingers.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child (the supervisor), which then stops its workers.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
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

/// `supervise --admin SOCKET --replicas N [EXTRA...] --memory-max 1GiB --name idle -- sleep
/// 100000`.
pub fn start_idle(supervise: &Path, socket: &Path, workers: u32, extra: &[&str]) -> Guard {
    let child = Command::new(supervise)
        .arg("--admin")
        .arg(socket)
        .args(["--replicas", &workers.to_string()])
        .args(extra)
        .args([
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
    Guard(child)
}

/// The supervise binary to compare with, from `SUPERVISE_BASELINE` (e.g. a build of the main
/// branch), if set.
pub fn baseline() -> Option<PathBuf> {
    std::env::var_os("SUPERVISE_BASELINE")
        .map(PathBuf::from)
        .filter(|p| p.exists())
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
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Children of `pid` (all its threads').
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn is_lifeline(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|&b| b == 0).any(|a| a == b"__lifeline")
}

/// The supervisor and its lifeline (`supervise __lifeline`, its one child that is not a worker).
pub fn own_pids(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    pids.extend(children(pid).into_iter().filter(|&c| is_lifeline(c)));
    pids
}

/// Workers running now: children that are not the lifeline and have exec'd (not a fork of the
/// supervisor still on its way to exec).
pub fn workers(pid: u32, supervise: &Path) -> Vec<u32> {
    let me = std::fs::canonicalize(supervise).unwrap_or_else(|_| supervise.to_path_buf());
    children(pid)
        .into_iter()
        .filter(|&c| {
            std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|exe| exe != me)
                && !is_lifeline(c)
        })
        .collect()
}

/// PSS, USS (private clean + dirty) and RSS of `pids`, KiB.
pub fn memory_kib(pids: &[u32]) -> (u64, u64, u64) {
    let (mut pss, mut uss, mut rss) = (0, 0, 0);
    for p in pids {
        let r = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        pss += kb_field(&r, "Pss:");
        uss += kb_field(&r, "Private_Clean:") + kb_field(&r, "Private_Dirty:");
        rss += kb_field(&r, "Rss:");
    }
    (pss, uss, rss)
}

/// Processes outside `own` running the executable `exe`: they share its pages and lower its PSS.
pub fn outside_sharers(exe: &Path, own: &[u32]) -> usize {
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| !own.contains(p))
                .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
                .count()
        })
        .unwrap_or(0)
}

/// Open files of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The load averages, to print beside timing figures.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls `cond` every `every` until it holds or `timeout` passes; the time it took.
pub fn wait_until(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if cond() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(every);
    }
    None
}
