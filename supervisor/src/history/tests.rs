use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::front::Front;
use super::writer::Writer;
use super::*;

const MIB: u64 = 1 << 20;
const T0: u64 = 1_700_000_000_000;

fn status(program: &str, instance: u32, pid: Option<i32>, rss: Option<u64>) -> WorkerStatus {
    // Built from JSON so that figures this module does not record can come and go.
    let mut w: WorkerStatus = serde_json::from_value(serde_json::json!({
        "program": program,
        "instance": instance,
        "state": "running",
        "ready": false,
        "restarts": 0,
        "counters": {},
        "findings": [],
    }))
    .expect("a minimal status");
    w.pid = pid;
    w.state = if pid.is_some() {
        Phase::Running
    } else {
        Phase::Backoff
    };
    w.restarts_by_reason = ["exit", "memory", "manual", "hung", "leak"]
        .iter()
        .map(|r| ((*r).to_owned(), 0))
        .collect();
    w.rss_bytes = rss;
    w.cpu_percent = pid.map(|_| 12.5);
    w
}

fn restart(w: &mut WorkerStatus, reason: &str) {
    w.restarts += 1;
    *w.restarts_by_reason.entry(reason.to_owned()).or_insert(0) += 1;
}

fn found(w: &mut WorkerStatus, kind: &str) {
    *w.findings_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
}

/// A writer without its thread: every tick is written at once, nothing is dropped.
struct Direct {
    w: Writer,
    front: Front,
}

impl Direct {
    fn open(path: &Path, max: Option<u64>) -> Self {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        let size = f.metadata().expect("metadata").len();
        Self {
            w: Writer::new(path, f, size, max, Arc::new(AtomicU64::new(0))),
            front: Front::default(),
        }
    }

    fn tick(&mut self, unix_ms: u64, workers: &[WorkerStatus]) {
        let (m, commits) = self.front.tick(unix_ms, workers);
        self.front.commit(commits);
        self.w.feed(m);
    }

    fn own(&mut self, by_kind: &std::collections::BTreeMap<&str, u64>) {
        if let Some((m, total)) = self.front.own(by_kind) {
            self.front.commit_own(total);
            self.w.feed(m);
        }
    }
}

/// One leaking worker restarted for memory at ticks 10 and 20 (pid changes a tick later), with
/// a `leak` finding that only warned at tick 5 and two more at tick 25, and a steady one,
/// sampled every second.
fn leaky_run(d: &mut Direct, start: u64, ticks: u64) {
    let mut leaky = status("leaky", 0, Some(100), None);
    let mut steady = status("steady", 0, Some(200), Some(10 * MIB));
    for i in 0..ticks {
        if i == 10 || i == 20 {
            restart(&mut leaky, "memory");
            leaky.pid = None;
        } else if i == 11 || i == 21 {
            leaky.pid = Some(100 + i32::try_from(i).expect("small"));
        }
        if i == 5 || i == 25 {
            found(&mut leaky, "leak");
        }
        if i == 25 {
            found(&mut leaky, "leak");
        }
        leaky.rss_bytes = leaky.pid.map(|_| (i % 10 + 1) * 4 * MIB);
        leaky.state = if leaky.pid.is_some() {
            Phase::Running
        } else {
            Phase::Backoff
        };
        d.tick(start + i * 1000, &[leaky.clone(), steady.clone()]);
        steady.cpu_percent = Some(0.5);
    }
}

fn by_name<'a>(s: &'a Series, program: &str) -> &'a WorkerSeries {
    s.workers
        .iter()
        .find(|w| w.program == program)
        .expect("series present")
}

