//! Host memory pressure: before the kernel's OOM killer has to act on the whole machine, stop
//! the tree that explains the pressure, gracefully and one at a time, and tell workers first.
//!
//! # Theory of operation
//! Each engine tick reads the host ([`source`]): `/proc/pressure/memory` (PSI: the share of
//! time tasks stalled on memory, `some` and `full`) and `/proc/meminfo` (`MemAvailable`), or a
//! recorded trace of both. The [`Gate`] opens only when two signals hold together for
//! [`Gate::hold`]: `full avg10` at or above a share (every non-idle task stalled, not just
//! some) **and** `MemAvailable` below a share of `MemTotal`. One signal alone is not enough:
//! pressure with plenty available is reclaim of the page cache or I/O, which stopping a worker
//! would not help; little available without stalls is a host using its memory well. When both
//! first hold, workers are told (systemd's memory-pressure protocol and the SDK's
//! `MemoryPressure`); when they have held long enough, [`rank`] picks the victim, which is
//! restarted gracefully with a grace shortened to what the host can afford ([`grace`]); then
//! nothing more until that tree is gone and two fresh readings are in.
//!
//! Pure: readings and trees in, verdicts out, time passed in. The engine carries it out
//! (`engine/pressure.rs`).

use std::time::{Duration, Instant};

pub mod source;

/// `MEMORY_PRESSURE_WRITE` for the kernel's PSI file: base64 of `some 200000 2000000` and its
/// NUL, systemd's default (stalls of 200 ms within 2 s; a 2 s window is what an unprivileged
/// trigger may use).
pub const PRESSURE_WRITE: &str = "c29tZSAyMDAwMDAgMjAwMDAwMAA=";

/// What workers watch for memory pressure (systemd.io/MEMORY_PRESSURE), given to each.
#[derive(Debug, Clone)]
pub struct Watch {
    pub path: std::path::PathBuf,
    /// Base64 trigger to write into it (the kernel's PSI file); none for a FIFO.
    pub write: Option<&'static str>,
}

/// What workers watch without the policy on: the kernel's PSI file, where it has one.
#[must_use]
pub fn kernel_watch() -> Option<Watch> {
    std::path::Path::new(source::PSI_MEMORY)
        .exists()
        .then(|| Watch {
            path: std::path::PathBuf::from(source::PSI_MEMORY),
            write: Some(PRESSURE_WRITE),
        })
}

/// PSI averages of one resource, percent of wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub full_avg10: f64,
    pub full_avg60: f64,
}

/// One reading of the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostSample {
    pub psi: Psi,
    pub mem_total: u64,
    pub mem_available: u64,
}

impl HostSample {
    /// `MemAvailable` as a share of `MemTotal` (1 when unknown).
    #[must_use]
    pub fn available_share(&self) -> f64 {
        if self.mem_total == 0 {
            1.0
        } else {
            self.mem_available as f64 / self.mem_total as f64
        }
    }
}

/// A reading from the text of `/proc/pressure/memory` and of `/proc/meminfo` (parsed as `top`'s
/// header parses them, [`crate::host`]); `None` without a `some` line, `MemTotal` or
/// `MemAvailable`. A kernel without a `full` line stalls no one in full.
#[must_use]
pub fn sample_from(psi: &[u8], meminfo: &[u8]) -> Option<HostSample> {
    let p = crate::host::psi(psi)?;
    let m = crate::host::meminfo(meminfo);
    Some(HostSample {
        psi: Psi {
            some_avg10: p.some_avg10,
            some_avg60: p.some_avg60,
            full_avg10: p.full_avg10.unwrap_or(0.0),
            full_avg60: p.full_avg60.unwrap_or(0.0),
        },
        mem_total: m.total?,
        mem_available: m.available?,
    })
}

/// When the host is under pressure enough to act.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// `full avg10` at or above this, percent.
    pub full: f64,
    /// `MemAvailable` below this share of `MemTotal`.
    pub available: f64,
    /// Both held this long.
    pub hold: Duration,
}

/// What one reading says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not both signals.
    Calm,
    /// Both signals, since `since`: the moment to tell workers (`first` is the reading where
    /// they started to hold together).
    Building { since: Instant, first: bool },
    /// Both signals for the gate's whole `hold`: act, if nothing else is under way.
    Act,
}

/// The gate's memory between readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct GateState {
    since: Option<Instant>,
}

impl GateState {
    /// Forgets when the signals started to hold: after an action, they must hold for the whole
    /// `hold` again before the next.
    pub fn reset(&mut self) {
        self.since = None;
    }
}

impl Gate {
    /// Judges one reading taken at `now`.
    pub fn observe(&self, state: &mut GateState, now: Instant, s: &HostSample) -> Verdict {
        let both = s.psi.full_avg10 >= self.full && s.available_share() < self.available;
        if !both {
            state.since = None;
            return Verdict::Calm;
        }
        let first = state.since.is_none();
        let since = *state.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.hold {
            Verdict::Act
        } else {
            Verdict::Building { since, first }
        }
    }
}

