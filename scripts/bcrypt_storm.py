#!/usr/bin/env python3
"""bcrypt never slows anyone else (issue 8 §2), measured side by side with nats-server.

Both servers get the same config: `--users` bcrypt users (`svc0`.. sharing one cost-11 hash,
which costs each server the same bcrypt work per login) and a plaintext user `app` for an
unrelated request/reply client. Each server is pinned to CPU 0 (as compare.sh pins servers), the
clients run on CPU 1. Three figures per server:

1. request/reply p99 of `app` at rest;
2. the same while `--workers` threads log in with bcrypt as fresh users (none verified before:
   every login costs a bcrypt check on both servers);
3. the reconnect rate of the same `--users` users once each has logged in before (ringnats
   accepts a pair it verified lately without bcrypt; nats-server runs bcrypt every time).

    scripts/bcrypt_storm.py [--users 500] [--workers 16] [--seconds 5] [--out FILE]

Prints a table; figures are measurements for the note, not pass/fail.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pinned_server import PinnedServer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RINGNATS = os.path.join(ROOT, "target", "release", "ringnats")
NATS_SERVER = os.environ.get("NATS_SERVER_BIN", "/usr/sbin/nats-server")
CLIENT_CPU = "1"
WARM_ROUNDS_MAX = 5
P99 = re.compile(r"\| p99 ([0-9.]+)(ns|us|µs|ms|s) \|")
RATE = re.compile(r"Connect stats: ([0-9,]+) connects/sec")
FAILED = re.compile(r"Failed connects: ([0-9,]+)")
UNIT_US = {"ns": 0.001, "us": 1.0, "µs": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def bench(port, args, timeout=600):
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, RINGNATS, "bench", "-s",
                          f"nats://127.0.0.1:{port}", "--no-progress", *args],
                         capture_output=True, text=True, timeout=timeout)
    return out.stdout + out.stderr


def p99_us(text):
    m = P99.search(text)
    return float(m.group(1)) * UNIT_US[m.group(2)] if m else None


def rate(text):
    m = RATE.search(text)
    failed = FAILED.search(text)
    return (float(m.group(1).replace(",", "")) if m else None,
            int(failed.group(1).replace(",", "")) if failed else 0)


def requests(port, seconds):
    return p99_us(bench(port, ["--request", "--pub", "1", "--sub", "1", "--duration",
                               f"{seconds}s", "--user", "app", "--password", "apppw"]))


def storm(port, prefix, users, workers, seconds=None, msgs=None):
    bound = ["--duration", f"{seconds}s"] if seconds else ["--msgs", str(msgs)]
    return bench(port, ["--connect-storm", "--workers", str(workers), "--users", str(users),
                        "--user", prefix, "--password", "pw", *bound])


def measure(command, conf, args):
    with PinnedServer(command, ["-c", conf]) as server:
        rest = requests(server.port, args.seconds)
        # Fresh users for the storm: `new0`.. have never logged in, so every login is bcrypt.
        storm_out = {}
        t = threading.Thread(target=lambda: storm_out.setdefault(
            "text", storm(server.port, "new", args.users, args.workers,
                          seconds=args.seconds + 2)))
        t.start()
        under = requests(server.port, args.seconds)
        t.join()
        cold_rate, cold_failed = rate(storm_out["text"])
        # Every `svc` user logs in once (again while some failed: on a busy machine an idle-
        # priority check can miss the timeout), then the fleet reconnects.
        for _ in range(WARM_ROUNDS_MAX):
            if rate(storm(server.port, "svc", args.users, args.workers, msgs=args.users))[1] == 0:
                break
        warm_rate, warm_failed = rate(storm(server.port, "svc", args.users, args.workers,
                                            seconds=args.seconds))
    return {"rest_p99_us": rest, "storm_p99_us": under, "cold_rate": cold_rate,
            "cold_failed": cold_failed, "warm_rate": warm_rate, "warm_failed": warm_failed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    hashed = subprocess.run([RINGNATS, "passwd", "--cost", "11"], input="pw\n",
                            capture_output=True, text=True, check=True).stdout.strip()
    lines = ["authorization {", " timeout: 10", " users: [", "  {user: app, password: apppw}"]
    for prefix in ("svc", "new"):
        lines += [f'  {{user: {prefix}{i}, password: "{hashed}"}}' for i in range(args.users)]
    lines += [" ]", "}"]
    scratch = tempfile.mkdtemp(prefix="bcrypt-storm-")
    conf = os.path.join(scratch, "server.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")

    results = {
        "ringnats": measure([RINGNATS, "--shards", "1"], conf, args),
        "nats-server": measure([NATS_SERVER], conf, args),
    }
    rows = [f"bcrypt storm: {args.users} users, {args.workers} workers, {args.seconds} s runs, "
            f"server on CPU 0, clients on CPU 1; load average before: {load_before:.1f}"]
    for name, r in results.items():
        ratio = (r["storm_p99_us"] / r["rest_p99_us"]
                 if r["rest_p99_us"] and r["storm_p99_us"] else float("nan"))
        rows.append(f"{name:12} req/reply p99 at rest {r['rest_p99_us']} us, under a cold bcrypt "
                    f"storm {r['storm_p99_us']} us (x{ratio:.1f}); cold logins "
                    f"{r['cold_rate']}/s ({r['cold_failed']} failed); reconnects of known users "
                    f"{r['warm_rate']}/s ({r['warm_failed']} failed)")
    ours, theirs = results["ringnats"]["warm_rate"], results["nats-server"]["warm_rate"]
    if ours and theirs:
        rows.append(f"known-user reconnect rate: ringnats / nats-server = x{ours / theirs:.0f}")
    text = "\n".join(rows)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
