//! Storage I/O of a tree: read and write rates from the byte counts the sampler already reads
//! (`read_bytes`/`write_bytes` of /proc/PID/io, summed in
//! [`TreeSample`](crate::probe::tree::TreeSample)), and the time its threads spent waiting for
//! block I/O.
//!
//! Block-I/O delay is field 42 of /proc/PID/stat, `delayacct_blkio_ticks` (proc(5)), in clock
//! ticks. Two things to know:
//! - It stays 0 unless the kernel's task delay accounting is on: `sysctl kernel.task_delayacct=1`
//!   (Linux 5.14+) or the `delayacct` boot parameter (see [`delay_accounting`]). Delays before it
//!   was turned on are not counted.
//! - The kernel fills it from the one task whose file is read, even in /proc/PID/stat (unlike
//!   utime or the io counters, which it sums over the thread group), so [`blkio_delay`] sums
//!   /proc/PID/task/TID/stat over the threads. Threads that already exited are not counted.

use std::fs::File;
use std::io::{self, Read};
use std::time::Instant;

use crate::probe::proc::ticks_per_second;

/// Threads read per process at most by [`blkio_delay`].
pub const MAX_THREADS: usize = 4096;

/// Bytes per second since the previous sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub read_per_s: f64,
    pub write_per_s: f64,
}

/// Turns successive byte totals into rates.
#[derive(Debug, Default)]
pub struct IoRates {
    prev: Option<(Instant, u64, u64)>,
}

impl IoRates {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rates between the previous call and this one (`None` on the first call, or when no time
    /// passed). A tree's totals sum its live members only, so they drop when a member exits
    /// with bytes on its counters: that step counts as 0, not as a negative rate.
    pub fn update(&mut self, at: Instant, read_bytes: u64, write_bytes: u64) -> Option<Rates> {
        let prev = self.prev;
        let rates = prev.and_then(|(t0, r0, w0)| {
            let dt = at.checked_duration_since(t0)?.as_secs_f64();
            (dt > 0.0).then(|| Rates {
                read_per_s: read_bytes.saturating_sub(r0) as f64 / dt,
                write_per_s: write_bytes.saturating_sub(w0) as f64 / dt,
            })
        });
        if prev.is_none() || rates.is_some() {
            self.prev = Some((at, read_bytes, write_bytes));
        }
        rates
    }
}

/// Field 42 (`delayacct_blkio_ticks`) of a /proc/PID/stat or /proc/PID/task/TID/stat line.
/// Anchored on the last ')' since `comm` (field 2) may hold spaces and parentheses.
#[must_use]
pub fn blkio_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    // After "comm)" come fields 3 (state) onwards: field 42 is the 40th of them.
    let field = stat
        .get(close + 1..)?
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(42 - 3)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Seconds the threads of `pid` have waited for block I/O (see the module notes: 0 without
/// delay accounting). Fails with `NotFound` when the process is gone. One read per thread, at
/// most [`MAX_THREADS`]: sample it every few seconds, not every tick.
pub fn blkio_delay(pid: i32, buf: &mut Vec<u8>) -> io::Result<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
    let mut ticks = 0u64;
    for task in tasks.flatten().take(MAX_THREADS) {
        buf.clear();
        // A thread that exited since the listing has nothing left to count.
        let Ok(f) = File::open(task.path().join("stat")) else {
            continue;
        };
        if f.take(4096).read_to_end(buf).is_err() {
            continue;
        }
        ticks = ticks.saturating_add(blkio_ticks(buf).unwrap_or(0));
    }
    Ok(ticks as f64 / ticks_per_second() as f64)
}

/// Whether task delay accounting is on (/proc/sys/kernel/task_delayacct, Linux 5.14+); `None`
/// when the file is missing (an older kernel, where the boot flag decides).
#[must_use]
pub fn delay_accounting() -> Option<bool> {
    let s = std::fs::read_to_string("/proc/sys/kernel/task_delayacct").ok()?;
    match s.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_from_totals() {
        let mut r = IoRates::new();
        let t0 = Instant::now();
        assert_eq!(r.update(t0, 1000, 0), None);
        let s = Duration::from_secs(1);
        assert_eq!(
            r.update(t0 + 2 * s, 5000, 4096),
            Some(Rates {
                read_per_s: 2000.0,
                write_per_s: 2048.0
            })
        );
        // No time passed: no rate, and the previous point is kept.
        assert_eq!(r.update(t0 + 2 * s, 9000, 9000), None);
        // A member exited and took its bytes with it: 0, not negative.
        let dropped = r.update(t0 + 3 * s, 100, 5096).expect("rate");
        assert_eq!(dropped.read_per_s, 0.0);
        assert_eq!(dropped.write_per_s, 1000.0);
        // A clock that went backwards (an injected time) yields nothing.
        assert_eq!(r.update(t0, 0, 0), None);
    }

    #[test]
    fn field_42_after_odd_comm() {
        let mut line = b"42 (a b) (c)) S".to_vec();
        // Fields 4..=41 as their numbers, then 42 = 777, then 43 and 44.
        for n in 4..=41 {
            line.extend_from_slice(format!(" {n}").as_bytes());
        }
        line.extend_from_slice(b" 777 0 0\n");
        assert_eq!(blkio_ticks(&line), Some(777));
        assert_eq!(blkio_ticks(b"42 (x) S 1 2 3\n"), None, "too short");
        assert_eq!(blkio_ticks(b"no paren"), None);
    }

    #[test]
    fn delay_of_this_process_and_a_gone_one() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let mut buf = Vec::new();
        let s = blkio_delay(me, &mut buf).expect("own threads");
        assert!(s.is_finite() && s >= 0.0, "{s}");
        let own = std::fs::read(format!("/proc/{me}/stat")).expect("stat");
        assert!(blkio_ticks(&own).is_some(), "this kernel has field 42");
        let e = blkio_delay(i32::MAX, &mut buf).expect_err("no such process");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
