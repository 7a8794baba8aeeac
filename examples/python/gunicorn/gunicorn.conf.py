"""gunicorn's configuration for an app under supervise.

The client is made here, in the master, before any worker is forked: each worker then gets its
own page of the segment by itself (supervise_sdk hooks os.fork), and its counters are summed by
supervise and kept when gunicorn replaces it (max_requests). The master answers Shutdown the way
gunicorn stops gracefully, with SIGTERM to itself.

    PYTHONPATH=sdk/python supervise -- gunicorn -c examples/python/gunicorn/gunicorn.conf.py \\
        --chdir examples/python/gunicorn app:app
"""

import os
import signal

import supervise_sdk

bind = os.environ.get("APP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("APP_WORKERS", "4"))
max_requests = int(os.environ.get("APP_MAX_REQUESTS", "0"))
graceful_timeout = 5

client = supervise_sdk.Client.from_env()
if client is not None:
    client.on_shutdown(lambda _deadline: os.kill(os.getpid(), signal.SIGTERM))


def when_ready(server):
    if client is not None:
        client.ready()
        client.status(f"{workers} workers on {bind}")


def post_fork(server, worker):
    # The worker already writes its own page (gunicorn forks with os.fork, which ran
    # supervise_sdk's hook; after_fork() makes sure of it and does nothing more). Its figures
    # start from here: heap and sections are this worker's.
    if client is not None:
        client.after_fork()
        client.heartbeat()
