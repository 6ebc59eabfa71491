#!/usr/bin/env bash
# Usage: scripts/ceiling.sh [--rounds N] [--scenarios a,b,..] [--bench-dir DIR]
#
# How fast can the load generator go at all? Runs the shared natsbench (through its driver,
# compare.py, pinned as in scripts/compare.sh: servers on CPU 0, natsbench on CPU 1) against
# `null_broker` (examples/null_broker.rs: sends INFO, answers PING with PONG, discards the
# rest; no parsing, routing or delivery), interleaved with nats-server and then with ringnats.
# A rate the generator cannot reach against a broker that does nothing is out of reach for
# every broker: the B/A column is each real server's share of that ceiling.
#
# Only scenarios the null broker can serve make sense: publish-only, connect storms and
# connect latency, with or without credentials (it asks for them when the config has an
# authorization block, with a nonce for nkeys, and lets everyone in). Default:
# pub16,pub128,storm_none,connlat_none,storm_token,storm_nkey. Results go to
# perf/results/<stamp>-ceiling/{nats-server,ringnats}/ and the two tables are printed.
set -euo pipefail

scenarios="pub16,pub128,storm_none,connlat_none,storm_token,storm_nkey"
rounds=3
bench_dir=../shared/bench
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --scenarios) scenarios=$2; shift ;;
        --bench-dir) bench_dir=$2; shift ;;
        --help | -h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ceiling.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
bench_dir=$(cd "$bench_dir" && pwd)
command -v nats-server >/dev/null || { echo "ceiling.sh: nats-server not installed (scripts/compare.sh installs it)" >&2; exit 2; }

cargo build --release --bin ringnats --example null_broker
export NATSBENCH_DIR=$repo_root/target/natsbench
"$bench_dir/build.sh"

out=perf/results/$(date +%Y%m%d-%H%M%S)-ceiling
mkdir -p "$out"
{
    echo "# scripts/ceiling.sh run $(date -Iseconds)"
    echo
    echo "- command: scripts/ceiling.sh --rounds $rounds --scenarios $scenarios"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- nats-server: $(nats-server --version 2>/dev/null || echo unknown)"
    echo "- cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores, kernel $(uname -r)"
    echo "- A = target/release/examples/null_broker (INFO, PONG, nothing else)"
} >"$out/header.md"

null="target/release/examples/null_broker -c {config}"
python3 "$bench_dir/compare.py" --rounds "$rounds" --scenarios "$scenarios" \
    --names null,nats-server --out "$out/nats-server" "$null" "nats-server -c {config}"
python3 "$bench_dir/compare.py" --rounds "$rounds" --scenarios "$scenarios" \
    --names null,ringnats --out "$out/ringnats" "$null" "target/release/ringnats -c {config}"
echo
cat "$out/header.md"
echo "- results: $out"
