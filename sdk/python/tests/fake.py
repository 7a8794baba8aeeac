"""A supervisor played by the tests: the channel's other end, and a segment made as supervise
makes it (sealed memfd, main page header), read as the spec says."""

import json
import os
import pathlib
import socket
import struct

from supervise_sdk import client as client_mod
from supervise_sdk import proto
from supervise_sdk.segment import (
    DIRECTORY,
    FILE_SIZE,
    MAGIC,
    PAGE,
    PROCESS_PAGES,
    VERSION,
    process_page_offset,
)

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "child-sdk" / "spec" / "examples.json"


def examples():
    return json.loads(EXAMPLES.read_text(encoding="utf-8"))


def make_segment() -> int:
    """A segment fd as the supervisor's ``segment::create`` makes it."""
    fd = os.memfd_create("test-segment", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, FILE_SIZE)
    os.pwrite(fd, struct.pack("<QII", MAGIC, VERSION, PAGE), 0)
    import fcntl

    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd


def read_page(fd: int, offset: int) -> dict:
    raw = os.pread(fd, PAGE, offset)
    u64 = lambda at: struct.unpack_from("<Q", raw, at)[0]  # noqa: E731
    u32 = lambda at: struct.unpack_from("<I", raw, at)[0]  # noqa: E731
    metrics = {}
    for i in range(min(u32(136), 61)):
        e = 192 + 64 * i
        n, kind = raw[e], raw[e + 1]
        if 1 <= n <= 48 and kind in (1, 2):
            metrics[raw[e + 8 : e + 8 + n].decode("utf-8")] = (kind, u64(e + 56))
    return {
        "magic": u64(0),
        "writer_pid": u32(16),
        "flags": u32(20),
        "heartbeat": u64(24),
        "heap": (u64(32), u64(40)),
        "requests": u64(64),
        "errors": u64(72),
        "in_flight": u64(80),
        "metrics": metrics,
    }


def directory(fd: int) -> list:
    return list(struct.unpack(f"<{PROCESS_PAGES}I", os.pread(fd, PAGE, DIRECTORY)))


def read_all(fd: int) -> dict:
    """The main page and the claimed process pages, added up as the supervisor does."""
    total = read_page(fd, 0)
    total["processes"] = 1
    sums = {k: v for k, (_, v) in total["metrics"].items()}
    for i, pid in enumerate(directory(fd)):
        if pid:
            p = read_page(fd, process_page_offset(i))
            if p["magic"] != MAGIC:
                continue
            total["processes"] += 1
            total["requests"] += p["requests"]
            for k, (_, v) in p["metrics"].items():
                sums[k] = sums.get(k, 0) + v
    total["sums"] = sums
    return total


class FakeSupervisor:
    """The supervisor's end of one worker: a socketpair and a segment."""

    def __init__(self, welcome=None):
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.settimeout(10)
        self.theirs_fd = theirs.detach()
        self.segment_fd = make_segment()
        self.welcome = welcome or proto.Welcome(
            "api", 2, 5000, proto.Limits(100 << 20, 80 << 20, "rss")
        )

    def connect(self):
        """A client connected through the handshake, installed as the process's client."""
        import threading

        result = {}

        def answer():
            hello = proto.decode_child(self.ours.recv(proto.MAX_PACKET))
            result["hello"] = hello
            self.ours.send(proto.encode(self.welcome))

        t = threading.Thread(target=answer)
        t.start()
        c = client_mod.Client.connect(self.theirs_fd, os.dup(self.segment_fd))
        t.join()
        self.hello = result["hello"]
        client_mod._client = c
        return c

    def recv(self):
        return proto.decode_child(self.ours.recv(proto.MAX_PACKET))

    def send(self, msg):
        self.ours.send(proto.encode(msg) if not isinstance(msg, bytes) else msg)

    def close(self):
        client_mod._client = None
        self.ours.close()
        os.close(self.segment_fd)
