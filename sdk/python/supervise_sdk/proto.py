"""The channel's wire format: postcard-encoded messages, one per ``SOCK_SEQPACKET`` packet.

This follows the specification in child-sdk's ``src/proto.rs`` (``cargo doc -p child-sdk``):
unsigned integers are LEB128 varints, strings a varint byte length then UTF-8, an option ``00``
or ``01`` then the value, a struct its fields in order, an enum its variant index (the tag) then
its fields. ``child-sdk/spec/examples.json`` holds the byte examples both implementations check.

Everything received is hostile: :func:`decode_supervisor` rejects what the Rust decoder
rejects, with the same reasons, and never allocates more than the packet holds.
"""

from dataclasses import dataclass
from typing import Optional, Union

PROTO_VERSION = 1
MAX_PACKET = 64 * 1024
MAX_TEXT = 4096
MAX_MESSAGE_LEN = 4138

_MAX_BYTES = {16: 3, 32: 5, 64: 10}


class ProtoError(ValueError):
    """Bytes that are not a message, or a message that breaks a limit."""


# --- messages -------------------------------------------------------------------------------

LEVELS = ("debug", "info", "warn", "error")
MEASURES = ("rss", "pss")


@dataclass(frozen=True)
class Hello:
    proto: int
    pid: int
    sdk_version: str


@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class Status:
    text: str


@dataclass(frozen=True)
class Event:
    level: str  # one of LEVELS
    text: str


@dataclass(frozen=True)
class Goodbye:
    pass


@dataclass(frozen=True)
class Pong:
    seq: int


@dataclass(frozen=True)
class Limits:
    memory_max: Optional[int] = None
    memory_warn_at: Optional[int] = None
    measure: str = "rss"  # one of MEASURES


@dataclass(frozen=True)
class Welcome:
    name: str
    instance: int
    heartbeat_timeout_ms: Optional[int]
    limits: Limits


@dataclass(frozen=True)
class Ping:
    seq: int


@dataclass(frozen=True)
class Shutdown:
    deadline_ms: int


@dataclass(frozen=True)
class NewLimits:
    """``Limits(Limits)``: new limits, replacing those of the welcome."""

    limits: Limits


@dataclass(frozen=True)
class MemoryPressure:
    bytes: int
    limit: int


ChildMsg = Union[Hello, Ready, Status, Event, Goodbye, Pong]
SupervisorMsg = Union[Welcome, Ping, Shutdown, NewLimits, MemoryPressure]

_CHILD_TAGS = {Hello: 0, Ready: 1, Status: 2, Event: 3, Goodbye: 4, Pong: 5}
_SUPERVISOR_TAGS = {Welcome: 0, Ping: 1, Shutdown: 2, NewLimits: 3, MemoryPressure: 4}


# --- encoding -------------------------------------------------------------------------------


