#!/usr/bin/env python3
# Usage: scripts/connz_poll.py [--server ringnats|nats-server] [--bin PATH] [--conns N]
#                              [--rate R] [--path PATH] [--rounds N] [--seconds S]
#                              [--size BYTES] [--max-seconds S] [--out FILE.md]
#
# What a monitoring poll costs message traffic (issue 12: "a 100 req/s poll of /connz?subs=1
# with 10,000 connections costs message traffic nothing measurable"). Starts the server pinned
# to CPU 0 (as compare.sh does, so the monitoring thread shares the shard's core: the worst
# case) with a monitoring port, opens --conns idle connections that each subscribe to their
# own subject (CONNECT, SUB, PING/PONG; server PINGs answered), then runs a 1 -> 1 pub/sub
# throughput load (`ringnats bench`, pinned to CPU 1) for --seconds, in rounds alternating
# "poll off" and "poll on" (a keep-alive HTTP client GETting --path at --rate requests/s on
# an absolute schedule). Reports each run's publish and receive rates, the medians per mode
# and their ratio, the polls answered and their latency, and the server's CPU per mode, split
# into the monitoring threads' (`monitor`, `monitor-render`) and the rest.
#
# Bounded: every load run stops after --seconds (killed 30 s later), the whole script after
# --max-seconds. Needs target-perf/release/ringnats (or --bin) and, for --server nats-server,
# nats-server on PATH. Starts and stops only its own server and load processes.
import argparse
import datetime
import os
import platform
import re
import resource
import selectors
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pinned_server import PinnedServer, free_port  # noqa: E402

LOAD_CPU = "1"
FDS_OWN = 200
PUB_RATE = re.compile(r"Pub stats: ([\d,]+) msgs/sec")
SUB_RATE = re.compile(r"Sub stats: ([\d,]+) msgs/sec")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_fd_limit(conns):
    needed = conns + FDS_OWN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
    elif soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def read_until(s, marker, deadline):
    buf = b""
    while marker not in buf:
        s.settimeout(max(0.1, deadline - time.time()))
        data = s.recv(65536)
        if not data:
            raise RuntimeError("server closed an idle connection")
        buf += data
    return buf


def open_idle(port, n, within):
    """n connections, each CONNECT + SUB idle.<i> + PING, all with their PONG; in chunks so the
    listen backlog never overflows."""
    deadline = time.time() + within
    conns = []
    chunk = 500
    for start in range(0, n, chunk):
        batch = [socket.create_connection(("127.0.0.1", port), timeout=10)
                 for _ in range(min(chunk, n - start))]
        for i, s in enumerate(batch):
            read_until(s, b"\r\n", deadline)  # INFO
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"idle","lang":"py"}'
                      b"\r\nSUB idle.%d 1\r\nPING\r\n" % (start + i))
        for s in batch:
            read_until(s, b"PONG\r\n", deadline)
        conns.extend(batch)
    return conns


class PingAnswerer(threading.Thread):
    """Answers the server's PINGs on the idle connections (its RTT PING comes 2 s after
    CONNECT; unanswered keepalives would close them as stale)."""

    def __init__(self, conns):
        super().__init__(daemon=True)
        self.sel = selectors.DefaultSelector()
        for s in conns:
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
        self.stop = threading.Event()
        self.closed = 0

    def run(self):
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    self.closed += 1
                    continue
                for _ in range(data.count(b"PING\r\n")):
                    try:
                        s.send(b"PONG\r\n")
                    except OSError:
                        pass


