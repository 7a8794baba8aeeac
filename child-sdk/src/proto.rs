//! The wire protocol of the channel between the supervisor and a worker.
//!
//! This module is the specification: a program in any language that follows it can speak to
//! `supervise` without this crate. The Rust types below are the normative definition; the text
//! says everything needed to produce and check the same bytes by hand.
//!
//! # Transport
//! For every worker incarnation the supervisor creates
//! `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`, keeps one end and hands the other to
//! the worker as fd 3, whose number it also puts in `SUPERVISE_CONTROL_FD`. The socket has no name
//! in any namespace, so nobody else can connect to it.
//!
//! `SOCK_SEQPACKET` keeps message boundaries: **one `send` is one packet is one message**,
//! delivered whole, reliably and in order. There is no framing, length prefix or terminator.
//! - Send each message with a single `send(2)`/`sendmsg(2)` and `MSG_NOSIGNAL`, so that a peer
//!   that went away yields `EPIPE` and never a `SIGPIPE` that kills the sender. (Linux 6.x raises
//!   no `SIGPIPE` for `SOCK_SEQPACKET` anyway, a test shows; the flag costs nothing and does not
//!   depend on that.)
//! - Receive into a buffer of at least [`MAX_PACKET`] bytes, or detect truncation: `recvmsg(2)`
//!   sets `MSG_TRUNC` in `msg_flags` when a packet did not fit. A truncated packet is an oversized
//!   packet, never a message (the kernel has already dropped the rest of it).
//! - A read of 0 bytes means the peer closed its end. A zero-length packet reads the same, which
//!   is why no message encodes to zero bytes and none is ever sent.
//! - No ancillary data is part of the protocol. File descriptors sent with `SCM_RIGHTS` are closed
//!   by the kernel when the receiver passes no control buffer, as [`recv`] does.
//! - The supervisor may ask the kernel for each packet's sender (`SO_PASSCRED`) and treats a
//!   packet from outside the worker's process tree as malformed.
//!
//! # Encoding
//! Each packet holds exactly one message encoded with [postcard] 1.x (its stable wire format;
//! plain, no COBS, no CRC), and no byte after it. The child sends [`ChildMsg`], the supervisor
//! sends [`SupervisorMsg`]. For these types postcard needs only these rules:
//! - **Unsigned integers** (`u16`, `u32`, `u64`) are varints (unsigned LEB128): 7 bits per byte,
//!   least significant group first, the high bit `0x80` set on every byte but the last. At most 3,
//!   5 and 10 bytes; the last byte of a varint that long may not carry bits beyond the type's
//!   width. `0` is `00`, `127` is `7f`, `128` is `80 01`, `300` is `ac 02`, `4242` is `92 21`.
//!   Senders emit the shortest form. Postcard's decoder also accepts longer forms (`81 00` for 1)
//!   up to the maximum length; a decoder in another language should too.
//! - **Strings** are a varint byte length followed by that many bytes of UTF-8, no terminator.
//!   Invalid UTF-8 is malformed.
//! - **`Option<T>`** is `00` for none, or `01` followed by the `T`; any other byte is malformed.
//! - **Structs** are their fields in declaration order, with no names and no count.
//! - **Enums** are the variant's index as a `u32` varint (the *tag*), followed by its fields in
//!   declaration order; a variant without fields is its tag alone, a newtype variant
//!   (`Limits(Limits)`) is its tag followed by the inner value. An unknown tag is malformed.
//!
//! Child to supervisor, [`ChildMsg`]:
//!
//! | tag | message | fields, in order |
//! |---|---|---|
//! | 0 | `Hello` | `proto: u16`, `pid: u32`, `sdk_version: string` |
//! | 1 | `Ready` | |
//! | 2 | `Status` | `text: string` |
//! | 3 | `Event` | `level: Level`, `text: string` |
//! | 4 | `Goodbye` | |
//! | 5 | `Pong` | `seq: u64` |
//!
//! Supervisor to child, [`SupervisorMsg`]:
//!
//! | tag | message | fields, in order |
//! |---|---|---|
//! | 0 | `Welcome` | `name: string`, `instance: u32`, `heartbeat_timeout_ms: Option<u64>`, `limits: Limits` |
//! | 1 | `Ping` | `seq: u64` |
//! | 2 | `Shutdown` | `deadline_ms: u64` |
//! | 3 | `Limits` | `Limits` |
//! | 4 | `MemoryPressure` | `bytes: u64`, `limit: u64` |
//!
//! Shared types: `Level` is an enum `Debug` 0, `Info` 1, `Warn` 2, `Error` 3; `Measure` is an enum
//! `Rss` 0, `Pss` 1; `Limits` is a struct `memory_max: Option<u64>`,
//! `memory_warn_at: Option<u64>`, `measure: Measure`.
//!
//! ## Examples
//! Checked against the encoder by this module's tests.
//!
//! `Hello { proto: 1, pid: 4242, sdk_version: "0.1.0" }` encodes to
//! `00 01 92 21 05 30 2e 31 2e 30`:
//! tag `00` (Hello), proto `01`, pid `92 21` (4242 = 0x12 + 0x21 × 128), string length `05`,
//! then `0.1.0` in ASCII.
//!
//! `Welcome { name: "api", instance: 1, heartbeat_timeout_ms: Some(5000), limits: Limits {
//! memory_max: Some(536870912), memory_warn_at: None, measure: Pss } }` encodes to
//! `00 03 61 70 69 01 01 88 27 01 80 80 80 80 02 00 01`:
//! tag `00` (Welcome), name `03 61 70 69` ("api"), instance `01`, heartbeat timeout `01` (some)
//! `88 27` (5000), memory max `01` (some) `80 80 80 80 02` (512 MiB = 2 × 128⁴),
//! memory warning `00` (none), measure `01` (Pss).
//!
//! `Event { level: Warn, text: "low disk" }` encodes to `03 02 08 6c 6f 77 20 64 69 73 6b`, and
//! `Ping { seq: 300 }` to `01 ac 02`.
//!
//! # Limits
//! - A packet is at most [`MAX_PACKET`] (65536) bytes. A receiver rejects a longer one before
//!   parsing it.
//! - Every string (status and event text, names, the SDK version) is at most [`MAX_TEXT`] (4096)
//!   bytes of UTF-8: bytes, not characters. [`clip_text`] cuts a string to fit at a character
//!   boundary.
//! - So the longest valid message of this version is [`MAX_MESSAGE_LEN`] (4138) bytes, a `Welcome`
//!   with a name of 4096 bytes and every number at its maximum. [`MAX_PACKET`] is deliberately
//!   larger, so a later version can grow messages without changing what a receiver accepts.
//!
//! # Version
//! This is version [`PROTO_VERSION`] (1).
//! - Two facts are frozen for all versions: `Hello` is tag 0 of the child's messages, and its
//!   first field is `proto: u16`. Any supervisor can therefore read any child's version.
//! - The version a child puts in `Hello` is the version of the whole conversation. A supervisor
//!   that speaks it answers with `Welcome` in that version. One that does not never sends
//!   `Welcome`: it counts a protocol error (see below) and may close the channel. A child that
//!   gets no `Welcome` stops using the channel and runs on, supervised from `/proc` alone.
//!   Today's supervisor speaks exactly version 1.
//! - Any change to an encoding is a new version: a field added, removed, reordered or retyped, a
//!   variant added anywhere (including `Level` and `Measure`), a tag reused. Old peers reject
//!   what they do not know, so there is no "compatible" extension within a version.
//!
//! # Order
//! Child to supervisor:
//! 1. `Hello` is the first packet, and is sent once. Its `pid` must be the sender's pid.
//! 2. After it, in any order and without waiting for `Welcome` (packets are handled in order):
//!    `Status` (replaces the previous status text), `Event` (one line for the event log),
//!    `Pong { seq }` (answers `Ping { seq }` with the same `seq`, as soon as it can), and
//!    `Ready` at most once (the worker serves; replicas roll on it).
//! 3. `Goodbye` is last: the worker is leaving on purpose. Nothing may follow it.
//!
//! Supervisor to child:
//! 1. `Welcome` answers `Hello`. It is the first packet the supervisor sends, and it is sent once.
//! 2. After it, any number of times: `Ping` (round-trip time and channel liveness; the heartbeat
//!    is in the shared segment, not here), `Limits` (replaces the limits of `Welcome`, e.g. after a
//!    reload), `MemoryPressure { bytes, limit }` (the tree's usage as the supervisor measures it
//!    has reached `memory_warn_at`; `limit` is `memory_max`, or `memory_warn_at` when there is no
//!    maximum), and `Shutdown { deadline_ms }`: stop within `deadline_ms` milliseconds of when it
//!    was sent, after which the process group gets `SIGKILL` (0: no grace). A child must tolerate
//!    a repeated `Shutdown`.
//!
//! # Malformed input
//! Each side treats what it receives as hostile. The supervisor counts every packet that is
//! oversized or truncated, fails to decode (cut short, an unknown tag, a bad option byte or
//! varint, invalid UTF-8), has bytes after a complete message, carries a string over [`MAX_TEXT`],
//! breaks the order above, comes from outside the worker's tree, or arrives faster than a rate
//! budget. Each counts as a protocol error and the first few become `protocol_error` events; once
//! the count reaches a small budget (eight today) the supervisor closes its end of the channel and
//! marks the worker `protocol_errors`. The worker keeps running, watched from `/proc` and the
//! segment, and is stopped by signal. Never a panic, never an allocation larger than the packet.
//! The decoders here do the per-packet checks; the counting, order and rate live in the
//! supervisor. A child ignores a packet from the supervisor that it cannot decode.
//!
//! # In Rust
//! [`encode`], [`encode_vec`], [`decode_child`] and [`decode_supervisor`] work on bytes; [`send`]
//! and [`recv`] are small blocking helpers over a raw fd for the SDK's client and for tests. The
//! supervisor drives its end with its own async wrapper around the same encode and decode.
//!
//! ```
//! use child_sdk::proto::{self, ChildMsg, MAX_MESSAGE_LEN};
//!
//! let mut buf = [0u8; MAX_MESSAGE_LEN];
//! let packet = proto::encode(&ChildMsg::Pong { seq: 300 }, &mut buf)?;
//! assert_eq!(packet, [0x05, 0xac, 0x02]);
//! assert_eq!(proto::decode_child(packet)?, ChildMsg::Pong { seq: 300 });
//! assert_eq!(proto::decode_child(&[0x05, 0xac]), Err(proto::ProtoError::Malformed(
//!     "cut short (a field or length runs past the end)".into()
//! )));
//! # Ok::<(), proto::ProtoError>(())
//! ```
//!
//! # Caveats
//! - Postcard decodes a string only after checking that the packet holds all the bytes its length
//!   prefix claims, so a huge prefix fails as "cut short" without allocating; a test checks
//!   this under a small address-space limit. None of these types is recursive, so no packet can
//!   make the decoder recurse deeply.
//! - Strings may hold any valid UTF-8, control characters included: escape them before display.
//!
//! [postcard]: https://postcard.jamesmunns.com/wire-format

