#!/usr/bin/env python3
"""What restarts cost the clients of a real server under supervise (see run.sh, which installs
gunicorn, builds supervise and calls this).

Each scenario runs gunicorn (sync workers, app.py) under supervise while load.py sends paced
GETs to it, and measures, per variant (a supervise binary and its flags):

- requests failed, by kind (refused, reset, timeout, bad status), of all sent, and the longest
  time the clients went without a successful answer;
- restarts, by reason, from the `--events` file (and every other event kind counted, so the
  events of features added later show up), and whether and when the program went `fatal`;
- from `{"cmd":"status"}` on the control socket every 10 ms (the objects `supervise status
  --json` prints): the most instances not ready at once (state not `running`, or `ready`
  false) and for how long any / all were, and the peak tree memory (`rss_bytes`, as supervise
  sampled it);
- from the kernel every 10 ms (sock_diag, listening TCP sockets only): the fewest sockets
  listening on the port at once, and how long none was. A readiness rule can be wrong (a `tcp`
  check on a SO_REUSEPORT port is answered by any replica); the listeners cannot;
- the load average before and after.

Scenarios (durations: full / --quick):
  a   gunicorn -w 4, one worker leaking 16 MiB/s, --memory-max 300MiB: 60 s / 25 s
  b2  2 replicas of gunicorn -w 1 --reuse-port, each leaking 10 MiB/s, --memory-max 150MiB:
      40 s / 20 s
  b4  the same with 4 replicas
  bL  (--long) 2 replicas leaking 5.5 MiB/s, about 30 memory restarts in 5 minutes against
      the default restart intensity (5 in 60 s): 300 s / 120 s
  c2  2 replicas of gunicorn -w 1 --reuse-port with --ready tcp://127.0.0.1:PORT (the issue's
      setup), `supervise restart gu --wait` 3 times under load, 2 s apart (3 s before, 3 s
      after; the same in --quick)
  c4  the same with 4 replicas

Variants. `today`: the binary (--supervise, or --baseline when given) with the scenario's flags
plus TODAY_FLAGS_<A|B|C> (default: c2 and c4 have the `--ready` above, the others none). `new`: the --supervise binary with the scenario's
flags plus NEW_FLAGS_<A|B|C>; run when that variable is set, or with --baseline (then, unset,
it takes today's flags: the same scenario on both binaries). `{port}` in the flags is replaced
by the scenario's port. B's variables apply to b2, b4 and bL, C's to c2 and c4.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
HERE = Path(__file__).resolve().parent
PROGRAM = "gu"
SAMPLE_EVERY = 0.01
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")

# The setup for (c): a tcp readiness rule on the shared port.
TODAY_FLAGS = {"A": "", "B": "", "C": "--ready tcp://127.0.0.1:{port}"}


@dataclass
class Scenario:
    id: str
    key: str  # which TODAY_FLAGS_/NEW_FLAGS_ variable applies
    title: str
    replicas: int
    workers: int  # gunicorn -w
    reuse_port: bool
    flags: list  # supervise flags of the scenario itself
    leak: str = "none"  # AVAIL_LEAK: none, one, all
    leak_mib_s: float = 0.0
    duration: float = 0.0  # load duration, for leak scenarios
    rolls: int = 0  # `restart --wait` rounds, for (c)
    roll_gap: float = 2.0


def scenarios(quick, long):
    out = [
        Scenario(
            "a", "A", "gunicorn -w 4, one worker leaking 16 MiB/s, --memory-max 300MiB",
            replicas=1, workers=4, reuse_port=False, flags=["--memory-max", "300MiB"],
            leak="one", leak_mib_s=16, duration=25 if quick else 60,
        ),
    ]
    for n in (2, 4):
        out.append(Scenario(
            f"b{n}", "B",
            f"{n} x gunicorn -w 1 --reuse-port, each leaking 10 MiB/s, --memory-max 150MiB",
            replicas=n, workers=1, reuse_port=True, flags=["--memory-max", "150MiB"],
            leak="all", leak_mib_s=10, duration=20 if quick else 40,
        ))
    if long:
        out.append(Scenario(
            "bL", "B", "2 x gunicorn -w 1 --reuse-port, each leaking 5.5 MiB/s (~30 memory "
            "restarts in 5 min), --memory-max 150MiB",
            replicas=2, workers=1, reuse_port=True, flags=["--memory-max", "150MiB"],
            leak="all", leak_mib_s=5.5, duration=120 if quick else 300,
        ))
    for n in (2, 4):
        out.append(Scenario(
            f"c{n}", "C", f"{n} x gunicorn -w 1 --reuse-port, `restart gu --wait` x3 under load",
            replicas=n, workers=1, reuse_port=True, flags=[], rolls=3,
        ))
    return out


@dataclass
class Variant:
    label: str
    binary: str
    flags: str  # with {port} still in it


# ---------------------------------------------------------------- the kernel's listeners

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10


class Listeners:
    """Counts listening TCP sockets on a port with one sock_diag dump (IPv4, LISTEN only: the
    kernel then walks its listening hash alone, not the connections)."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        self.seq = 0

    def count(self):
        self.seq += 1
        # inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid
        # (48 bytes; a dump does not filter on it).
        req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
        req += bytes(48)
        hdr = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        self.sock.send(hdr + req)
        n = 0
        while True:
            buf = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(buf):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", buf, off)
                if length < 16:
                    raise OSError("sock_diag: malformed message")
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return n
                    if kind == NLMSG_ERROR:
                        raise OSError("sock_diag: error answer")
                    # inet_diag_msg: family, state, timer, retrans, then id.sport (be16).
                    state = buf[off + 17]
                    (sport,) = struct.unpack_from("!H", buf, off + 20)
                    if state == TCP_LISTEN and sport == self.port:
                        n += 1
                off += (length + 3) & ~3

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- supervise's control socket