class Poller(threading.Thread):
    """GETs `path` on one keep-alive connection at `rate` per second, on an absolute schedule
    (a slow answer delays the next request, never adds one)."""

    def __init__(self, http_port, path, rate):
        super().__init__(daemon=True)
        self.http_port, self.path, self.rate = http_port, path, rate
        self.stop = threading.Event()
        self.latencies = []
        self.failures = 0
        self.body_bytes = 0
        self.buf = bytearray(1 << 22)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def get(self, s):
        request = f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        s.sendall(request)
        view = memoryview(self.buf)
        have = 0
        while True:
            n = s.recv_into(view[have:])
            if n == 0:
                raise RuntimeError("monitoring connection closed")
            have += n
            end = self.buf.find(b"\r\n\r\n", 0, have)
            if end >= 0:
                break
        head = bytes(self.buf[:end]).decode("latin-1")
        status = int(head.split()[1])
        length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
        body_have = have - (end + 4)
        while body_have < length:
            n = s.recv_into(view, min(len(view), length - body_have))
            if n == 0:
                raise RuntimeError("monitoring connection closed mid-body")
            body_have += n
        if status != 200:
            raise RuntimeError(f"status {status}")
        return length

    def run(self):
        s = self.connect()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            started = time.monotonic()
            try:
                self.body_bytes += self.get(s)
                self.latencies.append(time.monotonic() - started)
            except (OSError, RuntimeError):
                self.failures += 1
                s.close()
                s = self.connect()
            if time.monotonic() > next_at + 1.0:
                next_at = time.monotonic()  # fell a second behind: do not burst to catch up
        s.close()


def cpu_seconds(pid):
    """(whole process, the monitoring threads `monitor` and `monitor-render`) CPU seconds so
    far."""
    def stat_cpu(path):
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    total = stat_cpu(f"/proc/{pid}/stat")
    monitor = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if name == "monitor" or name.startswith("monitor-"):
                monitor += stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            pass
    return total, monitor