use std::fmt;
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod socket;

pub use socket::{recv, send, send_packet};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The protocol version this crate speaks, sent in [`ChildMsg::Hello`].
pub const PROTO_VERSION: u16 = 1;
/// The longest packet a receiver accepts, in bytes.
pub const MAX_PACKET: usize = 64 * 1024;
/// The longest string in any message (status or event text, a name, a version), in UTF-8 bytes.
pub const MAX_TEXT: usize = 4096;
/// The longest encoding of any valid message of this version; a buffer this long holds any of them.
pub const MAX_MESSAGE_LEN: usize = 4138;
const _: () = assert!(
    MAX_MESSAGE_LEN < MAX_PACKET,
    "a valid message must fit a packet"
);

/// A message from the worker to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildMsg {
    /// The first packet: who is speaking, in which protocol version.
    Hello {
        /// The protocol version the child speaks ([`PROTO_VERSION`]).
        proto: u16,
        /// The sender's pid, checked against the kernel's word.
        pid: u32,
        /// The SDK's name and version, for the record.
        sdk_version: String,
    },
    /// The worker is ready to serve; sent at most once.
    Ready,
    /// Replaces the worker's free-form status line.
    Status {
        /// The status text.
        text: String,
    },
    /// One line for the event log.
    Event {
        /// Its severity.
        level: Level,
        /// The text.
        text: String,
    },
    /// The last packet: the worker is exiting on purpose.
    Goodbye,
    /// The answer to [`SupervisorMsg::Ping`], with its `seq`.
    Pong {
        /// The `seq` of the ping answered.
        seq: u64,
    },
}

