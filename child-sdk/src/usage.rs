//! Self-monitoring: what the kernel says about this very process, from /proc/self, so a program
//! can shed caches or load before its supervisor has to act.
//!
//! Hand-parsed on purpose: the SDK keeps its dependencies few, and these are four small files.

use std::io;
use std::time::Duration;

/// This process's resource use, as the kernel counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// CPU time in user mode.
    pub cpu_user: Duration,
    /// CPU time in the kernel on our behalf.
    pub cpu_system: Duration,
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Bytes read from and written to storage (`read_bytes` / `write_bytes` of /proc/self/io).
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Reads /proc/self/{stat,statm,io,fd}. Cost: a few microseconds.
pub fn current() -> io::Result<Usage> {
    let stat = std::fs::read("/proc/self/stat")?;
    let fields = after_comm(&stat).ok_or_else(|| bad("/proc/self/stat"))?;
    // Fields after "comm)" start at the state (field 3): utime is field 14, stime 15, threads 20.
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("/proc/self/stat"))
    };
    let hz = ticks_per_second();
    let ticks = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000 / hz));
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad("/proc/self/statm"))?;
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let io_field = |name: &str| {
        io.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    Ok(Usage {
        rss_bytes: resident.saturating_mul(page_size()),
        cpu_user: ticks(field(14)?),
        cpu_system: ticks(field(15)?),
        threads: field(20)?,
        fds: std::fs::read_dir("/proc/self/fd")?
            .count()
            .saturating_sub(1) as u64,
        read_bytes: io_field("read_bytes"),
        write_bytes: io_field("write_bytes"),
    })
}

/// Proportional set size, bytes, from /proc/self/smaps_rollup: shared pages split between the
/// processes that share them. The kernel walks the page tables for it (about 10 µs per resident
/// MiB), so call it when needed, not in a hot loop.
pub fn pss_bytes() -> io::Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    rollup
        .lines()
        .find_map(|l| {
            l.strip_prefix("Pss:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| bad("/proc/self/smaps_rollup"))
}

fn after_comm(stat: &[u8]) -> Option<Vec<&str>> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    Some(rest.split_whitespace().collect())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected contents of {what}"),
    )
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .unwrap_or(4096)
        .max(1)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = current().expect("usage");
        // Touch 8 MiB and burn a little CPU: both must show.
        let block = vec![1u8; 8 << 20];
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(u64::from(block[x as usize % block.len()]));
        }
        let after = current().expect("usage");
        assert!(
            after.rss_bytes >= before.rss_bytes + (6 << 20),
            "{before:?} -> {after:?}"
        );
        assert!(after.cpu_user + after.cpu_system > before.cpu_user + before.cpu_system);
        assert!(after.threads >= 1 && after.fds >= 3);
        assert!(pss_bytes().expect("pss") > 0);
        std::hint::black_box(x);
    }
}
