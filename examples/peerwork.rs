//! `peerwork`: the workers of the peers benchmark (`supervisor/benches/peers/run.sh`), the same
//! binary under every supervisor measured. Standard library and libc only, no runtime, so it
//! starts in well under a millisecond.
//!
//! - `peerwork leak LOG [START_MIB [RATE_MIB_S [CAP_MIB]]]` (defaults 80, 10, 300): after a random
//!   delay of 0–1 s (so runs do not lock onto a supervisor's sampling phase) appends
//!   `<pid> <CLOCK_MONOTONIC ns>` to LOG, touches START_MIB at once, then a further RATE/10 MiB
//!   every 100 ms on an absolute schedule (a late wake-up catches up, it does not shift the
//!   schedule) until CAP_MIB, then sleeps. The region is anonymous memory with transparent huge
//!   pages off (`MADV_NOHUGEPAGE`), and one byte of every page is written, so RSS grows page by
//!   page, exactly as scheduled.
//! - `peerwork crash LOG [AFTER_MS]` (default 200): appends `start <ns>` to LOG, sleeps AFTER_MS,
//!   appends `exit <ns>` and exits with status 1. The gap between an `exit` line and the next
//!   `start` line is the supervisor's crash -> restart time, as the children saw it.
//! - `peerwork idle`: sleeps forever (`pause(2)`).
//!
//! Lines are written with one `write(2)` on an `O_APPEND` file, so concurrent writers cannot tear
//! them.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const STEP: Duration = Duration::from_millis(100);

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn append(path: &str, line: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| die(&format!("cannot open {path}: {e}")));
    if let Err(e) = f.write_all(format!("{line}\n").as_bytes()) {
        die(&format!("cannot write {path}: {e}"));
    }
}

fn die(msg: &str) -> ! {
    eprintln!("peerwork: {msg}");
    std::process::exit(2);
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).map_or(default, |a| {
        a.parse()
            .unwrap_or_else(|_| die(&format!("bad argument {a:?}")))
    })
}

/// Sleeps until CLOCK_MONOTONIC reads `ns` (absolute, so wake-ups do not drift).
fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: clock_nanosleep reads one timespec we own; EINTR just ends the sleep early and
    // the callers recompute from the clock.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn leak(args: &[String]) -> ! {
    let log: String = arg(args, 2, String::new());
    let start_mib: usize = arg(args, 3, 80);
    let rate: usize = arg(args, 4, 10);
    let cap_mib: usize = arg(args, 5, 300);
    if log.is_empty() || cap_mib < start_mib {
        die("usage: peerwork leak LOG [START_MIB [RATE_MIB_S [CAP_MIB]]]");
    }
    // A random delay from the clock and the pid: enough to spread the phase, no RNG needed.
    let seed = mono_ns() ^ (u64::from(std::process::id()) << 20);
    let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    std::thread::sleep(Duration::from_millis(seed % 1000));

    let len = cap_mib * MIB;
    // SAFETY: a fresh private anonymous mapping; we only write inside it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        die("mmap failed");
    }
    // SAFETY: advice on the mapping just made.
    unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    let base = base.cast::<u8>();
    let touch = |from: usize, to: usize| {
        for off in (from..to).step_by(4096) {
            // SAFETY: off < len, inside the mapping.
            unsafe { base.add(off).write_volatile(1) };
        }
    };
    let t0 = mono_ns();
    append(&log, &format!("{} {t0}", std::process::id()));
    let mut held = start_mib * MIB;
    touch(0, held);
    let per_step = rate * MIB / 10;
    let mut k: u64 = 0;
    loop {
        k += 1;
        sleep_until(t0 + k * STEP.as_nanos() as u64);
        // Steps due by now (a late wake-up catches up in one go).
        let due = ((mono_ns() - t0) / STEP.as_nanos() as u64) as usize;
        let target = (start_mib * MIB + due * per_step).min(len);
        touch(held, target);
        held = target;
        k = k.max(due as u64);
        if held >= len {
            loop {
                // SAFETY: pause(2) has no arguments.
                unsafe { libc::pause() };
            }
        }
    }
}

fn crash(args: &[String]) -> ! {
    let log: String = arg(args, 2, String::new());
    let after_ms: u64 = arg(args, 3, 200);
    if log.is_empty() {
        die("usage: peerwork crash LOG [AFTER_MS]");
    }
    append(&log, &format!("start {}", mono_ns()));
    std::thread::sleep(Duration::from_millis(after_ms));
    append(&log, &format!("exit {}", mono_ns()));
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("leak") => leak(&args),
        Some("crash") => crash(&args),
        Some("idle") => loop {
            // SAFETY: pause(2) has no arguments.
            unsafe { libc::pause() };
        },
        _ => die("usage: peerwork leak|crash|idle ..."),
    }
}
