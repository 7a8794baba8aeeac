"""The WSGI app the availability bench serves with gunicorn (see run.sh).

`/` answers a short 200 at once. Memory leaks at a steady rate, set by the environment, in a
thread of each gunicorn worker (the app is loaded in the worker, not in the master: no
--preload):

- AVAIL_LEAK=none (default): no leak.
- AVAIL_LEAK=all: every worker keeps AVAIL_LEAK_MIB_S MiB more each second (1 MiB steps, on
  an absolute schedule, each page written so it is resident).
- AVAIL_LEAK=one: only the worker holding an exclusive flock on AVAIL_LEAK_LOCK leaks; the
  others try for the lock every 0.2 s. When the leaker dies (whatever stopped it), one of the
  survivors or its replacement takes over, so a tree has one leaking worker at a time, as
  with a request that leaks in one worker only.

`/whoami` answers the worker's pid and whether it is the leaker (for checking by hand).
"""

import fcntl
import os
import threading
import time

MIB = 1024 * 1024

_kept = []
_leaking = threading.Event()


def _leak(rate_mib_s):
    step = 1.0 / rate_mib_s
    next_at = time.monotonic()
    while True:
        # b"x" * n writes every byte, so each step is resident at once (a zeroed bytearray
        # could stay untouched mapped pages).
        _kept.append(b"x" * MIB)
        next_at += step
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()


def _elect_then_leak(lock_path, rate_mib_s):
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.2)
    _leaking.set()
    _leak(rate_mib_s)


def _start():
    mode = os.environ.get("AVAIL_LEAK", "none")
    rate = float(os.environ.get("AVAIL_LEAK_MIB_S", "0") or 0)
    if mode == "none" or rate <= 0:
        return
    if mode == "all":
        _leaking.set()
        target, args = _leak, (rate,)
    elif mode == "one":
        lock = os.environ.get("AVAIL_LEAK_LOCK")
        if not lock:
            raise SystemExit("AVAIL_LEAK=one needs AVAIL_LEAK_LOCK (a lock file path)")
        target, args = _elect_then_leak, (lock, rate)
    else:
        raise SystemExit(f"AVAIL_LEAK must be none, one or all, not {mode!r}")
    threading.Thread(target=target, args=args, name="leak", daemon=True).start()


_start()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = b"ok\n"
    elif path == "/whoami":
        body = f"{os.getpid()} leaking={_leaking.is_set()} kept_mib={len(_kept)}\n".encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
