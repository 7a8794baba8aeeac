#!/usr/bin/env python3
"""Measure supervise and its peers in one run, on the same workers (see run.sh, which installs
the peers and builds what this needs, then calls this).

Figures, each for every supervisor in turn:
- own PSS and USS (USS = private clean + private dirty) at 1, 20 and 100 `sleep` workers, with the
  memory watcher configured where the supervisor has one;
- idle CPU at 20 workers: the schedstat run time of every thread of the supervisor's own processes
  over the window, plus cutime/cstime of those processes (helpers they forked and reaped, such as
  memmon's `ps`);
- a 10 MiB/s leak past a 100 MiB limit (`peerwork leak`): from the first moment the leaker's RSS
  exceeds the limit to its exit (a pidfd), and its peak RSS, watched about every millisecond;
  n cycles, median and worst;
- crash -> restart (`peerwork crash`): the gap between a child's `exit` line and the next child's
  `start` line, both CLOCK_MONOTONIC as the children read it; n gaps, median and worst.

A supervisor's own processes are its root and every descendant that is not a worker (workers are
`sleep` and `peerwork`): supervise + its lifeline; supervisord + memmon; circusd + its plugin; PM2's
God daemon; runsvdir + every runsv; s6-svscan + every s6-supervise.
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1024 * 1024
LIMIT = 100 * MIB
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")
SLEEP = shutil.which("sleep") or "/bin/sleep"


# ---------------------------------------------------------------- /proc


def proc_table():
    """pid -> (ppid, exe or '') for every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            rest = stat[stat.rindex(b")") + 2 :].split()
            if rest[0] == b"Z":
                continue
            ppid = int(rest[1])
        except (OSError, ValueError, IndexError):
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        table[pid] = (ppid, exe)
    return table


def descendants(roots, table=None):
    table = table if table is not None else proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [r for r in roots if r in table]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(children.get(p, []))
    return out, table


def split_tree(roots, worker_exes):
    """(own pids, worker pids) of the trees under `roots`."""
    pids, table = descendants(roots)
    own = {p for p in pids if table[p][1] not in worker_exes}
    return own, pids - own


