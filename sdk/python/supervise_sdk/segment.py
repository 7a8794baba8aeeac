"""The shared-memory segment (fd 4): live numbers written with plain stores, read by supervise.

This follows the specification in child-sdk's ``src/segment.rs`` (layout version 2): a main page
written by the process that attached first, a directory, and 1024 process pages, one per forked
process. Every value is a naturally aligned 8-byte word stored through a native-format
``memoryview``, which CPython copies with one aligned 8-byte store (``memcpy`` of a constant
size), so the supervisor never sees half a value.

Within a process, a lock per metric makes ``inc()`` and ``add()`` exact across threads (CPython's
``+=`` on a shared word is a read and a write). Across processes nothing is shared: each
process writes its own page.
"""

import fcntl
import os
import stat
import threading
import time
import mmap
from typing import Optional

MAGIC = 0x3147455356505553  # b"SUPVSEG1", little-endian
VERSION = 2
PAGE = 4096
PROCESS_PAGES = 1024
DIRECTORY = PAGE
FILE_SIZE = PAGE * (2 + PROCESS_PAGES)
NAME_MAX = 48
CAPACITY = 61
FLAG_HEAP = 1
COUNTER = 1
GAUGE = 2
U64 = (1 << 64) - 1
CLAIM_PATIENCE_S = 1.0

# Word offsets (in u64 words) within a page.
_W_HEARTBEAT = 3
_W_HEAP = 4  # bytes, peak, allocations, deallocations
_W_REQUESTS = 8
_W_ERRORS = 9
_W_IN_FLIGHT = 10
_W_SEQ = 16
# u32 offsets within a page.
_D_WRITER_PID = 4
_D_FLAGS = 5
_D_COUNT = 34


class SegmentError(Exception):
    """The segment cannot be attached, or a metric cannot be registered."""


def process_page_offset(index: int) -> int:
    """Where process page ``index`` starts in the file."""
    return PAGE * (2 + index)


