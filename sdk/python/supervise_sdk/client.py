"""The worker's handle on its supervisor: the channel (fd 3) and the segment (fd 4)."""

import atexit
import os
import socket
import threading
import time
import tracemalloc
from typing import Callable, Optional

from . import heap, proto
from .segment import COUNTER, GAUGE, Counter, Gauge, Page, Segment, SegmentError

ENV_NAME = "SUPERVISE_NAME"
ENV_INSTANCE = "SUPERVISE_INSTANCE"
ENV_CONTROL_FD = "SUPERVISE_CONTROL_FD"
ENV_SEGMENT_FD = "SUPERVISE_SEGMENT_FD"
SDK_VERSION = "supervise_sdk 0.1.0"
HANDSHAKE_TIMEOUT_S = 10.0
# The heap is published from heartbeat() at most this often (tracemalloc's figures cost a call).
HEAP_EVERY_NS = 100_000_000

_client: Optional["Client"] = None
_client_lock = threading.Lock()


class SupervisedError(Exception):
    """The environment names a supervisor, but the SDK cannot connect to it."""


def _env_fd(var: str) -> Optional[int]:
    value = os.environ.get(var)
    if value is None:
        return None
    try:
        fd = int(value)
    except ValueError:
        fd = -1
    if fd <= 2:
        raise SupervisedError(f"{var}={value!r} is not an fd number above 2")
    try:
        os.set_inheritable(fd, False)
    except OSError:
        raise SupervisedError(f"{var}: fd {fd} is not open") from None
    return fd


