//! Disk: what workers hold and write, and how full the directories and filesystems they use are.
//!
//! # Theory of operation
//! - [`deleted`]: per worker tree, the space held by files that were unlinked while still open
//!   (they fill disks while `du` sees nothing), found through /proc/PID/fd. A [`DeletedScan`]
//!   rescans each member's fds every 10 s to find new ones, spending a bounded number of fd
//!   reads per call, and re-measures the files it found at every tick (one `fstatat` each).
//! - [`growth`]: a deleted file growing faster than a rate is a finding `deleted_growing`.
//! - [`io`]: read and write rates from the per-tick byte counts, and block-I/O delay (time spent
//!   waiting for the disk) from /proc/PID/task/TID/stat.
//! - [`dirs`]: watched directories (`[[watch.dir]] path = "/var/log/app", every = "60s",
//!   max = "10GiB", fs_max_used = 90`), measured like `du -sx` on a background thread and cached
//!   for `every`, with the filesystem's space from statvfs(3).
//! - [`verdict`]: the pure decision that turns a directory's state into a `disk` finding.
//!
//! # Caveats
//! Block-I/O delay needs the kernel's delay accounting (`kernel.task_delayacct`); without it it
//! reads 0. A deleted file open in two trees counts in both (each tree is deduplicated on its
//! own). Files on tmpfs count as disk (they fill the filesystem they were on, in memory).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytesize::ByteSize;

use crate::events::Kind;

pub mod deleted;
pub mod dirs;
pub mod growth;
pub mod io;
#[cfg(test)]
pub(crate) mod testbin;

pub use deleted::{Deleted, DeletedScan, HeldFile};
pub use dirs::{DirState, DirUsage, DirWatcher, FsUsage};
pub use growth::{Growing, GrowthWatch};
pub use io::{IoRates, Rates};

/// What is watched is the plan's ([`crate::plan::watch`]).
pub use crate::plan::watch::{WatchDir, WatchDirError, MIN_EVERY};

/// A worker tree's disk figures, as the engine's probes last saw them (the `disk` object of
/// `status --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerDisk {
    /// Space held by deleted-but-open files (allocated blocks), bytes.
    pub deleted_bytes: u64,
    pub deleted_files: u64,
    /// Storage-layer bytes read and written by the live members (/proc/PID/io).
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    /// Time the members' threads spent waiting for block I/O, seconds (0 without the kernel's
    /// delay accounting).
    pub blkio_delay_s: f64,
}

/// A watched directory over its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskFinding {
    pub path: PathBuf,
    /// `(bytes held, max)` when over `max`.
    pub over_max: Option<(u64, u64)>,
    /// `(percent used, fs_max_used)` when the filesystem is over `fs_max_used`.
    pub fs_over: Option<(f64, f64)>,
    /// The walk was partial: the size is a lower bound.
    pub partial: bool,
}

impl DiskFinding {
    /// The finding's name in events and metrics.
    pub const KIND: &'static str = "disk";

    /// One line for people.
    #[must_use]
    pub fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some((bytes, max)) = self.over_max {
            let least = if self.partial { "at least " } else { "" };
            parts.push(format!(
                "{} holds {least}{}, over its max of {}",
                self.path.display(),
                ByteSize(bytes),
                ByteSize(max)
            ));
        }
        if let Some((used, limit)) = self.fs_over {
            parts.push(format!(
                "the filesystem of {} is {used:.1}% used, over {limit}%",
                self.path.display()
            ));
        }
        parts.join("; ")
    }

    /// The numbers of the event: `bytes` and `max`, `fs_used_percent` and `fs_max_used_percent`
    /// (whole percent, rounded up as df does).
    #[must_use]
    pub fn numbers(&self) -> BTreeMap<&'static str, u64> {
        let mut n = BTreeMap::new();
        if let Some((bytes, max)) = self.over_max {
            n.insert("bytes", bytes);
            n.insert("max", max);
        }
        if let Some((used, limit)) = self.fs_over {
            n.insert("fs_used_percent", used.ceil() as u64);
            n.insert("fs_max_used_percent", limit.ceil() as u64);
        }
        n
    }

    /// As a `finding` event.
    #[must_use]
    pub fn to_event_kind(&self) -> Kind {
        Kind::Finding {
            kind: Self::KIND,
            detail: self.detail(),
            numbers: self.numbers(),
        }
    }
}

