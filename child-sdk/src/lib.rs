//! The child side of `supervise`.
//!
//! # Theory of operation
//! `supervise` starts every worker with a small, documented environment so that a program can
//! tell that it runs under supervision and which slot it fills:
//!
//! | variable | meaning |
//! |---|---|
//! | `SUPERVISE_NAME` | the program's name, as in the config or `--name` |
//! | `SUPERVISE_INSTANCE` | the replica number, `0..replicas` |
//!
//! The supervisor also uses these two variables to attribute a process that double-forked away from
//! its worker (and was reparented to the supervisor, a child subreaper) back to that worker.
//!
//! # Caveats
//! This release carries the environment contract only. The duplex channel (a socketpair at fd 3)
//! and the shared-memory segment (a sealed memfd at fd 4) described in the design are not built
//! yet, so [`Supervised::from_env`] is all a program can use today.

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

/// What the supervisor told this process about itself through its environment.
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
