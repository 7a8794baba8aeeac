//! Cost of one sample of one worker (DESIGN.md §8: "one sample of one process (stat + statm +
//! io)", target <= 10 µs, against `ps -o rss=` and the open/read/close floor, in the same run).
//!
//! Run: `cargo bench -p supervisor --bench sample`
//!
//! All in one criterion group (`sample_one_worker`), against real processes spawned here as
//! fixtures (killed and reaped at the end, also on panic):
//! - `procfiles_sample`: [`ProcFiles::sample`], the supervisor's per-tick read: /proc/PID/{stat,
//!   statm,io} kept open, one `pread` each, parsed with procfs-core.
//! - `pread_only_no_parse`: the same three kept-open files `pread` into a buffer, not parsed: the
//!   floor of the design table ("files kept open, one pread each"), so parse cost is visible.
//! - `fs_read_open_read_close`: `std::fs::read` of the three files each time (open/read/close,
//!   no parse): the naive way.
//! - `tree_1_proc`, `tree_5_procs`: [`Tree::sample`]`(false)` of a worker alone and of a shell with
//!   four children: besides stat+statm+io per member it stats /proc/PID/fd (fd count) and reads
//!   the member's `task/PID/children` to find new descendants.
//! - `ps_o_rss`: spawning `ps -o rss= -p PID` and parsing its output (the peers' way).

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use supervisor::probe::proc::{Buf, ProcFiles};
use supervisor::probe::tree::Tree;

/// A fixture process in its own process group; the whole group is SIGKILLed and the leader
/// reaped on drop.
struct Fixture(Child);

impl Fixture {
    fn spawn(program: &str, args: &[&str]) -> Self {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn fixture {program}: {e}"));
        Self(child)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid fits in i32")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on the group this fixture leads; the leader is unreaped until the wait
        // below, so the group id cannot have been reused.
        unsafe { libc::killpg(self.pid(), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The kept-open files of the naive floor, opened once.
struct Raw {
    stat: File,
    statm: File,
    io: File,
}

impl Raw {
    fn open(pid: i32) -> Self {
        let open = |name: &str| File::open(format!("/proc/{pid}/{name}")).expect("open /proc file");
        Self {
            stat: open("stat"),
            statm: open("statm"),
            io: open("io"),
        }
    }

    /// One `pread` per file into `buf`; returns the total bytes read.
    fn pread(&self, buf: &mut [u8]) -> usize {
        [&self.stat, &self.statm, &self.io]
            .iter()
            .map(|f| f.read_at(buf, 0).expect("pread"))
            .sum()
    }
}

fn ps_rss_kib(pid: &str) -> u64 {
    let out = Command::new("ps")
        .args(["-o", "rss=", "-p", pid])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run ps");
    std::str::from_utf8(&out.stdout)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("ps printed an RSS")
}

fn bench_sample(c: &mut Criterion) {
    let one = Fixture::spawn("sleep", &["1000"]);
    let pid = one.pid();
    let pid_s = pid.to_string();
    // A tree: the shell and its four children.
    let five = Fixture::spawn(
        "sh",
        &[
            "-c",
            "sleep 1000 & sleep 1000 & sleep 1000 & sleep 1000 & wait",
        ],
    );

    let files = ProcFiles::open(pid).expect("open /proc files of the fixture");
    let mut buf = Buf::default();
    let raw = Raw::open(pid);
    let mut raw_buf = vec![0u8; 4096];
    let mut tree1 = Tree::new(pid);
    let mut tree5 = Tree::new(five.pid());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = tree5.sample(false).procs;
        if procs == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shell fixture has {procs} processes, expected 5"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(tree1.sample(false).procs, 1);
    assert!(files.sample(&mut buf).expect("sample").rss > 0);
    assert!(ps_rss_kib(&pid_s) > 0);

    let mut g = c.benchmark_group("sample_one_worker");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    g.bench_function("procfiles_sample", |b| {
        b.iter(|| black_box(files.sample(&mut buf).expect("sample")))
    });
    g.bench_function("pread_only_no_parse", |b| {
        b.iter(|| black_box(raw.pread(&mut raw_buf)))
    });
    g.bench_function("fs_read_open_read_close", |b| {
        let paths = ["stat", "statm", "io"].map(|n| format!("/proc/{pid}/{n}"));
        b.iter(|| {
            for p in &paths {
                black_box(std::fs::read(p).expect("read /proc file"));
            }
        });
    });
    g.bench_function("tree_1_proc", |b| b.iter(|| black_box(tree1.sample(false))));
    g.bench_function("tree_5_procs", |b| {
        b.iter(|| black_box(tree5.sample(false)))
    });
    // Milliseconds per iteration: fewer samples and a little more time, so criterion can take
    // its 50 samples without stretching the target time.
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    g.bench_function("ps_o_rss", |b| b.iter(|| black_box(ps_rss_kib(&pid_s))));
    g.finish();

    // The fixtures were alive throughout: a dead one would have made the figures meaningless.
    assert_eq!(
        tree1.sample(false).procs,
        1,
        "the sleep fixture died during the bench"
    );
    assert_eq!(
        tree5.sample(false).procs,
        5,
        "the shell fixture lost processes during the bench"
    );
    drop(five);
    drop(one);
}

criterion_group!(benches, bench_sample);
criterion_main!(benches);
