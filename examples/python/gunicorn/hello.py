"""A plain WSGI app (no SDK): each request takes a few milliseconds, as real work does, so a
reload under load finds requests in flight."""

import time


def app(environ, start_response):
    time.sleep(0.005)
    body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
