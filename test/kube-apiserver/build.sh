#!/usr/bin/env bash
# Builds the test kube-apiserver (main.go: k8s.io/kubernetes cmd/kube-apiserver over embedded etcd)
# once into a cache outside the clone, named by a hash of its sources, and prints its path.
# A second run with the same sources only hashes three files. Modules come from the Go module
# proxy (GOPROXY); nothing else is downloaded. test/fixtures/kube-apiserver.ts finds the binary
# by the same hash (or CLGO_KUBE_APISERVER).
#
#   test/kube-apiserver/build.sh            # build if missing, print the path
#   test/kube-apiserver/build.sh --path     # print the path only (exit 1 if not built)
#   test/kube-apiserver/build.sh --pretest  # as npm's pretest: without Go, warn and go on (the
#                                           # Kubernetes tests then fail saying how to build it)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/clgo"
hash="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)"
bin="$cache/kube-apiserver-$hash"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
if [ "${1:-}" = "--path" ]; then
  echo "$bin"
  exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  echo "test/kube-apiserver/build.sh: Go is not installed; the Kubernetes tests need it to build $bin (see README, 'Tests')" >&2
  [ "${1:-}" = "--pretest" ] && exit 0
  exit 1
fi

mkdir -p "$cache"
# One build at a time (parallel callers wait, then find the binary).
exec 9>"$cache/kube-apiserver.lock"
flock 9
if [ ! -x "$bin" ]; then
  echo "building the test kube-apiserver into $bin (first time: several minutes)..." >&2
  tmp="$bin.tmp.$$"
  # -s -w: no symbol tables (a third smaller); no VCS stamp (the binary's name says its sources).
  (cd "$here" && go build -buildvcs=false -ldflags='-s -w' -o "$tmp" .)
  mv "$tmp" "$bin"
fi
echo "$bin"
