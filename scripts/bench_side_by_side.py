#!/usr/bin/env python3
# Usage: scripts/bench_side_by_side.py [--rounds N] [--quick] [--scenarios a,b] [--out FILE.md]
#                                      [--ringnats PATH] [--workers N]
#
# The second half of scripts/compare.sh: the same servers driven by ringnats' own load
# generator (`ringnats bench`, which batches publishes as the official clients do), so the
# broker rather than the Go client is the limit. For each scenario it starts ringnats and
# nats-server in turn (A B, then B A, ...) on a free loopback port pinned to CPU 0, runs
# `ringnats bench` pinned to CPU 1, and prints a markdown table of medians and B/A ratios.
# Needs target/release/ringnats (or --ringnats PATH: a build without the CI debug assertions
# for figures) and nats-server on PATH; starts and stops only its servers. storm_creds runs
# both servers in operator mode (memory resolver) from the same `ringnats jwt` files and
# connects with one `.creds` file (scripts/compare.py make_operator). --workers sets the
# storms' connecting threads (default 4).
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

from compare import UNIT_US, make_operator, ringnats_user_nkey
from pinned_server import PinnedServer

RINGNATS = "target/release/ringnats"
SCRATCH = tempfile.mkdtemp(prefix="bench-side-by-side-")

# Credentials for the storm scenarios with authentication (loopback test values only).
TOKEN = "side-by-side-token"

# name, bench arguments, what to read from the report[, server config]
SCENARIOS = [
    ("pub16", ["--pub", "1", "--msgs", "4000000", "--size", "16b"], "pub"),
    ("pubsub16", ["--pub", "1", "--sub", "1", "--msgs", "2000000", "--size", "16b"], "sub"),
    ("pubsub128", ["--pub", "1", "--sub", "1", "--msgs", "1000000", "--size", "128b"], "sub"),
    ("fanout4", ["--pub", "1", "--sub", "4", "--msgs", "500000", "--size", "128b"], "sub"),
    ("fanin4", ["--pub", "4", "--sub", "1", "--msgs", "1000000", "--size", "128b"], "sub"),
    ("queue4", ["--pub", "1", "--sub", "4", "--queue", "q", "--msgs", "1000000", "--size", "128b"], "sub"),
    ("reqrep", ["--request", "--msgs", "10000", "--size", "16b"], "p50"),
    ("reqrep", ["--request", "--msgs", "10000", "--size", "16b"], "p99"),
    ("storm", ["--connect-storm", "--workers", "4", "--duration", "2s"], "connects"),
    ("storm_token", ["--connect-storm", "--workers", "4", "--duration", "2s", "--token", TOKEN],
     "connects", "authorization {{ token: " + TOKEN + " }}"),
    ("storm_nkey", ["--connect-storm", "--workers", "4", "--duration", "2s", "--nkey", "{seed}"],
     "connects", "authorization {{ users = [ {{ nkey: {public} }} ] }}"),
    ("storm_creds", ["--connect-storm", "--workers", "4", "--duration", "2s", "--creds", "{creds}"],
     "connects", "{operator}"),
]

PATTERNS = {
    "pub": re.compile(r"^\s*Pub stats: ([\d,]+) msgs/sec", re.M),
    "sub": re.compile(r"^\s*Sub stats: ([\d,]+) msgs/sec", re.M),
    "p50": re.compile(r"p50 ([\d.]+)(ns|us|ms|s)\b"),
    "p99": re.compile(r"p99 ([\d.]+)(ns|us|ms|s)\b"),
    "connects": re.compile(r"Connect stats: ([\d,]+) connects/sec"),
}


