//! `supervise`: run worker processes, watch them through /proc, restart them when they crash or
//! leak.
//!
//! # Theory of operation
//! The binary parses flags or a config into a [`plan::Plan`]. The engine ([`engine`]) runs on a
//! single-threaded tokio runtime on the main thread: workers are forked from that thread only, so
//! `PR_SET_PDEATHSIG` stays armed for the supervisor's whole life. Each worker instance is a local
//! task ([`worker`]) that spawns the process ([`spawn`]), samples its whole process tree from /proc
//! ([`probe`]), asks the pure [`policy`] what to do, and reports what happened as [`events`].
//! Exit statuses come from one reaper that calls `waitpid(-1)` on SIGCHLD: the supervisor is a
//! child subreaper, so orphans of its workers are reparented to it, attributed back to their worker
//! and reaped.
//!
//! # Caveats
//! Linux only. The channel and shared-memory segment of the design are not built yet: workers are
//! supervised from /proc alone.

pub mod admin;
pub mod alert;
pub mod channel;
pub mod crosscheck;
pub mod disk;
pub mod engine;
pub mod events;
pub mod history;
pub mod leak;
pub mod lifecycle;
pub mod lifeline;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod orphans;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod reaper;
pub mod report;
pub mod session;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod top;
pub mod worker;