def admin(path, request, timeout=2.0):
    """One request on the control socket, its one-line JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def not_ready(workers):
    return sum(1 for w in workers if not (w.get("state") == "running" and w.get("ready")))


class Sampler(threading.Thread):
    """Every 10 ms: instances not ready and their tree memory (control socket), listeners on
    the port (sock_diag). Keeps the rows where a count changed, and running totals."""

    def __init__(self, admin_path, port, t0):
        super().__init__(daemon=True)
        self.admin_path, self.t0 = admin_path, t0
        self.listeners = Listeners(port)
        self.stop = threading.Event()
        self.rows = []  # [t, not_ready, listeners, instances] where one changed
        self.samples = 0
        self.status_errors = 0
        self.max_not_ready = 0
        self.min_listeners = None
        self.peak_rss = 0
        self.any_not_ready_s = 0.0
        self.all_not_ready_s = 0.0
        self.no_listener_s = 0.0

    def run(self):
        next_at = time.monotonic()
        last = None  # (t, not_ready, listeners, instances)
        while not self.stop.is_set():
            t = time.monotonic() - self.t0
            try:
                workers = admin(self.admin_path, {"cmd": "status"}, timeout=1.0)["workers"]
                nr, inst = not_ready(workers), len(workers)
                self.peak_rss = max([self.peak_rss] + [w.get("rss_bytes") or 0 for w in workers])
            except (OSError, ValueError, KeyError, TypeError):
                # supervise gone (it exits when the program goes fatal) or not answering.
                self.status_errors += 1
                nr, inst = None, None
            try:
                ls = self.listeners.count()
            except OSError:
                ls = None
            self.samples += 1
            if last is not None:
                dt = t - last[0]
                if last[1] is None or last[1] > 0:
                    self.any_not_ready_s += dt
                if last[1] is None or (last[3] and last[1] >= last[3]):
                    self.all_not_ready_s += dt
                if last[2] == 0:
                    self.no_listener_s += dt
            if nr is not None:
                self.max_not_ready = max(self.max_not_ready, nr)
            if ls is not None:
                self.min_listeners = ls if self.min_listeners is None else min(self.min_listeners, ls)
            if last is None or (nr, ls, inst) != tuple(last[1:]):
                self.rows.append([round(t, 3), nr, ls, inst])
            last = (t, nr, ls, inst)
            next_at += SAMPLE_EVERY
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                next_at = time.monotonic()
        self.listeners.close()


# ---------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def get_ok(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0].split()
            return len(status) > 1 and status[1] == b"200"
    except OSError:
        return False


def parse_ts(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def read_events(path, wall0):
    """Counts by kind, restarts by reason, fatal time, and the memory stops' times (seconds
    from wall0, the load's start)."""
    kinds, restarts, memory_stops, fatal_at = {}, {}, [], None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        kind = e.get("event")
        kinds[kind] = kinds.get(kind, 0) + 1
        t = round(parse_ts(e["ts"]) - wall0, 3) if "ts" in e else None
        if kind == "restarting":
            reason = e.get("reason")
            restarts[reason] = restarts.get(reason, 0) + 1
        elif kind == "stopping" and e.get("reason") == "memory":
            memory_stops.append([t, e.get("instance")])
        elif kind == "fatal" and fatal_at is None:
            fatal_at = t
    return {"kinds": kinds, "restarts": restarts, "memory_stops": memory_stops,
            "fatal_at_s": fatal_at}


