#!/usr/bin/env bash
# Usage: tools/natsbench/build.sh [--no-install] [--quiet]
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
# Exit status 3 means "Go cannot be had here" (not root, or --no-install): the perf and
# compare scripts then fall back to `ringnats bench` as the load. Any other failure is 1.
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
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-install) install=false ;;
        --quiet) quiet=true ;;
        --help | -h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument '$1'" >&2; exit 1 ;;
    esac
    shift
done

have_everything() {
    command -v go >/dev/null || return 1
    local import
    for import in "${IMPORTS[@]}"; do
        [[ -d $gocode/src/$import ]] || return 1
    done
}

if ! have_everything; then
    if ! $install; then
        echo "build.sh: Go or nats.go missing and --no-install given; needs: apt-get install ${PACKAGES[*]}" >&2
        exit $NO_GO
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "build.sh: Go or nats.go missing; run: sudo apt-get install ${PACKAGES[*]}" >&2
        exit $NO_GO
    fi
    echo "build.sh: apt-get install ${PACKAGES[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
    have_everything || { echo "build.sh: still missing Go sources under $gocode/src" >&2; exit 1; }
fi

out_dir=${NATSBENCH_DIR:-$repo_root/target/natsbench}
mkdir -p "$out_dir"
export GO111MODULE=off GOPATH=$gocode GOFLAGS= GOPROXY=off GOENV=off CGO_ENABLED=0
export GOCACHE=${GOCACHE:-$out_dir/.gocache}
cd "$here"
go vet .
go build -trimpath -o "$out_dir/natsbench" .
if ! $quiet; then
    nats_go=$(sed -n 's/^[[:space:]]*Version[[:space:]]*= "\(.*\)"/\1/p' "$gocode/src/github.com/nats-io/nats.go/nats.go" | head -1)
    echo "built $out_dir/natsbench ($(go version | cut -d' ' -f3), nats.go $nats_go)" >&2
fi
