//! Cost of the disk probes: the deleted-file scan of a process with 1,000 open fds, the cached
//! path the engine takes between scans, a watched-directory walk, statvfs and block-I/O delay.
//!
//! Run: `cargo bench -p supervisor --bench disk`
//!
//! Fixtures are `sleep` processes holding 1,000 fds (dup2'ed into them before exec, fds 3 to
//! 1002), killed and reaped at the end, also on panic. Group `deleted_scan`:
//! - `scan_pid_1000_fds_10_deleted`: [`scan_pid`] of a process whose fds are 990 open files and
//!   10 deleted ones: a readlink per fd, a stat for the 10. Divide by 1,000 for the cost per fd.
//! - `scan_pid_1000_fds_1000_deleted`: every fd a deleted file, so a readlink and a stat per fd:
//!   the worst case per fd.
//! - `list_fd_dir_only_1000_fds`: listing /proc/PID/fd without readlink: the floor of any scan.
//! - `deleted_scan_update_cached`: [`DeletedScan::update`] of that tree when nothing is due:
//!   what the engine pays on the ticks between scans, the 10 deleted files re-measured (one
//!   fstatat each).
//! - `deleted_scan_update_cached_1000_held`: the same for the process whose 1,000 fds are all
//!   deleted files: divide by 1,000 for the cost of re-measuring one file each tick.
//!
//! Group `watched_dir`:
//! - `dir_usage_2000_files`: a `du -sx`-like walk of 2,000 files in 20 directories (page cache
//!   warm); divide by 2,021 for the cost per entry.
//! - `fs_usage_statvfs`: one statvfs(3).
//! - `blkio_delay_1_thread`: the block-I/O delay of a one-thread process (its task dir listed,
//!   one stat file read).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use supervisor::disk::deleted::scan_pid;
use supervisor::disk::dirs::{dir_usage, fs_usage, DEFAULT_ENTRY_LIMIT};
use supervisor::disk::io::blkio_delay;
use supervisor::disk::DeletedScan;

const FDS: usize = 1000;

/// A `sleep` holding `fds` at fds 3, 4, ...; its process group is SIGKILLed and it is reaped on
/// drop.
struct Fixture(Child);

