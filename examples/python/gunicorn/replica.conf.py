"""gunicorn's configuration for replicas under supervise, each on a port of its own: the
instance number supervise gives each (SUPERVISE_INSTANCE) picks its port from APP_PORTS
("8000,8001"). Sync workers, and no --reuse-port: since gunicorn 23 that option gives every
worker a listening socket of its own, whose queued connections are reset when the worker
leaves on a reload (unless net.ipv4.tcp_migrate_req is 1); a master's one listener, kept across
a HUP, loses nothing.

    APP_PORTS=8000,8001 supervise -c supervise.toml   # command = ["gunicorn", "-c", THIS, ...]
"""

import os

ports = os.environ.get("APP_PORTS", "8000").split(",")
instance = int(os.environ.get("SUPERVISE_INSTANCE", "0"))
bind = "127.0.0.1:" + ports[instance % len(ports)]
workers = 2
worker_class = "sync"
graceful_timeout = 10
