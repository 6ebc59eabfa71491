#!/usr/bin/env bash
# Usage: scripts/compare.sh [--quick] [--rounds N] [--scenarios a,b,..] [--all-scenarios]
#                           [--bench-dir DIR] [--no-install] [--help]
#
# One load against ringnats (A) and nats-server (B), side by side, with the shared load
# generator (natsbench, built from Debian's nats.go packages) and driver (compare.py).
#
#   --quick            2 rounds, half the messages, shorter storms (about 1 to 2 minutes)
#   --rounds N         rounds (compare.py's default: 5, or 2 with --quick)
#   --scenarios LIST   comma list of scenario names (see: ../shared/bench/compare.py --list)
#   --no-auth          only the no-auth scenarios (throughput, latency, plain connects)
#   --no-ringnats-bench  skip the second table (the same servers driven by `ringnats bench`,
#                      scripts/bench_side_by_side.py), which the default run adds
#   --bench-dir DIR    the shared bench folder (default: ../shared/bench, relative to the repo)
#   --no-install       do not apt-get the Go packages or nats-server when they are missing
#
# Without --scenarios every default scenario of compare.py runs, including the auth phases
# (token, users with bcrypt/plain passwords, nkeys, a permission-restricted publisher);
# --no-auth keeps to pub16, pub128, pubsub128, fanout4, fanin4, queue4, reqrep, storm_none,
# connlat_none.
# Runs from the repo root wherever it is called from. Builds target/release/ringnats and
# target/natsbench/natsbench, writes results to perf/results/<stamp>/ (summary.md, runs.jsonl,
# header.md with commit, versions and the command line) and prints the table.
# Pinning is compare.py's default: servers on CPU 0, natsbench on CPU 1, so ringnats starts
# one shard (its shard count follows its affinity mask) and nats-server runs GOMAXPROCS=1.
# The only process this script starts and stops itself is compare.py, which starts and
# stops each server and every natsbench run.
set -euo pipefail

readonly NO_AUTH_SCENARIOS="pub16,pub128,pubsub128,fanout4,fanin4,queue4,reqrep,storm_none,connlat_none"
readonly GO_PACKAGES=(golang-go golang-github-nats-io-go-nats-dev golang-github-nats-io-nkeys-dev
    golang-github-nats-io-nuid-dev golang-github-nats-io-jwt-dev golang-golang-x-crypto-dev)
readonly GO_SOURCES=(github.com/nats-io/nats.go/bench github.com/nats-io/nkeys
    github.com/nats-io/nuid github.com/nats-io/jwt/v2 golang.org/x/crypto/bcrypt)

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
bench_dir=../shared/bench
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
        --bench-dir) [[ $# -ge 2 ]] || die "--bench-dir needs a value"; bench_dir=$2; shift ;;
        --bench-dir=*) bench_dir=${1#*=} ;;
        --no-install) install=false ;;
        --help | -h) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ -x $bench_dir/build.sh && -f $bench_dir/compare.py ]] ||
    die "no build.sh and compare.py in '$bench_dir' (use --bench-dir)"
bench_dir=$(cd "$bench_dir" && pwd)

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

install_prerequisites() {
    local gocode=${GOCODE:-/usr/share/gocode} missing=false source
    for source in "${GO_SOURCES[@]}"; do
        [[ -d $gocode/src/$source ]] || missing=true
    done
    if $missing || ! command -v go >/dev/null; then
        apt_install "${GO_PACKAGES[@]}"
    fi
    command -v nats-server >/dev/null || apt_install nats-server
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
    install_prerequisites
    cargo build --release --bin ringnats
    export NATSBENCH_DIR=$repo_root/target/natsbench
    "$bench_dir/build.sh"

    local selection=(--scenarios "$scenarios")
    if $all_scenarios; then
        selection=()
        scenarios="all (compare.py default)"
    fi
    export COMPARE_RESULTS=$repo_root/perf/results
    local out
    out=$COMPARE_RESULTS/$(date +%Y%m%d-%H%M%S)
    mkdir -p "$out"
    write_header "$out"

    trap stop_compare EXIT
    trap 'exit 130' INT TERM
    python3 "$bench_dir/compare.py" "${quick[@]}" "${rounds[@]}" "${selection[@]}" \
        --names ringnats,nats-server --out "$out" \
        "target/release/ringnats -c {config}" "nats-server -c {config}" &
    compare_pid=$!
    local status=0
    wait "$compare_pid" || status=$?
    compare_pid=""
    if $own_bench && [[ $status -eq 0 ]]; then
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
