//! `[pressure]` and `--pressure…`: the host memory-pressure policy (see `crate::pressure`), and
//! each program's `oom` policy as a victim.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `full avg10` at or above this percentage of time. systemd-oomd acts at 60 % over 30 s, and is
/// known to act too late; 10 % means every non-idle task stalled on memory a tenth of the time,
/// which only a host short of memory shows for long.
pub const DEFAULT_FULL: f64 = 10.0;
/// ... held this long, together with low memory.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(10);
/// `MemAvailable` below this percentage of `MemTotal`: earlyoom's default threshold.
pub const DEFAULT_AVAILABLE: f64 = 10.0;

/// What an open gate does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PressureOn {
    /// Restart the victim gracefully (reason `pressure`).
    #[default]
    Restart,
    /// Report which tree would go, stop nothing.
    Warn,
}

/// A program's place in the order of pressure victims (`oom = …`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum OomPolicy {
    /// Chosen before the others.
    Prefer,
    #[default]
    Normal,
    /// Chosen only when nothing else can be.
    Avoid,
    /// Never chosen; and the kernel's `oom_score_adj` is -1000 for it (unless set, as root).
    Never,
}

impl OomPolicy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OomPolicy::Prefer => "prefer",
            OomPolicy::Normal => "normal",
            OomPolicy::Avoid => "avoid",
            OomPolicy::Never => "never",
        }
    }
}

/// The host memory-pressure policy, when it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct PressureSpec {
    /// `full avg10`, percent.
    pub full: f64,
    /// How long both signals must hold.
    pub hold: Duration,
    /// `MemAvailable`, percent of `MemTotal`.
    pub available: f64,
    pub on: PressureOn,
    /// Read the host from this recorded trace instead of /proc (tests and drills).
    pub replay: Option<PathBuf>,
}

/// The raw `[pressure]` table (its presence turns the policy on).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPressure {
    #[serde(default)]
    full: Option<f64>,
    #[serde(default, rename = "for")]
    hold: Option<super::values::Dur>,
    #[serde(default)]
    available: Option<f64>,
    #[serde(default)]
    on: Option<PressureOn>,
    #[serde(default)]
    replay: Option<PathBuf>,
}

impl RawPressure {
    /// The spec; `Err((subkey, message))`.
    pub(super) fn spec(self) -> Result<PressureSpec, (&'static str, String)> {
        build(
            self.full,
            self.hold.map(|d| d.0),
            self.available,
            self.on,
            self.replay,
        )
    }
}

/// `oom = "never"` also keeps the kernel's OOM killer off the program: `oom_score_adj` -1000,
/// when it was not set and supervise runs as root (lowering it needs `CAP_SYS_RESOURCE`).
pub(super) fn never_adj(oom: OomPolicy, identity: &mut super::Identity, euid: u32) {
    if oom == OomPolicy::Never && identity.oom_score_adj.is_none() && euid == 0 {
        identity.oom_score_adj = Some(-1000);
    }
}

/// Checks a percentage and fills in the defaults. `Err((key, message))`.
pub(super) fn build(
    full: Option<f64>,
    hold: Option<Duration>,
    available: Option<f64>,
    on: Option<PressureOn>,
    replay: Option<PathBuf>,
) -> Result<PressureSpec, (&'static str, String)> {
    let percent = |key: &'static str, v: Option<f64>, default: f64| match v {
        None => Ok(default),
        Some(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Ok(p),
        Some(p) => Err((
            key,
            format!("must be a percentage above 0 and at most 100, got {p}"),
        )),
    };
    Ok(PressureSpec {
        full: percent("full", full, DEFAULT_FULL)?,
        hold: hold.unwrap_or(DEFAULT_HOLD),
        available: percent("available", available, DEFAULT_AVAILABLE)?,
        on: on.unwrap_or_default(),
        replay,
    })
}
