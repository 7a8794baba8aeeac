//! Soak: 10,000 zero-backoff restarts of a trivial worker under one supervisor. What a supervisor
//! holds per restart must not pile up: its RSS and fd count, and its lifeline's fd count, are
//! read after the first 100 restarts and after the last, with the restart rate in between.
//!
//! Run: `cargo bench -p supervisor --bench soak` (about half a minute in release mode). Not a
//! criterion benchmark and not a CI test: one long run, a report on stderr, and a failure if the
//! fd counts grew (they must be flat). Under `cargo test --benches` it runs 300 restarts only.
//!
//! The run: `supervise --events FILE --admin SOCKET --restart always --backoff-first 0
//! --max-restarts 20000 --within 1h -- /bin/true`; restarts are counted from the `started` events
//! as they are written. Each figure is the median of five reads 10 ms apart (a worker may be
//! alive, with its pipes and /proc files open, at any one read), and its range is shown.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");
/// Restarts counted before the first reading (the supervisor's start-up is done by then).
const WARM: u64 = 100;

/// RSS (KiB) and open fds of one process.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rss_kib: u64,
    fds: u64,
}

fn figures(pid: u32) -> Option<Figures> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Figures { rss_kib, fds })
}

/// The lifeline: the child of `pid` running `supervise __lifeline`.
fn lifeline_of(pid: u32) -> Option<u32> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            if cmdline.split(|&b| b == 0).any(|a| a == b"__lifeline") {
                return Some(c);
            }
        }
    }
    None
}

/// Median and range of five reads of each figure, 10 ms apart.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    restarts: u64,
    sup_rss: [u64; 3],
    sup_fds: [u64; 3],
    lifeline_fds: [u64; 3],
}

fn median_range(mut v: Vec<u64>) -> [u64; 3] {
    v.sort_unstable();
    [v[v.len() / 2], v[0], v[v.len() - 1]]
}

fn read(sup: u32, lifeline: u32, restarts: u64) -> Reading {
    let at = Instant::now();
    let (mut rss, mut fds, mut lfds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let s = figures(sup).expect("supervise is running");
        let l = figures(lifeline).expect("the lifeline is running");
        rss.push(s.rss_kib);
        fds.push(s.fds);
        lfds.push(l.fds);
        std::thread::sleep(Duration::from_millis(10));
    }
    Reading {
        at,
        restarts,
        sup_rss: median_range(rss),
        sup_fds: median_range(fds),
        lifeline_fds: median_range(lfds),
    }
}

/// Counts the `started` events appended to the events file since the last call.
struct Starts {
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
    count: u64,
}

impl Starts {
    fn poll(&mut self, path: &Path) -> u64 {
        if self.file.is_none() {
            self.file = File::open(path).ok();
        }
        let Some(f) = &mut self.file else {
            return self.count;
        };
        let mut new = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() && f.read_to_end(&mut new).is_ok() {
            self.offset += new.len() as u64;
            self.partial.extend_from_slice(&new);
            let complete = self
                .partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let text = String::from_utf8_lossy(&self.partial[..complete]);
            self.count += text
                .lines()
                .filter(|l| l.contains("\"event\":\"started\""))
                .count() as u64;
            self.partial.drain(..complete);
        }
        self.count
    }
}

/// Kills the supervisor if the bench fails half-way (its stderr is ours: it must not linger).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for(child: &mut Child, starts: &mut Starts, events: &Path, n: u64, limit: Duration) {
    let end = Instant::now() + limit;
    while starts.poll(events) < n {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("supervise exited ({status}) after {} starts", starts.count);
        }
        assert!(
            Instant::now() < end,
            "only {} of {n} starts within {limit:?}",
            starts.count
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fmt(r: [u64; 3]) -> String {
    format!("{} ({}–{})", r[0], r[1], r[2])
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let restarts: u64 = if full { 10_000 } else { 300 };
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    let mut guard = Guard(
        Command::new(SUPERVISE)
            .arg("--events")
            .arg(&events)
            .arg("--admin")
            .arg(dir.path().join("ctl.sock"))
            .args([
                "--quiet",
                "--restart",
                "always",
                "--backoff-first",
                "0",
                "--max-restarts",
                "20000",
                "--within",
                "1h",
                "--",
                "/bin/true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SUPERVISE}: {e}")),
    );
    let child = &mut guard.0;
    let pid = child.id();
    let mut starts = Starts {
        file: None,
        offset: 0,
        partial: Vec::new(),
        count: 0,
    };
    // The first start, then WARM restarts.
    wait_for(
        child,
        &mut starts,
        &events,
        WARM + 1,
        Duration::from_secs(60),
    );
    let lifeline = lifeline_of(pid).expect("the lifeline");
    let before = read(pid, lifeline, starts.count - 1);
    wait_for(
        child,
        &mut starts,
        &events,
        restarts + 1,
        Duration::from_secs(1800),
    );
    let after = read(pid, lifeline, starts.count - 1);
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(i32::try_from(pid).expect("pid"), libc::SIGTERM) };
    let status = child.wait().expect("wait for supervise");
    // Single-command mode passes on the program's status: 0, or 143 for a /bin/true the TERM
    // caught running.
    assert!(
        matches!(status.code(), Some(0 | 143)),
        "supervise after SIGTERM: {status}"
    );

    let done = after.restarts - before.restarts;
    let secs = after.at.duration_since(before.at).as_secs_f64();
    eprintln!(
        "soak: {} zero-backoff restarts of /bin/true under one supervise (figures after {} and after {} restarts; median of 5 reads (range)):",
        after.restarts, before.restarts, after.restarts
    );
    eprintln!(
        "  supervise RSS:     {} KiB -> {} KiB",
        fmt(before.sup_rss),
        fmt(after.sup_rss)
    );
    eprintln!(
        "  supervise fds:     {} -> {}",
        fmt(before.sup_fds),
        fmt(after.sup_fds)
    );
    eprintln!(
        "  lifeline fds:      {} -> {}",
        fmt(before.lifeline_fds),
        fmt(after.lifeline_fds)
    );
    eprintln!(
        "  restart rate:      {:.0} restarts/s ({done} restarts in {secs:.1} s)",
        done as f64 / secs
    );
    // Flat: what one restart holds is let go. A worker alive at a read adds its own few fds.
    assert!(
        after.sup_fds[1] <= before.sup_fds[2] + 2,
        "supervise's fds grew: {} -> {}",
        fmt(before.sup_fds),
        fmt(after.sup_fds)
    );
    assert!(
        after.lifeline_fds[1] <= before.lifeline_fds[2] + 2,
        "the lifeline's fds grew: {} -> {}",
        fmt(before.lifeline_fds),
        fmt(after.lifeline_fds)
    );
}