def most_within(times, window):
    """The most of `times` inside any window of this length."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def check_flags(binary, flags):
    """Every --flag used must be in the binary's --help: a clear error rather than a run of a
    supervise that refused to start."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    text = out.stdout + out.stderr
    missing = sorted({f.split("=")[0] for f in flags if f.startswith("--")} -
                     {w.rstrip(",") for w in text.split() if w.startswith("--")})
    if missing:
        sys.exit(f"{binary} has no {', '.join(missing)} (see `{binary} --help`)")
    out = subprocess.run([binary, "restart", "--help"], capture_output=True, text=True, timeout=10)
    if "--wait" not in out.stdout:
        sys.exit(f"{binary}: `restart` has no --wait")


def kill_leftovers(port):
    """Processes of this run still alive after supervise exited (there should be none):
    SIGKILLed by pid, and listed."""
    mark = f"127.0.0.1:{port}".encode()
    left = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmd and b"gunicorn" in cmd:
            left.append(int(name))
            try:
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
    return left


# ---------------------------------------------------------------- one run


@dataclass
class Run:
    scenario: Scenario
    variant: Variant
    port: int
    dir: Path
    argv: list = field(default_factory=list)
    supervise: subprocess.Popen = None


def command(sc, v, port, rundir, gunicorn):
    flags = sc.flags + shlex.split(v.flags.format(port=port))
    # No control socket: gunicorn's default path is one per user, which replicas would share.
    gu = [gunicorn, "-w", str(sc.workers), "-b", f"127.0.0.1:{port}", "--chdir", str(HERE),
          "--no-control-socket"]
    if sc.reuse_port:
        gu.append("--reuse-port")
    return [v.binary, "--admin", str(rundir / "admin.sock"), "--events",
            str(rundir / "events.jsonl"), "--name", PROGRAM, "--replicas", str(sc.replicas),
            *flags, "--", *gu, "app:app"]


def wait_up(run, deadline_s=60):
    """Every instance running and ready, one listener per tree, and a GET answered."""
    sc, want = run.scenario, run.scenario.replicas if run.scenario.reuse_port else 1
    diag = Listeners(run.port)
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if run.supervise.poll() is not None:
                raise RuntimeError(f"supervise exited ({run.supervise.returncode}); "
                                   f"see {run.dir / 'supervise.log'}")
            try:
                workers = admin(run.dir / "admin.sock", {"cmd": "status"})["workers"]
                up = len(workers) == sc.replicas and not_ready(workers) == 0
            except (OSError, ValueError, KeyError):
                up = False
            if up and diag.count() == want and get_ok(run.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"not up within {deadline_s} s; see {run.dir / 'supervise.log'}")
    finally:
        diag.close()