def run_once(server_cmd, args, metric, config=None):
    extra = []
    if config is not None:
        fd, path = tempfile.mkstemp(suffix=".conf", dir=SCRATCH)
        with os.fdopen(fd, "w") as f:
            f.write(config + "\n")
        extra = ["-c", path]
    with PinnedServer(server_cmd, extra) as server:
        bench = subprocess.run(["taskset", "-c", "1", RINGNATS, "bench", "-s",
                                f"nats://127.0.0.1:{server.port}", "--no-progress", *args],
                               capture_output=True, text=True, timeout=90)
    m = PATTERNS[metric].search(bench.stdout + bench.stderr)
    if not m:
        return None
    value = float(m.group(1).replace(",", ""))
    # Latencies are printed in the unit that fits (37.20us, 12.10ms): the table is in us.
    return value * UNIT_US[m.group(2)] if m.lastindex == 2 else value


def set_ringnats(path):
    global RINGNATS
    RINGNATS = path


def user_nkey():
    """A fresh user nkey from `ringnats keygen user`: the seed in a file for the bench, the
    public key for the server's config."""
    seed, public = ringnats_user_nkey(RINGNATS)
    path = os.path.join(SCRATCH, "user.nk")
    with open(path, "w") as f:
        f.write(seed + "\n")
    os.chmod(path, 0o600)
    return path, public


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 rounds, a quarter of the messages, 1 s storms")
    ap.add_argument("--out")
    ap.add_argument("--scenarios", help="comma list of scenario names (default: all)")
    ap.add_argument("--ringnats", default=RINGNATS, help="the ringnats binary (server and load)")
    ap.add_argument("--workers", type=int, help="connecting threads of the storms (default 4)")
    args = ap.parse_args()
    set_ringnats(args.ringnats)
    wanted = set(args.scenarios.split(",")) if args.scenarios else None
    rounds = 2 if args.quick else args.rounds
    servers = [("ringnats", [RINGNATS]), ("nats-server", ["nats-server"])]
    operator, creds = None, None
    lines = ["| scenario | metric | ringnats median | nats-server median | B/A | per-round B/A |",
             "|---|---|---|---|---|---|"]
    seed, public = user_nkey()
    for name, bench_args, metric, *config in SCENARIOS:
        if wanted is not None and name not in wanted:
            continue
        if name == "storm_creds" and operator is None:
            operator, creds = make_operator(RINGNATS, SCRATCH)
        config = config[0].format(public=public, operator=operator) if config else None
        bench_args = [a.format(seed=seed, creds=creds) for a in bench_args]
        if args.workers and "--workers" in bench_args:
            i = bench_args.index("--workers") + 1
            bench_args = bench_args[:i] + [str(args.workers)] + bench_args[i + 1:]
        if args.quick and "--msgs" in bench_args:
            i = bench_args.index("--msgs") + 1
            bench_args = bench_args[:i] + [str(int(bench_args[i]) // 4)] + bench_args[i + 1:]
        if args.quick and "--duration" in bench_args:
            i = bench_args.index("--duration") + 1
            bench_args = bench_args[:i] + ["1s"] + bench_args[i + 1:]
        samples = {"ringnats": [], "nats-server": []}
        ratios = []
        for r in range(rounds):
            order = servers if r % 2 == 0 else servers[::-1]
            got = {label: run_once(cmd, bench_args, metric, config) for label, cmd in order}
            for label, value in got.items():
                if value is not None:
                    samples[label].append(value)
            if got["ringnats"] and got["nats-server"]:
                ratios.append(got["nats-server"] / got["ringnats"])
        a = statistics.median(samples["ringnats"]) if samples["ringnats"] else float("nan")
        b = statistics.median(samples["nats-server"]) if samples["nats-server"] else float("nan")
        unit = {"pub": "msgs/s published", "sub": "msgs/s received (sum)", "p50": "us p50 (lower better)",
                "p99": "us p99 (lower better)", "connects": "connects/s"}[metric]
        spread = f"{min(ratios):.3f}..{max(ratios):.3f}" if ratios else "n/a"
        lines.append(f"| {name} | {unit} | {a:,.0f} | {b:,.0f} | {b / a:.3f} | {spread} |")
        print(lines[-1], file=sys.stderr)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# ringnats bench, side by side\n\n" + table)


if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main()