impl Fixture {
    fn holding(fds: &[OwnedFd]) -> Self {
        // Move every fd above the targets first, so placing one cannot clobber another.
        let high: Vec<OwnedFd> = fds
            .iter()
            .map(|fd| {
                // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new fd or -1.
                let n = unsafe {
                    libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 2 * FDS as i32 + 16)
                };
                assert!(
                    n >= 0,
                    "F_DUPFD_CLOEXEC: {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: a new fd nobody else owns.
                unsafe { OwnedFd::from_raw_fd(n) }
            })
            .collect();
        let raw: Vec<i32> = high.iter().map(AsRawFd::as_raw_fd).collect();
        let mut cmd = Command::new("sleep");
        cmd.arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        // SAFETY: runs in the forked child before exec and calls only dup2(2) (async-signal-safe)
        // on fds open in the parent; the copies are not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                for (i, &fd) in raw.iter().enumerate() {
                    if libc::dup2(fd, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the sleep fixture");
        drop(high);
        Self(child)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid fits in i32")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on the group this fixture leads; the leader is unreaped until the
        // wait below, so the group id cannot have been reused.
        unsafe { libc::killpg(self.pid(), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Raises the soft fd limit to the hard one: a fixture needs about 3,000 fds here at once.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    assert!(
        hard >= 4096,
        "the bench needs an fd limit of 4096 (hard limit {hard})"
    );
}

/// `n` files of 4 KiB in `dir`, the first `deleted` of them unlinked.
fn files(dir: &Path, tag: &str, n: usize, deleted: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{tag}-{i}"));
            let mut f = File::create(&path).expect("create");
            f.write_all(&[7u8; 4096]).expect("write");
            if i < deleted {
                std::fs::remove_file(&path).expect("unlink");
            }
            OwnedFd::from(f)
        })
        .collect()
}

fn bench_deleted(c: &mut Criterion) {
    raise_fd_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let few = Fixture::holding(&files(dir.path(), "few", FDS, 10));
    let all = Fixture::holding(&files(dir.path(), "all", FDS, FDS));
    let mut out = Vec::new();
    let s = scan_pid(few.pid(), &mut out).expect("scan");
    assert!(s.fds >= FDS && out.len() == 10, "{s:?}, {} held", out.len());
    let s = scan_pid(all.pid(), &mut out).expect("scan");
    assert!(
        s.fds >= FDS && out.len() == FDS,
        "{s:?}, {} held",
        out.len()
    );
    let mut cached = DeletedScan::new(Duration::from_secs(3600));
    let t0 = Instant::now();
    assert_eq!(cached.update([few.pid()], t0).files, 10);
    let mut held = DeletedScan::new(Duration::from_secs(3600)).with_budget(usize::MAX);
    assert_eq!(held.update([all.pid()], t0).files, FDS as u64);

    let mut g = c.benchmark_group("deleted_scan");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    g.bench_function("scan_pid_1000_fds_10_deleted", |b| {
        b.iter(|| black_box(scan_pid(few.pid(), &mut out).expect("scan")))
    });
    g.bench_function("scan_pid_1000_fds_1000_deleted", |b| {
        b.iter(|| black_box(scan_pid(all.pid(), &mut out).expect("scan")))
    });
    let fd_dir = format!("/proc/{}/fd", few.pid());
    g.bench_function("list_fd_dir_only_1000_fds", |b| {
        b.iter(|| black_box(std::fs::read_dir(&fd_dir).expect("list").count()))
    });
    g.bench_function("deleted_scan_update_cached", |b| {
        b.iter(|| black_box(cached.update([few.pid()], t0)))
    });
    g.bench_function("deleted_scan_update_cached_1000_held", |b| {
        b.iter(|| black_box(held.update([all.pid()], t0)))
    });
    // Every file was re-measured, none dropped.
    assert_eq!(held.update([all.pid()], t0).files, FDS as u64);
    g.finish();
    assert_eq!(
        scan_pid(all.pid(), &mut out).expect("fixture alive").fds,
        s.fds
    );
}

fn bench_dirs(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("tempdir");
    for d in 0..20 {
        let sub = root.path().join(format!("d{d}"));
        std::fs::create_dir(&sub).expect("mkdir");
        for f in 0..100 {
            File::create(sub.join(format!("f{f}")))
                .and_then(|mut h| h.write_all(b"x"))
                .expect("create");
        }
    }
    let stop = AtomicBool::new(false);
    let u = dir_usage(root.path(), DEFAULT_ENTRY_LIMIT, &stop).expect("walk");
    assert_eq!(u.entries, 2021, "{u:?}");
    let me = i32::try_from(std::process::id()).expect("pid");
    let one = Fixture::holding(&[]);
    let mut buf = Vec::new();
    assert!(blkio_delay(one.pid(), &mut buf).is_ok() && blkio_delay(me, &mut buf).is_ok());

    let mut g = c.benchmark_group("watched_dir");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    g.bench_function("dir_usage_2000_files", |b| {
        b.iter(|| black_box(dir_usage(root.path(), DEFAULT_ENTRY_LIMIT, &stop).expect("walk")))
    });
    g.bench_function("fs_usage_statvfs", |b| {
        b.iter(|| black_box(fs_usage(root.path()).expect("statvfs")))
    });
    g.bench_function("blkio_delay_1_thread", |b| {
        b.iter(|| black_box(blkio_delay(one.pid(), &mut buf).expect("delay")))
    });
    g.finish();
}

criterion_group!(benches, bench_deleted, bench_dirs);
criterion_main!(benches);
