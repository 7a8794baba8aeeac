//! Channel ping/pong with a real child (DESIGN.md §8: target <= 1.2x the raw `SOCK_SEQPACKET`
//! socketpair measured in the same run; floors seen ~9 µs on one CPU, ~60 µs across CPUs).
//!
//! Run: `cargo bench -p supervisor --bench channel`
//!
//! Group `channel_round_trip`; every benchmark runs twice, with the bench thread and the child
//! pinned to the same CPU (`…/same_cpu`) and to two different CPUs (`…/cross_cpu`). One criterion
//! iteration is one round trip; `iter_custom` times `iters` of them back to back.
//! - `raw_socketpair_echo` (the floor): a plain blocking `SOCK_SEQPACKET` socketpair (no tokio,
//!   no postcard) to `sdk_worker --raw-echo`, which sends every packet straight back; a 3-byte
//!   `send` and a blocking `recv` of the echo.
//! - `raw_asyncfd_echo`: the same echo child driven through `supervisor::channel::Channel`
//!   (tokio `AsyncFd`, `SO_PASSCRED`) with raw bytes: the runtime's share, without the protocol.
//! - `supervise_ping_pong`: the supervisor's path end to end against `sdk_worker` linking
//!   child-sdk (handshake first): `encode_vec(Ping{seq})`, `Channel::try_send`,
//!   `Channel::recv().await`, `decode_child`, check `Pong{seq}`; the child's SDK listener thread
//!   answers. One `block_on` per criterion batch, on a current-thread runtime like the engine's.
//!
//! Every child is started by `supervisor::spawn::spawn` (channel at fd 3, a real segment at
//! fd 4), pinned by every thread in `/proc/PID/task`, and SIGKILLed and reaped when its
//! benchmark ends, also on a panic. The bench thread's own affinity is restored at the end.
//!
//! Then a report on stderr: the median of each with criterion's 95 % interval (read back from
//! criterion's `estimates.json` when it is from this run; otherwise the median of the samples
//! this process recorded, without an interval), and the ratios to the floor.

mod common;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use child_sdk::proto::{self, ChildMsg, Limits, SupervisorMsg, PROTO_VERSION};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use supervisor::channel::{self, Channel, Packet};
use supervisor::plan::{Backoff, Intensity, ProgramSpec, RestartMode, StopSpec};
use supervisor::spawn::{spawn, Inherit};

#[path = "common/samples.rs"]
mod samples;
use samples::{Samples, SAMPLE_SIZE};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");
const GROUP: &str = "channel_round_trip";
/// What the floors echo: as long as an encoded `Ping` with a seq of a few hundred.
const PAYLOAD: [u8; 3] = [1, 0xac, 0x02];
/// How long a handshake or the first echo may take before the bench gives up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

const RAW: &str = "raw_socketpair_echo";
const ASYNCFD: &str = "raw_asyncfd_echo";
const SUPERVISE_PP: &str = "supervise_ping_pong";

/// The `sdk_worker` example, built on demand.
fn sdk_worker() -> PathBuf {
    common::example(SUPERVISE, "sdk_worker")
}

// ---------------------------------------------------------------------------------------------
// CPU affinity

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    SameCpu,
    CrossCpu,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::SameCpu => "same_cpu",
            Placement::CrossCpu => "cross_cpu",
        }
    }
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain array of integers; all zeroes is the empty set.
    unsafe { std::mem::zeroed() }
}