/// The severity of a [`ChildMsg::Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something to look at.
    Warn,
    /// Something failed.
    Error,
}

/// A message from the supervisor to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupervisorMsg {
    /// The answer to [`ChildMsg::Hello`]: the worker's identity and limits.
    Welcome {
        /// The program's name.
        name: String,
        /// The replica number, `0..replicas`.
        instance: u32,
        /// How stale the segment's heartbeat may get before the worker counts as hung, if watched.
        heartbeat_timeout_ms: Option<u64>,
        /// The memory limits in force.
        limits: Limits,
    },
    /// Asks for a [`ChildMsg::Pong`] with the same `seq`.
    Ping {
        /// Chosen by the supervisor.
        seq: u64,
    },
    /// Stop within `deadline_ms` milliseconds of when this was sent; then `SIGKILL` (0: no grace).
    Shutdown {
        /// The grace period, in milliseconds.
        deadline_ms: u64,
    },
    /// New limits, replacing those of the welcome.
    Limits(Limits),
    /// The tree's memory reached the warning mark.
    MemoryPressure {
        /// The usage measured, in bytes (as [`Limits::measure`] says).
        bytes: u64,
        /// `memory_max`, or `memory_warn_at` when no maximum is set, in bytes.
        limit: u64,
    },
}

/// The memory limits the supervisor enforces on the worker's whole process tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The worker is restarted past this many bytes.
    pub memory_max: Option<u64>,
    /// [`SupervisorMsg::MemoryPressure`] is sent from this many bytes on.
    pub memory_warn_at: Option<u64>,
    /// How the bytes are counted.
    pub measure: Measure,
}