#[test]
fn round_trip_keeps_figures_and_derives_restart_marks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    leaky_run(&mut d, T0, 30);
    let s = read(&path).expect("read");
    assert_eq!(s.ignored_bytes, 0);
    assert_eq!(s.runs, [T0]);
    let leaky = by_name(&s, "leaky");
    assert_eq!(leaky.samples, 30);
    assert_eq!(leaky.points.len(), 30);
    assert_eq!(leaky.points[3].unix_ms, T0 + 3000);
    assert_eq!(leaky.points[3].rss, Some(16 * MIB));
    assert_eq!(leaky.points[10].rss, None, "no process while in backoff");
    assert_eq!(leaky.points[10].state, Some(Phase::Backoff));
    assert_eq!(leaky.points[3].cpu_percent, Some(12.5));
    let marks: Vec<(u64, &str)> = leaky
        .restarts
        .iter()
        .map(|m| (m.unix_ms, m.reason.as_str()))
        .collect();
    // The pid changes that follow each counted restart add no mark of their own.
    assert_eq!(marks, [(T0 + 10_000, "memory"), (T0 + 20_000, "memory")]);
    let steady = by_name(&s, "steady");
    assert!(steady.restarts.is_empty());
    assert!(steady.points.iter().all(|p| p.rss == Some(10 * MIB)));
    assert_eq!(steady.points[5].cpu_percent, Some(0.5));
    // Findings, warned or followed by a restart, are marked at the tick that counted them.
    let findings: Vec<(u64, &str)> = leaky
        .findings
        .iter()
        .map(|m| (m.unix_ms, m.kind.as_str()))
        .collect();
    let leak = |i: u64| (T0 + i * 1000, "leak");
    assert_eq!(findings, [leak(5), leak(25), leak(25)]);
    assert!(steady.findings.is_empty());
    // Each new process is flagged, so that no line joins it to the one before.
    let starts: Vec<usize> = (0..leaky.points.len())
        .filter(|&i| leaky.points[i].new_process)
        .collect();
    assert_eq!(starts, [0, 11, 21]);
}

#[test]
fn a_new_pid_without_a_counted_restart_is_marked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    let mut w = status("p", 0, Some(10), Some(MIB));
    d.tick(T0, std::slice::from_ref(&w));
    w.pid = Some(11);
    d.tick(T0 + 1000, std::slice::from_ref(&w));
    let s = read(&path).expect("read");
    let marks = &by_name(&s, "p").restarts;
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].reason, "restart");
}

#[test]
fn a_torn_tail_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    leaky_run(&mut d, T0, 30);
    let len = std::fs::metadata(&path).expect("metadata").len();
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(len - 3).expect("truncate");
    let s = read(&path).expect("a torn tail is not an error");
    assert!(s.ignored_bytes > 0 && s.ignored_bytes < 64, "{s:?}");
    assert_eq!(by_name(&s, "leaky").samples, 29);
    assert_eq!(by_name(&s, "steady").samples, 29);
}

#[test]
fn a_later_run_appends_after_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    leaky_run(&mut d, T0, 30);
    drop(d);
    let len = std::fs::metadata(&path).expect("metadata").len();
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(len - 5).expect("truncate");
    // The next run goes through the real open and writer thread.
    let h = History::open(&path, None).expect("reopen");
    let second = T0 + 3_600_000;
    let mut w = status("leaky", 0, Some(500), Some(MIB));
    h.record(second, std::slice::from_ref(&w));
    restart(&mut w, "leak");
    w.pid = Some(501);
    h.record(second + 1000, std::slice::from_ref(&w));
    h.close();
    let s = read(&path).expect("read");
    assert_eq!(s.runs, [T0, second]);
    assert!(s.ignored_bytes > 0);
    let leaky = by_name(&s, "leaky");
    assert_eq!(leaky.samples, 29 + 2);
    let reasons: Vec<&str> = leaky.restarts.iter().map(|m| m.reason.as_str()).collect();
    // The second run counts from zero: its first restart is one mark, not a continuation.
    assert_eq!(reasons, ["memory", "memory", "leak"]);
    assert_eq!(leaky.restarts[2].unix_ms, second + 1000);
}

