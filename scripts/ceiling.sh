#!/usr/bin/env bash
# Usage: scripts/ceiling.sh [--rounds N] [--scenarios a,b,..] [--load natsbench|ringnats] [--no-install]
#
# How fast can the load generator go at all? Runs it (through scripts/compare.py, pinned as in
# scripts/compare.sh: servers on CPU 0, the load on CPU 1) against `null_broker`
# (examples/null_broker.rs: sends INFO, answers PING with PONG, discards the rest; no parsing,
# routing or delivery), interleaved with nats-server and then with ringnats. A rate the
# generator cannot reach against a broker that does nothing is out of reach for every broker:
# the B/A column is each real server's share of that ceiling.
#
# The load is tools/natsbench (built by tools/natsbench/build.sh, which apt-get installs Go and
# nats.go when missing), or `ringnats bench` with --load ringnats or where Go cannot be had.
# Only scenarios the null broker can serve make sense: publish-only, connect storms and
# connect latency, with or without credentials (it asks for them when the config has an
# authorization block, with a nonce for nkeys, and lets everyone in). Default:
# pub16,pub128,storm_none,connlat_none,storm_token,storm_nkey. Results go to
# perf/results/<stamp>-ceiling/{nats-server,ringnats}/ and the two tables are printed.
set -euo pipefail

die() {
    echo "ceiling.sh: $*" >&2
    exit 2
}

scenarios="pub16,pub128,storm_none,connlat_none,storm_token,storm_nkey"
rounds=3
load=""
install=true
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) [[ $# -ge 2 ]] || die "--rounds needs a value"; rounds=$2; shift ;;
        --scenarios) [[ $# -ge 2 ]] || die "--scenarios needs a value"; scenarios=$2; shift ;;
        --load) [[ $# -ge 2 ]] || die "--load needs a value"; load=$2; shift ;;
        --no-install) install=false ;;
        --help | -h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift
done
[[ -z $load || $load == natsbench || $load == ringnats ]] || die "--load is natsbench or ringnats"

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
if ! command -v nats-server >/dev/null; then
    $install && [[ $(id -u) -eq 0 ]] || die "nats-server is missing; run: sudo apt-get install nats-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

cargo build --release --bin ringnats --example null_broker
export NATSBENCH_DIR=$repo_root/target/natsbench
flags=()
$install || flags=(--no-install)
load=$(tools/natsbench/build.sh --load "${load:-auto}" "${flags[@]}") ||
    die "no load generator: tools/natsbench/build.sh failed"

out=perf/results/$(date +%Y%m%d-%H%M%S)-ceiling
mkdir -p "$out"
{
    echo "# scripts/ceiling.sh run $(date -Iseconds)"
    echo
    echo "- command: scripts/ceiling.sh --rounds $rounds --scenarios $scenarios --load $load"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- nats-server: $(nats-server --version 2>/dev/null || echo unknown)"
    echo "- cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores, kernel $(uname -r)"
    echo "- A = target/release/examples/null_broker (INFO, PONG, nothing else)"
} >"$out/header.md"

null="target/release/examples/null_broker -c {config}"
python3 scripts/compare.py --load "$load" --rounds "$rounds" --scenarios "$scenarios" \
    --names null,nats-server --out "$out/nats-server" "$null" "nats-server -c {config}"
python3 scripts/compare.py --load "$load" --rounds "$rounds" --scenarios "$scenarios" \
    --names null,ringnats --out "$out/ringnats" "$null" "target/release/ringnats -c {config}"
echo
cat "$out/header.md"
echo "- results: $out"