def varint(value: int, bits: int = 64) -> bytes:
    """``value`` as the shortest LEB128 varint; a value outside ``0..2**bits`` is refused."""
    if value < 0 or value >= 1 << bits:
        raise ProtoError(f"{value} does not fit a u{bits}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value == 0:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _text(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > MAX_TEXT:
        raise ProtoError(f"text longer than {MAX_TEXT} bytes")
    return varint(len(b)) + b


def _option(v: Optional[int]) -> bytes:
    return b"\x00" if v is None else b"\x01" + varint(v)


def _limits(l: Limits) -> bytes:
    return _option(l.memory_max) + _option(l.memory_warn_at) + varint(MEASURES.index(l.measure), 32)


def clip_text(text: str) -> str:
    """The longest prefix of ``text`` that is at most MAX_TEXT bytes of UTF-8."""
    b = text.encode("utf-8")
    if len(b) <= MAX_TEXT:
        return text
    return b[:MAX_TEXT].decode("utf-8", errors="ignore")


def encode(msg) -> bytes:
    """One packet for ``msg`` (a child's or a supervisor's message)."""
    t = type(msg)
    if t in _CHILD_TAGS:
        out = varint(_CHILD_TAGS[t], 32)
    elif t in _SUPERVISOR_TAGS:
        out = varint(_SUPERVISOR_TAGS[t], 32)
    else:
        raise ProtoError(f"not a message: {msg!r}")
    if t is Hello:
        out += varint(msg.proto, 16) + varint(msg.pid, 32) + _text(msg.sdk_version)
    elif t is Status:
        out += _text(msg.text)
    elif t is Event:
        if msg.level not in LEVELS:
            raise ProtoError(f"unknown level {msg.level!r}")
        out += varint(LEVELS.index(msg.level), 32) + _text(msg.text)
    elif t in (Pong, Ping):
        out += varint(msg.seq)
    elif t is Welcome:
        out += (
            _text(msg.name)
            + varint(msg.instance, 32)
            + _option(msg.heartbeat_timeout_ms)
            + _limits(msg.limits)
        )
    elif t is Shutdown:
        out += varint(msg.deadline_ms)
    elif t is NewLimits:
        out += _limits(msg.limits)
    elif t is MemoryPressure:
        out += varint(msg.bytes) + varint(msg.limit)
    if len(out) > MAX_PACKET:
        raise ProtoError(f"packet longer than {MAX_PACKET} bytes")
    return out


# --- decoding -------------------------------------------------------------------------------

CUT_SHORT = "cut short (a field or length runs past the end)"


class _Reader:
    __slots__ = ("buf", "at")

    def __init__(self, buf: bytes):
        self.buf = buf
        self.at = 0

    def varint(self, bits: int) -> int:
        value = 0
        for i in range(_MAX_BYTES[bits]):
            if self.at >= len(self.buf):
                raise ProtoError(CUT_SHORT)
            b = self.buf[self.at]
            self.at += 1
            value |= (b & 0x7F) << (7 * i)
            if b & 0x80 == 0:
                # The last byte of a maximal varint may not carry bits beyond the type.
                if value >= 1 << bits:
                    raise ProtoError("bad varint")
                return value
        raise ProtoError("bad varint")

    def text(self) -> str:
        n = self.varint(64)
        if n > len(self.buf) - self.at:
            raise ProtoError(CUT_SHORT)
        raw = self.buf[self.at : self.at + n]
        self.at += n
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtoError("string is not UTF-8") from None
        if n > MAX_TEXT:
            raise ProtoError(f"text longer than {MAX_TEXT} bytes")
        return s

    def option(self) -> Optional[int]:
        if self.at >= len(self.buf):
            raise ProtoError(CUT_SHORT)
        b = self.buf[self.at]
        self.at += 1
        if b == 0:
            return None
        if b == 1:
            return self.varint(64)
        raise ProtoError("option byte neither 0 nor 1")

    def index(self, names) -> str:
        i = self.varint(32)
        if i >= len(names):
            raise ProtoError("unknown tag")
        return names[i]

    def limits(self) -> Limits:
        return Limits(self.option(), self.option(), self.index(MEASURES))


def _finish(r: _Reader, msg):
    if r.at != len(r.buf):
        raise ProtoError("bytes after a complete message")
    return msg


def _check_size(packet: bytes):
    if len(packet) > MAX_PACKET:
        raise ProtoError(f"packet longer than {MAX_PACKET} bytes")


def decode_supervisor(packet: bytes) -> SupervisorMsg:
    """Decodes one packet from the supervisor; :class:`ProtoError` if it is not a message."""
    _check_size(packet)
    r = _Reader(bytes(packet))
    tag = r.varint(32)
    if tag == 0:
        msg = Welcome(r.text(), r.varint(32), r.option(), r.limits())
    elif tag == 1:
        msg = Ping(r.varint(64))
    elif tag == 2:
        msg = Shutdown(r.varint(64))
    elif tag == 3:
        msg = NewLimits(r.limits())
    elif tag == 4:
        msg = MemoryPressure(r.varint(64), r.varint(64))
    else:
        raise ProtoError("unknown tag")
    return _finish(r, msg)


def decode_child(packet: bytes) -> ChildMsg:
    """Decodes one packet from a child (for tests and tools), with the supervisor's checks."""
    _check_size(packet)
    r = _Reader(bytes(packet))
    tag = r.varint(32)
    if tag == 0:
        msg = Hello(r.varint(16), r.varint(32), r.text())
    elif tag == 1:
        msg = Ready()
    elif tag == 2:
        msg = Status(r.text())
    elif tag == 3:
        msg = Event(r.index(LEVELS), r.text())
    elif tag == 4:
        msg = Goodbye()
    elif tag == 5:
        msg = Pong(r.varint(64))
    else:
        raise ProtoError("unknown tag")
    return _finish(r, msg)