def stop_supervise(run):
    p = run.supervise
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    return p.returncode


def run_one(sc, v, args, outdir):
    port = free_port()
    rundir = outdir / f"{sc.id}-{v.label}"
    rundir.mkdir(parents=True)
    run = Run(sc, v, port, rundir)
    run.argv = command(sc, v, port, rundir, args.gunicorn)
    env = dict(os.environ, AVAIL_LEAK=sc.leak, AVAIL_LEAK_MIB_S=str(sc.leak_mib_s),
               AVAIL_LEAK_LOCK=str(rundir / "leak.lock"))
    print(f"[{sc.id}/{v.label}] {shlex.join(run.argv)}", file=sys.stderr, flush=True)
    load_before = loadavg()
    with open(rundir / "supervise.log", "wb") as log:
        run.supervise = subprocess.Popen(run.argv, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
    result = {"scenario": sc.id, "title": sc.title, "variant": v.label, "binary": v.binary,
              "argv": run.argv, "dir": str(rundir), "load_before": load_before}
    load = None
    sampler = None
    try:
        wait_up(run)
        load_cmd = [sys.executable, str(HERE / "load.py"), "--port", str(port),
                    "--clients", str(args.clients), "--rate", str(args.rate),
                    "--out", str(rundir / "load.json"),
                    "--duration", str(sc.duration if not sc.rolls else 3600)]
        wall0, t0 = time.time(), time.monotonic()
        load = subprocess.Popen(load_cmd, stdin=subprocess.DEVNULL)
        sampler = Sampler(rundir / "admin.sock", port, t0)
        sampler.start()
        if sc.rolls:
            result["rolls"] = roll(run, sc, t0)
            load.send_signal(signal.SIGTERM)
        load.wait(timeout=(sc.duration or 0) + 60)
        sampler.stop.set()
        sampler.join(5)
        result["status_json"] = final_status(run)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        if sampler is not None:
            sampler.stop.set()
        result["supervise_exit"] = stop_supervise(run)
        result["exited_early"] = result.get("status_json") is None
        result["leftovers"] = kill_leftovers(port)
    result["load_after"] = loadavg()
    lj = json.loads((rundir / "load.json").read_text())
    result["requests"] = {k: lj[k] for k in (
        "total", "ok", "failed", "failed_by_kind", "other_kinds", "late_slots",
        "latency_max_s", "longest_no_success_s", "elapsed_s", "rate", "clients")}
    per_s = {}
    for t, _ in lj["failures"]:
        per_s[int(t)] = per_s.get(int(t), 0) + 1
    result["requests"]["failures_per_s"] = sorted(per_s.items())
    # Both clocks are CLOCK_MONOTONIC: line the load's start up with ours.
    result["load_start_offset_s"] = round(lj["t0_monotonic"] - t0, 4)
    ev = read_events(rundir / "events.jsonl", wall0)
    ev["memory_stops_within_1s_max"] = most_within([t for t, _ in ev["memory_stops"]], 1.0)
    result["events"] = ev
    result["sampler"] = {
        "samples": sampler.samples, "period_s": SAMPLE_EVERY,
        "status_errors": sampler.status_errors, "max_not_ready": sampler.max_not_ready,
        "any_not_ready_s": round(sampler.any_not_ready_s, 3),
        "all_not_ready_s": round(sampler.all_not_ready_s, 3),
        "min_listeners": sampler.min_listeners,
        "no_listener_s": round(sampler.no_listener_s, 3),
        "peak_tree_rss_bytes": sampler.peak_rss, "changes": sampler.rows,
    }
    return result


def roll(run, sc, t0):
    """`supervise restart gu --wait` sc.rolls times, 3 s in, sc.roll_gap apart, 3 s tail."""
    rolls = []
    time.sleep(3)
    for i in range(sc.rolls):
        if i:
            time.sleep(sc.roll_gap)
        start = time.monotonic()
        out = subprocess.run([run.variant.binary, "restart", PROGRAM, "--wait", "--timeout", "60s",
                              "--admin", str(run.dir / "admin.sock")],
                             capture_output=True, text=True, timeout=90)
        rolls.append({"at_s": round(start - t0, 3), "took_s": round(time.monotonic() - start, 3),
                      "exit": out.returncode, "output": (out.stdout + out.stderr).strip()})
    time.sleep(3)
    return rolls


def final_status(run):
    """`supervise status --json` once at the end (None if supervise is gone)."""
    try:
        out = subprocess.run([run.variant.binary, "status", "--json", "--admin",
                              str(run.dir / "admin.sock")], capture_output=True, text=True,
                             timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    objs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    workers = [o for o in objs if "program" in o]
    return {"restarts": sum(w.get("restarts", 0) for w in workers),
            "states": [w.get("state") for w in workers],
            "restarts_by_reason": [w.get("restarts_by_reason") for w in workers]}


# ---------------------------------------------------------------- report


KNOWN_EVENTS = {"started", "exited", "memory_over", "stopping", "restarting", "stopped",
                "killed", "fatal", "finding", "spawn_failed", "roll_halted", "ready",
                "daemonized", "lifeline_error", "orphan"}


def row(r):
    q, s, ev = r["requests"], r["sampler"], r["events"]
    k = q["failed_by_kind"]
    kinds = "/".join(str(k[x]) for x in ("refused", "reset", "timeout", "bad_status"))
    if k["other"]:
        kinds += f" +{k['other']} other"
    rst = " ".join(f"{n}:{c}" for n, c in sorted(ev["restarts"].items())) or "0"
    new_kinds = {n: c for n, c in ev["kinds"].items() if n not in KNOWN_EVENTS}
    if new_kinds:
        rst += " (" + " ".join(f"{n}:{c}" for n, c in sorted(new_kinds.items())) + ")"
    fatal = f"{ev['fatal_at_s']:.1f}s" if ev["fatal_at_s"] is not None else "-"
    together = str(ev["memory_stops_within_1s_max"])
    extra = ""
    if r.get("rolls"):
        extra = " rolls " + ",".join(f"{x['took_s']:.1f}s" + ("" if x["exit"] == 0 else "!")
                                     for x in r["rolls"])
    load = f"{r['load_before'][0]:.1f}->{r['load_after'][0]:.1f}"
    return [r["scenario"], r["variant"],
            f"{q['failed']}/{q['total']} ({100 * q['failed'] / max(q['total'], 1):.1f}%)",
            kinds, f"{q['longest_no_success_s']:.2f}", rst, together, fatal,
            str(s["max_not_ready"]), f"{s['all_not_ready_s']:.2f}",
            str(s["min_listeners"]), f"{s['no_listener_s']:.2f}",
            f"{s['peak_tree_rss_bytes'] / MIB:.0f}", load + extra]


HEADER = ["scen", "variant", "failed/total", "ref/rst/tmo/bad", "no-ok s", "restarts",
          "mem/1s", "fatal", "max!rdy", "all!rdy s", "min lst", "0-lst s", "peak MiB", "load 1m"]


def table(results):
    rows = [HEADER] + [row(r) for r in results]
    widths = [max(len(x[i]) for x in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for x in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(x, widths)) + "  " + x[-1])
    return "\n".join(lines)


LEGEND = """\
failed/total: requests that failed, of all sent; ref/rst/tmo/bad: refused, reset, timed out,
bad status; no-ok s: longest time without a successful answer; restarts: `restarting` events by
reason (event kinds today's supervise does not have in brackets); mem/1s: the most memory stops
begun within one second; fatal: when the program went fatal (from the load's start); max!rdy:
most instances not ready at once (status, every 10 ms); all!rdy s: time all were (or supervise
was gone); min lst / 0-lst s: fewest sockets listening on the port (sock_diag, every 10 ms) and
time with none; peak MiB: highest tree RSS supervise reported; load 1m: the load average before
-> after (rolls: each `restart --wait`'s time, ! if it failed)."""


# ---------------------------------------------------------------- main


def variants_for(sc, args):
    today = os.environ.get(f"TODAY_FLAGS_{sc.key}", TODAY_FLAGS[sc.key])
    new = os.environ.get(f"NEW_FLAGS_{sc.key}")
    if args.baseline:
        return [Variant("today", args.baseline, today),
                Variant("new", args.supervise, today if new is None else new)]
    out = [Variant("today", args.supervise, today)]
    if new is not None:
        out.append(Variant("new", args.supervise, new))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--supervise", required=True, help="the supervise binary to measure")
    p.add_argument("--baseline", help="also measure this binary (the `today` column)")
    p.add_argument("--gunicorn", required=True, help="the gunicorn executable (in its venv)")
    p.add_argument("--quick", action="store_true", help="short durations")
    p.add_argument("--long", action="store_true", help="add bL, ~30 memory restarts in 5 min")
    p.add_argument("--only", help="comma-separated: a, b (b2, b4, bL), c (c2, c4), or one id")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rate", type=float, default=200.0, help="requests a second, all clients")
    p.add_argument("--tcp-migrate-req", choices=["0", "1"],
                   help="set net.ipv4.tcp_migrate_req for the run (restored after)")
    p.add_argument("--out", help="directory for the runs' files and results.json")
    args = p.parse_args()

    all_sc = scenarios(args.quick, args.long or bool(args.only and "bL" in args.only))
    if args.only:
        want = {w.strip() for w in args.only.split(",") if w.strip()}
        known = {"a", "b", "c"} | {s.id for s in all_sc} | {"bL"}
        bad = want - known
        if bad:
            p.error(f"--only: unknown {', '.join(sorted(bad))} (a, b, c, b2, b4, bL, c2, c4)")
        all_sc = [s for s in all_sc if s.id in want or s.id[0] in want]
    runs = [(sc, v) for sc in all_sc for v in variants_for(sc, args)]
    for binary in {v.binary for _, v in runs}:
        if not os.access(binary, os.X_OK):
            p.error(f"{binary}: not an executable")
    for sc, v in runs:
        check_flags(v.binary, ["--admin", "--events", "--name", "--replicas"] + sc.flags +
                    shlex.split(v.flags.format(port=1)))

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = Path(args.out or Path.home() / ".cache/supervise-avail/runs" / stamp)
    outdir.mkdir(parents=True, exist_ok=True)
    migrate_before = MIGRATE_REQ.read_text().strip() if MIGRATE_REQ.exists() else None
    gu_version = subprocess.run([args.gunicorn, "--version"], capture_output=True,
                                text=True).stdout.strip()
    doc = {
        "started": stamp, "kernel": platform.release(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "gunicorn": gu_version,
        "tcp_migrate_req": args.tcp_migrate_req or migrate_before,
        "clients": args.clients, "rate": args.rate, "quick": args.quick, "runs": [],
    }
    print(f"net.ipv4.tcp_migrate_req = {migrate_before}"
          + (f", set to {args.tcp_migrate_req} for this run" if args.tcp_migrate_req else ""),
          file=sys.stderr)
    try:
        if args.tcp_migrate_req:
            MIGRATE_REQ.write_text(args.tcp_migrate_req)
        for sc, v in runs:
            try:
                r = run_one(sc, v, args, outdir)
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                print(f"[{sc.id}/{v.label}] failed: {e}", file=sys.stderr)
                r = {"scenario": sc.id, "variant": v.label, "error": str(e)}
            doc["runs"].append(r)
            (outdir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        if args.tcp_migrate_req and migrate_before is not None:
            MIGRATE_REQ.write_text(migrate_before)
    ok = [r for r in doc["runs"] if "error" not in r]
    print()
    for sc in all_sc:
        print(f"{sc.id}: {sc.title}")
    print()
    print(table(ok))
    print()
    print(LEGEND)
    print(f"\nraw figures: {outdir / 'results.json'}")
    return 1 if len(ok) < len(doc["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