def run_load(tool, port, seconds, size):
    argv = ["taskset", "-c", LOAD_CPU, tool, "bench", "-s", f"nats://127.0.0.1:{port}",
            "--no-progress", "--pub", "1", "--sub", "1", "--size", str(size),
            "--msgs", "1000000000", "--duration", f"{seconds}s", "load.subject"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    text = out.stdout + out.stderr
    pub, sub = PUB_RATE.search(text), SUB_RATE.search(text)
    if out.returncode != 0 or not pub or not sub:
        raise RuntimeError(f"load failed ({out.returncode}): {text[-2000:]}")
    return int(pub.group(1).replace(",", "")), int(sub.group(1).replace(",", ""))


def header(args, argv):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"]).returncode != 0
    version = subprocess.run([args.bin, "--version"], capture_output=True,
                             text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown")
    return [
        f"# /connz poll beside message traffic ({datetime.datetime.now().isoformat()})",
        "",
        f"- command: {shlex.join(['scripts/connz_poll.py', *argv])}",
        f"- commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
        f"- server: {args.bin} ({version}), pinned to CPU 0 (all its threads, the monitoring"
        " thread included); load and poller on CPU 1",
        f"- cpu: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}",
        f"- {args.conns:,} idle connections, one SUB each; poll: GET {args.path} at"
        f" {args.rate} req/s; load: `ringnats bench --pub 1 --sub 1 --size {args.size}"
        f" --duration {args.seconds}s`",
        "",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", choices=["ringnats", "nats-server"], default="ringnats")
    ap.add_argument("--bin", help="server binary (default target-perf/release/ringnats)")
    ap.add_argument("--tool", default=None, help="ringnats binary for `bench` (default --bin)")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--path", default="/connz?subs=1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--out")
    argv = sys.argv[1:]
    args = ap.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if args.bin is None:
        args.bin = ("target-perf/release/ringnats" if args.server == "ringnats"
                    else "nats-server")
    tool = args.tool or ("target-perf/release/ringnats" if args.server == "nats-server"
                         else args.bin)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    raise_fd_limit(args.conns)
    give_up = time.time() + args.max_seconds
    http_port = free_port()
    runs = []
    with PinnedServer([args.bin], ["-m", str(http_port)], stop_timeout_s=10) as server:
        conns = open_idle(server.port, args.conns, within=180)
        answerer = PingAnswerer(conns)
        answerer.start()
        run_load(tool, server.port, 1.0, args.size)  # warm-up, unrecorded
        for r in range(args.rounds):
            modes = ["off", "on"] if r % 2 == 0 else ["on", "off"]
            for mode in modes:
                if time.time() > give_up:
                    raise SystemExit("connz_poll.py: --max-seconds passed")
                poller = Poller(http_port, args.path, args.rate) if mode == "on" else None
                if poller:
                    poller.start()
                    time.sleep(0.5)  # the poll is running before the load starts
                cpu0 = cpu_seconds(server.pid)
                t0 = time.monotonic()
                pub, sub = run_load(tool, server.port, args.seconds, args.size)
                elapsed = time.monotonic() - t0
                cpu1 = cpu_seconds(server.pid)
                polls, lat, fails, body = 0, [], 0, 0
                if poller:
                    poller.stop.set()
                    poller.join(10)
                    polls, lat, fails = len(poller.latencies), poller.latencies, poller.failures
                    body = poller.body_bytes
                run = {
                    "round": r + 1, "poll": mode, "pub": pub, "sub": sub,
                    "cpu": cpu1[0] - cpu0[0], "monitor_cpu": cpu1[1] - cpu0[1],
                    "elapsed": elapsed, "polls": polls, "fails": fails,
                    "p50_ms": 1000 * statistics.median(lat) if lat else 0.0,
                    "max_ms": 1000 * max(lat) if lat else 0.0,
                    "body_kib": body / max(polls, 1) / 1024,
                }
                runs.append(run)
                print(f"round {r + 1} poll {mode}: pub {pub:,}/s sub {sub:,}/s, server CPU "
                      f"{run['cpu']:.2f} s (monitor {run['monitor_cpu']:.2f} s), polls {polls}"
                      f" ({fails} failed, p50 {run['p50_ms']:.1f} ms, max {run['max_ms']:.1f} ms,"
                      f" {run['body_kib']:.0f} KiB each)", file=sys.stderr)
        answerer.stop.set()
        lost = answerer.closed
        for s in conns:
            s.close()
    lines = header(args, argv)
    if lost:
        lines += [f"- WARNING: {lost} idle connections were closed by the server", ""]
    lines += ["| round | poll | pub msgs/s | sub msgs/s | server CPU s | of which monitor s "
              "| polls answered | poll p50 ms | poll max ms | KiB per answer |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {run['round']} | {run['poll']} | {run['pub']:,} | {run['sub']:,} "
                     f"| {run['cpu']:.2f} | {run['monitor_cpu']:.2f} | {run['polls']} "
                     f"({run['fails']} failed) | {run['p50_ms']:.1f} | {run['max_ms']:.1f} "
                     f"| {run['body_kib']:.0f} |")
    lines.append("")
    med = {}
    for mode in ("off", "on"):
        rows = [r for r in runs if r["poll"] == mode]
        med[mode] = {k: statistics.median(r[k] for r in rows)
                     for k in ("pub", "sub", "cpu", "monitor_cpu", "polls")}
    for key, label in (("pub", "publish"), ("sub", "receive")):
        ratio = med["on"][key] / med["off"][key]
        lines.append(f"- median {label} rate: poll off {med['off'][key]:,.0f} msgs/s, poll on "
                     f"{med['on'][key]:,.0f} msgs/s: on/off = {ratio:.3f}")
    per_round = []
    for r in range(1, args.rounds + 1):
        pair = {run["poll"]: run["pub"] for run in runs if run["round"] == r}
        if "on" in pair and "off" in pair:
            per_round.append(pair["on"] / pair["off"])
    if per_round:
        lines.append(f"- per-round publish on/off (the two runs of a round are neighbours in time):"
                     f" median {statistics.median(per_round):.3f}, min {min(per_round):.3f},"
                     f" max {max(per_round):.3f}")
    lines.append(f"- median polls answered per {args.seconds:g} s run: {med['on']['polls']:.0f}"
                 f" (asked: {args.rate * args.seconds:.0f}); monitoring thread CPU per run:"
                 f" {med['on']['monitor_cpu']:.2f} s with the poll, {med['off']['monitor_cpu']:.2f}"
                 " s without")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
