//! What is kept about one running incarnation between events: its tree, its samples' state,
//! its channel and segment, its checks and recycling. [`super::running`] runs the incarnation,
//! [`super::verdict`] judges each sample, [`super::recycle`] carries out member recycling; all
//! three read and write this state.

use std::collections::VecDeque;
use std::time::Instant;

use child_sdk::segment;

use crate::channel::{self, Channel};
use crate::crosscheck::CrossCheck;
use crate::events::Reason;
use crate::leak::LeakWatch;
use crate::policy::{MemoryWatch, PressureWatch};
use crate::probe::tree::Tree;
use crate::session::Session;
use crate::spawn::Inherit;

/// What a worker inherits to talk to the supervisor, and our ends of it.
pub(super) struct Ipc {
    pub channel: Channel,
    pub segment: segment::Reader,
}

impl Ipc {
    /// Creates a channel pair and a segment: ours, and the fds the worker inherits. A failure here
    /// (no memfd, fd exhaustion) costs the worker its channel, not its supervision.
    pub fn prepare() -> Option<(Self, Inherit)> {
        let made = (|| -> std::io::Result<_> {
            let (ours, theirs) = channel::pair()?;
            let (segment_fd, reader) = segment::create()?;
            Ok((
                Self {
                    channel: Channel::new(ours)?,
                    segment: reader,
                },
                Inherit {
                    channel: theirs,
                    segment: segment_fd,
                },
            ))
        })();
        made.map_err(|e| tracing::warn!(error = %e, "no channel or segment for this worker"))
            .ok()
    }
}

/// The state of one running incarnation between events.
pub(super) struct Watch {
    pub(super) pid: i32,
    pub(super) tree: Tree,
    pub(super) memory: MemoryWatch,
    pub(super) pressure: PressureWatch,
    /// Recent (time, bytes) samples: the growth rate for adaptive sampling is measured against
    /// the oldest one, so a worker that grows in steps is not mistaken for flat between steps.
    pub(super) recent: VecDeque<(Instant, u64)>,
    pub(super) session: Session,
    pub(super) ipc: Option<Ipc>,
    /// A future heartbeat was reported once already.
    pub(super) implausible_heartbeat: bool,
    pub(super) cross: CrossCheck,
    pub(super) leak: Option<LeakWatch>,
    /// The segment's last read, kept so each tick's read reuses its allocations.
    pub(super) snap: segment::Snapshot,
    /// Readiness rule, start timeout and health check.
    pub(super) checks: super::ready::Checks,
    /// A restart for memory (this reason) waits for the capacity guard (said once per wait).
    pub(super) waiting: Option<Reason>,
    /// Stopped for memory younger than `memory.min_uptime`: the restart is a failure.
    pub(super) too_soon: bool,
    /// The tree's size at its first sample (for `limit_too_low`).
    pub(super) first_bytes: Option<u64>,
    /// A member recycle under way (`memory.recycle = "member"`).
    pub(super) recycling: Option<Recycling>,
    /// A member was recycled and the tree has not been under its limit since: the next memory
    /// restart is the tree's.
    pub(super) after_member: bool,
    /// The trend `memory.recycle_before` reads (any steady growth), when asked for.
    pub(super) trend: Option<LeakWatch>,
    /// When this incarnation is due for its scheduled recycle (`recycle.every`).
    pub(super) recycle_at: Option<Instant>,
    /// The request count at which it is due (`recycle.requests`).
    pub(super) recycle_requests: Option<u64>,
    /// The host-pressure episode it was last told of.
    pub(super) host_pressure_seen: u64,
}

/// A member recycle under way.
pub(super) struct Recycling {
    pub(super) pid: i32,
    pub(super) command: String,
    pub(super) member_bytes: u64,
    pub(super) tree_before: u64,
    pub(super) reason: Reason,
    pub(super) asked: Instant,
    pub(super) killed: bool,
}
