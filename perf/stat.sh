#!/usr/bin/env bash
# Usage: perf/stat.sh [SCENARIO] [--messages N]
#
# Hardware counters (cycles, instructions, IPC, cache and branch misses) of the broker under
# one natsbench scenario, where the machine exposes them (`perf stat -e instructions true`
# tells). On machines without them (this development VM among them) it says so and exits 3;
# use perf/record.sh (cpu-clock samples) or callgrind instead.
#
#   SCENARIO        pub16 (default), pub128, pubsub128, fanout4, reqrep
#   --messages N    messages to publish (default 5000000)
#
# Runs from the repo root; builds tools/natsbench (tools/natsbench/build.sh installs Go and
# nats.go when missing); starts target/profiling/ringnats pinned to CPU 0 and natsbench to
# CPU 1; kills only the processes it started. Output: perf/out/stat-<scenario>-<stamp>.txt
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-pub16}
[[ $# -gt 0 ]] && shift
messages=5000000
while [[ $# -gt 0 ]]; do
    case $1 in
        --messages) messages=$2; shift ;;
        --help|-h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "stat.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if ! perf stat -e instructions true >/dev/null 2>&1; then
    echo "stat.sh: this machine exposes no hardware counters to perf; use perf/record.sh" >&2
    exit 3
fi

case $scenario in
    pub16) args=(-np 1 -ns 0 -ms 16) ;;
    pub128) args=(-np 1 -ns 0 -ms 128) ;;
    pubsub128) args=(-np 1 -ns 1 -ms 128) ;;
    fanout4) args=(-np 1 -ns 4 -ms 128) ;;
    reqrep) args=(-mode reqrep -np 1 -ns 1 -ms 16); messages=20000 ;;
    *) echo "stat.sh: unknown scenario $scenario" >&2; exit 2 ;;
esac

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --profile profiling --bin ringnats
NATSBENCH_DIR=$PWD/target/natsbench tools/natsbench/build.sh --quiet
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p perf/out
out=perf/out/stat-$scenario-$(date +%Y%m%d-%H%M%S).txt

taskset -c 0 target/profiling/ringnats -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 0.5
perf stat -e cycles,instructions,cache-misses,branch-misses -p "$server" -o "$out" &
stat=$!
taskset -c 1 target/natsbench/natsbench -s "nats://127.0.0.1:$port" "${args[@]}" -n "$messages" -quiet
kill -INT "$stat"
wait "$stat" || true
cat "$out"