#[test]
fn rotation_keeps_one_predecessor_and_reads_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let max = 200;
    let mut d = Direct::open(&path, Some(max));
    leaky_run(&mut d, T0, 30);
    let old = rotated(&path);
    assert!(old.exists(), "rotated to FILE.1");
    let live = std::fs::metadata(&path).expect("live").len();
    assert!(
        live <= max + 100,
        "live file {live} bytes for a {max} limit"
    );
    let s = read(&path).expect("read");
    assert_eq!(s.ignored_bytes, 0);
    // A rotation does not start a run (and this run's first segment was rotated away).
    assert!(s.runs.is_empty(), "{:?}", s.runs);
    let leaky = by_name(&s, "leaky");
    assert_eq!(
        leaky.points.last().map(|p| p.unix_ms),
        Some(T0 + 29_000),
        "the newest sample is in FILE"
    );
    // Counts restated after each rotation are a baseline, not new restarts.
    assert!(leaky.restarts.len() <= 2, "{:?}", leaky.restarts);
    assert!(leaky.restarts.iter().all(|m| m.reason == "memory"));
    // So are finding counts: the two findings of tick 25 are marked when that tick is still
    // held (here it is not: a restated count of 3 is all that says they happened), never more.
    let first = leaky.points[0].unix_ms;
    let at = |t: u64| leaky.findings.iter().filter(|m| m.unix_ms == t).count();
    assert_eq!(at(T0 + 25_000), if first <= T0 + 25_000 { 2 } else { 0 });
    assert_eq!(at(T0 + 5_000), usize::from(first <= T0 + 5_000));
    assert_eq!(leaky.findings.len(), at(T0 + 5_000) + at(T0 + 25_000));
    // Several rotations happened: the oldest samples are gone, never duplicated.
    let times: Vec<u64> = leaky.points.iter().map(|p| p.unix_ms).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times.len() < 30);
}

#[test]
fn garbage_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are someone's notes\n").expect("write");
    let e = read(&path).expect_err("garbage");
    assert!(matches!(e, HistoryError::NotHistory { .. }));
    assert!(
        e.to_string().contains("not a supervise history file"),
        "{e}"
    );
    let e = History::open(&path, None).expect_err("never appended to");
    assert!(
        e.to_string().contains("not a supervise history file"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "these are someone's notes\n"
    );
    let e = read(&dir.path().join("missing")).expect_err("missing");
    assert!(matches!(e, HistoryError::Io { .. }));
    assert!(e.to_string().contains("missing"), "{e}");
    let e = History::open(&dir.path().join("no/such/dir/h"), None).expect_err("no dir");
    assert!(e.to_string().contains("no/such/dir/h"), "{e}");
}

#[test]
fn a_signature_cut_short_is_an_empty_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    std::fs::write(&path, &codec::MAGIC[..3]).expect("write");
    let s = read(&path).expect("read");
    assert!(s.workers.is_empty());
    assert_eq!(s.ignored_bytes, 3);
    // Appending starts afresh rather than after the stub.
    let h = History::open(&path, None).expect("open");
    h.record(T0, &[status("p", 0, Some(1), Some(MIB))]);
    h.close();
    let s = read(&path).expect("read");
    assert_eq!(by_name(&s, "p").samples, 1);
}

#[test]
fn write_errors_drop_ticks_and_writing_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    // The first write goes to a full disk; after the error the writer reopens its path.
    let full = OpenOptions::new()
        .append(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut d = Direct {
        w: Writer::new(&path, full, 0, None, Arc::new(AtomicU64::new(0))),
        front: Front::default(),
    };
    let mut w = status("p", 0, Some(1), Some(MIB));
    d.tick(T0, std::slice::from_ref(&w));
    restart(&mut w, "exit");
    w.pid = Some(2);
    d.tick(T0 + 1000, std::slice::from_ref(&w));
    d.tick(T0 + 2000, std::slice::from_ref(&w));
    let s = read(&path).expect("read");
    assert_eq!(
        s.runs,
        [T0 + 1000],
        "the run starts with its first written segment"
    );
    let p = by_name(&s, "p");
    assert_eq!(p.samples, 2);
    let reasons: Vec<&str> = p.restarts.iter().map(|m| m.reason.as_str()).collect();
    assert_eq!(reasons, ["exit"]);
}

