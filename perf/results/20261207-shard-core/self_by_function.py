#!/usr/bin/env python3
"""Self cost per function of callgrind dumps, per message, side by side.

Usage: self_by_function.py MSGS LABEL=DUMP [LABEL=DUMP ...] [--top N]

Runs `callgrind_annotate --threshold=100 --auto=no` on each dump and sums the self Ir of each
function over the source files its code was inlined from (callgrind_annotate splits a
function's cost by the file each instruction came from), divides by MSGS, and prints the
functions whose cost differs most between the first dump and the others.
"""
import re
import subprocess
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(.*?):(.*?)(?: \[[^\]]*\])?$")


def by_function(dump):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", dump],
                         capture_output=True, text=True, check=True).stdout
    costs = defaultdict(int)
    total = None
    for line in out.splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        m = LINE.match(line)
        if m:
            costs[m.group(3)] += int(m.group(1).replace(",", ""))
    return total, costs


def main():
    args = sys.argv[1:]
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    msgs = int(args[0])
    runs = [a.split("=", 1) for a in args[1:]]
    data = [(label, *by_function(dump)) for label, dump in runs]
    names = set()
    for _, _, costs in data:
        names |= set(costs)
    # Self cost of thread-start frames is the inclusive total; skip those with the totals.
    rows = []
    for name in names:
        vals = [costs.get(name, 0) / msgs for _, _, costs in data]
        if any(v >= 0.05 for v in vals):
            rows.append((max(abs(v - vals[0]) for v in vals), name, vals))
    rows.sort(reverse=True)
    print("| function | " + " | ".join(label for label, _, _ in data) + " |")
    print("|---|" + "---|" * len(data))
    print("| **whole process** | " + " | ".join(f"{t / msgs:.1f}" for _, t, _ in data) + " |")
    for _, name, vals in rows[:top]:
        print(f"| `{name[:90]}` | " + " | ".join(f"{v:.1f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
