//! The host as `top` and the dashboard show it above the workers: load, memory, swap, pressure
//! stall information, and the supervisor's own process.
//!
//! Read when a status is asked for (a `top` or a dashboard page asks once a second; nobody
//! else does), from a handful of small /proc files opened and read each time: nothing is kept
//! open between answers, and nothing is read on the engine's tick. The parsers are pure and
//! take what the kernel may give them, a missing line or an odd number included: a figure that
//! does not parse is `None`, never a panic.

use std::time::Instant;

use crate::probe::parse;
use crate::probe::proc::{page_size, ticks_per_second};
use crate::status::{HostStatus, OwnStatus, Pressure};

/// CPU use of the supervisor is measured over at least this long: two answers closer together
/// give the figure of the one before.
const CPU_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

/// What the host header needs from one answer to the next.
#[derive(Debug, Default)]
pub struct HostProbe {
    /// The supervisor's CPU ticks, and when they were read.
    last_cpu: Option<(Instant, u64)>,
    cpu_percent: Option<f64>,
}

impl HostProbe {
    /// The host and the supervisor, now.
    pub fn read(&mut self) -> HostStatus {
        let text = |path: &str| std::fs::read(path).ok();
        let meminfo = text("/proc/meminfo")
            .map(|b| meminfo(&b))
            .unwrap_or_default();
        let pressure = |what: &str| text(&format!("/proc/pressure/{what}")).and_then(|b| psi(&b));
        HostStatus {
            load: text("/proc/loadavg").and_then(|b| loadavg(&b)),
            cpus: std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok()),
            mem_total_bytes: meminfo.total,
            mem_available_bytes: meminfo.available,
            swap_total_bytes: meminfo.swap_total,
            swap_free_bytes: meminfo.swap_free,
            memory_pressure: pressure("memory"),
            cpu_pressure: pressure("cpu"),
            io_pressure: pressure("io"),
            own: self.own(),
            pressure_policy: None,
        }
    }

    fn own(&mut self) -> OwnStatus {
        let stat = std::fs::read("/proc/self/stat")
            .ok()
            .and_then(|b| parse::stat(&b));
        let rss = std::fs::read("/proc/self/statm")
            .ok()
            .and_then(|b| parse::statm_resident(&b))
            .map(|pages| pages.saturating_mul(page_size()));
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory's own handle is one of the entries.
            .map(|d| (d.count() as u64).saturating_sub(1));
        if let Some(s) = stat {
            let now = Instant::now();
            let ticks = s.utime.saturating_add(s.stime);
            match self.last_cpu {
                Some((at, before)) if now.duration_since(at) >= CPU_WINDOW => {
                    self.cpu_percent = Some(cpu_percent(
                        ticks.saturating_sub(before),
                        now.duration_since(at).as_secs_f64(),
                        ticks_per_second(),
                    ));
                    self.last_cpu = Some((now, ticks));
                }
                Some(_) => {}
                None => self.last_cpu = Some((now, ticks)),
            }
        }
        OwnStatus {
            pid: std::process::id(),
            rss_bytes: rss,
            cpu_percent: self.cpu_percent,
            fds,
            threads: stat.map(|s| s.num_threads),
        }
    }
}

/// Percent of one core: `ticks` of CPU time over `seconds` of wall time.
fn cpu_percent(ticks: u64, seconds: f64, hz: u64) -> f64 {
    if seconds <= 0.0 || hz == 0 {
        return 0.0;
    }
    let p = ticks as f64 / hz as f64 / seconds * 100.0;
    (p * 10.0).round() / 10.0
}

/// The three load averages of /proc/loadavg (`0.52 0.40 0.31 1/123 4567`).
#[must_use]
pub fn loadavg(bytes: &[u8]) -> Option<[f64; 3]> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut it = text
        .split_ascii_whitespace()
        .map(|f| f.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0));
    Some([it.next()??, it.next()??, it.next()??])
}

/// The lines of /proc/meminfo the header shows, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: Option<u64>,
    pub available: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
}

/// Parses /proc/meminfo (`MemAvailable:   23760516 kB`); a line that does not read is skipped.
#[must_use]
pub fn meminfo(bytes: &[u8]) -> MemInfo {
    let mut out = MemInfo::default();
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_ascii_whitespace();
        let Some(n) = words.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match words.next() {
            Some("kB") => n.checked_mul(1024),
            None => Some(n),
            Some(_) => None,
        };
        let slot = match key {
            "MemTotal" => &mut out.total,
            "MemAvailable" => &mut out.available,
            "SwapTotal" => &mut out.swap_total,
            "SwapFree" => &mut out.swap_free,
            _ => continue,
        };
        *slot = bytes;
    }
    out
}

