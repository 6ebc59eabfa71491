#!/usr/bin/env bash
# Usage: poll_series.sh OUTDIR REPEATS BIN_A BIN_B [connz_poll.py args...]
# Runs scripts/connz_poll.py REPEATS times per binary, alternating A B B A ..., each run in a
# nice -20 autogroup (scripts/hi_priority.sh); one markdown file per run in OUTDIR.
set -euo pipefail
out=$1 repeats=$2 a=$3 b=$4; shift 4
mkdir -p "$out"
cd /work/wt-connz
for i in $(seq 1 "$repeats"); do
    if (( i % 2 )); then order=("$a" "$b"); else order=("$b" "$a"); fi
    for bin in "${order[@]}"; do
        name=$(basename "$bin")
        scripts/hi_priority.sh python3 scripts/connz_poll.py --bin "$bin" --out "$out/$name-run$i.md" "$@" >/dev/null 2>&1 || echo "run $i $name failed"
        grep -E "median publish|median polls" "$out/$name-run$i.md" | sed "s/^/$name run$i: /"
    done
done
