#!/usr/bin/env bash
# Usage: callgrind_msg.sh SERVER_BIN LOAD_BIN SCENARIO(pub16|pubsub128) MESSAGES OUTDIR
# Instructions (Ir) the broker executes per message: the server runs under callgrind (pinned to
# CPU 0, instrumentation on from the start), a 20,000-message warm-up runs, the counters are
# zeroed (callgrind_control -z), the measured load runs, the counters are dumped
# (callgrind_control -d), and the total Ir of that dump is divided by the messages published.
set -euo pipefail
server_bin=$1 load_bin=$2 scenario=$3 messages=$4 outdir=$5
case $scenario in
    pub16) load=(--pub 1 --size 16) ;;
    pubsub128) load=(--pub 1 --sub 1 --size 128) ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
mkdir -p "$outdir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out="$outdir/callgrind.$scenario.$(basename "$server_bin").out"
rm -f "$out"*
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" "$server_bin" -a 127.0.0.1 -p "$port" >/dev/null 2>"$outdir/valgrind.$scenario.$(basename "$server_bin").log" &
vg=$!
trap 'kill "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.2
done
taskset -c 1 "$load_bin" bench -s "nats://127.0.0.1:$port" --no-progress "${load[@]}" --msgs 20000 load.subject >/dev/null
callgrind_control -z "$vg" >/dev/null
taskset -c 1 "$load_bin" bench -s "nats://127.0.0.1:$port" --no-progress "${load[@]}" --msgs "$messages" load.subject > "$outdir/load.$scenario.$(basename "$server_bin").txt"
callgrind_control -d "$vg" >/dev/null
sleep 1
kill -KILL "$vg" 2>/dev/null; wait "$vg" 2>/dev/null || true
trap - EXIT
dump=$(ls -t "$out".* 2>/dev/null | head -1)
ir=$(grep -E "^(summary|totals):" "$dump" | head -1 | awk '{print $2}')
python3 -c "print(f'$scenario $(basename "$server_bin"): {int($ir):,} Ir / $messages msgs = {int($ir)/$messages:.1f} Ir/msg')"
