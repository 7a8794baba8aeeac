"""The Python side of supervise: what a supervised program uses to report on itself.

Standard library only, Python 3.9+, Linux. It speaks the channel (fd 3) and the shared segment
(fd 4) exactly as child-sdk's specs say (``cargo doc -p child-sdk``: ``proto`` and ``segment``)::

    import supervise_sdk

    client = supervise_sdk.Client.from_env()      # None when not under supervise
    if client:
        jobs = client.counter("jobs")
        client.ready()
        while not client.shutdown_requested():
            client.heartbeat()
            do_one_job()
            jobs.inc()

A process forked after the client exists (gunicorn, multiprocessing, Celery's prefork pool)
writes its own page of the segment; the supervisor sums them and keeps the counters of workers
that exited. See docs/python-sdk.md.
"""

from .client import Client, SupervisedError, current
from .proto import Limits, ProtoError
from .sections import profile, section
from .segment import Counter, Gauge, SegmentError

__all__ = [
    "Client",
    "Counter",
    "Gauge",
    "Limits",
    "ProtoError",
    "SegmentError",
    "SupervisedError",
    "current",
    "profile",
    "section",
]
__version__ = "0.1.0"
