"""A hostile Python worker: garbage on the channel, then scribbles over every page of its
segment it can reach (main page, directory, process pages), claims with a lie, and forks a child
that scribbles too. supervise must stay up and supervise its neighbours as before."""

import mmap
import os
import random
import socket
import sys
import time

ch = int(os.environ["SUPERVISE_CONTROL_FD"])
seg = int(os.environ["SUPERVISE_SEGMENT_FD"])
sock = socket.socket(fileno=ch)
rng = random.Random(7)
for _ in range(12):
    try:
        sock.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))), socket.MSG_NOSIGNAL)
    except OSError:
        break
print("pyhostile garbage sent", flush=True)
size = os.fstat(seg).st_size
m = mmap.mmap(seg, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
q = memoryview(m).cast("Q")
d = memoryview(m).cast("I")
# Every directory entry names a process: pid 1, our own, and nonsense.
for i in range(1024):
    d[1024 + i] = (1, os.getpid(), 0xFFFFFFFF, rng.randrange(1 << 32))[i % 4]
if os.fork() == 0:
    while True:
        for _ in range(2000):
            q[rng.randrange(len(q))] = rng.randrange(1 << 64)
        time.sleep(0.005)
print("pyhostile scribbling", flush=True)
while True:
    for _ in range(2000):
        q[rng.randrange(len(q))] = rng.randrange(1 << 64)
    time.sleep(0.005)
