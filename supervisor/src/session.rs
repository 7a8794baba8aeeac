//! The supervisor's side of the protocol with one worker incarnation: what the worker has said,
//! whether it said it in order, and how much misbehaviour it has left before its channel is
//! closed. Pure: packets and time come in, replies and events go out, so every rule is tested
//! without processes.

use std::time::{Duration, Instant};

use child_sdk::proto::{self, ChildMsg, Level, Limits, SupervisorMsg, PROTO_VERSION};

use crate::channel::Packet;
use crate::events::Kind;

/// Protocol errors tolerated before the channel is closed.
pub const ERROR_BUDGET: u32 = 8;
/// Packets per second past which a worker is flooding.
pub const MAX_RATE: u32 = 2000;
/// Protocol error events emitted per incarnation; later errors are only counted.
const MAX_ERROR_EVENTS: u32 = 3;

/// What the engine must do after a packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reply(SupervisorMsg),
    Event(Kind),
    /// Stop listening: drop our end of the channel. The worker stays supervised from /proc.
    Close,
}

/// What the supervisor tells a worker when it says hello.
#[derive(Debug, Clone, PartialEq)]
pub struct Welcome {
    pub name: String,
    pub instance: u32,
    pub heartbeat_timeout: Option<Duration>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    Greeted,
    Leaving,
    Closed,
}

/// Protocol state of one worker incarnation.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    welcome: Welcome,
    /// The pid the worker claimed and the kernel confirmed.
    pub pid: Option<i32>,
    pub ready: bool,
    pub status: Option<String>,
    pub errors: u32,
    window: (Instant, u32),
}

impl Session {
    #[must_use]
    pub fn new(welcome: Welcome, now: Instant) -> Self {
        Self {
            phase: Phase::AwaitHello,
            welcome,
            pid: None,
            ready: false,
            status: None,
            errors: 0,
            window: (now, 0),
        }
    }

    /// True once the worker said hello: it speaks the protocol (and gets `Shutdown`).
    #[must_use]
    pub fn speaks(&self) -> bool {
        matches!(self.phase, Phase::Greeted | Phase::Leaving)
    }

    #[must_use]
    pub fn closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Handles one packet. `in_tree` tells whether a pid belongs to the worker's process tree.
    pub fn on_packet(
        &mut self,
        packet: &Packet<'_>,
        in_tree: impl Fn(i32) -> bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        // Flood control: count packets per one-second window.
        if now.duration_since(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        if self.window.1 > MAX_RATE {
            // A flood costs the supervisor a syscall per packet: no budget for that, the channel
            // closes at once.
            self.errors = self.errors.max(ERROR_BUDGET - 1);
            self.error(&mut out, format!("more than {MAX_RATE} packets per second"));
            return out;
        }
        let (bytes, sender) = match packet {
            Packet::Closed => {
                self.phase = Phase::Closed;
                return out;
            }
            Packet::Oversized => {
                self.error(&mut out, "packet longer than any valid message".to_owned());
                return out;
            }
            Packet::Data { bytes, sender } => (*bytes, *sender),
        };
        match sender {
            Some(pid) if in_tree(pid) => {}
            Some(pid) => {
                self.error(
                    &mut out,
                    format!("packet from pid {pid}, which is not in the worker's tree"),
                );
                return out;
            }
            None => {
                self.error(&mut out, "packet without sender credentials".to_owned());
                return out;
            }
        }
        let msg = match proto::decode_child(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.error(&mut out, format!("undecodable packet: {e}"));
                return out;
            }
        };
        match (self.phase, msg) {
            (Phase::AwaitHello, ChildMsg::Hello { proto: v, pid, .. }) => {
                if v != PROTO_VERSION {
                    self.error(
                        &mut out,
                        format!("protocol version {v}, this supervisor speaks {PROTO_VERSION}"),
                    );
                    return out;
                }
                let claimed = i32::try_from(pid).unwrap_or(-1);
                if sender != Some(claimed) {
                    out.push(Action::Event(Kind::Finding {
                        kind: "implausible_report",
                        detail: "hello claims a pid that did not send it".to_owned(),
                        numbers: [
                            ("claimed_pid", u64::from(pid)),
                            (
                                "sender_pid",
                                sender.and_then(|p| u64::try_from(p).ok()).unwrap_or(0),
                            ),
                        ]
                        .into(),
                    }));
                    self.error(
                        &mut out,
                        "hello with a pid that is not the sender's".to_owned(),
                    );
                    return out;
                }
                self.pid = Some(claimed);
                self.phase = Phase::Greeted;
                let w = &self.welcome;
                out.push(Action::Reply(SupervisorMsg::Welcome {
                    name: w.name.clone(),
                    instance: w.instance,
                    heartbeat_timeout_ms: w
                        .heartbeat_timeout
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    limits: w.limits.clone(),
                }));
            }
            (Phase::AwaitHello, other) => {
                self.error(&mut out, format!("{} before hello", name_of(&other)));
            }
            (Phase::Greeted, ChildMsg::Ready) if !self.ready => {
                self.ready = true;
                out.push(Action::Event(Kind::Ready { by: "sdk" }));
            }
            (Phase::Greeted, ChildMsg::Status { text }) => self.status = Some(text),
            (Phase::Greeted, ChildMsg::Event { level, text }) => {
                out.push(Action::Event(Kind::WorkerEvent {
                    level: level_str(level),
                    text,
                }))
            }
            (Phase::Greeted, ChildMsg::Pong { .. }) => {}
            (Phase::Greeted, ChildMsg::Goodbye) => self.phase = Phase::Leaving,
            (_, other) => self.error(&mut out, format!("unexpected {}", name_of(&other))),
        }
        out
    }

    fn error(&mut self, out: &mut Vec<Action>, what: String) {
        self.errors += 1;
        let closing = self.errors >= ERROR_BUDGET;
        if self.errors <= MAX_ERROR_EVENTS || closing {
            out.push(Action::Event(Kind::ProtocolError {
                error: what,
                count: self.errors,
                closed: closing,
            }));
        }
        if closing {
            self.phase = Phase::Closed;
            out.push(Action::Close);
        }
    }
}

fn name_of(m: &ChildMsg) -> &'static str {
    match m {
        ChildMsg::Hello { .. } => "hello",
        ChildMsg::Ready => "ready",
        ChildMsg::Status { .. } => "status",
        ChildMsg::Event { .. } => "event",
        ChildMsg::Pong { .. } => "pong",
        ChildMsg::Goodbye => "goodbye",
    }
}

fn level_str(l: Level) -> &'static str {
    match l {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

#[cfg(test)]
mod tests;
