#!/usr/bin/env bash
# Usage: perf/record.sh SCENARIO [--messages N] [--top N] [--call-graph fp|dwarf|lbr]
#                       [--server-cpu CPU] [--client-cpu CPU] [--load natsbench|ringnats]
#                       [--no-install] [--help]
#
# Profiles ringnats under one load and writes, under perf/out/ (git-ignored):
#   <scenario>-<stamp>.txt   header, the load generator's result, the top symbols by self
#                            time and the top call chains into them
#   <scenario>-<stamp>.svg   a flame graph (inferno)
#   <scenario>-<stamp>.data  the raw perf.data, for `perf report -i`
#
# Scenarios: any of `scripts/compare.py --list` (the same loads and a full run's counts), e.g.
#   pub16      1 publisher, no subscriber, 16 B        (15,000,000 messages)
#   pub128     1 publisher, no subscriber, 128 B       (10,000,000 messages)
#   pubsub128  1 publisher -> 1 subscriber, 128 B      (3,000,000 messages)
#   fanout4    1 publisher -> 4 subscribers, 128 B     (800,000 messages)
#   fanin4     4 publishers -> 1 subscriber, 128 B     (3,000,000 messages)
#   queue4     1 publisher -> queue group of 4, 128 B  (3,000,000 messages)
#   reqrep     1 requester, 1 responder, 16 B          (10,000 requests)
#   storm      4 connectors, CONNECT + PING then close, 2 s (= storm_none)
#
#   --messages N       override the message/request count
#   --top N            symbols listed in the .txt (default 30)
#   --call-graph MODE  perf's call-graph mode (default fp: frame pointers, which this build
#                      keeps; dwarf sees through code without them, at a much larger cost)
#   --server-cpu CPU   CPU that ringnats is pinned to (default 0; one CPU means one shard)
#   --client-cpu CPU   CPU that the load generator is pinned to (default 1)
#   --load natsbench   the Go load generator, tools/natsbench (default when Go can be had)
#   --load ringnats    `ringnats bench` (the default where Go cannot be installed)
#   --no-install       do not apt-get or cargo install what is missing
#
# Builds `cargo build --profile profiling` (release + line tables) with frame pointers forced,
# and tools/natsbench (tools/natsbench/build.sh: Go and nats.go from Debian's packages,
# apt-get installed when missing and running as root). Installs linux-perf (apt-get) and
# inferno (cargo install) when missing. Records `perf record -e cpu-clock -g` (cpu-clock,
# because VMs often have no hardware counters) on the ringnats process only, for the length
# of the load. Kills only the ringnats and perf processes it started.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
    echo "record.sh: $*" >&2
    exit 2
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

