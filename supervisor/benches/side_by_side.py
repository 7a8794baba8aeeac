#!/usr/bin/env python3
"""Several supervise binaries measured in one run: idle CPU, PSS/USS/RSS, start time, `status`.

    python3 supervisor/benches/side_by_side.py idle WORKERS WINDOW_S BIN...
    python3 supervisor/benches/side_by_side.py start WORKERS IDLE_S BIN...

`idle` runs every BIN at once, each a supervise of WORKERS `sleep` workers under `--memory-max
1GiB` (memory enforced, 1 s sampling), and once all run and start-up has settled (6 s: the
supervisor trims its resident memory at its third tick) takes the schedstat run time of every
thread of each supervisor and its lifeline over the same WINDOW_S seconds: the kernel's own
account, which other load on the machine inflates little, so binaries measured side by side are
compared fairly. Then PSS, USS and RSS of the supervisor and its lifeline (smaps_rollup); the
binaries are different files, so none lowers another's PSS.

`start` runs each BIN alone, one after the other (a start is CPU-bound: side by side they would
slow each other): the time from spawning supervise until WORKERS workers have exec'd (its
children's /proc/PID/exe is no longer supervise, polled every 10 ms), then idle CPU over IDLE_S
seconds, PSS, and `supervise status --wide` timed 20 times as a whole command (process start and
table included: an upper bound of the round trip), median and worst.
"""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def children(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def is_lifeline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"__lifeline" in f.read().split(b"\0")
    except OSError:
        return False


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def cpu_ns(pid):
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def memory_kib(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                p = line.split()
                if len(p) >= 2 and p[0].endswith(":"):
                    d[p[0][:-1]] = int(p[1])
    except OSError:
        pass
    return d.get("Pss", 0), d.get("Private_Clean", 0) + d.get("Private_Dirty", 0), d.get("Rss", 0)


def start(binary, sock, n):
    return subprocess.Popen(
        [binary, "--admin", sock, "--replicas", str(n), "--memory-max", "1GiB", "--name", "idle",
         "--", "sleep", "100000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def running(p, binary, lifeline_exe):
    me = os.path.realpath(binary)
    return [c for c in children(p.pid)
            if exe(c) not in (None, me, lifeline_exe) and not is_lifeline(c)]


def own(p):
    return [p.pid] + [c for c in children(p.pid) if is_lifeline(c)]


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def describe(binary, pids, cpu_percent, window):
    mem = [memory_kib(x) for x in pids]
    line = (f"{binary}: idle CPU {cpu_percent:.4f} % of a core over {window:.0f} s; "
            f"PSS {sum(m[0] for m in mem) / 1024:.2f} MiB (supervisor {mem[0][0] / 1024:.2f}")
    if len(mem) > 1:
        line += f", lifeline {mem[1][0] / 1024:.2f}"
    line += (f"), USS {sum(m[1] for m in mem) / 1024:.2f} MiB, "
             f"RSS {sum(m[2] for m in mem) / 1024:.2f} MiB")
    if len(mem) > 1:
        line += f" (lifeline RSS {mem[1][2] / 1024:.2f} MiB, exe {os.path.basename(exe(pids[1]) or '?')})"
    return line


def idle(n, window, binaries):
    tmp = tempfile.mkdtemp()
    procs = [start(b, f"{tmp}/s{i}.sock", n) for i, b in enumerate(binaries)]
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not all(
                len(children(p.pid)) >= n + 1 for p in procs):
            time.sleep(0.2)
        time.sleep(6)
        pids = [own(p) for p in procs]
        c0 = [sum(cpu_ns(x) for x in o) for o in pids]
        t0 = time.time()
        time.sleep(window)
        c1 = [sum(cpu_ns(x) for x in o) for o in pids]
        el = time.time() - t0
        for b, o, a, z in zip(binaries, pids, c0, c1):
            print(describe(b, o, (z - a) / 1e9 / el * 100, el), flush=True)
        print("workers", n, "load", " ".join(open("/proc/loadavg").read().split()[:3]), flush=True)
    finally:
        stop(procs)


def start_and_status(n, window, binaries):
    for b in binaries:
        tmp = tempfile.mkdtemp()
        sock = f"{tmp}/s.sock"
        lifeline = os.path.join(os.path.dirname(os.path.realpath(b)), "supervise-lifeline")
        t0 = time.time()
        p = start(b, sock, n)
        try:
            took = None
            while time.time() - t0 < 120:
                if len(running(p, b, lifeline)) >= n:
                    took = time.time() - t0
                    break
                time.sleep(0.01)
            time.sleep(6)
            pids = own(p)
            a = sum(cpu_ns(x) for x in pids)
            w0 = time.time()
            time.sleep(window)
            z = sum(cpu_ns(x) for x in pids)
            el = time.time() - w0
            times = []
            for _ in range(20):
                s0 = time.time()
                subprocess.run([b, "status", "--wide", "--admin", sock], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
                times.append((time.time() - s0) * 1000)
            print(f"{b}: {n} workers all running after "
                  + (f"{took:.2f} s" if took is not None else "(not within 120 s)")
                  + f"; {describe(b, pids, (z - a) / 1e9 / el * 100, el)}; "
                  f"`status --wide` median {statistics.median(times):.1f} ms, worst {max(times):.1f} ms; "
                  "load " + " ".join(open("/proc/loadavg").read().split()[:3]), flush=True)
        finally:
            stop([p])


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ("idle", "start"):
        sys.exit(__doc__)
    n, window, binaries = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
    if sys.argv[1] == "idle":
        idle(n, window, binaries)
    else:
        start_and_status(n, window, binaries)


if __name__ == "__main__":
    main()