class Segment:
    """The mapped file. ``fd`` stays open (close-on-exec): forked processes lock it to claim a
    page."""

    def __init__(self, fd: int):
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError:
            seals = 0
        if not seals & fcntl.F_SEAL_SHRINK:
            raise SegmentError("segment fd is not a memfd sealed against shrinking")
        size = os.fstat(fd).st_size
        if size < FILE_SIZE:
            raise SegmentError(f"segment file is {size} bytes, need {FILE_SIZE}")
        self.fd = fd
        self.map = mmap.mmap(fd, FILE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(self.map)
        self.b = view
        self.q = view.cast("Q")
        self.d = view.cast("I")
        if self.q[0] != MAGIC:
            raise SegmentError(f"segment magic is {self.q[0]:#018x}, not {MAGIC:#018x}")
        if self.d[2] != VERSION:
            raise SegmentError(
                f"segment layout version is {self.d[2]}, this SDK speaks {VERSION}"
            )
        if self.d[3] != PAGE:
            raise SegmentError(f"segment size field is {self.d[3]}, not {PAGE}")

    def main_page(self) -> "Page":
        """The main page, with this process's pid stored in it."""
        page = Page(self, 0)
        self.d[_D_WRITER_PID] = os.getpid()
        return page

    def claim(self) -> "Page":
        """Claims a process page for this process (the spec's "Forked processes")."""
        deadline = time.monotonic() + CLAIM_PATIENCE_S
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, DIRECTORY, os.SEEK_SET)
                break
            except OSError as e:
                if e.errno not in (11, 13) or time.monotonic() >= deadline:  # EAGAIN, EACCES
                    raise SegmentError(f"cannot take the claim lock: {e}") from None
                time.sleep(0.0002)
        try:
            pid = os.getpid()
            base = DIRECTORY // 4
            for i in range(PROCESS_PAGES):
                if self.d[base + i] == 0:
                    off = process_page_offset(i)
                    self.b[off : off + PAGE] = bytes(PAGE)
                    self.q[off // 8] = MAGIC
                    self.d[off // 4 + 2] = VERSION
                    self.d[off // 4 + 3] = PAGE
                    self.d[off // 4 + _D_WRITER_PID] = pid
                    self.d[base + i] = pid
                    return Page(self, off)
            raise SegmentError(f"all {PROCESS_PAGES} process pages are in use")
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, DIRECTORY, os.SEEK_SET)


class Page:
    """One page: its fixed slots, its heartbeat, its table of named metrics."""

    def __init__(self, segment: Optional[Segment], offset: int):
        if segment is None:
            # Nowhere to publish (no page left): a private page that nobody reads.
            self.q = memoryview(bytearray(PAGE)).cast("Q")
            self.b = self.q.cast("B")
            self.d = self.b.cast("I")
            offset = 0
        else:
            self.q, self.b, self.d = segment.q, segment.b, segment.d
        self.offset = offset
        self.w = offset // 8  # first u64 word
        self.lock = threading.Lock()
        self.published = segment is not None

    def heartbeat(self, now_ns: int):
        self.q[self.w + _W_HEARTBEAT] = now_ns

    def set_heap(self, current: int, peak: int, allocations: int = 0, deallocations: int = 0):
        w = self.w + _W_HEAP
        self.q[w] = current & U64
        self.q[w + 1] = peak & U64
        self.q[w + 2] = allocations & U64
        self.q[w + 3] = deallocations & U64
        i = self.offset // 4 + _D_FLAGS
        if not self.d[i] & FLAG_HEAP:
            self.d[i] |= FLAG_HEAP

    def register(self, name: str, kind: int) -> int:
        """The word index of metric ``name``'s value, registering it on first use."""
        raw = name.encode("utf-8")
        if not 1 <= len(raw) <= NAME_MAX:
            raise ValueError(f"metric names must be 1 to {NAME_MAX} bytes: {name!r}")
        q, b, d, off = self.q, self.b, self.d, self.offset
        seq_w = self.w + _W_SEQ
        with self.lock:
            s = q[seq_w]
            q[seq_w] = (s + 1) & U64  # odd: a registration is under way
            changed = False
            try:
                count = min(d[off // 4 + _D_COUNT], CAPACITY)
                for i in range(count):
                    e = off + 192 + 64 * i
                    if b[e] == len(raw) and bytes(b[e + 8 : e + 8 + len(raw)]) == raw:
                        if b[e + 1] != kind:
                            other = "gauge" if kind == COUNTER else "counter"
                            raise SegmentError(f"metric {name!r} is already a {other}")
                        return (e + 56) // 8
                if count >= CAPACITY:
                    raise SegmentError(f"all {CAPACITY} metric entries are in use")
                e = off + 192 + 64 * count
                q[(e + 56) // 8] = 0
                b[e + 2 : e + 56] = bytes(6) + raw + bytes(NAME_MAX - len(raw))
                b[e] = len(raw)
                b[e + 1] = kind
                d[off // 4 + _D_COUNT] = count + 1
                changed = True
                return (e + 56) // 8
            finally:
                q[seq_w] = (s + 2) & U64 if changed else s


class Counter:
    """A number that only grows. ``inc()`` and ``add(n)`` are exact across threads."""

    __slots__ = ("name", "_q", "_i", "_lock", "__weakref__")

    def __init__(self, name: str, page: Page, index: int):
        self.name = name
        self._q = page.q
        self._i = index
        self._lock = threading.Lock()

    def inc(self):
        with self._lock:
            self._q[self._i] = (self._q[self._i] + 1) & U64

    def add(self, n: int):
        if n < 0:
            raise ValueError("a counter only grows")
        with self._lock:
            self._q[self._i] = (self._q[self._i] + n) & U64

    def get(self) -> int:
        return self._q[self._i]

    def __repr__(self):
        return f"Counter({self.name!r}, {self.get()})"


class Gauge:
    """A number that goes up and down (never below 0): ``set(v)``, ``add(n)``, ``inc()``,
    ``dec()``."""

    __slots__ = ("name", "_q", "_i", "_lock", "__weakref__")

    def __init__(self, name: str, page: Page, index: int):
        self.name = name
        self._q = page.q
        self._i = index
        self._lock = threading.Lock()

    def set(self, v: int):
        self._q[self._i] = min(max(int(v), 0), U64)

    def add(self, n: int):
        with self._lock:
            self._q[self._i] = min(max(self._q[self._i] + n, 0), U64)

    def inc(self):
        self.add(1)

    def dec(self):
        self.add(-1)

    def get(self) -> int:
        return self._q[self._i]

    def __repr__(self):
        return f"Gauge({self.name!r}, {self.get()})"


def is_sealed_memfd(fd: int) -> bool:
    """Whether ``fd`` is a regular file sealed against shrinking (what a segment must be)."""
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and bool(
            fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK
        )
    except OSError:
        return False
