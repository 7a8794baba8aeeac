//! The child side of `supervise`: what a supervised program links to report on itself.
//!
//! # Theory of operation
//! `supervise` starts every worker with:
//!
//! | what | where |
//! |---|---|
//! | its end of a `SOCK_SEQPACKET` socketpair, the channel ([`proto`]) | fd 3, named by `SUPERVISE_CONTROL_FD` |
//! | a sealed memfd, the segment ([`segment`]) | fd 4, named by `SUPERVISE_SEGMENT_FD` |
//! | the program name and replica number | `SUPERVISE_NAME`, `SUPERVISE_INSTANCE` |
//!
//! [`Client::from_env`] ([`client`]) takes the two fds, says `Hello` and waits for `Welcome`.
//! From then on, messages (ready, status, events) go over the channel, while numbers that change
//! all the time (heartbeat, counters, gauges, heap bytes) are single atomic stores into the
//! segment, which the supervisor reads on its own schedule: no syscall, no lock, no thread on the
//! hot path. One listener thread receives what the supervisor sends (shutdown requests, limits,
//! memory-pressure warnings, pings).
//!
//! The supervisor also uses `SUPERVISE_NAME`/`SUPERVISE_INSTANCE` to attribute a process that
//! double-forked away from its worker back to that worker.
//!
//! A program can also read what the kernel says about itself from /proc/self ([`usage`]), to
//! shed caches or load before its supervisor has to act; with the `alloc` feature, the `alloc`
//! module's counting allocator publishes its heap bytes into the segment.
//!
//! # Caveats
//! - Call [`Client::from_env`] before starting threads: it removes the two fd variables from the
//!   environment so that programs this worker runs do not believe they own fds 3 and 4.
//! - The segment holds 61 named metrics at most; registering more fails with
//!   [`segment::SegmentError::TableFull`].
// The counting allocator exists only with the feature, so the docs link to it only then: the docs
// build with and without `--all-features` under `-D warnings`.
#![cfg_attr(
    feature = "alloc",
    doc = "- Heap numbers need the `alloc` feature and [`alloc::CountingAlloc`] as the global allocator."
)]
#![cfg_attr(
    not(feature = "alloc"),
    doc = "- Heap numbers need the `alloc` feature and its `alloc::CountingAlloc` as the global allocator."
)]
//! - Linux only, 64-bit only (the segment's lock-free reads rely on 8-byte atomics).

pub use client::Client;

use std::env;

#[cfg(feature = "alloc")]
pub mod alloc;
pub mod client;
pub mod proto;
pub mod segment;
pub mod usage;

/// Environment variable holding the program name.
pub const ENV_NAME: &str = "SUPERVISE_NAME";
/// Environment variable holding the replica number.
pub const ENV_INSTANCE: &str = "SUPERVISE_INSTANCE";
/// Environment variable holding the fd number of the worker's end of the channel (3).
pub const ENV_CONTROL_FD: &str = "SUPERVISE_CONTROL_FD";
/// Environment variable holding the fd number of the worker's shared-memory segment (4).
pub const ENV_SEGMENT_FD: &str = "SUPERVISE_SEGMENT_FD";

/// What the supervisor told this process about itself through its environment, without
/// connecting to it (see [`Client`] for that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervised {
    /// The program name.
    pub name: String,
    /// The replica number.
    pub instance: u32,
}

impl Supervised {
    /// Reads the supervision environment; `None` when the process does not run under `supervise`
    /// (or the variables are malformed), so a program behaves the same standalone.
    #[must_use]
    pub fn from_env() -> Option<Self> {
        let name = env::var(ENV_NAME).ok()?;
        let instance = env::var(ENV_INSTANCE).ok()?.parse().ok()?;
        Some(Self { name, instance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_environment_is_none() {
        // The test harness is not run under supervise unless someone does so on purpose.
        if env::var_os(ENV_NAME).is_none() {
            assert_eq!(Supervised::from_env(), None);
        }
    }
}
