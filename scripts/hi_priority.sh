#!/usr/bin/env bash
# Usage: scripts/hi_priority.sh COMMAND [ARGS...]
#
# Runs COMMAND in a new session whose scheduler autogroup has nice -20, so that a side-by-side
# run on a machine shared with other work (builds) measures the servers rather than their
# share of the CPU. Linux puts each session in its own autogroup when
# kernel.sched_autogroup_enabled is 1, and a task's nice value then counts only inside its
# group: nice -20 on the servers alone changes nothing against other sessions. Both servers and
# the load generator inherit the group, so the comparison stays like for like.
# Needs CAP_SYS_NICE (root) to lower the group's nice value; without it the command runs as is
# and a warning says so. Starts nothing else and stops nothing.
set -euo pipefail

if [[ $# -eq 0 || $1 == --help || $1 == -h ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
fi
exec setsid --wait bash -c '
    if ! echo -20 >/proc/self/autogroup 2>/dev/null; then
        echo "hi_priority.sh: cannot raise the autogroup priority; running as is" >&2
    fi
    exec "$@"' hi_priority "$@"
