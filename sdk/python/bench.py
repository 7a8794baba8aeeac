"""What the Python SDK's calls cost, against a plain attribute increment and prometheus_client's
multiprocess mode in the same run; and a scrape of 1,000 worker processes' worth of counters
through prometheus_client's multiprocess collector (supervise's own read of the same is the Rust
bench `cargo bench -p child-sdk --bench segment -- processes`). Not a test.

    python3 -m venv ~/.cache/supervise-bench && ~/.cache/supervise-bench/bin/pip install prometheus_client
    cd sdk/python && ~/.cache/supervise-bench/bin/python bench.py

Without prometheus_client, its rows are left out. Medians of 7 runs, in nanoseconds per call.
"""

import os
import statistics
import sys
import tempfile
import time
import timeit
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))

from fake import FakeSupervisor  # noqa: E402

import supervise_sdk  # noqa: E402

N = 200_000


def per_call(stmt, setup_globals, number=N):
    runs = timeit.repeat(stmt, globals=setup_globals, number=number, repeat=7)
    return statistics.median(runs) / number * 1e9


def main():
    rows = []

    class Plain:
        n = 0

    plain = Plain()
    rows.append(("plain attribute increment (o.n += 1)", per_call("o.n += 1", {"o": plain})))

    sup = FakeSupervisor()
    client = sup.connect()
    c = client.counter("requests")
    g = client.gauge("queue")
    rows.append(("supervise_sdk Counter.inc()", per_call("c.inc()", {"c": c})))
    rows.append(("supervise_sdk Gauge.set(v)", per_call("g.set(7)", {"g": g})))
    rows.append(("supervise_sdk heartbeat()", per_call("h()", {"h": client.heartbeat})))
    sec = supervise_sdk.section("s")
    tracemalloc.start()
    rows.append(
        ("supervise_sdk heartbeat(), tracemalloc on", per_call("h()", {"h": client.heartbeat}))
    )
    rows.append(
        (
            "supervise_sdk section enter/exit (tracemalloc on)",
            per_call("with s: pass", {"s": sec}, number=N // 10),
        )
    )
    tracemalloc.stop()

    prom_dir = tempfile.mkdtemp(prefix="prom-mp-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    try:
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
    except ImportError:
        prometheus_client = None
        print("prometheus_client is not installed: its rows are left out", file=sys.stderr)
    if prometheus_client is not None:
        pc = Counter("requests", "requests served")
        rows.append(
            (
                f"prometheus_client {prometheus_client.__version__ if hasattr(prometheus_client, '__version__') else ''} multiprocess Counter.inc()".replace("  ", " "),
                per_call("c.inc()", {"c": pc}),
            )
        )
        # 1,000 worker processes, 10 counters each: each leaves its own file behind.
        counters = [Counter(f"route_{i}", "requests by route") for i in range(10)]
        for _ in range(1000):
            pid = os.fork()
            if pid == 0:
                for k in counters:
                    k.inc()
                os._exit(0)
            os.waitpid(pid, 0)
        files = len(os.listdir(prom_dir))

        def scrape():
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg)

        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            scrape()
            times.append(time.perf_counter() - t0)
        rows.append(
            (
                f"prometheus_client multiprocess scrape, 1,000 processes x 10 counters ({files} files)",
                statistics.median(times) * 1e9,
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"python {sys.version.split()[0]}")
    for name, ns in rows:
        if ns >= 1e6:
            print(f"{name:<{width}}  {ns / 1e6:10.1f} ms")
        else:
            print(f"{name:<{width}}  {ns:10.1f} ns")
    sup.close()


if __name__ == "__main__":
    main()
