"""A WSGI app whose workers count requests, publish their heap and measure one section."""

import tracemalloc

import supervise_sdk
from supervise_sdk import section

tracemalloc.start()
client = supervise_sdk.Client.from_env()  # the master's client, inherited across the fork
requests = client.counter("requests") if client else None


def app(environ, start_response):
    with section("render"):
        body = (" ".join(str(i) for i in range(500)) + "\n").encode()
    if client:
        requests.inc()
        client.heartbeat()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
