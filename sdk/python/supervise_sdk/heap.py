"""tracemalloc's figures for the whole process, kept whole across the peak resets sections make."""

import tracemalloc

_peak_seen = 0


def traced():
    """(current, peak) traced bytes: the peak over the process's life, not since the last
    reset."""
    global _peak_seen
    current, peak = tracemalloc.get_traced_memory()
    _peak_seen = max(_peak_seen, peak, current)
    return current, _peak_seen


def traced_since_reset():
    """(current, peak since the last reset)."""
    global _peak_seen
    current, peak = tracemalloc.get_traced_memory()
    _peak_seen = max(_peak_seen, peak, current)
    return current, peak


def reset_peak():
    """Resets tracemalloc's peak (Python 3.9+), after keeping what it had reached."""
    traced()
    tracemalloc.reset_peak()


def forget():
    """In a forked process: its own figures start from here."""
    global _peak_seen
    _peak_seen = 0
    if tracemalloc.is_tracing():
        tracemalloc.reset_peak()