/// The affinity of thread `tid` (0: the calling thread).
fn affinity(tid: libc::pid_t) -> io::Result<libc::cpu_set_t> {
    let mut set = empty_set();
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into `set`, which we own.
    let r = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &raw mut set) };
    if r == 0 {
        Ok(set)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the affinity of thread `tid` (0: the calling thread).
fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<cpu_set_t>()` bytes from `set`, a live reference.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn only(cpu: usize) -> libc::cpu_set_t {
    let mut set = empty_set();
    // SAFETY: CPU_SET only writes bit `cpu` of `set`; `cpu` < CPU_SETSIZE (it came from
    // `cpus_in`), so the write is in bounds.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

fn cpus_in(set: &libc::cpu_set_t) -> Vec<usize> {
    let max = usize::try_from(libc::CPU_SETSIZE).expect("CPU_SETSIZE");
    // SAFETY: CPU_ISSET only reads bit `c` of `set`, and `c` < CPU_SETSIZE is in bounds.
    (0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, set) })
        .collect()
}

/// Pins every thread of process `pid` to `cpu` (threads it starts later inherit the mask).
fn pin_process(pid: i32, cpu: usize) {
    let set = only(cpu);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the child's threads");
    for entry in tasks.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        match set_affinity(tid, &set) {
            Ok(()) => {}
            // The thread exited since the listing.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => panic!("cannot pin thread {tid} of {pid} to CPU {cpu}: {e}"),
        }
    }
}

/// Restores the bench thread's affinity when dropped.
struct AffinityGuard(libc::cpu_set_t);

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        if let Err(e) = set_affinity(0, &self.0) {
            eprintln!("channel bench: cannot restore the CPU affinity: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The child

/// A spawned child: SIGKILLed and reaped when dropped. Holds its stdout and stderr pipes so its
/// start-up line finds a reader-side pipe open.
struct Child {
    pid: i32,
    _stdout: Option<OwnedFd>,
    _stderr: Option<OwnedFd>,
}

impl Drop for Child {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: `pid` is our own child, not yet reaped (std's handle was dropped without a
        // wait and nothing else here waits), so the number cannot have been reused; kill and
        // waitpid have no memory effects beyond writing `status`, which we own.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &raw mut status, 0);
        }
    }
}

/// Starts `sdk_worker` (with `--raw-echo` if `raw`) the way the engine does: its end of the
/// channel at fd 3, a fresh segment at fd 4, the SUPERVISE_* environment.
fn start(worker: &Path, raw: bool, theirs: OwnedFd, cpu: usize) -> Child {
    let mut command = vec![worker.to_str().expect("utf-8 path").to_owned()];
    if raw {
        command.push("--raw-echo".to_owned());
    }
    let spec = ProgramSpec {
        name: "bench".to_owned(),
        command,
        cwd: None,
        env: Vec::new(),
        identity: supervisor::plan::Identity::default(),
        replicas: 1,
        restart: RestartMode::Never,
        backoff: Backoff::default(),
        intensity: Intensity::default(),
        stop: StopSpec::default(),
        memory: None,
        heartbeat: None,
        ready: None,
        health: None,
        after: Vec::new(),
        handling: supervisor::plan::Handling::default(),
        oom: supervisor::plan::OomPolicy::Normal,
        leak: None,
        net: None,
        essential: true,
        reload: supervisor::plan::ReloadSpec::default(),
    };
    let (segment, _reader) = child_sdk::segment::create().expect("segment");
    let inherit = Inherit {
        channel: theirs,
        segment,
    };
    let spawned = spawn(
        &spec,
        0,
        supervisor::spawn::With {
            pressure: None,
            inherit: Some(&inherit),
            ..Default::default()
        },
    )
    .expect("spawn sdk_worker");
    // The parent must not keep the child's ends: the child alone holds them from now on.
    drop(inherit);
    let child = Child {
        pid: spawned.pid,
        _stdout: spawned.stdout,
        _stderr: spawned.stderr,
    };
    // Before the handshake: the SDK's listener thread, started after it, inherits the mask.
    pin_process(child.pid, cpu);
    child
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------------
// Round trips

/// The floor: blocking send and recv on a plain socketpair.
fn raw_round_trips(fd: &OwnedFd, iters: u64) -> Duration {
    let mut buf = [0u8; 64];
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: `PAYLOAD` is a live array the kernel only reads; `fd` is open while borrowed.
        let sent = unsafe {
            libc::send(
                fd.as_raw_fd(),
                PAYLOAD.as_ptr().cast(),
                PAYLOAD.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        assert_eq!(
            sent,
            PAYLOAD.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which we own.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(
            n,
            PAYLOAD.len() as isize,
            "recv: {}",
            io::Error::last_os_error()
        );
    }
    start.elapsed()
}

/// The echo child through the supervisor's `Channel`, raw bytes.
async fn asyncfd_round_trips(ch: &mut Channel, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        ch.try_send(&PAYLOAD).expect("send");
        match ch.recv().await.expect("recv") {
            Packet::Data { bytes, .. } => assert_eq!(bytes, PAYLOAD),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    start.elapsed()
}

/// One ping/pong the way the supervisor does it (`worker/running.rs`: `encode_vec` then
/// `try_send`; `session.rs`: `decode_child` of each packet).
async fn ping_pong(ch: &mut Channel, seq: &mut u64) {
    *seq += 1;
    let ping = proto::encode_vec(&SupervisorMsg::Ping { seq: *seq }).expect("encode");
    ch.try_send(&ping).expect("send ping");
    match ch.recv().await.expect("recv") {
        Packet::Data { bytes, .. } => match proto::decode_child(bytes) {
            Ok(ChildMsg::Pong { seq: s }) if s == *seq => {}
            other => panic!("expected Pong {{ seq: {seq} }}, got {other:?}"),
        },
        other => panic!("expected a pong, got {other:?}"),
    }
}

async fn ping_pongs(ch: &mut Channel, seq: &mut u64, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        ping_pong(ch, seq).await;
    }
    start.elapsed()
}

/// Hello -> Welcome, then `Ready` and one ping/pong, so the SDK's listener thread is known to run.
async fn handshake(ch: &mut Channel, pid: i32, seq: &mut u64) {
    let hello = match tokio::time::timeout(START_TIMEOUT, ch.recv()).await {
        Ok(Ok(Packet::Data { bytes, sender })) => {
            assert_eq!(sender, Some(pid), "Hello from another process");
            proto::decode_child(bytes).expect("decode Hello")
        }
        other => panic!("expected Hello from sdk_worker, got {other:?}"),
    };
    assert!(
        matches!(hello, ChildMsg::Hello { proto, .. } if proto == PROTO_VERSION),
        "expected Hello in version {PROTO_VERSION}, got {hello:?}"
    );
    let welcome = proto::encode_vec(&SupervisorMsg::Welcome {
        name: "bench".to_owned(),
        instance: 0,
        heartbeat_timeout_ms: None,
        limits: Limits::default(),
    })
    .expect("encode Welcome");
    ch.try_send(&welcome).expect("send Welcome");
    // sdk_worker says `Ready` from its main thread as soon as it is connected, so it may come
    // before or after the first pong; nothing else comes unasked after it.
    *seq += 1;
    let ping = proto::encode_vec(&SupervisorMsg::Ping { seq: *seq }).expect("encode");
    ch.try_send(&ping).expect("send ping");
    let (mut ready, mut pong) = (false, false);
    while !(ready && pong) {
        let msg = match tokio::time::timeout(START_TIMEOUT, ch.recv()).await {
            Ok(Ok(Packet::Data { bytes, .. })) => proto::decode_child(bytes),
            other => panic!("expected Ready and a pong from sdk_worker, got {other:?}"),
        };
        match msg {
            Ok(ChildMsg::Ready) => ready = true,
            Ok(ChildMsg::Pong { seq: s }) if s == *seq => pong = true,
            other => panic!("expected Ready and Pong {{ seq: {seq} }}, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

/// A benchmark's median and criterion's 95 % interval for it, in ns.
struct Figure {
    median: f64,
    interval: Option<(f64, f64)>,
}

/// Criterion's estimates for `bench/placement` if this run wrote them.
fn criterion_median(bench: &str, placement: Placement, since: SystemTime) -> Option<Figure> {
    let rel = Path::new("criterion")
        .join(GROUP)
        .join(bench)
        .join(placement.name())
        .join("new")
        .join("estimates.json");
    // Criterion's own order: $CRITERION_HOME, $CARGO_TARGET_DIR/criterion, the target dir.
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        candidates.push(Path::new(&home).join(rel.strip_prefix("criterion").ok()?));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&target).join(&rel));
    }
    candidates.extend(
        Path::new(SUPERVISE)
            .ancestors()
            .skip(1)
            .map(|d| d.join(&rel)),
    );
    let file = candidates.into_iter().find(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    let m = &json["median"];
    Some(Figure {
        median: m["point_estimate"].as_f64()?,
        interval: Some((
            m["confidence_interval"]["lower_bound"].as_f64()?,
            m["confidence_interval"]["upper_bound"].as_f64()?,
        )),
    })
}

struct Cpus {
    ours: usize,
    same: usize,
    cross: Option<usize>,
}

fn bench_placement(
    g: &mut BenchmarkGroup<'_, WallTime>,
    worker: &Path,
    cpus: &Cpus,
    placement: Placement,
) -> [(&'static str, Samples); 3] {
    let child_cpu = match placement {
        Placement::SameCpu => cpus.same,
        Placement::CrossCpu => cpus.cross.expect("a second CPU"),
    };
    set_affinity(0, &only(cpus.ours)).expect("pin the bench thread");

    // 1. The floor.
    let mut raw = Samples::default();
    {
        let mut fds = [-1; 2];
        // SAFETY: socketpair writes two fds into `fds`, an array of two we own.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: both fds were just created by socketpair and nothing else owns them.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let _child = start(worker, true, theirs, child_cpu);
        // A dead or stuck child fails the bench instead of hanging it.
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: setsockopt reads a timeval of exactly the size given from a live local.
        let r = unsafe {
            libc::setsockopt(
                ours.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of_val(&tv) as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
        raw_round_trips(&ours, 1);
        g.bench_function(BenchmarkId::new(RAW, placement.name()), |b| {
            b.iter_custom(|iters| raw.record(iters, raw_round_trips(&ours, iters)));
        });
    }

    // 2. The same echo child through the supervisor's Channel (tokio AsyncFd).
    let mut asyncfd = Samples::default();
    {
        let rt = runtime();
        let (ours, theirs) = channel::pair().expect("pair");
        let _child = start(worker, true, theirs, child_cpu);
        let mut ch = rt.block_on(async { Channel::new(ours) }).expect("channel");
        rt.block_on(async {
            tokio::time::timeout(START_TIMEOUT, asyncfd_round_trips(&mut ch, 1))
                .await
                .expect("first echo in time")
        });
        g.bench_function(BenchmarkId::new(ASYNCFD, placement.name()), |b| {
            b.iter_custom(|iters| {
                let t = rt.block_on(asyncfd_round_trips(&mut ch, iters));
                asyncfd.record(iters, t)
            });
        });
    }

    // 3. The supervisor's ping/pong with a child that links the SDK.
    let mut sup = Samples::default();
    {
        let rt = runtime();
        let (ours, theirs) = channel::pair().expect("pair");
        let child = start(worker, false, theirs, child_cpu);
        let mut ch = rt.block_on(async { Channel::new(ours) }).expect("channel");
        let mut seq = 0;
        rt.block_on(handshake(&mut ch, child.pid, &mut seq));
        // Every thread exists now (the listener answered): pin them all again, to be sure.
        pin_process(child.pid, child_cpu);
        g.bench_function(BenchmarkId::new(SUPERVISE_PP, placement.name()), |b| {
            b.iter_custom(|iters| {
                let t = rt.block_on(ping_pongs(&mut ch, &mut seq, iters));
                sup.record(iters, t)
            });
        });
    }

    [(RAW, raw), (ASYNCFD, asyncfd), (SUPERVISE_PP, sup)]
}

fn fmt_us(ns: f64) -> String {
    format!("{:.2} µs", ns / 1e3)
}

fn bench(c: &mut Criterion) {
    let since = SystemTime::now();
    let worker = sdk_worker();
    let original = affinity(0).expect("sched_getaffinity");
    let _restore = AffinityGuard(original);
    let allowed = cpus_in(&original);
    let cpus = Cpus {
        ours: allowed[0],
        same: allowed[0],
        cross: allowed.get(1).copied(),
    };
    let mut placements = vec![Placement::SameCpu];
    if cpus.cross.is_some() {
        placements.push(Placement::CrossCpu);
    } else {
        eprintln!("channel bench: only one CPU allowed ({allowed:?}): no cross-CPU runs");
    }

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let results: Vec<_> = placements
        .iter()
        .map(|&p| (p, bench_placement(&mut g, &worker, &cpus, p)))
        .collect();
    g.finish();

    eprintln!("channel report (medians, 95 % interval of the median; one round trip each):");
    for (placement, benches) in &results {
        let mut medians = Vec::new();
        for (name, samples) in benches {
            let figure = criterion_median(name, *placement, since).or_else(|| {
                samples.median().map(|median| Figure {
                    median,
                    interval: None,
                })
            });
            match &figure {
                Some(Figure {
                    median,
                    interval: Some((lo, hi)),
                }) => eprintln!(
                    "  {}/{name}: {} [{} .. {}]",
                    placement.name(),
                    fmt_us(*median),
                    fmt_us(*lo),
                    fmt_us(*hi)
                ),
                Some(Figure {
                    median,
                    interval: None,
                }) => eprintln!(
                    "  {}/{name}: {} (from {} recorded samples, no interval)",
                    placement.name(),
                    fmt_us(*median),
                    samples.count()
                ),
                None => eprintln!("  {}/{name}: not measured", placement.name()),
            }
            medians.push(figure.map(|f| f.median));
        }
        if let [Some(raw), asyncfd, Some(sup)] = medians[..] {
            let ratio = sup / raw;
            eprintln!(
                "  {}: supervise_ping_pong / raw_socketpair_echo = {ratio:.2}x (target <= 1.2x: {}){}",
                placement.name(),
                if ratio <= 1.2 { "met" } else { "MISSED" },
                asyncfd.map_or(String::new(), |a| format!(
                    "; raw_asyncfd_echo / raw_socketpair_echo = {:.2}x",
                    a / raw
                )),
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
