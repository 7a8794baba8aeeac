#!/usr/bin/env python3
"""Client load for the availability bench: paced HTTP/1.0 GETs, a new connection each, counted by
outcome.

    load.py --port PORT [--clients 4] [--rate 200] [--duration 60] [--out FILE]

Each of --clients threads sends its share of --rate requests a second on an absolute schedule
(slots it falls behind on are skipped, not sent in a burst, and counted as `late_slots`), so the
number of requests does not depend on how fast failures fail: a refused connection costs
microseconds, a timeout seconds, and a closed loop would count the former thousands of times.
Failures are counted by kind:

- refused: ECONNREFUSED at connect (no listener on the port);
- reset: ECONNRESET or EPIPE, or the connection closed before a full status line (a listener
  closed with the connection in its queue, or a worker that died mid-request);
- timeout: no connection within --connect-timeout, or no complete answer within --timeout;
- bad_status: an answer other than 200;
- other: any other OSError, by errno name in `other_kinds`.

Runs until --duration has passed or SIGTERM/SIGINT arrives, then writes one JSON object to --out
(or stdout): the counts; the longest time without a successful answer (from the start, between
two, or to the end: an outage as the clients saw it); the start time (`t0_monotonic`); and every
failure as [t, kind], t in seconds since that start (CLOCK_MONOTONIC), so the caller can line
them up with its own samples. Only loopback addresses are accepted.
"""

import argparse
import errno
import json
import signal
import socket
import sys
import threading
import time

KINDS = ("refused", "reset", "timeout", "bad_status", "other")


class Tally:
    """Counts shared by the client threads (one lock; a few hundred updates a second)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = dict.fromkeys(KINDS, 0)
        self.other_kinds = {}
        self.failures = []
        self.late_slots = 0
        self.latency_max = 0.0
        self.last_success = 0.0
        self.longest_no_success = 0.0

    def success(self, t, latency):
        with self.lock:
            self.ok += 1
            self.latency_max = max(self.latency_max, latency)
            self.longest_no_success = max(self.longest_no_success, t - self.last_success)
            self.last_success = max(self.last_success, t)

    def failure(self, t, kind, detail=None):
        with self.lock:
            self.failed[kind] += 1
            self.failures.append((round(t, 4), kind))
            if detail:
                self.other_kinds[detail] = self.other_kinds.get(detail, 0) + 1


def one_request(host, port, connect_timeout, timeout):
    """One GET /; returns None on a 200, else (kind, detail)."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except ConnectionRefusedError:
        return ("refused", None)
    except (socket.timeout, TimeoutError):
        return ("timeout", None)
    except ConnectionResetError:
        return ("reset", None)
    except OSError as e:
        return ("other", errno.errorcode.get(e.errno, str(e)))
    try:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % host.encode())
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ("timeout", None)
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                return ("reset", None)  # closed before a status line
            head += chunk
        # Read to the end, as a client would (the server closes: HTTP/1.0).
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ("timeout", None)
            sock.settimeout(remaining)
            if not sock.recv(65536):
                break
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            return ("bad_status", None)
        return None
    except (socket.timeout, TimeoutError):
        return ("timeout", None)
    except (ConnectionResetError, BrokenPipeError):
        return ("reset", None)
    except OSError as e:
        return ("other", errno.errorcode.get(e.errno, str(e)))
    finally:
        sock.close()


def client(args, tally, t0, stop, index):
    period = args.clients / args.rate
    # Spread the threads over one period so they do not all connect at the same instant.
    next_at = t0 + period * index / args.clients
    while not stop.is_set():
        now = time.monotonic()
        if now < next_at:
            if stop.wait(next_at - now):
                return
            now = time.monotonic()
        if now - next_at >= period:
            missed = int((now - next_at) / period)
            with tally.lock:
                tally.late_slots += missed
            next_at += missed * period
        next_at += period
        started = time.monotonic()
        outcome = one_request(args.host, args.port, args.connect_timeout, args.timeout)
        if outcome is None:
            done = time.monotonic()
            tally.success(done - t0, done - started)
        else:
            tally.failure(started - t0, *outcome)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rate", type=float, default=200.0, help="requests a second, all clients")
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--connect-timeout", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=2.0, help="whole request, seconds")
    p.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = p.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        p.error("--host must be a loopback address")
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0:
        p.error("--clients, --rate and --duration must be positive")
    if not 0 < args.port < 65536:
        p.error("--port must be 1..65535")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tally = Tally()
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(args, tally, t0, stop, i), daemon=True)
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    stop.wait(args.duration)
    stop.set()
    for t in threads:
        t.join(args.timeout + args.connect_timeout + 1)
    elapsed = time.monotonic() - t0
    tally.longest_no_success = max(tally.longest_no_success, elapsed - tally.last_success)

    failed = sum(tally.failed.values())
    times = [t for t, _ in tally.failures]
    result = {
        "t0_monotonic": t0,
        "elapsed_s": round(elapsed, 3),
        "clients": args.clients,
        "rate": args.rate,
        "total": tally.ok + failed,
        "ok": tally.ok,
        "failed": failed,
        "failed_by_kind": tally.failed,
        "other_kinds": tally.other_kinds,
        "late_slots": tally.late_slots,
        "latency_max_s": round(tally.latency_max, 4),
        "longest_no_success_s": round(tally.longest_no_success, 4),
        "first_failure_s": min(times) if times else None,
        "last_failure_s": max(times) if times else None,
        "failures": sorted(tally.failures),
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
