#!/usr/bin/env python3
# Usage: scripts/idle_conns.py [--conns N] [--rounds R] [--servers ringnats,nats-server] [--out FILE.md]
#
# Broker memory per idle connection: starts each server (pinned to CPU 0, as compare.sh does)
# on a free loopback port, opens N client connections that each send CONNECT and PING and get
# their PONG (so the server has accepted, registered and answered every one of them), then
# reads the server's resident memory (VmRSS from /proc) before and after and divides the growth
# by N. The connections stay open and idle while RSS is read, then all are closed, and RSS is
# watched for 20 s more: how soon it is back within half of the growth (issue 9 §3).
#
# 20,000 connections need more than the usual 1,024 descriptors on both sides: the script
# raises its own RLIMIT_NOFILE to N + 100 before it starts the servers, which inherit it.
# Raising the hard limit needs CAP_SYS_RESOURCE; without it the script measures as many
# connections as the hard limit allows and says so. Needs target/release/ringnats
# and nats-server on PATH; starts and stops only its own servers.
import argparse
import os
import resource
import socket
import statistics
import sys
import time

from pinned_server import PinnedServer

RINGNATS = "target/release/ringnats"
# Descriptors a server or this script needs besides its connections (listener, ring, logs).
FDS_OWN = 100
CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"name":"idle"}\r\nPING\r\n'


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_fd_limit(conns):
    """Raises RLIMIT_NOFILE for this process and the servers it starts; returns how many
    connections fit (both sides need one descriptor per connection, plus a few of their own)."""
    needed = conns + FDS_OWN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return conns
        except (ValueError, PermissionError):
            fit = hard - FDS_OWN
            print(f"idle_conns.py: the hard open-file limit is {hard} and cannot be raised "
                  f"here (no CAP_SYS_RESOURCE); measuring {fit} connections instead of {conns}",
                  file=sys.stderr)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return fit
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    return conns


def read_until(s, marker, deadline):
    buf = b""
    while marker not in buf:
        s.settimeout(max(0.1, deadline - time.time()))
        data = s.recv(4096)
        if not data:
            raise RuntimeError("server closed an idle connection")
        buf += data
    return buf


def open_idle(port, n, within):
    """Opens n connections, each CONNECT + PING, and waits until every one has its PONG.
    Works in chunks so the listen backlog never overflows."""
    deadline = time.time() + within
    conns = []
    chunk = 500
    for start in range(0, n, chunk):
        batch = [socket.create_connection(("127.0.0.1", port), timeout=10)
                 for _ in range(min(chunk, n - start))]
        for s in batch:
            read_until(s, b"\r\n", deadline)  # INFO
            s.sendall(CONNECT)
        for s in batch:
            read_until(s, b"PONG\r\n", deadline)
        conns.extend(batch)
    return conns


# How long RSS is watched after the connections close (issue 9 §3: back within half of the
# growth in 20 s).
RELEASE_WITHIN_S = 20.0


def measure(server_cmd, n):
    """Returns (RSS before, RSS held, RSS 20 s after closing, seconds until RSS was back within
    half of the growth or None, connections accepted per second while opening)."""
    conns = []
    with PinnedServer(server_cmd, stop_timeout_s=10) as server:
        try:
            time.sleep(0.5)
            before = rss_kib(server.pid)
            start = time.time()
            conns = open_idle(server.port, n, within=120)
            rate = n / (time.time() - start)
            time.sleep(1.0)
            after = rss_kib(server.pid)
            if server.process.poll() is not None:
                raise RuntimeError("server exited")
        finally:
            for s in conns:
                s.close()
        closed = time.time()
        back_after = None
        while time.time() - closed < RELEASE_WITHIN_S:
            time.sleep(0.25)
            if back_after is None and rss_kib(server.pid) - before <= (after - before) / 2:
                back_after = time.time() - closed
        released = rss_kib(server.pid)
        return before, after, released, back_after, rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--servers", default="ringnats,nats-server")
    ap.add_argument("--out")
    args = ap.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args.conns = raise_fd_limit(args.conns)
    commands = {"ringnats": [RINGNATS], "nats-server": ["nats-server"]}
    names = args.servers.split(",")
    results = {name: [] for name in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            before, after, released, back_after, rate = measure(commands[name], args.conns)
            per_conn = (after - before) * 1024 / args.conns
            results[name].append((before, after, per_conn, released, back_after, rate))
            back = "not within 20 s" if back_after is None else f"{back_after:.1f} s"
            print(f"round {r + 1} {name}: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, "
                  f"{per_conn:,.0f} B per connection, {rate:,.0f} accepted/s; closed: "
                  f"{released / 1024:.1f} MiB after {RELEASE_WITHIN_S:.0f} s, half the growth "
                  f"back {back}", file=sys.stderr)
    lines = [
        f"# Idle connections: {args.conns:,} held, CONNECT + PING/PONG each, then idle",
        "",
        f"- command: scripts/idle_conns.py --conns {args.conns} --rounds {args.rounds}",
        "- per connection = (server VmRSS with all connections held, 1 s after the last PONG"
        " - VmRSS before the first connect) / connections",
        "",
        "- after closing: VmRSS 20 s after the last close, and how soon it was back within half"
        " of the growth (issue 9 §3)",
        "",
        "| server | RSS before, MiB | RSS held, MiB | bytes per connection (median) | per round "
        "| RSS 20 s after closing, MiB | half the growth back after, s | accepted/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        rows = results[name]
        backs = [r[4] for r in rows]
        back = ("never" if any(b is None for b in backs)
                else f"{statistics.median(backs):.1f}")
        lines.append(
            f"| {name} | {statistics.median(r[0] for r in rows) / 1024:.1f} "
            f"| {statistics.median(r[1] for r in rows) / 1024:.1f} "
            f"| {statistics.median(r[2] for r in rows):,.0f} "
            f"| {', '.join(f'{r[2]:,.0f}' for r in rows)} "
            f"| {statistics.median(r[3] for r in rows) / 1024:.1f} "
            f"| {back} "
            f"| {statistics.median(r[5] for r in rows):,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
