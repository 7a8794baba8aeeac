"""A Celery-like job loop under supervise: it takes jobs, counts them, beats once per job,
measures one job step with @profile, and stops when supervise sends Shutdown.

    PYTHONPATH=sdk/python supervise --heartbeat-timeout 2s -- python3 examples/python/job_loop.py

Flags: --hang-after N (stop beating after N jobs: supervise finds it hung and restarts it),
--keep KIB (each job keeps that much, a slow leak the heap figures show), --fork N (a prefork
pool: N forked workers run the loop, the parent only watches them; --max-jobs M makes each worker
exit after M jobs and be replaced, as Celery's max_tasks_per_child does).
"""

import argparse
import os
import signal
import sys
import time
import tracemalloc

import supervise_sdk
from supervise_sdk import profile

kept = []


@profile(name="job.step")
def step(keep_kib: int) -> int:
    scratch = [bytes(100) for _ in range(2000)]  # about 250 KB, freed at the end
    if keep_kib:
        kept.append(bytearray(keep_kib * 1024))
    return len(scratch)


def work(client, args, jobs_limit=None) -> int:
    jobs = client.counter("jobs") if client else None
    done = 0
    while client is None or not client.shutdown_requested():
        if args.hang_after is not None and done >= args.hang_after:
            print(f"job_loop hanging pid={os.getpid()}", flush=True)
            while client is None or not client.shutdown_requested():
                time.sleep(0.05)
            break
        step(args.keep)
        done += 1
        if jobs:
            jobs.inc()
            client.requests.inc()
            client.heartbeat()
        if jobs_limit is not None and done >= jobs_limit:
            break
        time.sleep(args.pause)
    return done


def pool(client, args):
    children = set()

    def spawn():
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            work(client, args, args.max_jobs)
            os._exit(0)
        children.add(pid)

    started = 0
    for _ in range(args.fork):
        spawn()
        started += 1
    while not client.shutdown_requested():
        client.heartbeat()
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if pid:
            children.discard(pid)
            if args.workers is None or started < args.workers:
                spawn()
                started += 1
        else:
            time.sleep(0.02)
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--hang-after", type=int)
    p.add_argument("--keep", type=int, default=0)
    p.add_argument("--pause", type=float, default=0.01)
    p.add_argument("--fork", type=int, default=0)
    p.add_argument("--max-jobs", type=int)
    p.add_argument("--workers", type=int, help="with --fork: how many workers in all")
    args = p.parse_args()
    tracemalloc.start()
    client = supervise_sdk.Client.from_env()
    if client:
        client.on_memory_pressure(lambda b, l: print(f"job_loop pressure bytes={b}", flush=True))
        client.ready()
        client.status("taking jobs")
    if args.fork and client:
        pool(client, args)
    else:
        work(client, args)
    print(f"job_loop shutdown pid={os.getpid()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
