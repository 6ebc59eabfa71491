#!/usr/bin/env bash
# Usage: scripts/compare.sh [--quick] [--rounds N] [--scenarios a,b,..] [--no-auth]
#                           [--load natsbench|ringnats] [--no-ringnats-bench] [--no-install] [--help]
#
# ringnats (A) and nats-server (B) side by side under one load generator, with the driver
# scripts/compare.py: interleaved rounds, medians, B/A, server CPU per operation.
#
#   --quick            2 rounds, half the messages, shorter storms (about 2 minutes)
#   --rounds N         rounds (compare.py's default: 5, or 2 with --quick)
#   --scenarios LIST   comma list of scenario names (see: scripts/compare.py --list)
#   --no-auth          only the no-auth scenarios (throughput, latency, plain connects)
#   --load natsbench   the load is tools/natsbench, our Go program around nats.go's bench
#                      package (the default where Go can be had)
#   --load ringnats    the load is `ringnats bench` (the default where Go cannot be installed)
#   --no-ringnats-bench  skip the second table (the same servers driven by `ringnats bench`,
#                      scripts/bench_side_by_side.py), which a natsbench run adds
#   --no-install       do not apt-get Go, nats.go or nats-server when they are missing
#
# Without --scenarios every scenario runs, including the auth phases (token, users with
# bcrypt/plain passwords, nkeys, a permission-restricted publisher; operator mode with a
# .creds user); --no-auth keeps to
# pub16, pub128, pubsub128, fanout4, fanin4, queue4, reqrep, storm_none, connlat_none.
# Runs from the repo root wherever it is called from. Installs what is missing (as root, with
# apt-get: nats-server; golang-go and the nats.go packages through tools/natsbench/build.sh),
# builds target/release/ringnats and target/natsbench/natsbench, writes results to
# perf/results/<stamp>/ (summary.md, runs.jsonl, meta.json, header.md with commit, versions
# and the command line) and prints the table.
# Pinning is compare.py's default: servers on CPU 0, the load generator on CPU 1, so ringnats
# starts one shard (its shard count follows its affinity mask) and nats-server runs
# GOMAXPROCS=1. The only process this script starts and stops itself is compare.py, which
# starts and stops each server and every load run.
set -euo pipefail

readonly NO_AUTH_SCENARIOS="pub16,pub128,pubsub128,fanout4,fanin4,queue4,reqrep,storm_none,connlat_none"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
    echo "compare.sh: $*" >&2
    exit 2
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

original_args=("$@")
load=""
quick=()
rounds=()
scenarios=""
all_scenarios=true
own_bench=true
install=true
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=(--quick) ;;
        --rounds) [[ $# -ge 2 ]] || die "--rounds needs a value"; rounds=(--rounds "$2"); shift ;;
        --rounds=*) rounds=(--rounds "${1#*=}") ;;
        --scenarios) [[ $# -ge 2 ]] || die "--scenarios needs a value"; scenarios=$2; all_scenarios=false; shift ;;
        --scenarios=*) scenarios=${1#*=}; all_scenarios=false ;;
        --all-scenarios) all_scenarios=true ;;
        --no-auth) scenarios=$NO_AUTH_SCENARIOS; all_scenarios=false ;;
        --no-ringnats-bench) own_bench=false ;;
        --load) [[ $# -ge 2 ]] || die "--load needs a value"; load=$2; shift ;;
        --load=*) load=${1#*=} ;;
        --no-install) install=false ;;
        --help | -h) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ -z $load || $load == natsbench || $load == ringnats ]] || die "--load is natsbench or ringnats"

# apt-get install the named packages, once, as root; or say what is missing and stop.
apt_install() {
    if ! $install; then
        die "missing: $* (install them, or drop --no-install)"
    fi
    [[ $(id -u) -eq 0 ]] || die "missing: $*; run: sudo apt-get install $*"
    echo "compare.sh: apt-get install $*" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# nats-server here; Go and nats.go in tools/natsbench/build.sh, which builds natsbench and
# says which load to use: `ringnats bench` where Go cannot be had and no --load was asked for.
install_and_build() {
    command -v nats-server >/dev/null || apt_install nats-server
    cargo build --release --bin ringnats
    export NATSBENCH_DIR=$repo_root/target/natsbench
    local flags=()
    $install || flags=(--no-install)
    load=$(tools/natsbench/build.sh --load "${load:-auto}" "${flags[@]}") ||
        die "no load generator: tools/natsbench/build.sh failed"
}

# Commit, versions and the command line, next to compare.py's own header (STYLE.md §11).
write_header() {
    local out=$1 dirty=""
    git diff --quiet HEAD 2>/dev/null || dirty=" (with uncommitted changes)"
    {
        echo "# scripts/compare.sh run $(date -Iseconds)"
        echo
        echo "- command: scripts/compare.sh ${original_args[*]:-}"
        echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
        echo "- ringnats: $(target/release/ringnats --version 2>/dev/null || echo unknown)"
        echo "- nats-server: $(nats-server --version 2>/dev/null || echo unknown)"
        echo "- rustc: $(rustc --version)"
        if [[ $load == natsbench ]]; then
            echo "- load: tools/natsbench ($(go version 2>/dev/null | cut -d' ' -f3), nats.go" \
                "$(dpkg-query -W -f='${Version}' golang-github-nats-io-go-nats-dev 2>/dev/null || echo unknown))"
        else
            echo "- load: ringnats bench"
        fi
        echo "- cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores," \
            "kernel $(uname -r)"
        echo "- scenarios: $scenarios"
    } >"$out/header.md"
}

compare_pid=""
stop_compare() {
    if [[ -n $compare_pid ]] && kill -0 "$compare_pid" 2>/dev/null; then
        # compare.py turns SIGTERM into a clean stop of the servers it started.
        kill -TERM "$compare_pid" 2>/dev/null || true
        wait "$compare_pid" 2>/dev/null || true
    fi
}

main() {
    install_and_build

    local selection=(--scenarios "$scenarios")
    if $all_scenarios; then
        selection=()
        scenarios="all"
    fi
    local out
    out=$repo_root/perf/results/$(date +%Y%m%d-%H%M%S)
    mkdir -p "$out"
    write_header "$out"

    trap stop_compare EXIT
    trap 'exit 130' INT TERM
    python3 scripts/compare.py --load "$load" "${quick[@]}" "${rounds[@]}" "${selection[@]}" \
        --names ringnats,nats-server --out "$out" \
        "target/release/ringnats -c {config}" "nats-server -c {config}" &
    compare_pid=$!
    local status=0
    wait "$compare_pid" || status=$?
    compare_pid=""
    if $own_bench && [[ $load == natsbench && $status -eq 0 ]]; then
        # The same servers under ringnats' own load generator, which does not saturate first.
        echo
        python3 scripts/bench_side_by_side.py "${quick[@]}" "${rounds[@]}" --out "$out/ringnats-bench.md" \
            || status=$?
    fi
    echo
    cat "$out/header.md"
    echo "- results: ${out#"$repo_root"/}"
    return "$status"
}

main