/// Is the directory over `max`, or its filesystem over `fs_max_used`? Pure: the caller passes
/// the latest measurements (`None` while unknown, which is never a finding). A partial walk that
/// already counts more than `max` is over; one that counts less says nothing either way.
#[must_use]
pub fn verdict(
    dir: &WatchDir,
    usage: Option<&DirUsage>,
    fs: Option<&FsUsage>,
) -> Option<DiskFinding> {
    let over_max = match (dir.max, usage) {
        (Some(max), Some(u)) if u.bytes > max => Some((u.bytes, max)),
        _ => None,
    };
    let fs_over = match (dir.fs_max_used, fs) {
        (Some(limit), Some(f)) if f.used_percent > limit => Some((f.used_percent, limit)),
        _ => None,
    };
    (over_max.is_some() || fs_over.is_some()).then(|| DiskFinding {
        path: dir.path.clone(),
        over_max,
        fs_over,
        partial: usage.is_some_and(DirUsage::partial),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn dir(max: Option<u64>, fs_max_used: Option<f64>) -> WatchDir {
        WatchDir::new(
            "/var/log/app".into(),
            Duration::from_secs(60),
            max,
            fs_max_used,
        )
        .expect("valid")
    }

    fn usage(bytes: u64, errors: u64) -> DirUsage {
        DirUsage {
            bytes,
            errors,
            ..DirUsage::default()
        }
    }

    fn fs(used_percent: f64) -> FsUsage {
        FsUsage {
            total: 100 * GIB,
            available: 10 * GIB,
            used_percent,
        }
    }

    #[test]
    fn under_every_limit_or_unknown_is_nothing() {
        let d = dir(Some(10 * GIB), Some(90.0));
        assert_eq!(
            verdict(&d, Some(&usage(10 * GIB, 0)), Some(&fs(90.0))),
            None
        );
        assert_eq!(verdict(&d, None, None), None);
        let no_limits = dir(None, None);
        assert_eq!(
            verdict(&no_limits, Some(&usage(u64::MAX, 0)), Some(&fs(100.0))),
            None
        );
    }

    #[test]
    fn over_max() {
        let d = dir(Some(10 * GIB), Some(90.0));
        let f = verdict(&d, Some(&usage(11 * GIB, 0)), Some(&fs(50.0))).expect("over");
        assert_eq!(
            (f.over_max, f.fs_over, f.partial),
            (Some((11 * GIB, 10 * GIB)), None, false)
        );
        assert_eq!(
            f.detail(),
            "/var/log/app holds 11.0 GiB, over its max of 10.0 GiB"
        );
        let n = f.numbers();
        assert_eq!((n["bytes"], n["max"], n.len()), (11 * GIB, 10 * GIB, 2));
        // A partial walk already over max is over, said as a lower bound.
        let p = verdict(&d, Some(&usage(11 * GIB, 3)), None).expect("over");
        assert!(
            p.partial && p.detail().contains("at least 11.0 GiB"),
            "{}",
            p.detail()
        );
    }

    #[test]
    fn filesystem_over_used_and_both() {
        let d = dir(Some(10 * GIB), Some(90.0));
        let f = verdict(&d, None, Some(&fs(92.3))).expect("fs over");
        assert_eq!((f.over_max, f.fs_over), (None, Some((92.3, 90.0))));
        assert_eq!(f.numbers()["fs_used_percent"], 93);
        let both = verdict(&d, Some(&usage(20 * GIB, 0)), Some(&fs(99.0))).expect("both");
        assert!(both.over_max.is_some() && both.fs_over.is_some());
        assert_eq!(both.detail().matches("; ").count(), 1, "{}", both.detail());
        match both.to_event_kind() {
            Kind::Finding { kind, numbers, .. } => {
                assert_eq!(kind, "disk");
                assert_eq!(numbers.len(), 4);
            }
            other => panic!("{other:?}"),
        }
    }
}