/// How memory is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Measure {
    /// Resident set size: cheap, counts shared pages in full for every process.
    #[default]
    Rss,
    /// Proportional set size: shared pages split among their users; costs a page-table walk.
    Pss,
}

/// Why bytes are not a valid message, or a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// The packet, or the encoding, is longer than [`MAX_PACKET`].
    TooLarge,
    /// Bytes follow a complete message.
    Trailing,
    /// A string is longer than [`MAX_TEXT`] bytes.
    TextTooLong,
    /// The encoding does not fit the caller's buffer (shorter than [`MAX_PACKET`]).
    BufferTooSmall,
    /// The bytes are not a message: cut short, an unknown tag, a bad varint, invalid UTF-8...
    Malformed(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::TooLarge => write!(f, "packet longer than {MAX_PACKET} bytes"),
            ProtoError::Trailing => f.write_str("bytes after a complete message"),
            ProtoError::TextTooLong => write!(f, "text longer than {MAX_TEXT} bytes"),
            ProtoError::BufferTooSmall => f.write_str("the message does not fit the buffer"),
            ProtoError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for io::Error {
    fn from(e: ProtoError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A message of this protocol: [`ChildMsg`] or [`SupervisorMsg`] (sealed).
///
/// [`encode`] takes only these, rather than any `Serialize`, so that what goes on the wire is
/// always checked against the limits a receiver enforces.
pub trait Message: Serialize + DeserializeOwned + fmt::Debug + sealed::Sealed {
    /// Checks the limits of a valid message: every string at most [`MAX_TEXT`] bytes.
    ///
    /// # Errors
    /// [`ProtoError::TextTooLong`].
    fn check(&self) -> Result<(), ProtoError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ChildMsg {}
    impl Sealed for super::SupervisorMsg {}
}

impl Message for ChildMsg {
    fn check(&self) -> Result<(), ProtoError> {
        match self {
            ChildMsg::Hello { sdk_version: s, .. }
            | ChildMsg::Status { text: s }
            | ChildMsg::Event { text: s, .. } => check_text(s),
            ChildMsg::Ready | ChildMsg::Goodbye | ChildMsg::Pong { .. } => Ok(()),
        }
    }
}

impl Message for SupervisorMsg {
    fn check(&self) -> Result<(), ProtoError> {
        match self {
            SupervisorMsg::Welcome { name, .. } => check_text(name),
            SupervisorMsg::Ping { .. }
            | SupervisorMsg::Shutdown { .. }
            | SupervisorMsg::Limits(_)
            | SupervisorMsg::MemoryPressure { .. } => Ok(()),
        }
    }
}

fn check_text(s: &str) -> Result<(), ProtoError> {
    if s.len() > MAX_TEXT {
        Err(ProtoError::TextTooLong)
    } else {
        Ok(())
    }
}

/// The longest prefix of `text` that is at most [`MAX_TEXT`] bytes and ends on a character
/// boundary: what a sender does with text that may be too long.
#[must_use]
pub fn clip_text(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Encodes `msg` into the front of `buf` and returns the part written: one packet. No allocation.
///
/// A buffer of [`MAX_MESSAGE_LEN`] bytes holds any valid message.
///
/// # Errors
/// [`ProtoError::TextTooLong`] if a string is over [`MAX_TEXT`]; [`ProtoError::TooLarge`] if the
/// encoding would exceed [`MAX_PACKET`]; [`ProtoError::BufferTooSmall`] if it would fit a packet
/// but not `buf`.
pub fn encode<'b, M: Message>(msg: &M, buf: &'b mut [u8]) -> Result<&'b mut [u8], ProtoError> {
    msg.check()?;
    let room = buf.len().min(MAX_PACKET);
    match postcard::to_slice(msg, &mut buf[..room]) {
        Ok(packet) => Ok(packet),
        Err(postcard::Error::SerializeBufferFull) if room == MAX_PACKET => {
            Err(ProtoError::TooLarge)
        }
        Err(postcard::Error::SerializeBufferFull) => Err(ProtoError::BufferTooSmall),
        Err(e) => Err(ProtoError::Malformed(e.to_string())),
    }
}

/// Encodes `msg` into a new vector: one packet.
///
/// # Errors
/// [`ProtoError::TextTooLong`] if a string is over [`MAX_TEXT`]; [`ProtoError::TooLarge`] if the
/// encoding exceeds [`MAX_PACKET`].
pub fn encode_vec<M: Message>(msg: &M) -> Result<Vec<u8>, ProtoError> {
    // Checked first, so the vector's growth is bounded by MAX_MESSAGE_LEN.
    msg.check()?;
    let packet = postcard::to_stdvec(msg).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if packet.len() > MAX_PACKET {
        return Err(ProtoError::TooLarge);
    }
    Ok(packet)
}

/// Decodes one packet from a worker. The bytes are hostile: see the module's "Malformed input".
///
/// # Errors
/// Any [`ProtoError`] but `BufferTooSmall`.
pub fn decode_child(packet: &[u8]) -> Result<ChildMsg, ProtoError> {
    decode(packet)
}

/// Decodes one packet from the supervisor, with the same checks as [`decode_child`].
///
/// # Errors
/// Any [`ProtoError`] but `BufferTooSmall`.
pub fn decode_supervisor(packet: &[u8]) -> Result<SupervisorMsg, ProtoError> {
    decode(packet)
}

fn decode<M: Message>(packet: &[u8]) -> Result<M, ProtoError> {
    if packet.len() > MAX_PACKET {
        return Err(ProtoError::TooLarge);
    }
    // Postcard checks every length prefix against the bytes that remain before it copies, so
    // the allocations below are bounded by the packet's size (see the module's caveats).
    let (msg, rest) = postcard::take_from_bytes::<M>(packet).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(ProtoError::Trailing);
    }
    msg.check()?;
    Ok(msg)
}

/// Names what postcard found wrong in words a log reader can act on.
fn malformed(e: postcard::Error) -> ProtoError {
    let why = match e {
        postcard::Error::DeserializeUnexpectedEnd => {
            "cut short (a field or length runs past the end)"
        }
        postcard::Error::DeserializeBadVarint => "bad varint",
        postcard::Error::DeserializeBadOption => "option byte neither 0 nor 1",
        postcard::Error::DeserializeBadUtf8 => "string is not UTF-8",
        // For these types serde's only custom error is derive's "invalid variant index".
        postcard::Error::DeserializeBadEnum | postcard::Error::SerdeDeCustom => "unknown tag",
        other => return ProtoError::Malformed(other.to_string()),
    };
    ProtoError::Malformed(why.to_owned())
}