pub use crate::plan::OomPolicy;

/// One tree as the ranking sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub program: String,
    pub instance: u32,
    /// Its memory now, bytes.
    pub bytes: u64,
    /// Its memory growth over the recent window, bytes a second.
    pub growth: f64,
    pub oom: OomPolicy,
    /// Another instance of its program is up: stopping this one leaves the service serving.
    pub ready_siblings: bool,
}

/// Growth that counts as explaining pressure: at least this share of `MemTotal` a second
/// (0.1 %: 24 MiB/s on a 24 GiB host), or [`MIN_GROWTH`], whichever is more.
pub const GROWTH_SHARE: f64 = 0.001;
/// At least 1 MiB/s.
pub const MIN_GROWTH: f64 = 1024.0 * 1024.0;

/// The trees in the order they would be chosen, best victim first; `never` ones are left out.
///
/// 1. `avoid` trees last, whatever they do;
/// 2. then trees that grow (faster than [`GROWTH_SHARE`] of `mem_total` a second, and at least
///    [`MIN_GROWTH`]) before the rest: their growth is what explains the pressure;
/// 3. then `prefer` before `normal`;
/// 4. then a replica whose program has another instance up before one that serves alone;
/// 5. then the faster growth, then the larger tree; then by name and instance, so the order is
///    total.
#[must_use]
pub fn rank(candidates: &[Candidate], mem_total: u64) -> Vec<&Candidate> {
    let threshold = (mem_total as f64 * GROWTH_SHARE).max(MIN_GROWTH);
    let mut out: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.oom != OomPolicy::Never)
        .collect();
    out.sort_by(|a, b| {
        let key = |c: &Candidate| {
            (
                c.oom == OomPolicy::Avoid,
                c.growth < threshold,
                c.oom,
                !c.ready_siblings,
            )
        };
        key(a)
            .cmp(&key(b))
            .then(b.growth.total_cmp(&a.growth))
            .then(b.bytes.cmp(&a.bytes))
            .then(a.program.cmp(&b.program))
            .then(a.instance.cmp(&b.instance))
    });
    out
}

/// The grace a victim gets: the program's own, shortened to half the time the host's
/// `MemAvailable` lasts at its current rate of fall (`fall`, bytes a second), and never below
/// [`MIN_GRACE`].
#[must_use]
pub fn grace(own: Duration, available: u64, fall: f64) -> Duration {
    if !fall.is_finite() || fall <= 0.0 {
        return own;
    }
    let lasts = available as f64 / fall / 2.0;
    Duration::try_from_secs_f64(lasts)
        .unwrap_or(own)
        .min(own)
        .max(MIN_GRACE.min(own))
}

/// The shortest grace a pressure stop gives.
pub const MIN_GRACE: Duration = Duration::from_secs(1);

/// One victim at a time: after an action, nothing more until the victim's tree is gone and two
/// fresh readings have come in (the readings taken while it was going say little about the
/// host without it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacer {
    state: Pacing,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Pacing {
    #[default]
    Ready,
    /// The victim's tree is not gone yet.
    Going,
    /// Gone; this many fresh readings still to come.
    Fresh(u8),
}

impl Pacer {
    #[must_use]
    pub fn may_act(&self) -> bool {
        self.state == Pacing::Ready
    }

    /// An action was taken.
    pub fn acted(&mut self) {
        self.state = Pacing::Going;
    }

    /// A reading came in; `victim_gone` says whether the last victim's tree is gone.
    pub fn reading(&mut self, victim_gone: bool) {
        self.state = match self.state {
            Pacing::Going if victim_gone => Pacing::Fresh(2),
            Pacing::Fresh(n) if n > 1 => Pacing::Fresh(n - 1),
            Pacing::Fresh(_) => Pacing::Ready,
            other => other,
        };
    }
}

/// A growth rate from timed samples: the slope between the mean of the first and the last
/// quarter (at least one sample each), bytes a second; 0 with fewer than 4 samples or no time
/// between them.
#[must_use]
pub fn growth(samples: &[(Instant, u64)]) -> f64 {
    if samples.len() < 4 {
        return 0.0;
    }
    let q = (samples.len() / 4).max(1);
    let mean = |part: &[(Instant, u64)]| {
        let t0 = samples[0].0;
        let n = part.len() as f64;
        let t = part
            .iter()
            .map(|(t, _)| t.saturating_duration_since(t0).as_secs_f64())
            .sum::<f64>()
            / n;
        let b = part.iter().map(|&(_, b)| b as f64).sum::<f64>() / n;
        (t, b)
    };
    let (t1, b1) = mean(&samples[..q]);
    let (t2, b2) = mean(&samples[samples.len() - q..]);
    if t2 - t1 <= 0.0 {
        0.0
    } else {
        (b2 - b1) / (t2 - t1)
    }
}

#[cfg(test)]
mod tests;