class Client:
    """A connection to the supervisor; one per process family (see :meth:`from_env`)."""

    @classmethod
    def from_env(cls) -> Optional["Client"]:
        """The client of this process: connects on the first call, returns the same object after
        (in forked processes too); ``None`` when not running under supervise.

        Call it in the process supervise started, before it forks workers: the fd variables are
        removed from the environment once taken, and a process forked after it gets its own page
        of the segment by itself.
        """
        global _client
        with _client_lock:
            if _client is not None:
                return _client
            ch = _env_fd(ENV_CONTROL_FD)
            seg = _env_fd(ENV_SEGMENT_FD)
            if ch is None or seg is None:
                return None
            os.environ.pop(ENV_CONTROL_FD, None)
            os.environ.pop(ENV_SEGMENT_FD, None)
            _client = cls.connect(ch, seg)
            return _client

    @classmethod
    def connect(cls, channel_fd: int, segment_fd: int) -> "Client":
        """Connects over a given channel and segment (what :meth:`from_env` does with fds 3
        and 4)."""
        try:
            segment = Segment(segment_fd)
        except (SegmentError, OSError) as e:
            raise SupervisedError(f"supervise segment: {e}") from None
        sock = socket.socket(fileno=channel_fd)
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            sock.send(proto.encode(proto.Hello(proto.PROTO_VERSION, os.getpid(), SDK_VERSION)),
                      socket.MSG_NOSIGNAL)
            data, _, flags, _ = sock.recvmsg(proto.MAX_PACKET)
        except OSError as e:
            raise SupervisedError(f"supervise handshake: {e}") from None
        if not data:
            raise SupervisedError("supervise handshake: the supervisor closed the channel")
        if flags & socket.MSG_TRUNC:
            raise SupervisedError("supervise handshake: oversized packet")
        try:
            welcome = proto.decode_supervisor(data)
        except proto.ProtoError as e:
            raise SupervisedError(f"supervise handshake: {e}") from None
        if not isinstance(welcome, proto.Welcome):
            raise SupervisedError(f"supervise handshake: expected a welcome, got {welcome}")
        sock.settimeout(None)
        return cls(sock, segment, welcome)

    def __init__(self, sock: socket.socket, segment: Segment, welcome: proto.Welcome):
        self._sock = sock
        self._segment = segment
        self._page = segment.main_page()
        self._page_pid = os.getpid()
        self.name = welcome.name
        self.instance = welcome.instance
        ms = welcome.heartbeat_timeout_ms
        self.heartbeat_timeout: Optional[float] = None if ms is None else ms / 1000
        self._limits = welcome.limits
        self._owner = os.getpid()
        self._ready_sent = False
        # Every metric made, by (name, kind), in registration order (a forked process registers
        # them again in its own page in that order). Names are write-once in the segment, so
        # keeping the objects costs nothing more.
        self._metrics: dict = {}
        self._registry_lock = threading.Lock()
        self._heap_at = 0
        self.shutdown_event = threading.Event()
        self._deadline_ms: Optional[int] = None
        self._on_shutdown: list = []
        self._pressure: Optional[tuple] = None
        self._pressure_count = 0
        self._on_pressure: list = []
        self._wake = threading.Condition()
        self._woken = False
        self._fixed = {}
        self.requests = self._fixed_counter("requests", 64)
        self.errors = self._fixed_counter("errors", 72)
        self.in_flight = Gauge("in_flight", self._page, self._page.w + 10)
        self._fixed["in_flight"] = (self.in_flight, 10)
        self._listener = threading.Thread(target=self._listen, name="supervise-sdk", daemon=True)
        self._listener.start()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.close)
        self.heartbeat()

    def _fixed_counter(self, name: str, offset: int) -> Counter:
        c = Counter(name, self._page, self._page.w + offset // 8)
        self._fixed[name] = (c, offset // 8)
        return c

    # --- messages --------------------------------------------------------------------------

    def _send(self, msg) -> None:
        self._sock.send(proto.encode(msg), socket.MSG_NOSIGNAL)

    def ready(self) -> None:
        """Tells the supervisor the program is ready to serve. Once per program: in a forked
        process, or a second time, it does nothing (a second ``Ready`` is a protocol error)."""
        if os.getpid() != self._owner or self._ready_sent:
            return
        self._ready_sent = True
        self._send(proto.Ready())

    def status(self, text: str) -> None:
        """A short status line, shown by the supervisor (any process may send it)."""
        self._send(proto.Status(proto.clip_text(text)))

    def event(self, level: str, text: str) -> None:
        """A line for the supervisor's event log; ``level`` is debug, info, warn or error."""
        self._send(proto.Event(level, proto.clip_text(text)))

    def close(self) -> None:
        """Says goodbye (only the process that connected does, once)."""
        if os.getpid() != self._owner or self._sock.fileno() < 0:
            return
        try:
            self._send(proto.Goodbye())
        except OSError:
            pass

    # --- the segment -----------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Proof of progress: call it from the work loop. Publishes the heap too, at most every
        100 ms, while tracemalloc traces."""
        now = time.monotonic_ns()
        self._page.q[self._page.w + 3] = now
        if now - self._heap_at > HEAP_EVERY_NS and tracemalloc.is_tracing():
            self._heap_at = now
            self.publish_heap()

    def publish_heap(self) -> bool:
        """Publishes tracemalloc's current and peak traced bytes as this process's heap; False
        (and nothing published) when tracemalloc is not tracing."""
        if not tracemalloc.is_tracing():
            return False
        current, peak = heap.traced()
        self._page.set_heap(current, peak)
        return True

    def counter(self, name: str) -> Counter:
        """The counter ``name`` (created on first use; the same name gives the same one)."""
        return self._metric(name, COUNTER, Counter)

    def gauge(self, name: str) -> Gauge:
        """The gauge ``name``."""
        return self._metric(name, GAUGE, Gauge)

    def _metric(self, name: str, kind: int, cls):
        m = self._metrics.get((name, kind))
        if m is not None:
            return m
        with self._registry_lock:
            m = self._metrics.get((name, kind))
            if m is None:
                m = cls(name, self._page, self._page.register(name, kind))
                self._metrics[(name, kind)] = m
            return m

    def after_fork(self) -> None:
        """Gives this process a page of its own if it has none yet: for processes forked
        outside ``os.fork`` (uWSGI forks in C), from the server's post-fork hook. Processes
        forked with ``os.fork`` have one already; calling it again does nothing."""
        if self._page_pid != os.getpid():
            self._after_fork()

    def _after_fork(self) -> None:
        """In a forked process: its own page, and every metric object moved onto it."""
        self._page_pid = os.getpid()
        global _client_lock
        _client_lock = threading.Lock()
        self._registry_lock = threading.Lock()
        self._wake = threading.Condition()
        try:
            page = self._segment.claim()
        except (SegmentError, OSError):
            page = Page(None, 0)  # nowhere to publish: writes go to a private page
        self._page = page
        for m, word in self._fixed.values():
            m._q, m._i, m._lock = page.q, page.w + word, threading.Lock()
        for (name, kind), m in list(self._metrics.items()):
            m._q, m._i, m._lock = page.q, page.register(name, kind), threading.Lock()
        self._heap_at = 0
        heap.forget()
        self.heartbeat()

    @property
    def page_published(self) -> bool:
        """False in a forked process that found no free page: its figures go nowhere."""
        return self._page.published

    # --- what the supervisor says ----------------------------------------------------------

    def shutdown_requested(self) -> bool:
        """True once the supervisor asked the program to stop."""
        return self.shutdown_event.is_set()

    def shutdown_deadline(self) -> Optional[float]:
        """The grace the supervisor gave, in seconds, once it asked."""
        ms = self._deadline_ms
        return None if ms is None else ms / 1000

    def on_shutdown(self, callback: Callable[[float], None]) -> None:
        """Runs ``callback(deadline_seconds)`` on the SDK's listener thread when ``Shutdown``
        arrives (at once if it already has). For a server, raising its own stop signal is the
        usual answer: ``client.on_shutdown(lambda _: os.kill(os.getpid(), signal.SIGTERM))``."""
        self._on_shutdown.append(callback)
        if self.shutdown_event.is_set():
            callback(self.shutdown_deadline() or 0.0)

    def memory_pressure(self) -> Optional[tuple]:
        """The latest memory-pressure warning: ``(tree bytes, limit, how many so far)``."""
        if self._pressure is None:
            return None
        return self._pressure + (self._pressure_count,)

    def on_memory_pressure(self, callback: Callable[[int, int], None]) -> None:
        """Runs ``callback(tree_bytes, limit)`` on the listener thread for each warning: the
        place to drop caches before the limit is reached. Keep it short."""
        self._on_pressure.append(callback)

    @property
    def limits(self) -> proto.Limits:
        """The memory limits the supervisor enforces on the program's process tree."""
        return self._limits

    def wait(self, timeout: float) -> bool:
        """Blocks until ``Shutdown``, a memory-pressure warning or ``timeout`` seconds; returns
        :meth:`shutdown_requested`."""
        with self._wake:
            self._wake.wait_for(lambda: self._woken, timeout)
            self._woken = False
        return self.shutdown_requested()

    def _notify(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    def _listen(self) -> None:
        sock = self._sock
        while True:
            try:
                data, _, flags, _ = sock.recvmsg(proto.MAX_PACKET)
            except InterruptedError:
                continue
            except OSError:
                return
            if not data:
                return
            if flags & socket.MSG_TRUNC:
                continue
            try:
                msg = proto.decode_supervisor(data)
            except proto.ProtoError:
                continue
            if isinstance(msg, proto.Shutdown):
                self._deadline_ms = msg.deadline_ms
                first = not self.shutdown_event.is_set()
                self.shutdown_event.set()
                if first:
                    for f in list(self._on_shutdown):
                        _call(f, msg.deadline_ms / 1000)
                self._notify()
            elif isinstance(msg, proto.MemoryPressure):
                self._pressure = (msg.bytes, msg.limit)
                self._pressure_count += 1
                for f in list(self._on_pressure):
                    _call(f, msg.bytes, msg.limit)
                self._notify()
            elif isinstance(msg, proto.NewLimits):
                self._limits = msg.limits
            elif isinstance(msg, proto.Ping):
                try:
                    self._send(proto.Pong(msg.seq))
                except OSError:
                    return


def _call(f, *args) -> None:
    """A user callback on the listener thread: its exception must not end the listener."""
    try:
        f(*args)
    except Exception:  # noqa: BLE001 - reported, never fatal to the listener
        import traceback

        traceback.print_exc()


def current() -> Optional[Client]:
    """The process's client if one was made (here, or before a fork), without connecting."""
    return _client
