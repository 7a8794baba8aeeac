//! `supervise`: run worker processes, watch them through /proc, restart them when they crash or
//! leak.
//!
//! # Theory of operation
//! The binary parses flags or a config into a [`plan::Plan`]: the model every other part reads,
//! which imports none of them (the modules import one another in layers, without circles;
//! `tests/house.rs` checks it). The engine ([`engine`]) runs on a single-threaded tokio runtime
//! on the main thread: workers are forked from that thread only, so `PR_SET_PDEATHSIG` stays
//! armed for the supervisor's whole life.
//!
//! Each worker instance is a local task ([`worker`]) that carries out what the instance's pure
//! state machine ([`lifecycle`]) decides: spawn ([`spawn`], which also sets the worker's user,
//! limits, nice value, OOM score and umask between fork and exec), ask to stop (`Shutdown` over the
//! channel), signal, kill, report, wait. It feeds the machine every input — the engine's
//! commands, the process's exit, each sample's verdict, timers — so no command is ever read and
//! dropped. While a process runs, the task samples its whole tree from /proc ([`probe`]), reads
//! its shared-memory segment and its channel ([`channel`], [`session`]), and asks the pure
//! policies ([`policy`], [`leak`], [`crosscheck`]) what the samples mean. Readiness and health
//! checks run against it ([`checks`]), and any process of its tree may speak systemd's notify
//! protocol ([`notify`]). Once a tick the engine also dumps every worker's sockets at once
//! ([`net`]), looks at what the trees hold and write on disk and at the watched directories
//! ([`disk`]), and reads the host's memory pressure: when stalls and low available memory hold
//! together, workers are told, then the tree that explains it is restarted ([`pressure`]).
//!
//! What happened goes out as [`events`], as JSON lines and as one line for people each on
//! stderr, written with the workers' output by writer threads ([`logs`]) so no stalled
//! destination holds up the engine; each instance's last lines are also kept in a bounded ring
//! for `supervise logs`. Chosen events become alerts, on a thread of their own ([`alert`]). What
//! is known about each instance is the [`status`] model that the control socket ([`admin`]), the
//! terminal view ([`top`]), the metrics server ([`metrics`], which also serves
//! the web dashboard) and the history file ([`history`]) read; `top` and `status` fit their columns to the
//! terminal by priority ([`columns`]), both views head their screen with the host's load, memory
//! and pressure ([`host`]), and the engine keeps each instance's last hour of memory for them
//! ([`trail`]). Both servers cap the connections they hold at once ([`connections`]), and
//! `supervise report` draws a history as an SVG ([`report`]).
//!
//! Exit statuses come from one reaper ([`reaper`]) that calls `waitpid(-1)` on SIGCHLD: the
//! supervisor is a child subreaper, so orphans of its workers are reparented to it, attributed
//! back to their worker ([`orphans`]) and reaped. Every other signal the supervisor handles is
//! read from a signalfd ([`signals`]): stop, reload, or forward to the workers. An exit of a
//! process nobody awaits (an orphan's) sets off a look for new orphans at once. A lifeline
//! process ([`lifeline`]), told of every tree member and orphan and of the groups and sessions
//! they lead, kills what the death signal cannot reach if the supervisor is SIGKILLed. Once
//! start-up is over, both give back the memory it left resident and the steady state does not
//! use ([`trim`]).
//!
//! # Caveats
//! Linux only. A process that leaves its worker's process group (`setsid`, `setpgid`) after
//! the supervisor's last look at the tree, and before the supervisor is SIGKILLed, can escape
//! the lifeline (see "The lifeline" in docs/architecture.md). A lifeline that dies is reported,
//! not started again. Outbound TCP connections a worker opens and closes between two ticks are
//! counted per supervisor as unattributed, not per worker (a socket destroy message names no
//! process; see [`net::closed`]); UDP traffic is not counted.

pub mod admin;
pub mod alert;
pub mod channel;
pub mod checks;
pub mod columns;
pub mod connections;
pub mod crosscheck;
pub mod disk;
pub mod engine;
pub mod events;
pub mod history;
pub mod host;
pub mod leak;
pub mod lifecycle;
pub mod lifeline;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod orphans;
pub mod plan;
pub mod policy;
pub mod pressure;
pub mod probe;
pub mod reaper;
pub mod report;
pub mod session;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod top;
pub mod trail;
pub mod trim;

pub mod worker;