#[test]
fn record_never_waits_for_a_stalled_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // Opened read-write, the writer is its own (never reading) reader: once the pipe's buffer
    // is full its write(2) blocks for good, like a hung disk.
    let h = History::open(&fifo, None).expect("open");
    let workers: Vec<WorkerStatus> = (0..100)
        .map(|i| {
            status(
                "w",
                i,
                Some(1000 + i32::try_from(i).expect("small")),
                Some(u64::from(i) * MIB),
            )
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for t in 0..5000u64 {
        let mut ws = workers.clone();
        for w in &mut ws {
            w.rss_bytes = w.rss_bytes.map(|r| r + t * 4096 * 7);
        }
        let start = Instant::now();
        h.record(T0 + t, &ws);
        slowest = slowest.max(start.elapsed());
    }
    assert!(h.dropped() > 0, "the stalled writer fell behind");
    // A record that waited on the writer would wait forever (its write never returns); the
    // bound is loose so a loaded machine's scheduling cannot fail it.
    assert!(slowest < Duration::from_secs(2), "record took {slowest:?}");
    let start = Instant::now();
    h.close();
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn many_samples_are_merged_into_bounded_buckets_keeping_peaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    let mut w = status("p", 0, Some(1), None);
    let n = 10_000u64;
    for i in 0..n {
        w.rss_bytes = Some(if i == 7777 { 900 * MIB } else { MIB });
        d.tick(T0 + i * 1000, std::slice::from_ref(&w));
    }
    let s = read(&path).expect("read");
    let p = by_name(&s, "p");
    assert_eq!(p.samples, n);
    assert!(p.points.len() <= MAX_POINTS && p.points.len() > MAX_POINTS / 4);
    let merged: u64 = p.points.iter().map(|pt| u64::from(pt.samples)).sum();
    assert_eq!(merged, n);
    assert_eq!(
        p.points.iter().filter_map(|pt| pt.rss).max(),
        Some(900 * MIB)
    );
}

#[test]
fn limits_are_kept_per_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let h = History::open(&path, None).expect("open");
    h.limits([("api", Some(64 * MIB)), ("db", None)]);
    h.record(T0, &[status("api", 0, Some(1), Some(MIB))]);
    h.close();
    let s = read(&path).expect("read");
    assert_eq!(s.limits.get("api"), Some(&(64 * MIB)));
    assert!(!s.limits.contains_key("db"));
}

/// 20 workers sampled every second for an hour, with the noise real trees show.
#[test]
fn an_hour_of_twenty_workers_costs_a_few_bytes_per_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let mut d = Direct::open(&path, None);
    let mut ws: Vec<WorkerStatus> = (0..20)
        .map(|i| {
            let mut w = status(
                &format!("prog{}", i / 4),
                i % 4,
                Some(1000 + i32::try_from(i).expect("small")),
                None,
            );
            w.pss_bytes = None;
            w
        })
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let ticks = 3600u64;
    for t in 0..ticks {
        for (i, w) in ws.iter_mut().enumerate() {
            // A base of 20-400 MiB; a few pages up or down most ticks; one slow leak.
            let base = (20 + 20 * i as u64) * MIB;
            let jitter = (rand() % 64) * 4096;
            let leak = if i == 7 { t * 16 * 1024 } else { 0 };
            w.rss_bytes = Some(base + jitter + leak);
            w.cpu_percent = Some((rand() % 50) as f64 / 10.0);
            if i % 5 == 0 {
                w.heap_bytes = Some(base / 2 + (rand() % 16) * 1024);
            }
        }
        d.tick(T0 + t * 1000, &ws);
    }
    let size = std::fs::metadata(&path).expect("metadata").len();
    let per_sample = size as f64 / (20 * ticks) as f64;
    eprintln!(
        "{size} bytes for {} worker-samples: {per_sample:.2} bytes each",
        20 * ticks
    );
    assert!(per_sample < 8.0, "{per_sample:.2} bytes per worker-sample");
    let s = read(&path).expect("read");
    assert_eq!(s.workers.len(), 20);
    assert!(s.workers.iter().all(|w| w.samples == ticks));
}

mod findings;
mod hostile;
