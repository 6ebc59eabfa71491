#!/usr/bin/env bash
# usage: cross_shard_core.sh VARIANT -> runs the two callgrind runs and prints per-message figures
cd /work/wt-allocperf
v=$1; B=target-perf-$v/release/shard_core_msgs
mkdir -p perf/out/cg-$v
for n in 19200 115200; do
  valgrind --tool=callgrind --callgrind-out-file=perf/out/cg-$v/scm.cross.$n.out $B cross 6400 $n >/dev/null 2>&1
done
python3 - "$v" <<'PY'
import subprocess, sys, re
v = sys.argv[1]
def inc(n):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no",
                          f"perf/out/cg-{v}/scm.cross.{n}.out"], capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \(.*?\)\s+(.*?):(.*?)(?: \[.*\])?$", line)
        if "PROGRAM TOTALS" in line:
            d["total"] = int(line.split()[0].replace(",", ""))
        elif m:
            f = m.group(3)
            for k in ("Shard::on_recv", "Shard::end_turn", "Shard::on_send"):
                if f.endswith(k):
                    d[k] = d.get(k, 0) + int(m.group(1).replace(",", ""))
    return d
a, b = inc(19200), inc(115200)
msgs = 115200 - 19200
parts = {k: (b.get(k, 0) - a.get(k, 0)) / msgs for k in b}
print(v, " ".join(f"{k}={val:.1f}" for k, val in sorted(parts.items())),
      f"core={sum(val for k, val in parts.items() if k != 'total'):.1f}")
PY