original_args=("$@")
scenario=""
messages=""
top=30
call_graph=fp
server_cpu=0
client_cpu=1
load=""
install=true
while [[ $# -gt 0 ]]; do
    case $1 in
        --messages) [[ $# -ge 2 ]] || die "--messages needs a value"; messages=$2; shift ;;
        --top) [[ $# -ge 2 ]] || die "--top needs a value"; top=$2; shift ;;
        --call-graph) [[ $# -ge 2 ]] || die "--call-graph needs a value"; call_graph=$2; shift ;;
        --server-cpu) [[ $# -ge 2 ]] || die "--server-cpu needs a value"; server_cpu=$2; shift ;;
        --client-cpu) [[ $# -ge 2 ]] || die "--client-cpu needs a value"; client_cpu=$2; shift ;;
        --load) [[ $# -ge 2 ]] || die "--load needs a value"; load=$2; shift ;;
        --no-install) install=false ;;
        --help | -h) usage; exit 0 ;;
        -*) die "unknown flag '$1' (see --help)" ;;
        *) [[ -z $scenario ]] || die "one scenario only"; scenario=$1 ;;
    esac
    shift
done
[[ -n $scenario ]] || { usage >&2; exit 2; }

[[ $scenario != storm ]] || scenario=storm_none
[[ -z $load || $load == natsbench || $load == ringnats ]] || die "--load is natsbench or ringnats"
python3 scripts/compare.py --load-args "$scenario" >/dev/null ||
    die "unknown scenario '$scenario' (see scripts/compare.py --list)"

install_tools() {
    if ! command -v perf >/dev/null; then
        $install || die "perf is missing; apt-get install linux-perf (or drop --no-install)"
        [[ $(id -u) -eq 0 ]] || die "perf is missing; run: sudo apt-get install linux-perf"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
    fi
    if ! command -v inferno-collapse-perf >/dev/null || ! command -v inferno-flamegraph >/dev/null
    then
        $install || die "inferno is missing; cargo install inferno (or drop --no-install)"
        cargo install inferno --locked
    fi
}

# Builds ringnats for profiling, and the Go load generator unless `ringnats bench` is the load
# (asked for, or because Go cannot be installed here).
build() {
    RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes" \
        cargo build --profile profiling --bin ringnats
    export NATSBENCH_DIR=$repo_root/target/natsbench
    local flags=()
    $install || flags=(--no-install)
    load=$(tools/natsbench/build.sh --load "${load:-auto}" "${flags[@]}") ||
        die "no load generator: tools/natsbench/build.sh failed"
    local count=()
    [[ -z $messages ]] || count=(--msgs "$messages")
    load_args=$(python3 scripts/compare.py --load-args "$scenario" --load "$load" "${count[@]}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 10 s for 127.0.0.1:$1 to accept a connection while the server runs.
wait_for_port() {
    local port=$1
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || die "ringnats exited at start (see $work/server.log)"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "ringnats did not listen on 127.0.0.1:$port within 10 s"
}

server_pid=""
perf_pid=""
work=""
cleanup() {
    if [[ -n $perf_pid ]] && kill -0 "$perf_pid" 2>/dev/null; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    [[ -z $work ]] || rm -rf "$work"
}

write_report() {
    local data=$1 txt=$2 result=$3
    {
        echo "# perf/record.sh $scenario, $(date -Iseconds)"
        echo
        echo "command: perf/record.sh ${original_args[*]}"
        echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(
            git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "host: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores," \
            "kernel $(uname -r)"
        echo "ringnats: target/profiling/ringnats pinned to CPU $server_cpu" \
            "(taskset), the load generator on CPU $client_cpu"
        echo "load: $load_text"
        echo "result: $result"
        echo "record: perf record -e cpu-clock -g --call-graph $call_graph -p <ringnats>"
        echo
        echo "## Top $top symbols by self time"
        echo
        perf report -i "$data" --stdio --no-children --sort symbol -g none --percent-limit 0 \
            2>/dev/null | sed -E -e '/^#/d' -e '/^$/d' -e 's/([[:space:]]+-)+[[:space:]]*$//' |
            sed -n "1,${top}p"
        echo
        echo "## Call chains into the top symbols (caller graph, 2% cutoff)"
        echo
        perf report -i "$data" --stdio --no-children --sort symbol \
            -g caller,2,callee --percent-limit 2 2>/dev/null |
            sed -E -e '/^#/d' -e 's/([[:space:]]+-)+[[:space:]]*$//' | sed -n '1,400p'
    } >"$txt"
}

main() {
    install_tools
    build
    local stamp out port
    stamp=$(date +%Y%m%d-%H%M%S)
    mkdir -p perf/out
    out=perf/out/$scenario-$stamp
    work=$(mktemp -d)
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    port=$(free_port)
    printf 'listen: 127.0.0.1:%s\n' "$port" >"$work/server.conf"
    taskset -c "$server_cpu" target/profiling/ringnats -c "$work/server.conf" \
        >"$work/server.log" 2>&1 &
    server_pid=$!
    wait_for_port "$port"

    perf record -e cpu-clock -g --call-graph "$call_graph" -p "$server_pid" -o "$out.data" \
        2>"$work/perf.log" &
    perf_pid=$!
    sleep 0.5 # perf attaches to every thread of the process before the load starts

    local result status=0
    if [[ $load == natsbench ]]; then
        load_text="tools/natsbench $load_args"
        # shellcheck disable=SC2086 # $load_args is a list of flags without spaces inside
        result=$(taskset -c "$client_cpu" "$NATSBENCH_DIR/natsbench" -quiet -timeout 60s \
            -s "nats://127.0.0.1:$port" $load_args) || status=$?
    else
        load_text="ringnats bench $load_args"
        # shellcheck disable=SC2086
        result=$(taskset -c "$client_cpu" target/profiling/ringnats bench --no-progress \
            -s "nats://127.0.0.1:$port" $load_args 2>&1 |
            grep -E 'stats:|[Ll]atency:|Failed' | tr -s ' ' | paste -sd ';' -) || status=$?
    fi
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf_pid=""
    [[ $status -eq 0 ]] || echo "record.sh: the load generator exited with $status" >&2

    write_report "$out.data" "$out.txt" "$result"
    perf script -i "$out.data" 2>/dev/null | inferno-collapse-perf |
        inferno-flamegraph --title "ringnats $scenario ($stamp)" >"$out.svg"
    sed -n '1,/^## Call chains/p' "$out.txt" | sed '$d'
    echo "wrote $out.txt $out.svg $out.data"
}

main
