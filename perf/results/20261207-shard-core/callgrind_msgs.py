#!/usr/bin/env python3
"""Instructions per message of a ringnats binary under callgrind, for one scenario.

Usage: callgrind_msgs.py BINARY SCENARIO [--out DIR] [--warm N] [--msgs N]

Scenarios:
  pub16        1 publisher, 16 B, no subscriber; the server on one CPU (one shard)
  pubsub128    1 publisher -> 1 subscriber, 128 B, one shard
  cross128     1 publisher on shard 0 -> 1 subscriber on shard 1, 128 B; the server on two
               CPUs (two shards); the load reconnects until the two clients are on different
               shards (a client's shard is its client_id modulo the shard count)

Starts BINARY under `valgrind --tool=callgrind` (whole process, all threads in one count),
pinned with taskset (CPU 0, or CPUs 0-1 for cross128: ringnats starts a shard per CPU of
its mask), with this script as the load on CPU 1. The load publishes --warm messages, waits until they are all through (the
subscriber has them all, or a PING after them is answered), zeroes the counts
(`callgrind_control -z`), publishes --msgs more, waits again, and dumps
(`callgrind_control -d`). Prints one line: scenario, Ir in the measured part, Ir per message,
and the dump file (keep it for `callgrind_annotate`). Stops only the server it started.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

SCENARIOS = {
    # name: (server CPUs, payload size, subscriber)
    "pub16": ("0", 16, False),
    "pubsub128": ("0", 128, True),
    "cross128": ("0,1", 128, True),
}
CHUNK_MSGS = 500
RECONNECTS_MAX = 64
WAIT_S = 900


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = self.read_line()
        m = re.search(rb'"client_id":(\d+)', info)
        if not m:
            raise SystemExit(f"no client_id in INFO: {info[:200]!r}")
        self.cid = int(m.group(1))
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n')
        self.buf = b""

    def read_line(self):
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise SystemExit("server closed the connection")
            data += chunk
        return data

    def ping(self):
        """PING and wait for the PONG (everything before it was processed)."""
        self.sock.sendall(b"PING\r\n")
        while True:
            line = self.read_line()
            if line == b"PONG\r\n":
                return
            if line.startswith(b"-ERR"):
                raise SystemExit(f"server said {line!r}")


class Counter(threading.Thread):
    """Reads the subscriber's socket and counts bytes."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.bytes = 0
        self.cond = threading.Condition()

    def run(self):
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                return
            with self.cond:
                self.bytes += len(data)
                self.cond.notify_all()

    def wait_for(self, total):
        deadline = time.monotonic() + WAIT_S
        with self.cond:
            while self.bytes < total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"subscriber got {self.bytes} of {total} bytes")
                self.cond.wait(left)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--out", default="perf/out")
    ap.add_argument("--warm", type=int, default=20_000)
    ap.add_argument("--msgs", type=int, default=200_000)
    args = ap.parse_args()
    cpus, size, with_sub = SCENARIOS[args.scenario]
    # Callgrind runs one thread at a time, so the load shares CPU 1 even with two shards.
    os.sched_setaffinity(0, {1})
    os.makedirs(args.out, exist_ok=True)
    port = free_port()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_file = os.path.join(args.out, f"callgrind.{args.scenario}.{stamp}.%p")
    server = subprocess.Popen(
        ["taskset", "-c", cpus, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
         args.binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run(args, server, port, size, with_sub, out_file)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def run(args, server, port, size, with_sub, out_file):
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.1)
    shards = 2 if args.scenario == "cross128" else 1
    counter = None
    if with_sub:
        sub = Client(port)
        sub.sock.sendall(b"SUB bench 1\r\n")
        sub.ping()
        counter = Counter(sub.sock)
    pub = None
    for _ in range(RECONNECTS_MAX):
        pub = Client(port)
        if args.scenario != "cross128" or pub.cid % shards != sub.cid % shards:
            break
        pub.sock.close()
        pub = None
    if pub is None:
        raise SystemExit("the publisher never landed on the other shard")
    pub.ping()
    if counter:
        counter.start()
    payload = bytes(range(48, 48 + 64)) * (size // 64) if size >= 64 else b"x" * size
    op = b"PUB bench %d\r\n%s\r\n" % (size, payload)
    msg_len = len(b"MSG bench 1 %d\r\n" % size) + size + 2
    chunk = op * CHUNK_MSGS
    sent = 0

    def publish(n):
        nonlocal sent
        assert n % CHUNK_MSGS == 0
        for _ in range(n // CHUNK_MSGS):
            pub.sock.sendall(chunk)
        sent += n
        if counter:
            counter.wait_for(sent * msg_len)
        else:
            pub.ping()

    publish(args.warm)
    subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publish(args.msgs)
    subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump = None
    for _ in range(100):
        # The dump of the zeroed part: <out>.<pid>.1
        candidates = [f for f in os.listdir(os.path.dirname(out_file) or ".")
                      if f.startswith(os.path.basename(out_file).replace("%p", "")) and f.endswith(".1")]
        if candidates:
            dump = os.path.join(os.path.dirname(out_file), sorted(candidates)[-1])
            break
        time.sleep(0.1)
    if dump is None:
        raise SystemExit("no callgrind dump")
    time.sleep(0.5)
    total = None
    with open(dump) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    print(f"{args.scenario} msgs={args.msgs} Ir={total} Ir/msg={total / args.msgs:.1f} dump={dump}")


if __name__ == "__main__":
    sys.exit(main())
