"""Memory per section of code, as memory_profiler's ``@profile`` gives it, published live.

``with section("render"):`` and ``@profile`` measure, from tracemalloc, how much memory a section
allocated (what it left behind when it ended: the net growth, 0 if it shrank) and its peak (the
highest it went above where it started), and publish them into the segment as the gauges
``render`` and ``render.peak``, with the counter ``render.calls``. They show in
``supervise status --json``, in ``/metrics`` (``supervise_worker_sdk_value{name="render.peak"}``)
and in the events. The figures of a program's processes are summed, like every gauge.

Off unless used, and inert when not under supervise. The first section entered turns tracemalloc
on for the process, if it was not tracing yet: from then on every Python allocation costs more
(see the docs' costs). Start it earlier (``PYTHONTRACEMALLOC=1``) to trace the heap from the
start.

Caveats: tracemalloc is per process, not per thread: a section's peak includes what other
threads allocated meanwhile. Nested sections are measured correctly (an inner section's start
keeps what the outer one had seen).
"""

import functools
import threading
import tracemalloc

from . import heap
from .client import Client

SUFFIX_MAX = len(".calls")
NAME_MAX = 48 - SUFFIX_MAX

_open: list = []
_lock = threading.Lock()


class section:
    """A context manager measuring the memory of the code it spans (see the module docs)."""

    __slots__ = ("name", "_client", "_start", "_high")

    def __init__(self, name: str):
        if not 1 <= len(name.encode("utf-8")) <= NAME_MAX:
            raise ValueError(f"section names must be 1 to {NAME_MAX} bytes: {name!r}")
        self.name = name
        self._client = None

    def __enter__(self):
        c = Client.from_env()
        if c is None:
            return self
        self._client = c
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        with _lock:
            current, peak = heap.traced()
            # The peak is about to restart from here: what it reached counts for every section
            # still open.
            for s in _open:
                s._high = max(s._high, peak)
            heap.reset_peak()
            self._start = current
            self._high = current
            _open.append(self)
        return self

    def __exit__(self, *exc):
        c = self._client
        if c is None:
            return False
        self._client = None
        with _lock:
            current, peak = heap.traced_since_reset()
            high = max(self._high, peak)
            try:
                _open.remove(self)
            except ValueError:
                pass
        c.gauge(self.name).set(max(current - self._start, 0))
        c.gauge(self.name + ".peak").set(max(high - self._start, 0))
        c.counter(self.name + ".calls").inc()
        c.publish_heap()
        return False


def profile(func=None, *, name=None):
    """``@profile``, ``@profile(name="x")`` or ``@profile("x")``: the function's every call is a
    :class:`section` named after it (``module.qualname``, cut to fit) or ``name``."""
    if isinstance(func, str):
        name, func = func, None

    def wrap(f):
        label = name or _label(f)
        section(label)  # checks the name now, not at the first call

        @functools.wraps(f)
        def measured(*args, **kwargs):
            with section(label):
                return f(*args, **kwargs)

        measured.section_name = label
        return measured

    return wrap if func is None else wrap(func)


def _label(f) -> str:
    label = getattr(f, "__qualname__", None) or getattr(f, "__name__", "section")
    raw = label.encode("utf-8")[-NAME_MAX:]
    return raw.decode("utf-8", errors="ignore") or "section"