def rollup(pid):
    vals = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    vals[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return vals


def cpu_ns(pid):
    """Run time of every thread (schedstat) plus reaped children's time (cutime + cstime)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        rest = stat[stat.rindex(b")") + 2 :].split()
        total += int((int(rest[13]) + int(rest[14])) * TICK_NS)
    except (OSError, ValueError, IndexError):
        return None
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def kill_tree(roots):
    """Freezes every process under roots, then kills them all: nothing respawns meanwhile."""
    for _ in range(5):
        pids, _ = descendants(roots)
        if not pids:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in pids:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
        time.sleep(0.2)


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(what)


# ---------------------------------------------------------------- the supervisors


class Peer:
    """One supervisor under test. `start(workdir, cmd, n)` runs n copies of cmd (a list)."""

    name = "?"
    leak_capable = True

    def __init__(self, env):
        self.env = env
        self.proc = None

    def roots(self):
        return [self.proc.pid] if self.proc else []

    def stop(self):
        kill_tree(self.roots())
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def popen(self, argv, workdir, env=None):
        log = open(os.path.join(workdir, "peer.log"), "ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        log.close()


class Supervise(Peer):
    name = "supervise"

    def __init__(self, env, extra=(), label=None):
        super().__init__(env)
        self.extra = list(extra)
        if label:
            self.name = label

    def start(self, workdir, cmd, n, mode):
        argv = [self.env.supervise, "--quiet", "--name", "w", "--replicas", str(n)]
        argv += ["--max-restarts", "100000", "--within", "1h"]
        if mode == "crash":
            argv += ["--restart", "always", "--backoff-first", "0"]
        else:
            argv += ["--memory-max", "100MiB"]
        self.popen(argv + self.extra + ["--"] + cmd, workdir)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        super().stop()


def service_dirs(base, cmd, n):
    for i in range(n):
        d = os.path.join(base, f"w{i:03d}")
        os.makedirs(d)
        run = os.path.join(d, "run")
        with open(run, "w") as f:
            f.write("#!/bin/sh\nexec " + " ".join(cmd) + "\n")
        os.chmod(run, 0o755)


class Runit(Peer):
    name = "runit"
    leak_capable = False

    def start(self, workdir, cmd, n, mode):
        sv = os.path.join(workdir, "sv")
        service_dirs(sv, cmd, n)
        self.popen(["runsvdir", sv], workdir)


class S6(Peer):
    name = "s6"
    leak_capable = False

    def start(self, workdir, cmd, n, mode):
        sv = os.path.join(workdir, "s6")
        service_dirs(sv, cmd, n)
        self.popen(["s6-svscan", sv], workdir)


class Supervisord(Peer):
    name = "supervisord+memmon"

    def start(self, workdir, cmd, n, mode):
        conf = os.path.join(workdir, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(
                f"""[unix_http_server]
file={workdir}/supervisor.sock
[supervisord]
nodaemon=true
logfile={workdir}/supervisord.log
pidfile={workdir}/supervisord.pid
childlogdir={workdir}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{workdir}/supervisor.sock
[program:w]
command={" ".join(cmd)}
numprocs={n}
process_name=%(program_name)s_%(process_num)03d
autorestart=true
startsecs=0
startretries=100000
stdout_logfile=NONE
stderr_logfile=NONE
[eventlistener:memmon]
command={self.env.venv}/bin/memmon -a 100MB
events=TICK_5
stderr_logfile={workdir}/memmon.log
"""
            )
        self.popen([f"{self.env.venv}/bin/supervisord", "-n", "-c", conf], workdir)


class Circus(Peer):
    name = "circus+RW"

    def start(self, workdir, cmd, n, mode):
        conf = os.path.join(workdir, "circus.ini")
        with open(conf, "w") as f:
            f.write(
                f"""[circus]
check_delay = 5
endpoint = ipc://{workdir}/endpoint
pubsub_endpoint = ipc://{workdir}/pubsub
stats_endpoint = ipc://{workdir}/stats
[watcher:w]
cmd = {cmd[0]}
args = {" ".join(cmd[1:])}
numprocesses = {n}
copy_env = True
[plugin:rw]
use = circus.plugins.resource_watcher.ResourceWatcher
watcher = w
max_mem = 100M
loop_rate = 1
max_count = 0
"""
            )
        self.popen([f"{self.env.venv}/bin/circusd", conf], workdir)


class PM2(Peer):
    name = "PM2 (1 s)"

    def start(self, workdir, cmd, n, mode):
        self.home = os.path.join(workdir, "pm2home")
        apps = [
            {
                "name": f"w{i:03d}",
                "script": cmd[0],
                "args": cmd[1:],
                "interpreter": "none",
                "exec_mode": "fork",
                "autorestart": True,
                "restart_delay": 0,
                "max_restarts": 100000,
                "max_memory_restart": "100M",
                "out_file": "/dev/null",
                "error_file": "/dev/null",
            }
            for i in range(n)
        ]
        eco = os.path.join(workdir, "ecosystem.config.js")
        with open(eco, "w") as f:
            f.write("module.exports = { apps: " + json.dumps(apps) + " };\n")
        self.penv = dict(os.environ, PM2_HOME=self.home, PM2_WORKER_INTERVAL="1000")
        subprocess.run(
            [self.env.pm2, "start", eco],
            cwd=workdir,
            env=self.penv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=120,
        )

    def roots(self):
        try:
            with open(os.path.join(self.home, "pm2.pid")) as f:
                return [int(f.read().strip())]
        except (OSError, ValueError, AttributeError):
            return []

    def stop(self):
        roots = self.roots()
        try:
            subprocess.run(
                [self.env.pm2, "kill"],
                env=self.penv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
        except (subprocess.TimeoutExpired, OSError):
            pass
        kill_tree(roots)


# ---------------------------------------------------------------- measurements


class Env:
    pass


def fresh_dir(env, label):
    d = tempfile.mkdtemp(prefix=label.replace(" ", "_").replace("+", "_") + ".", dir=env.tmp)
    return d


def footprint(env, peer, n, idle_window):
    d = fresh_dir(env, peer.name)
    peer.start(d, [SLEEP, "100000"], n, "idle")
    try:
        wait_for(
            lambda: len(split_tree(peer.roots(), env.worker_exes)[1]) >= n,
            120,
            f"{peer.name}: {n} workers running",
        )
        time.sleep(env.settle)
        own, workers = split_tree(peer.roots(), env.worker_exes)
        res = {"n": n, "own": len(own), "workers": len(workers)}
        if idle_window:
            c0 = {p: cpu_ns(p) for p in own}
            t0 = time.monotonic()
            load0 = loadavg()
            time.sleep(idle_window)
            el = time.monotonic() - t0
            used = 0
            for p, a in c0.items():
                b = cpu_ns(p)
                if a is not None and b is not None:
                    used += b - a
            res["idle_cpu_pct"] = used / 1e9 / el * 100
            res["idle_window_s"] = el
            res["idle_load"] = f"{load0} -> {loadavg()}"
            own, workers = split_tree(peer.roots(), env.worker_exes)
        rolls = [rollup(p) for p in own]
        res["pss_mib"] = sum(r.get("Pss", 0) for r in rolls) / MIB
        res["uss_mib"] = (
            sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rolls) / MIB
        )
        # Outside sharers of the supervisor's own executables lower its PSS: name them.
        table = proc_table()
        exes = {table[p][1] for p in own if p in table}
        tree = own | workers
        res["outside_sharers"] = sorted(
            {f"{exe} (pid {p})" for p, (_, exe) in table.items() if exe in exes and p not in tree}
        )
        return res
    finally:
        peer.stop()


def leak(env, peer, cycles):
    d = fresh_dir(env, peer.name)
    log = os.path.join(d, "leak.log")
    peer.start(d, [env.peerwork, "leak", log], 1, "leak")
    runs, seen = [], set()
    load0 = loadavg()
    try:
        for _ in range(cycles):
            def next_pid():
                try:
                    with open(log) as f:
                        for line in f:
                            pid = int(line.split()[0])
                            if pid not in seen:
                                return pid
                except (OSError, ValueError, IndexError):
                    pass
                return None

            pid = wait_for(next_pid, 60, f"{peer.name}: a leaker starts")
            seen.add(pid)
            r = watch(pid, 60)
            if r is None:
                runs.append(None)
                break
            runs.append(r)
    except TimeoutError as e:
        runs.append(None)
        print(f"  {e}", file=sys.stderr)
    finally:
        peer.stop()
    return {"runs": runs, "load": f"{load0} -> {loadavg()}"}


def watch(pid, timeout):
    """Polls the leaker's RSS about every millisecond until it exits: (s over limit, peak MiB,
    longest gap between two looks in ms), or None if it never crossed or never exited."""
    try:
        fd = os.pidfd_open(pid)
        statm = open(f"/proc/{pid}/statm", "rb", buffering=0)
    except OSError:
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    # A real-time watcher keeps its looks about 1 ms apart on a busy machine; it sleeps between
    # looks, so it takes little from the supervisor it watches.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except OSError:
        pass
    cross, peak, last, gap = None, 0, None, 0.0
    end = time.monotonic() + timeout
    try:
        while True:
            try:
                statm.seek(0)
                rss = int(statm.read().split()[1]) * PAGE
            except (OSError, ValueError, IndexError):
                rss = 0
            now = time.monotonic()
            if last is not None:
                gap = max(gap, now - last)
            last = now
            peak = max(peak, rss)
            if cross is None and rss > LIMIT:
                cross = now
            if poller.poll(1):
                gone = time.monotonic()
                break
            if now > end:
                return None
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        statm.close()
        os.close(fd)
    if cross is None:
        return None
    return (gone - cross, peak / MIB, gap * 1e3)


def crash(env, peer, gaps_wanted):
    d = fresh_dir(env, peer.name)
    log = os.path.join(d, "crash.log")
    peer.start(d, [env.peerwork, "crash", log, "200"], 1, "crash")
    load0 = loadavg()

    def lines():
        try:
            with open(log) as f:
                return [line.split() for line in f if line.strip()]
        except OSError:
            return []

    try:
        wait_for(
            lambda: sum(1 for l in lines() if l[0] == "start") > gaps_wanted,
            30 + 8 * gaps_wanted,
            f"{peer.name}: {gaps_wanted} restarts",
        )
    except TimeoutError as e:
        print(f"  {e}", file=sys.stderr)
    finally:
        peer.stop()
    gaps, last_exit = [], None
    for kind, ns in lines():
        if kind == "exit":
            last_exit = int(ns)
        elif kind == "start" and last_exit is not None:
            gaps.append((int(ns) - last_exit) / 1e9)
            last_exit = None
    return {"gaps": gaps[:gaps_wanted], "load": f"{load0} -> {loadavg()}"}


# ---------------------------------------------------------------- the table


def fmt(v, digits):
    return "—" if v is None else f"{v:.{digits}f}"


def ratio(v, base):
    if v is None or base is None or base == 0 or v is base:
        return ""
    return f" ({v / base:.2g}×)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--supervise", required=True)
    ap.add_argument("--peerwork", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--pm2", required=True)
    ap.add_argument("--quick", action="store_true", help="10 s idle window, n = 3")
    ap.add_argument("--only", default="", help="comma-separated peer names (runit,s6,...)")
    ap.add_argument("--json", help="also write every raw figure here")
    a = ap.parse_args()

    env = Env()
    env.supervise, env.peerwork, env.venv, env.pm2 = a.supervise, a.peerwork, a.venv, a.pm2
    env.worker_exes = {os.path.realpath(SLEEP), os.path.realpath(a.peerwork)}
    env.settle = 3 if a.quick else 5
    env.tmp = tempfile.mkdtemp(prefix="supervise-peers.")
    idle_window = 10 if a.quick else 30
    n = 3 if a.quick else 5

    peers = [
        Supervise(env),
        Runit(env),
        S6(env),
        Supervisord(env),
        Circus(env),
        PM2(env),
    ]
    keys = {"supervise": 0, "runit": 1, "s6": 2, "supervisord": 3, "circus": 4, "pm2": 5}
    if a.only:
        peers = [peers[keys[k.strip()]] for k in a.only.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {p.name: {} for p in peers}

    for p in peers:
        for workers in (1, 20, 100):
            print(f"{p.name}: footprint at {workers} workers", file=sys.stderr)
            try:
                r = footprint(env, p, workers, idle_window if workers == 20 else 0)
            except (TimeoutError, OSError, subprocess.SubprocessError) as e:
                print(f"  failed: {e}", file=sys.stderr)
                r = None
            results[p.name][f"fp{workers}"] = r
            if r and r["outside_sharers"]:
                print(f"  outside sharers: {r['outside_sharers']}", file=sys.stderr)

    leak_runs = []
    for p in peers:
        if not p.leak_capable:
            continue
        variants = [p]
        if isinstance(p, Supervise):
            variants.append(Supervise(env, ["--memory-for", "1"], "supervise --memory-for 1"))
            results.setdefault("supervise --memory-for 1", {})
        for v in variants:
            print(f"{v.name}: leak, {n} cycles ({loadavg()})", file=sys.stderr)
            results[v.name]["leak"] = leak(env, v, n)
            leak_runs.append(v.name)

    for p in peers:
        print(f"{p.name}: crash -> restart, {n} gaps ({loadavg()})", file=sys.stderr)
        results[p.name]["crash"] = crash(env, p, n)

    finished = datetime.datetime.now(datetime.timezone.utc)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(env.tmp, ignore_errors=True)

    # ---- one table, ratios to supervise
    cols = [p.name for p in peers]
    base = results.get("supervise", {})

    def fp(name, workers, key):
        r = results[name].get(f"fp{workers}")
        return r.get(key) if r else None

    def med_worst(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return None, None
        return statistics.median(vals), max(vals)

    rows = []
    for workers in (1, 20, 100):
        for key, label in (("pss_mib", "PSS"), ("uss_mib", "USS")):
            b = fp("supervise", workers, key) if base else None
            rows.append(
                [f"{label} @{workers}, MiB"]
                + [fmt(fp(c, workers, key), 1) + ratio(fp(c, workers, key), b) for c in cols]
            )
    b = fp("supervise", 20, "idle_cpu_pct") if base else None
    rows.append(
        [f"idle CPU @20, % of a core ({idle_window} s)"]
        + [fmt(fp(c, 20, "idle_cpu_pct"), 3) + ratio(fp(c, 20, "idle_cpu_pct"), b) for c in cols]
    )

    def leak_cell(name, base_med):
        lk = results.get(name, {}).get("leak")
        if not lk:
            return "—"
        runs = lk["runs"]
        ok = [r for r in runs if r is not None]
        if not ok:
            return "not stopped"
        over_m, over_w = med_worst([r[0] for r in ok])
        peak_m, peak_w = med_worst([r[1] for r in ok])
        miss = "" if len(ok) == len(runs) == n else f" [{len(ok)}/{n} runs]"
        return (
            f"{over_m:.3f} / {peak_m:.1f} (worst {over_w:.3f} / {peak_w:.1f})"
            + ratio(over_m, base_med)
            + miss
        )

    def leak_median(name):
        lk = results.get(name, {}).get("leak")
        ok = [r for r in lk["runs"] if r is not None] if lk else []
        return statistics.median([r[0] for r in ok]) if ok else None

    bl = leak_median("supervise")
    rows.append([f"10 MiB/s leak past 100 MiB: s over / peak MiB, median (worst), n={n}"]
                + [leak_cell(c, None if c == "supervise" else bl) for c in cols])
    if "supervise --memory-for 1" in results:
        rows.append(
            ["same, supervise --memory-for 1"]
            + [leak_cell("supervise --memory-for 1", None) if c == "supervise" else "" for c in cols]
        )

    def crash_cell(name, base_med):
        cr = results[name].get("crash")
        if not cr or not cr["gaps"]:
            return "—"
        m, w = med_worst(cr["gaps"])
        miss = "" if len(cr["gaps"]) == n else f" [{len(cr['gaps'])}/{n}]"
        return f"{m * 1e3:.1f} (worst {w * 1e3:.1f})" + ratio(m, base_med) + miss

    cb = med_worst(base["crash"]["gaps"])[0] if base and base.get("crash") else None
    rows.append([f"crash -> restart, ms, median (worst), n={n}"] + [crash_cell(c, None if c == "supervise" else cb) for c in cols])

    gaps = []
    for name in leak_runs:
        for r in results[name]["leak"]["runs"]:
            if r:
                gaps.append(r[2])

    print()
    print(
        f"peers, one run: {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC on {platform.node()}, "
        f"{os.cpu_count()} CPUs, {platform.release()}; load now {loadavg()}"
        + (" (quick mode)" if a.quick else "")
    )
    print("| figure | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(
        "Ratios are to supervise. Leak: time from the first look at RSS > 100 MiB to the exit, "
        f"looks at most {max(gaps):.1f} ms apart." if gaps else ""
    )
    for name in results:
        for key in ("leak", "crash"):
            if key in results[name]:
                print(f"load during {name} {key}: {results[name][key]['load']}")
        r = results[name].get("fp20")
        if r and "idle_load" in r:
            print(f"load during {name} idle window: {r['idle_load']}")
        for workers in (1, 20, 100):
            r = results[name].get(f"fp{workers}")
            if r and r["outside_sharers"]:
                print(f"{name} @{workers}: outside sharers of its executables: {r['outside_sharers']}")


if __name__ == "__main__":
    main()
