#!/usr/bin/env bash
# Usage: tools/natsbench/build.sh [--no-install] [--quiet] [--load natsbench|ringnats|auto]
#
# Builds the natsbench load generator into $NATSBENCH_DIR/natsbench (default:
# target/natsbench/natsbench in the repo), offline, from Debian's packages only:
#   golang-go                          the Go toolchain (1.19 on Debian 12)
#   golang-github-nats-io-go-nats-dev  nats.go and its bench package (1.22 on Debian 12)
#   golang-github-nats-io-nkeys-dev, golang-github-nats-io-nuid-dev, golang-golang-x-crypto-dev
#                                      what nats.go and the keygen mode import
# Debian puts the Go sources under /usr/share/gocode/src, so the build runs in GOPATH mode
# (GO111MODULE=off, GOPATH=/usr/share/gocode, GOPROXY=off): no module download, no network.
#
# Missing packages are installed with apt-get when running as root (unless --no-install).
# Exit status 3 means "Go cannot be had here" (not root, or --no-install); any other failure
# is 1.
#
# --load is how the perf and compare scripts choose their load: it prints the load to use on
# stdout (everything else goes to stderr). `natsbench` builds and prints natsbench, or fails;
# `ringnats` builds nothing and prints ringnats; `auto` (or empty) builds natsbench and prints
# natsbench, or prints ringnats where Go cannot be had (`ringnats bench` is then the load).
set -euo pipefail

readonly PACKAGES=(golang-go golang-github-nats-io-go-nats-dev golang-github-nats-io-nkeys-dev
    golang-github-nats-io-nuid-dev golang-golang-x-crypto-dev)
readonly IMPORTS=(github.com/nats-io/nats.go/bench github.com/nats-io/nkeys
    github.com/nats-io/nuid golang.org/x/crypto/bcrypt)
readonly NO_GO=3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
gocode=${GOCODE:-/usr/share/gocode}
install=true
quiet=false
load=none
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-install) install=false ;;
        --quiet) quiet=true ;;
        --load) [[ $# -ge 2 ]] || { echo "build.sh: --load needs a value" >&2; exit 1; }
            load=${2:-auto}; shift ;;
        --help | -h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument '$1'" >&2; exit 1 ;;
    esac
    shift
done

case $load in
    none | natsbench | auto) ;;
    ringnats) echo ringnats; exit 0 ;;
    *) echo "build.sh: --load is natsbench, ringnats or auto" >&2; exit 1 ;;
esac

# Go cannot be had: say so, and fall back to `ringnats bench` when the caller allows it.
no_go() {
    echo "build.sh: $*" >&2
    if [[ $load == auto ]]; then
        echo "build.sh: no Go here; the load is \`ringnats bench\`" >&2
        echo ringnats
        exit 0
    fi
    exit $NO_GO
}

have_everything() {
    command -v go >/dev/null || return 1
    local import
    for import in "${IMPORTS[@]}"; do
        [[ -d $gocode/src/$import ]] || return 1
    done
}

if ! have_everything; then
    $install || no_go "Go or nats.go missing and --no-install given; needs: apt-get install ${PACKAGES[*]}"
    [[ $(id -u) -eq 0 ]] || no_go "Go or nats.go missing; run: sudo apt-get install ${PACKAGES[*]}"
    echo "build.sh: apt-get install ${PACKAGES[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
    have_everything || { echo "build.sh: still missing Go sources under $gocode/src" >&2; exit 1; }
fi

out_dir=${NATSBENCH_DIR:-$repo_root/target/natsbench}
mkdir -p "$out_dir"
export GO111MODULE=off GOPATH=$gocode GOFLAGS= GOPROXY=off GOENV=off CGO_ENABLED=0
export GOCACHE=${GOCACHE:-$out_dir/.gocache}
cd "$here"
go vet . >&2
go build -trimpath -o "$out_dir/natsbench" . >&2
[[ $load == none ]] || echo natsbench
if ! $quiet; then
    nats_go=$(sed -n 's/^[[:space:]]*Version[[:space:]]*= "\(.*\)"/\1/p' "$gocode/src/github.com/nats-io/nats.go/nats.go" | head -1)
    echo "built $out_dir/natsbench ($(go version | cut -d' ' -f3), nats.go $nats_go)" >&2
fi