/// `avg10` and `avg60` of the `some` and `full` lines of a /proc/pressure file; `None` without a
/// readable `some` line. A `full` line that is missing (CPU before Linux 5.13) or unreadable
/// leaves `full` `None`.
#[must_use]
pub fn psi(bytes: &[u8]) -> Option<Pressure> {
    let text = std::str::from_utf8(bytes).ok()?;
    let avg = |line: &str, key: &str| {
        line.split_ascii_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && (0.0..=100.0).contains(v))
    };
    let both = |line: &str| Some((avg(line, "avg10=")?, avg(line, "avg60=").unwrap_or(0.0)));
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("some ") {
            some = both(rest);
        } else if let Some(rest) = line.strip_prefix("full ") {
            full = both(rest);
        }
    }
    let (some_avg10, some_avg60) = some?;
    Some(Pressure {
        some_avg10,
        full_avg10: full.map(|f| f.0),
        some_avg60,
        full_avg60: full.map(|f| f.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_averages() {
        assert_eq!(
            loadavg(b"0.52 0.40 0.31 1/123 4567\n"),
            Some([0.52, 0.40, 0.31])
        );
        for odd in [
            &b""[..],
            b"0.5 0.4",
            b"0.5 x 0.3 1/2 3",
            b"-1 0 0",
            b"NaN 0 0",
            b"\xff",
        ] {
            assert_eq!(loadavg(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn meminfo_lines() {
        let m = meminfo(
            b"MemTotal:       24683772 kB\nMemFree: 1 kB\nMemAvailable:   23760516 kB\n\
              SwapTotal:  0 kB\nSwapFree: 0 kB\nHugePages_Total: 0\n",
        );
        assert_eq!(
            m,
            MemInfo {
                total: Some(24_683_772 * 1024),
                available: Some(23_760_516 * 1024),
                swap_total: Some(0),
                swap_free: Some(0),
            }
        );
        // An old kernel without MemAvailable, a line in another unit, a number too large, bytes
        // that are not text: each is missing, none is a panic.
        let m = meminfo(
            b"MemTotal: 10 MB\nSwapTotal: 99999999999999999999 kB\nSwapFree: 18446744073709551615 kB\n\xff\xfe: 3\n",
        );
        assert_eq!(m, MemInfo::default());
    }

    #[test]
    fn pressure_lines() {
        let p = psi(b"some avg10=1.25 avg60=0.59 avg300=0.53 total=5450969\nfull avg10=0.50 avg60=0.29 avg300=0.26 total=2915669\n");
        assert_eq!(
            p,
            Some(Pressure {
                some_avg10: 1.25,
                full_avg10: Some(0.5),
                some_avg60: 0.59,
                full_avg60: Some(0.29),
            })
        );
        // CPU before Linux 5.13 has no `full` line.
        assert_eq!(
            psi(b"some avg10=10.66 avg60=16.82 avg300=19.25 total=3298864676\n"),
            Some(Pressure {
                some_avg10: 10.66,
                full_avg10: None,
                some_avg60: 16.82,
                full_avg60: None,
            })
        );
        for odd in [
            &b""[..],
            b"full avg10=1.00\n",
            b"some avg10=x\n",
            b"some avg10=101\n",
        ] {
            assert_eq!(psi(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn cpu_of_the_supervisor() {
        assert!((cpu_percent(50, 1.0, 100) - 50.0).abs() < 1e-9);
        assert!((cpu_percent(1, 2.0, 100) - 0.5).abs() < 1e-9);
        assert!(cpu_percent(5, 0.0, 100).abs() < 1e-9);
        assert!(cpu_percent(5, 1.0, 0).abs() < 1e-9);
    }

    #[test]
    fn reads_this_host() {
        let mut probe = HostProbe::default();
        let h = probe.read();
        assert!(h.mem_total_bytes.is_some_and(|t| t > 0), "{h:?}");
        assert!(h.load.is_some(), "{h:?}");
        assert!(h.own.rss_bytes.is_some_and(|r| r > 0), "{h:?}");
        assert!(h.own.fds.is_some_and(|f| f >= 3), "{h:?}");
        assert_eq!(h.own.pid, std::process::id());
    }
}
